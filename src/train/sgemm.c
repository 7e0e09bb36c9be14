/* sgemm.c - training matrix products: dispatch, the scalar reference kernel and the packed,
 * cache-blocked driver of the SIMD micro-kernels.
 *
 * Driver (per thread, on its own block of C):
 *   for each column block jc of at most nc columns:
 *     for each row block ic (all rows, unless C's block would outgrow the cache):
 *       for each K block pc of kc (the same blocks for every split):
 *         pack op(B)[pc.., jc..] into nr-wide panels (thread-private buffer)
 *         for each row panel ir of mr rows: pack op(A)[ir.., pc..]; micro-kernel on every B panel
 * The first K block stores (beta 0) or combines with beta * C; later ones add to C. Each
 * element of C is thus an FMA chain over every K block in order, added block by block: the
 * same arithmetic for any thread count. Threads split C by rows (in whole mr panels) when M
 * >= N, else by columns (whole nr panels); never over K.
 *
 * Packing buffers are per thread, kept between calls (a pthread key frees them when a thread
 * exits) and grown only when a kernel set needs more. */
#include "sgemm.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/qdot.h"
#include "sgemm_impl.h"

/* ---- kernel set choice ------------------------------------------------------------------- */

enum { SG_SCALAR = 0, SG_AVX2 = 1, SG_AVX512 = 2, SG_COUNT };

static const char *const g_names[SG_COUNT] = {"scalar", "avx2", "avx512"};
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_default;            /* set once */
static atomic_int g_forced = -1; /* slm_sgemm_set_isa; -1: the default */

static bool supported(int which) {
    switch (which) {
    case SG_SCALAR:
        return true;
#if defined(__x86_64__)
    case SG_AVX2:
        return slm_kernels_get(SLM_ISA_AVX2) != NULL;
    case SG_AVX512:
        return slm_kernels_get(SLM_ISA_AVX512) != NULL;
#endif
    default:
        return false;
    }
}

static void choose_default(void) {
    const slm_isa isa = slm_isa_default(); /* cpuid, capped by $SLIMLM_ISA */
    g_default = isa == SLM_ISA_AVX512 ? SG_AVX512 : isa == SLM_ISA_AVX2 ? SG_AVX2 : SG_SCALAR;
    if (!supported(g_default)) g_default = SG_SCALAR;
}

static int current(void) {
    const int f = atomic_load_explicit(&g_forced, memory_order_relaxed);
    if (f >= 0) return f;
    pthread_once(&g_once, choose_default);
    return g_default;
}

const char *slm_sgemm_isa(void) { return g_names[current()]; }

bool slm_sgemm_set_isa(const char *name) {
    if (!name) {
        atomic_store(&g_forced, -1);
        return true;
    }
    for (int i = 0; i < SG_COUNT; i++)
        if (strcmp(name, g_names[i]) == 0 && supported(i)) {
            atomic_store(&g_forced, i);
            return true;
        }
    return false;
}

static const sg_kernel_set *kernel_set(int which) {
#if defined(__x86_64__)
    if (which == SG_AVX512) return &slm_sgemm_avx512;
    if (which == SG_AVX2) return &slm_sgemm_avx2;
#endif
    (void)which;
    return NULL;
}

/* ---- arguments ---------------------------------------------------------------------------- */

typedef struct {
    bool ta, tb;
    int M, N, K, lda, ldb, ldc;
    const float *A, *B;
    float beta;
    float *C;
    const sg_kernel_set *ks; /* NULL: scalar */
    bool split_rows;         /* threads split M (else N) */
} sg_args;

/* ---- scalar reference: each element summed over k in order ------------------------------- */

static void sg_scalar(void *arg, int ith, int nth) {
    const sg_args *a = arg;
    long lo, hi;
    slm_pool_split(a->M, ith, nth, 1, &lo, &hi);
    for (long i = lo; i < hi; i++) {
        float *c = a->C + (size_t)i * a->ldc;
        for (int j = 0; j < a->N; j++) {
            float s = 0;
            for (int k = 0; k < a->K; k++) {
                const float x = a->ta ? a->A[(size_t)k * a->lda + i] : a->A[(size_t)i * a->lda + k];
                const float y = a->tb ? a->B[(size_t)j * a->ldb + k] : a->B[(size_t)k * a->ldb + j];
                s += x * y;
            }
            c[j] = a->beta != 0 ? a->beta * c[j] + s : s;
        }
    }
}

/* ---- thread-private packing buffers ------------------------------------------------------- */

