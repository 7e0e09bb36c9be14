/* qdot_cbt_avx512.c - AVX-512 BW/DQ/VNNI kernels of the per-tensor codebook formats (see
 * qdot_cbt.c; body in qdot_cbt_x86.h). Without VBMI a byte shuffle reaches 16 entries only:
 * every 16-entry slice of the table (broadcast to the four 128-bit lanes) is looked up by
 * vpshufb with the low four index bits, and a tree of byte blends on index bits 4 .. b-1
 * picks the slice; the integer products and sums are vpdpbusd's. CPUs with VBMI use
 * qdot_cbt_vbmi2.c instead, which gives identical results. Scalar twin: qdot_cbt_scalar.c
 * (same integer sums, float summation order differs). */
#include <immintrin.h>
#include <string.h>

#include "core/cbt.h"
#include "qdot_impl.h"
#include "qdot_cbt.h"

typedef struct {
    __m512i sl[SLM_CBT_MAX_K / 16]; /* entries 16 j .. 16 j + 15 in every lane, zero padded */
} cbt_tab512;

static inline __attribute__((always_inline)) __m512i cbt_lookup512(const cbt_tab512 *t, __m512i idx, int bits) {
    const __m512i lo4 = _mm512_and_si512(idx, _mm512_set1_epi8(15));
    __m512i v[16];
    const int ns = 1 << (bits - 4);
    for (int j = 0; j < ns; j++) v[j] = _mm512_shuffle_epi8(t->sl[j], lo4);
    for (int b = 4; b < bits; b++) {
        const __mmask64 m = _mm512_test_epi8_mask(idx, _mm512_set1_epi8((char)(1 << b)));
        for (int j = 0; j < ns >> (b - 3); j++) v[j] = _mm512_mask_blend_epi8(m, v[2 * j], v[2 * j + 1]);
    }
    return v[0];
}

#include "qdot_cbt_x86.h"


static void prepare(const slm_cbt_format *f, const int8_t *tab, cbt_tab512 *tb) {
    int8_t full[SLM_CBT_MAX_K] = {0};
    memcpy(full, tab, (size_t)f->k);
    for (int j = 0; j < SLM_CBT_MAX_K / 16; j++)
        tb->sl[j] = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(full + 16 * j)));
}

float slm_cbt_dot_avx512(const slm_cbt_format *f, const int8_t *tab, const void *w, const void *x, int64_t n) {
    cbt_tab512 tb;
    prepare(f, tab, &tb);
    float r;
    cbt_tile512_n(&tb, f->bits, n, w, x, 0, 1, &r);
    return r;
}

void slm_cbt_gemm_avx512(const slm_cbt_format *f, const int8_t *tab, int64_t n, const void *w, size_t ws, int nr,
                         const void *x, size_t xs, int nc, float *y, size_t ldy) {
    cbt_tab512 tb;
    prepare(f, tab, &tb);
    cbt_gemm512(&tb, f->bits, n, w, ws, nr, x, xs, nc, y, ldy);
}
