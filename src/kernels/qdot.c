/* qdot.c - kernel tables per instruction set, CPU detection and the choice of table.
 *
 * Each table is built once (pthread_once) from the fill functions: the scalar fills first,
 * then every instruction set the table builds on, in order (scalar < avx2 < avx512), so a
 * kernel missing from a SIMD file falls back to the best one below it. Entries that have a
 * vec_dot but no specialized gemm get a generic gemm that loops that table's vec_dot.
 *
 * The SIMD files exist only in x86-64 builds; elsewhere only the scalar table is built. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif

#include "core/cbt.h"
#include "core/codebook.h"
#include "core/gq.h"
#include "core/sparse.h"
#include "qdot_impl.h"

int slm_act_type(uint32_t wt) {
    switch (wt) {
    case SLM_DT_Q4_0:
    case SLM_DT_Q5_0:
    case SLM_DT_Q8_0:
        return SLM_DT_Q8_0;
    case SLM_DT_Q4_1:
    case SLM_DT_Q5_1:
        return SLM_DT_Q8_1;
    case SLM_DT_Q2_K:
    case SLM_DT_Q3_K:
    case SLM_DT_Q4_K:
    case SLM_DT_Q5_K:
    case SLM_DT_Q6_K:
        return SLM_DT_Q8_K;
    case SLM_DT_F32:
    case SLM_DT_F16:
    case SLM_DT_BF16:
        return SLM_DT_F32;
    default: {
        slm_gq_format f;
        if (slm_gq_format_of(wt, &f)) return f.asym ? SLM_DT_Q8_1 : SLM_DT_Q8_0;
        if (slm_cbt_format_of(wt, NULL)) return SLM_DT_Q8_0;
        if (wt >= SLM_DT_CB_FIRST) return slm_cb_act_type(wt);
        if (wt >= SLM_DT_SP_FIRST) return slm_sp_act_type(wt);
        return -1;
    }
    }
}

void slm_gemm_generic(slm_vec_dot_fn dot, int64_t n, const void *w, size_t w_stride, int nr, const void *x,
                      size_t x_stride, int nc, float *y, size_t ldy) {
    const char *wp = w;
    const char *xp = x;
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < nc; c++)
            y[(size_t)c * ldy + (size_t)r] = dot(wp + (size_t)r * w_stride, xp + (size_t)c * x_stride, n);
}

/* ---- the tables ------------------------------------------------------------------------- */

static slm_kernels g_tables[SLM_ISA_COUNT];
static bool g_supported[SLM_ISA_COUNT];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* A gemm has no argument naming its table, so each (table, weight dtype) pair that uses the
 * generic loop gets a small function binding the two. */
#define GEMM_VIA_DOT(isa, dt, fname)                                                                       \
    static void fname(int64_t n, const void *w, size_t w_stride, int nr, const void *x, size_t x_stride, \
                      int nc, float *y, size_t ldy) {                                                      \
        slm_gemm_generic(g_tables[isa].vec_dot[dt], n, w, w_stride, nr, x, x_stride, nc, y, ldy);        \
    }

