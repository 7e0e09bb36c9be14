/* qdot_cbt_vbmi2.c - AVX-512 VBMI kernels of the per-tensor codebook formats (see qdot_cbt.c;
 * body in qdot_cbt_x86.h): the table sits in four 64-byte registers and 64 indices are looked
 * up at once:
 *   k = 32, 64:  one vpermb on the first register (indices < 64);
 *   k = 128:     one vpermi2b over the first two (7 index bits);
 *   k = 256:     vpermi2b over the first two and over the last two, blended on bit 7.
 * Installed in the AVX-512 table only when the CPU has VBMI (qdot_cbt.c). Identical results
 * to qdot_cbt_avx512.c (same lookups, same arithmetic). */
#include <immintrin.h>
#include <string.h>

#include "core/cbt.h"
#include "qdot_impl.h"
#include "qdot_cbt.h"

typedef struct {
    __m512i z[4]; /* table entries 0-63, 64-127, 128-191, 192-255, zero padded */
} cbt_tab512;

static inline __attribute__((always_inline)) __m512i cbt_lookup512(const cbt_tab512 *t, __m512i idx, int bits) {
    if (bits <= 6) return _mm512_permutexvar_epi8(idx, t->z[0]);
    const __m512i lo = _mm512_permutex2var_epi8(t->z[0], idx, t->z[1]);
    if (bits == 7) return lo;
    const __m512i hi = _mm512_permutex2var_epi8(t->z[2], idx, t->z[3]);
    return _mm512_mask_blend_epi8(_mm512_movepi8_mask(idx), lo, hi);
}

#include "qdot_cbt_x86.h"


static void prepare(const slm_cbt_format *f, const int8_t *tab, cbt_tab512 *tb) {
    int8_t full[SLM_CBT_MAX_K] = {0};
    memcpy(full, tab, (size_t)f->k);
    for (int i = 0; i < 4; i++) tb->z[i] = _mm512_loadu_si512((const void *)(full + 64 * i));
}

float slm_cbt_dot_vbmi2(const slm_cbt_format *f, const int8_t *tab, const void *w, const void *x, int64_t n) {
    cbt_tab512 tb;
    prepare(f, tab, &tb);
    float r;
    cbt_tile512_n(&tb, f->bits, n, w, x, 0, 1, &r);
    return r;
}

void slm_cbt_gemm_vbmi2(const slm_cbt_format *f, const int8_t *tab, int64_t n, const void *w, size_t ws, int nr,
                        const void *x, size_t xs, int nc, float *y, size_t ldy) {
    cbt_tab512 tb;
    prepare(f, tab, &tb);
    cbt_gemm512(&tb, f->bits, n, w, ws, nr, x, xs, nc, y, ldy);
}
