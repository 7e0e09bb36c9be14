/* qdot_cb.c - binds the codebook formats' kernels (core/codebook.h; one kernel per instruction
 * set with the format as an argument, in qdot_cb_{scalar,avx2,avx512}.c) to the per-dtype
 * table entries, which take no format argument: one small function per (set, format).
 *
 * All kernels take Q8_0 activations; a 32-weight sub-block meets one activation block:
 *   dot = s_w * sum_b d_x[b] * sum_e q_w[idx_e] * q_x[e]
 * The integer sums are exact (|q_w|, |q_x| <= 127); the scalar twin adds the sub-block terms in
 * double, the SIMD kernels in float lanes. Every gemm computes each output exactly as its
 * set's dot does (same operations in the same order), so gemm and dot agree bit for bit. */
#include "core/codebook.h"
#include "qdot_impl.h"

/* the kernels, defined in the per-set files */
float slm_cb_dot_scalar(const slm_cb_format *f, const void *w, const void *x, int64_t n);
void slm_cb_gemm_scalar(const slm_cb_format *f, int64_t n, const void *w, size_t ws, int nr, const void *x,
                        size_t xs, int nc, float *y, size_t ldy);
#if defined(__x86_64__)
float slm_cb_dot_avx2(const slm_cb_format *f, const void *w, const void *x, int64_t n);
void slm_cb_gemm_avx2(const slm_cb_format *f, int64_t n, const void *w, size_t ws, int nr, const void *x,
                      size_t xs, int nc, float *y, size_t ldy);
float slm_cb_dot_avx512(const slm_cb_format *f, const void *w, const void *x, int64_t n);
void slm_cb_gemm_avx512(const slm_cb_format *f, int64_t n, const void *w, size_t ws, int nr, const void *x,
                        size_t xs, int nc, float *y, size_t ldy);
#endif

static slm_cb_format g_fmt[SLM_CB_N_TYPES];

#define CB_BIND(isa, K)                                                                                     \
    static float dot_##isa##_##K(const void *w, const void *x, int64_t n) {                                 \
        return slm_cb_dot_##isa(&g_fmt[K], w, x, n);                                                         \
    }                                                                                                       \
    static void gemm_##isa##_##K(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs,      \
                                 int nc, float *y, size_t ldy) {                                            \
        slm_cb_gemm_##isa(&g_fmt[K], n, w, ws, nr, x, xs, nc, y, ldy);                                       \
    }
#define CB_ALL(isa) CB_BIND(isa, 0) CB_BIND(isa, 1) CB_BIND(isa, 2)

CB_ALL(scalar)
static const slm_vec_dot_fn dots_scalar[SLM_CB_N_TYPES] = {dot_scalar_0, dot_scalar_1, dot_scalar_2};
static const slm_gemm_fn gemms_scalar[SLM_CB_N_TYPES] = {gemm_scalar_0, gemm_scalar_1, gemm_scalar_2};
#if defined(__x86_64__)
CB_ALL(avx2)
CB_ALL(avx512)
static const slm_vec_dot_fn dots_avx2[SLM_CB_N_TYPES] = {dot_avx2_0, dot_avx2_1, dot_avx2_2};
static const slm_gemm_fn gemms_avx2[SLM_CB_N_TYPES] = {gemm_avx2_0, gemm_avx2_1, gemm_avx2_2};
static const slm_vec_dot_fn dots_avx512[SLM_CB_N_TYPES] = {dot_avx512_0, dot_avx512_1, dot_avx512_2};
static const slm_gemm_fn gemms_avx512[SLM_CB_N_TYPES] = {gemm_avx512_0, gemm_avx512_1, gemm_avx512_2};
#endif

/* Called from the table builder (under its pthread_once), scalar first. */
void slm_qdot_cb_fill(slm_kernels *k, slm_isa isa) {
    if (isa == SLM_ISA_SCALAR)
        for (int i = 0; i < SLM_CB_N_TYPES; i++) slm_cb_format_of((uint32_t)SLM_DT_CB_FIRST + (uint32_t)i, &g_fmt[i]);
    for (int i = 0; i < SLM_CB_N_TYPES; i++) {
        const int t = SLM_DT_CB_FIRST + i;
        switch (isa) {
        case SLM_ISA_SCALAR:
            k->vec_dot[t] = dots_scalar[i];
            k->gemm[t] = gemms_scalar[i];
            break;
#if defined(__x86_64__)
        case SLM_ISA_AVX2:
            k->vec_dot[t] = dots_avx2[i];
            k->gemm[t] = gemms_avx2[i];
            break;
        case SLM_ISA_AVX512:
            k->vec_dot[t] = dots_avx512[i];
            k->gemm[t] = gemms_avx512[i];
            break;
#endif
        default:
            break;
        }
    }
}
