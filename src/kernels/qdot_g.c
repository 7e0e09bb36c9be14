/* qdot_g.c - binds the group-format kernels (one per instruction set, the format an argument)
 * to the kernel tables, whose entries are per dtype and take no format argument: one small
 * function per (instruction set, format). */
#include "qdot_g.h"

enum { FIRST = SLM_DT_GQ_FIRST };

static slm_gq_format g_fmt[SLM_GQ_N_TYPES];

static void init_formats(void) {
    for (int k = 0; k < SLM_GQ_N_TYPES; k++) slm_gq_format_of((uint32_t)(FIRST + k), &g_fmt[k]);
}

#define GQ_BIND_DOT(isa, K)                                                  \
    static float dot_##isa##_##K(const void *w, const void *x, int64_t n) { \
        return slm_gq_dot_##isa(&g_fmt[K], w, x, n);                         \
    }
#define GQ_BIND_GEMM(isa, K)                                                                                   \
    static void gemm_##isa##_##K(int64_t n, const void *w, size_t ws, int nr, const void *x, size_t xs, int nc, \
                                 float *y, size_t ldy) {                                                       \
        slm_gq_gemm_##isa(&g_fmt[K], n, w, ws, nr, x, xs, nc, y, ldy);                                          \
    }
#define GQ_ALL(M, isa)                                                                                        \
    M(isa, 0) M(isa, 1) M(isa, 2) M(isa, 3) M(isa, 4) M(isa, 5) M(isa, 6) M(isa, 7) M(isa, 8) M(isa, 9)      \
    M(isa, 10) M(isa, 11) M(isa, 12) M(isa, 13) M(isa, 14) M(isa, 15) M(isa, 16) M(isa, 17) M(isa, 18)      \
    M(isa, 19) M(isa, 20) M(isa, 21) M(isa, 22) M(isa, 23)
#define GQ_LIST(prefix, isa)                                                                                  \
    {prefix##isa##_0, prefix##isa##_1, prefix##isa##_2, prefix##isa##_3, prefix##isa##_4, prefix##isa##_5,     \
     prefix##isa##_6, prefix##isa##_7, prefix##isa##_8, prefix##isa##_9, prefix##isa##_10, prefix##isa##_11,  \
     prefix##isa##_12, prefix##isa##_13, prefix##isa##_14, prefix##isa##_15, prefix##isa##_16,               \
     prefix##isa##_17, prefix##isa##_18, prefix##isa##_19, prefix##isa##_20, prefix##isa##_21,               \
     prefix##isa##_22, prefix##isa##_23}

GQ_ALL(GQ_BIND_DOT, scalar)
GQ_ALL(GQ_BIND_GEMM, scalar)
static const slm_vec_dot_fn dots_scalar[SLM_GQ_N_TYPES] = GQ_LIST(dot_, scalar);
static const slm_gemm_fn gemms_scalar[SLM_GQ_N_TYPES] = GQ_LIST(gemm_, scalar);
#if defined(__x86_64__)
GQ_ALL(GQ_BIND_DOT, avx2)
GQ_ALL(GQ_BIND_DOT, avx512)
GQ_ALL(GQ_BIND_GEMM, avx2)
GQ_ALL(GQ_BIND_GEMM, avx512)
static const slm_vec_dot_fn dots_avx2[SLM_GQ_N_TYPES] = GQ_LIST(dot_, avx2);
static const slm_vec_dot_fn dots_avx512[SLM_GQ_N_TYPES] = GQ_LIST(dot_, avx512);
static const slm_gemm_fn gemms_avx2[SLM_GQ_N_TYPES] = GQ_LIST(gemm_, avx2);
static const slm_gemm_fn gemms_avx512[SLM_GQ_N_TYPES] = GQ_LIST(gemm_, avx512);
#endif

/* Called from the table builder (under its pthread_once), scalar first. */
void slm_qdot_g_fill(slm_kernels *k, slm_isa isa) {
    if (isa == SLM_ISA_SCALAR) init_formats();
    for (int i = 0; i < SLM_GQ_N_TYPES; i++) {
        switch (isa) {
        case SLM_ISA_SCALAR:
            k->vec_dot[FIRST + i] = dots_scalar[i];
            k->gemm[FIRST + i] = gemms_scalar[i];
            break;
#if defined(__x86_64__)
        case SLM_ISA_AVX2:
            k->vec_dot[FIRST + i] = dots_avx2[i];
            k->gemm[FIRST + i] = gemms_avx2[i];
            break;
        case SLM_ISA_AVX512:
            k->vec_dot[FIRST + i] = dots_avx512[i];
            k->gemm[FIRST + i] = gemms_avx512[i];
            break;
#endif
        default:
            break;
        }
    }
}