typedef struct {
    float *buf;
    size_t cap; /* floats */
} sg_scratch;

static pthread_key_t g_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;
static bool g_key_ok;

static void scratch_free(void *p) {
    sg_scratch *s = p;
    if (s) free(s->buf);
    free(s);
}

static void key_create(void) { g_key_ok = pthread_key_create(&g_key, scratch_free) == 0; }

/* A 64-byte aligned buffer of at least n floats for this thread, or NULL. */
static float *scratch_get(size_t n) {
    pthread_once(&g_key_once, key_create);
    if (!g_key_ok) return NULL;
    sg_scratch *s = pthread_getspecific(g_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s || pthread_setspecific(g_key, s) != 0) {
            free(s);
            return NULL;
        }
    }
    if (s->cap < n) {
        free(s->buf);
        s->cap = 0;
        s->buf = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
        if (!s->buf) return NULL;
        s->cap = n;
    }
    return s->buf;
}

/* ---- packing ------------------------------------------------------------------------------ */

/* d[0..n) = s[0..n), d[n..w) = 0. The panel widths in use get fixed-size copies. */
static inline void copy_row(float *d, const float *s, int n, int w) {
    if (n == w) {
        switch (w) {
        case 6:
            memcpy(d, s, 6 * sizeof(float));
            return;
        case 12:
            memcpy(d, s, 12 * sizeof(float));
            return;
        case 16:
            memcpy(d, s, 16 * sizeof(float));
            return;
        case 32:
            memcpy(d, s, 32 * sizeof(float));
            return;
        default:
            break;
        }
    }
    int i = 0;
    for (; i < n; i++) d[i] = s[i];
    for (; i < w; i++) d[i] = 0;
}

/* op(A) rows [i0, i1) x k [k0, k0+kc) into panels of MR rows: panel p at dst + p * kc * MR,
 * element (i, k) at [k * MR + i]; rows past i1 in the last panel zero. */
static void pack_a(const sg_args *g, int MR, long i0, long i1, int k0, int kc, float *dst) {
    const long rows = i1 - i0, panels = (rows + MR - 1) / MR;
    if (g->ta) { /* A stored [K][M]: read each row k once across the block */
        for (int k = 0; k < kc; k++) {
            const float *src = g->A + (size_t)(k0 + k) * g->lda + i0;
            for (long p = 0; p < panels; p++) {
                float *d = dst + (size_t)p * kc * MR + (size_t)k * MR;
                const float *s = src + p * MR;
                if (k + 4 < kc) __builtin_prefetch(s + 4 * (size_t)g->lda);
                copy_row(d, s, rows - p * MR < MR ? (int)(rows - p * MR) : MR, MR);
            }
        }
        return;
    }
    for (long p = 0; p < panels; p++) { /* A stored [M][K]: gather a column of the panel per k */
        float *panel = dst + (size_t)p * kc * MR;
        const int mr = rows - p * MR < MR ? (int)(rows - p * MR) : MR;
        const float *src = g->A + (size_t)(i0 + p * MR) * g->lda + k0;
        g->ks->transpose(src, g->lda, mr, kc, MR, panel);
    }
}

/* op(B) k [k0, k0+kc) x columns [j0, j0+nc) into panels of NR columns: panel p at
 * dst + p * kc * NR, element (k, j) at [k * NR + j]; columns past nc zero. */
static void pack_b(const sg_args *g, int NR, int k0, int kc, long j0, int nc, float *dst) {
    for (int p = 0; p * NR < nc; p++) {
        float *panel = dst + (size_t)p * kc * NR;
        const int nr = nc - p * NR < NR ? nc - p * NR : NR;
        const long jp = j0 + (long)p * NR;
        if (!g->tb) { /* B stored [K][N]: rows contiguous */
            for (int k = 0; k < kc; k++) {
                const float *src = g->B + (size_t)(k0 + k) * g->ldb + jp;
                if (k + 4 < kc) { /* rows a few k ahead */
                    __builtin_prefetch(src + 4 * (size_t)g->ldb);
                    __builtin_prefetch(src + 4 * (size_t)g->ldb + nr - 1);
                }
                copy_row(panel + (size_t)k * NR, src, nr, NR);
            }
        } else { /* B stored [N][K]: column j of op(B) is row j of B */
            g->ks->transpose(g->B + (size_t)jp * g->ldb + k0, g->ldb, nr, kc, NR, panel);
        }
    }
}

/* ---- the blocked driver -------------------------------------------------------------------- */

