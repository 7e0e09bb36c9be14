/* qdot_sp.c - binds the sparse formats' kernels (core/sparse.h) to the tables: each
 * instruction-set file sets every sparse entry of a table through its one fill function;
 * the AVX-512 table also takes the VBMI/VBMI2 kernels (byte expand, multishift) when the CPU
 * has both. */
#include "qdot_impl.h"

/* defined in qdot_sp_scalar.c, qdot_sp_avx2.c, qdot_sp_avx512.c, qdot_sp_vbmi2.c */
void slm_qdot_sp_fill_scalar(slm_kernels *k);
#if defined(__x86_64__)
void slm_qdot_sp_fill_avx2(slm_kernels *k);
void slm_qdot_sp_fill_avx512(slm_kernels *k);
void slm_qdot_sp_fill_vbmi2(slm_kernels *k);
#endif

void slm_qdot_sp_fill(slm_kernels *k, slm_isa isa) {
    switch (isa) {
    case SLM_ISA_SCALAR:
        slm_qdot_sp_fill_scalar(k);
        break;
#if defined(__x86_64__) && defined(__GNUC__)
    case SLM_ISA_AVX2:
        slm_qdot_sp_fill_avx2(k);
        break;
    case SLM_ISA_AVX512:
        slm_qdot_sp_fill_avx512(k);
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vbmi2")) slm_qdot_sp_fill_vbmi2(k);
        break;
#endif
    default:
        break;
    }
}
