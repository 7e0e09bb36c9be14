/* qdot_cbt.c - binds the per-tensor codebook formats' kernels (core/cbt.h; one kernel per
 * instruction set with the format as an argument, in qdot_cbt_{scalar,avx2,avx512,vbmi2}.c) to
 * the tables' vec_dot_tab / gemm_tab entries: one small function per (set, format). The
 * AVX-512 table takes the VBMI kernels (byte permutes over the table) when the CPU has VBMI.
 *
 * All kernels take Q8_0 activations and the tensor's table tab[k]; a 32-weight sub-block meets
 * one activation block:
 *   dot = s_w * sum_b d_x[b] * sum_e tab[idx_e] * q_x[e]
 * The integer sums are exact (|tab|, |q_x| <= 127); the scalar twin adds the sub-block terms
 * in double, the SIMD kernels in float lanes. Every gemm computes each output exactly as its
 * set's dot does, so gemm and dot agree bit for bit. */
#include "core/cbt.h"
#include "qdot_impl.h"
#include "qdot_cbt.h"

static const slm_cbt_format g_fmt[SLM_CBT_N_TYPES] = {{32, 5, 20}, {64, 6, 24}, {128, 7, 28}, {256, 8, 32}};

#define CBT_BIND(isa, K)                                                                                    \
    static float dot_##isa##_##K(const int8_t *tab, const void *w, const void *x, int64_t n) {              \
        return slm_cbt_dot_##isa(&g_fmt[K], tab, w, x, n);                                                   \
    }                                                                                                       \
    static void gemm_##isa##_##K(const int8_t *tab, int64_t n, const void *w, size_t ws, int nr, const void *x, \
                                 size_t xs, int nc, float *y, size_t ldy) {                                 \
        slm_cbt_gemm_##isa(&g_fmt[K], tab, n, w, ws, nr, x, xs, nc, y, ldy);                                 \
    }
#define CBT_ALL(isa)                                                                                        \
    CBT_BIND(isa, 0) CBT_BIND(isa, 1) CBT_BIND(isa, 2) CBT_BIND(isa, 3)                                    \
    static const slm_vec_dot_tab_fn dots_##isa[SLM_CBT_N_TYPES] = {dot_##isa##_0, dot_##isa##_1,            \
                                                                   dot_##isa##_2, dot_##isa##_3};           \
    static const slm_gemm_tab_fn gemms_##isa[SLM_CBT_N_TYPES] = {gemm_##isa##_0, gemm_##isa##_1,            \
                                                                 gemm_##isa##_2, gemm_##isa##_3};

CBT_ALL(scalar)
#if defined(__x86_64__)
CBT_ALL(avx2)
CBT_ALL(avx512)
CBT_ALL(vbmi2)
#endif

static void set(slm_kernels *k, const slm_vec_dot_tab_fn *dots, const slm_gemm_tab_fn *gemms) {
    for (int i = 0; i < SLM_CBT_N_TYPES; i++) {
        k->vec_dot_tab[SLM_DT_CBT_FIRST + i] = dots[i];
        k->gemm_tab[SLM_DT_CBT_FIRST + i] = gemms[i];
    }
}

/* Called from the table builder (under its pthread_once), scalar first. */
void slm_qdot_cbt_fill(slm_kernels *k, slm_isa isa) {
    switch (isa) {
    case SLM_ISA_SCALAR:
        set(k, dots_scalar, gemms_scalar);
        break;
#if defined(__x86_64__) && defined(__GNUC__)
    case SLM_ISA_AVX2:
        set(k, dots_avx2, gemms_avx2);
        break;
    case SLM_ISA_AVX512:
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512vbmi")) set(k, dots_vbmi2, gemms_vbmi2);
        else set(k, dots_avx512, gemms_avx512);
        break;
#endif
    default:
        break;
    }
}