/* Bytes of C one column block may span before the rows are split into blocks as well, so
 * the part of C that every K block updates stays in cache. */
enum { SG_C_BLOCK_BYTES = 4 << 20 };
/* Rows of A packed at once (rounded down to whole panels). */
enum { SG_MC = 1032 };

/* C rows [m0, m1) x columns [n0, n1); B packed at most ncb columns at a time into bp, A at most
 * mcb rows (a multiple of mr) at a time into ap. Column blocks are balanced (n1 - n0 split into
 * blocks of equal whole panels). */
static void sg_block(const sg_args *g, int ncb, long mcb, long m0, long m1, long n0, long n1, float *bp, float *ap) {
    const sg_kernel_set *ks = g->ks;
    const int MR = ks->mr, NR = ks->nr;
    const long panels = (n1 - n0 + NR - 1) / NR, max_panels = ncb / NR;
    const long nblocks = (panels + max_panels - 1) / max_panels;
    const long ncol = (panels + nblocks - 1) / nblocks * NR;
    long mc = SG_C_BLOCK_BYTES / ((long)sizeof(float) * ncol) / MR * MR;
    if (mc > mcb) mc = mcb;
    if (mc < MR) mc = MR;
    for (long jc = n0; jc < n1; jc += ncol) {
        const int nc = (int)(n1 - jc < ncol ? n1 - jc : ncol);
        for (long ic = m0; ic < m1; ic += mc) {
            const long ie = m1 - ic < mc ? m1 : ic + mc;
            for (int pc = 0; pc < g->K; pc += ks->kc) {
                const int kc = g->K - pc < ks->kc ? g->K - pc : ks->kc;
                const int mode = pc > 0 ? SG_ADD : g->beta == 0 ? SG_STORE : g->beta == 1 ? SG_ADD : SG_BETA;
                pack_b(g, NR, pc, kc, jc, nc, bp);
                pack_a(g, MR, ic, ie, pc, kc, ap);
                for (long ir = ic; ir < ie; ir += MR) {
                    const int mr = (int)(ie - ir < MR ? ie - ir : MR);
                    const float *apanel = ap + (size_t)((ir - ic) / MR) * kc * MR;
                    float *crow = g->C + (size_t)ir * g->ldc + jc;
                    for (int jr = 0; jr < nc; jr += NR) {
                        const int nr = nc - jr < NR ? nc - jr : NR;
                        ks->kernel(kc, apanel, bp + (size_t)(jr / NR) * kc * NR, crow + jr, g->ldc, mr, nr, mode,
                                   g->beta);
                    }
                }
            }
        }
    }
}

static void sg_packed(void *arg, int ith, int nth) {
    const sg_args *g = arg;
    const sg_kernel_set *ks = g->ks;
    long m0 = 0, m1 = g->M, n0 = 0, n1 = g->N;
    if (g->split_rows) slm_pool_split(g->M, ith, nth, ks->mr, &m0, &m1);
    else slm_pool_split(g->N, ith, nth, ks->nr, &n0, &n1);
    if (m0 >= m1 || n0 >= n1) return;
    const size_t nb = (size_t)ks->kc * (size_t)((ks->nc + ks->nr - 1) / ks->nr * ks->nr);
    const long mcb = SG_MC / ks->mr * ks->mr;
    const size_t na = (size_t)ks->kc * (size_t)mcb;
    float *buf = scratch_get(nb + na);
    if (buf) {
        sg_block(g, ks->nc, mcb, m0, m1, n0, n1, buf, buf + nb);
        return;
    }
    /* No memory for the buffers: one B panel at a time on the stack. The column block does
     * not change any element's arithmetic, so the result is the same. */
    _Alignas(64) float small[SG_KC_MAX * (SG_NR_MAX + SG_MR_MAX)];
    sg_block(g, ks->nr, ks->mr, m0, m1, n0, n1, small, small + (size_t)ks->kc * ks->nr);
}

void slm_sgemm(slm_pool *pool, bool ta, bool tb, int M, int N, int K, const float *A, int lda, const float *B,
               int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* op(A) op(B) is zero */
        for (int i = 0; i < M; i++) {
            float *c = C + (size_t)i * ldc;
            for (int j = 0; j < N; j++) c[j] = beta != 0 ? beta * c[j] : 0.0f;
        }
        return;
    }
    sg_args a = {ta, tb, M, N, K, lda, ldb, ldc, A, B, beta, C, kernel_set(current()), M >= N};
    slm_pool_run(pool, a.ks ? sg_packed : sg_scalar, &a);
}