#define GEMM_VIA_DOT_ALL_DTYPES(isa, prefix)             \
    GEMM_VIA_DOT(isa, SLM_DT_F32, prefix##_f32)          \
    GEMM_VIA_DOT(isa, SLM_DT_F16, prefix##_f16)          \
    GEMM_VIA_DOT(isa, SLM_DT_BF16, prefix##_bf16)        \
    GEMM_VIA_DOT(isa, SLM_DT_Q4_0, prefix##_q4_0)        \
    GEMM_VIA_DOT(isa, SLM_DT_Q4_1, prefix##_q4_1)        \
    GEMM_VIA_DOT(isa, SLM_DT_Q5_0, prefix##_q5_0)        \
    GEMM_VIA_DOT(isa, SLM_DT_Q5_1, prefix##_q5_1)        \
    GEMM_VIA_DOT(isa, SLM_DT_Q8_0, prefix##_q8_0)        \
    GEMM_VIA_DOT(isa, SLM_DT_Q2_K, prefix##_q2_k)        \
    GEMM_VIA_DOT(isa, SLM_DT_Q3_K, prefix##_q3_k)        \
    GEMM_VIA_DOT(isa, SLM_DT_Q4_K, prefix##_q4_k)        \
    GEMM_VIA_DOT(isa, SLM_DT_Q5_K, prefix##_q5_k)        \
    GEMM_VIA_DOT(isa, SLM_DT_Q6_K, prefix##_q6_k)        \
    static void prefix##_set(slm_gemm_fn g[SLM_DT_COUNT]) { \
        g[SLM_DT_F32] = prefix##_f32;                    \
        g[SLM_DT_F16] = prefix##_f16;                    \
        g[SLM_DT_BF16] = prefix##_bf16;                  \
        g[SLM_DT_Q4_0] = prefix##_q4_0;                  \
        g[SLM_DT_Q4_1] = prefix##_q4_1;                  \
        g[SLM_DT_Q5_0] = prefix##_q5_0;                  \
        g[SLM_DT_Q5_1] = prefix##_q5_1;                  \
        g[SLM_DT_Q8_0] = prefix##_q8_0;                  \
        g[SLM_DT_Q2_K] = prefix##_q2_k;                  \
        g[SLM_DT_Q3_K] = prefix##_q3_k;                  \
        g[SLM_DT_Q4_K] = prefix##_q4_k;                  \
        g[SLM_DT_Q5_K] = prefix##_q5_k;                  \
        g[SLM_DT_Q6_K] = prefix##_q6_k;                  \
    }

GEMM_VIA_DOT_ALL_DTYPES(SLM_ISA_SCALAR, gemm_scalar)
#if defined(__x86_64__)
GEMM_VIA_DOT_ALL_DTYPES(SLM_ISA_AVX2, gemm_avx2)
GEMM_VIA_DOT_ALL_DTYPES(SLM_ISA_AVX512, gemm_avx512)
#endif

/* Generic gemm for every dtype that has a vec_dot in k but no gemm yet. */
static void fill_generic_gemm(slm_kernels *k, void (*set)(slm_gemm_fn g[SLM_DT_COUNT])) {
    slm_gemm_fn generic[SLM_DT_COUNT] = {0};
    set(generic);
    for (int t = 0; t < SLM_DT_COUNT; t++)
        if (k->vec_dot[t] && !k->gemm[t]) k->gemm[t] = generic[t];
}

static void fill_scalar(slm_kernels *k) {
    slm_qdot_fill_scalar(k);
    slm_qdot_k_fill_scalar(k);
    slm_qdot_g_fill(k, SLM_ISA_SCALAR);
    slm_qdot_sp_fill(k, SLM_ISA_SCALAR);
    slm_qdot_cb_fill(k, SLM_ISA_SCALAR);
    slm_qdot_cbt_fill(k, SLM_ISA_SCALAR);
}

#if defined(__x86_64__)
static void fill_avx2(slm_kernels *k) {
    fill_scalar(k);
    slm_qdot_fill_avx2(k);
    slm_qdot_k_fill_avx2(k);
    slm_qdot_g_fill(k, SLM_ISA_AVX2);
    slm_qdot_sp_fill(k, SLM_ISA_AVX2);
    slm_qdot_cb_fill(k, SLM_ISA_AVX2);
    slm_qdot_cbt_fill(k, SLM_ISA_AVX2);
}

static void fill_avx512(slm_kernels *k) {
    fill_avx2(k);
    slm_qdot_fill_avx512(k);
    slm_qdot_k_fill_avx512(k);
    slm_qdot_g_fill(k, SLM_ISA_AVX512);
    slm_qdot_sp_fill(k, SLM_ISA_AVX512);
    slm_qdot_cb_fill(k, SLM_ISA_AVX512);
    slm_qdot_cbt_fill(k, SLM_ISA_AVX512);
}
#endif

/* CPU features, checked once. The AVX-512 file is compiled for F/BW/VL/DQ/VNNI, so all of them
 * must be present (a CPU with AVX-512F but no VNNI runs the AVX2 table). */
#if defined(__x86_64__) && defined(__GNUC__)
/* F16C (CPUID leaf 1, ECX bit 29); not every compiler's __builtin_cpu_supports knows it. Its
 * registers are the AVX ones, whose OS support the avx2 check covers. */
static bool cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}
#endif

static void detect_features(void) {
    g_supported[SLM_ISA_SCALAR] = true;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                        __builtin_cpu_supports("avx512vnni");
    g_supported[SLM_ISA_AVX2] = avx2;
    g_supported[SLM_ISA_AVX512] = avx512;
#endif
}

static void build_tables(void) {
    detect_features();
    slm_kernels *k = &g_tables[SLM_ISA_SCALAR];
    k->isa = SLM_ISA_SCALAR;
    k->name = "scalar";
    fill_scalar(k);
    fill_generic_gemm(k, gemm_scalar_set);
#if defined(__x86_64__)
    if (g_supported[SLM_ISA_AVX2]) {
        k = &g_tables[SLM_ISA_AVX2];
        k->isa = SLM_ISA_AVX2;
        k->name = "avx2";
        fill_avx2(k);
        fill_generic_gemm(k, gemm_avx2_set);
    }
    if (g_supported[SLM_ISA_AVX512]) {
        k = &g_tables[SLM_ISA_AVX512];
        k->isa = SLM_ISA_AVX512;
        k->name = "avx512";
        fill_avx512(k);
        fill_generic_gemm(k, gemm_avx512_set);
    }
#endif
}

const slm_kernels *slm_kernels_get(slm_isa isa) {
    if ((int)isa <= (int)SLM_ISA_REF || (int)isa >= (int)SLM_ISA_COUNT) return NULL;
    pthread_once(&g_once, build_tables);
    return g_supported[isa] ? &g_tables[isa] : NULL;
}

slm_isa slm_isa_detect(void) {
    pthread_once(&g_once, build_tables);
    for (int i = SLM_ISA_COUNT - 1; i > SLM_ISA_SCALAR; i--)
        if (g_supported[i]) return (slm_isa)i;
    return SLM_ISA_SCALAR;
}

slm_isa slm_isa_default(void) {
    const char *env = getenv("SLIMLM_ISA");
    const int want = env ? slm_isa_from_name(env) : -1;
    if (want == SLM_ISA_REF) return SLM_ISA_REF;
    if (want > SLM_ISA_REF && slm_kernels_get((slm_isa)want)) return (slm_isa)want;
    return slm_isa_detect();
}

static const char *const g_isa_names[SLM_ISA_COUNT] = {
    [SLM_ISA_REF] = "ref",
    [SLM_ISA_SCALAR] = "scalar",
    [SLM_ISA_AVX2] = "avx2",
    [SLM_ISA_AVX512] = "avx512",
};

const char *slm_isa_name(slm_isa isa) {
    if ((int)isa < 0 || (int)isa >= (int)SLM_ISA_COUNT) return "unknown";
    return g_isa_names[isa];
}

int slm_isa_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < SLM_ISA_COUNT; i++)
        if (strcmp(name, g_isa_names[i]) == 0) return i;
    return -1;
}
