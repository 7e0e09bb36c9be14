/* quant_k.c - reference quantizers for the K-quant formats (see quant_k.h).
 *
 * Per super-block of 256 elements:
 *   1. Each sub-block gets a float scale (and offset) from a search: a grid of inverse scales
 *      around qmax / range quantizes the sub-block, the scale (and offset) for those quants is
 *      refit by weighted least squares, the best candidate is kept and then improved by a few
 *      rounds of requantize + refit while the error drops.
 *   2. The sub-block scales (and offsets) are quantized against the super-block scale d (and
 *      dmin), both rounded to f16 first, so the integer scales are computed from the values
 *      stored. Each integer scale tries its rounded value and the two neighbours, keeping
 *      the one whose requantized sub-block has the least weighted error.
 *   3. The elements are quantized with the scales exactly as the dequantizer will compute
 *      them (float products in the same order as core/dtype.c).
 * The bit packing follows the layout comments of the block structs in core/dtype.c. */
#include "core/quant_k.h"

#include <math.h>
#include <string.h>

#include "core/dtype.h"

enum {
    QK = 256,         /* elements per super-block */
    MAX_SUBS = 16,    /* sub-blocks per super-block (16 of 16 or 8 of 32) */
    GRID_ASYM = 26,   /* candidate inverse scales: (qmax + t) / range, t = -1.0 .. +1.5 */
    GRID_SYM = 21,    /* t = -1.0 .. +1.0, towards the negative and the positive end */
    REFINE_ROUNDS = 3,
};

/* Inputs are clamped to +-X_LIMIT: every format saturates well below it, and all squared
 * sums stay finite. */
#define X_LIMIT 1e9f
#define W_LIMIT 1e30f
#define F16_MAX 65504.0f

typedef struct {
    int sub;   /* elements per sub-block: 16 or 32 */
    bool asym; /* x = ds * q - dm with q in [0, qhi]; else x = ds * q with q in [qlo, qhi] */
    int qlo, qhi;
    int slo, shi; /* integer sub-block scale range (offsets use [0, shi] too) */
} kfmt;

static const kfmt F_Q2_K = {.sub = 16, .asym = true, .qlo = 0, .qhi = 3, .slo = 0, .shi = 15};
static const kfmt F_Q3_K = {.sub = 16, .asym = false, .qlo = -4, .qhi = 3, .slo = -32, .shi = 31};
static const kfmt F_Q4_K = {.sub = 32, .asym = true, .qlo = 0, .qhi = 15, .slo = 0, .shi = 63};
static const kfmt F_Q5_K = {.sub = 32, .asym = true, .qlo = 0, .qhi = 31, .slo = 0, .shi = 63};
static const kfmt F_Q6_K = {.sub = 16, .asym = false, .qlo = -32, .qhi = 31, .slo = -128, .shi = 127};

/* One quantized super-block before packing. */
typedef struct {
    uint16_t d, dmin;    /* f16 bits */
    int sc[MAX_SUBS];    /* integer sub-block scales */
    int mn[MAX_SUBS];    /* integer sub-block offsets (asymmetric formats) */
    int q[QK];           /* quants: [0, qhi] or [qlo, qhi] */
} kblock;

/* Nearest integer to v clamped to [lo, hi]; NaN gives lo. */
static int round_clamp(float v, int lo, int hi) {
    if (!(v > (float)lo)) return lo;
    if (!(v < (float)hi)) return hi;
    return (int)floorf(v + 0.5f);
}

/* f16 bits of a non-negative or negative scale, saturated at the f16 range. */
static uint16_t scale_f16(float v) {
    if (v > F16_MAX) v = F16_MAX;
    if (v < -F16_MAX) v = -F16_MAX;
    return slm_f32_to_f16(v);
}

/* Sanitized copies of one super-block's values and weights. Each sub-block whose weights
 * sum to zero gets equal weights, so it still has a well-defined best scale. */
static void prepare(const float *src, const float *imp, int sub, float *x, float *w) {
    for (int i = 0; i < QK; i++) {
        float v = src[i];
        if (isnan(v)) v = 0.0f;
        else if (v > X_LIMIT) v = X_LIMIT;
        else if (v < -X_LIMIT) v = -X_LIMIT;
        x[i] = v;
        float u = imp ? imp[i] : 1.0f;
        if (!(u > 0.0f)) u = 0.0f; /* negative, zero and NaN */
        else if (u > W_LIMIT) u = W_LIMIT;
        w[i] = u;
    }
    for (int j = 0; j < QK; j += sub) {
        double sw = 0.0;
        for (int i = 0; i < sub; i++) sw += w[j + i];
        if (!(sw > 0.0))
            for (int i = 0; i < sub; i++) w[j + i] = 1.0f;
    }
}

/* ---- step 1: float scale of one sub-block ------------------------------------------------ */

/* Weighted least squares x ~ s * q + b with s >= 0 and b <= 0 (the formats subtract a
 * non-negative offset). */
static void fit_asym(const float *x, const float *w, const int *q, int n, float *s, float *b) {
    double sw = 0, sq = 0, sqq = 0, sx = 0, sqx = 0;
    for (int i = 0; i < n; i++) {
        const double wi = w[i], qi = q[i];
        sw += wi;
        sq += wi * qi;
        sqq += wi * qi * qi;
        sx += wi * x[i];
        sqx += wi * qi * x[i];
    }
    const double det = sw * sqq - sq * sq;
    double ss, bb;
    if (det > 0.0) {
        ss = (sw * sqx - sq * sx) / det;
        bb = (sqq * sx - sq * sqx) / det;
    } else { /* all quants equal */
        ss = sqq > 0.0 ? sqx / sqq : 0.0;
        bb = 0.0;
        if (sqq == 0.0) bb = sx / sw;
    }
    if (bb > 0.0) {
        bb = 0.0;
        ss = sqq > 0.0 ? sqx / sqq : 0.0;
    }
    if (ss < 0.0) {
        ss = 0.0;
        bb = sx / sw;
        if (bb > 0.0) bb = 0.0;
    }
    *s = (float)ss;
    *b = (float)bb;
}

static double err_asym(const float *x, const float *w, const int *q, int n, float s, float b) {
    double e = 0.0;
    for (int i = 0; i < n; i++) {
        const double d = (double)(s * (float)q[i] + b) - (double)x[i];
        e += w[i] * d * d;
    }
    return e;
}

/* Scale s >= 0 and offset m >= 0 for x ~ s * q - m, q in [0, qmax]. */
static void solve_asym(const float *x, const float *w, int n, int qmax, float *s_out, float *m_out) {
    float lo = 0.0f, hi = x[0];
    for (int i = 0; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    if (!(hi > lo)) { /* every element equals lo <= 0: the offset alone is exact */
        *s_out = 0.0f;
        *m_out = -lo;
        return;
    }
    const float range = hi - lo;
    int q[32], best_q[32];
    float best_s = range / (float)qmax, best_b = lo;
    for (int i = 0; i < n; i++) best_q[i] = round_clamp((x[i] - lo) / best_s, 0, qmax);
    double best = err_asym(x, w, best_q, n, best_s, best_b);
    for (int k = 0; k < GRID_ASYM; k++) {
        const float iscale = ((float)qmax - 1.0f + 0.1f * (float)k) / range;
        for (int i = 0; i < n; i++) q[i] = round_clamp(iscale * (x[i] - lo), 0, qmax);
        float s, b;
        fit_asym(x, w, q, n, &s, &b);
        const double e = err_asym(x, w, q, n, s, b);
        if (e < best) {
            best = e;
            best_s = s;
            best_b = b;
            memcpy(best_q, q, (size_t)n * sizeof *q);
        }
    }
    for (int r = 0; r < REFINE_ROUNDS && best_s > 0.0f; r++) {
        for (int i = 0; i < n; i++) q[i] = round_clamp((x[i] - best_b) / best_s, 0, qmax);
        float s, b;
        fit_asym(x, w, q, n, &s, &b);
        const double e = err_asym(x, w, q, n, s, b);
        if (!(e < best)) break;
        best = e;
        best_s = s;
        best_b = b;
    }
    *s_out = best_s;
    *m_out = -best_b;
}

/* Scale s (either sign) for x ~ s * q, q in [qlo, qhi]: the largest-magnitude element is
 * mapped near either end of the range; the scale is refit for each candidate. */
static float solve_sym(const float *x, const float *w, int n, int qlo, int qhi) {
    float xm = 0.0f, am = 0.0f;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > am) {
            am = fabsf(x[i]);
            xm = x[i];
        }
    if (am == 0.0f) return 0.0f;
    int q[32];
    double best_gain = -1.0;
    float best_s = 0.0f;
    for (int end = 0; end < 2; end++) {
        const float top = end == 0 ? (float)-qlo : (float)qhi, sign = end == 0 ? -1.0f : 1.0f;
        for (int k = 0; k < GRID_SYM; k++) {
            const float iscale = sign * (top - 1.0f + 0.1f * (float)k) / xm;
            double sxq = 0.0, sqq = 0.0;
            for (int i = 0; i < n; i++) {
                q[i] = round_clamp(iscale * x[i], qlo, qhi);
                sxq += (double)w[i] * x[i] * q[i];
                sqq += (double)w[i] * q[i] * q[i];
            }
            /* error at the optimal scale sxq / sqq is sum(w x^2) - sxq^2 / sqq */
            if (sqq > 0.0 && sxq * sxq / sqq > best_gain) {
                best_gain = sxq * sxq / sqq;
                best_s = (float)(sxq / sqq);
            }
        }
    }
    for (int r = 0; r < REFINE_ROUNDS && best_s != 0.0f; r++) {
        double sxq = 0.0, sqq = 0.0;
        for (int i = 0; i < n; i++) {
            q[i] = round_clamp(x[i] / best_s, qlo, qhi);
            sxq += (double)w[i] * x[i] * q[i];
            sqq += (double)w[i] * q[i] * q[i];
        }
        if (!(sqq > 0.0) || !(sxq * sxq / sqq > best_gain)) break;
        best_gain = sxq * sxq / sqq;
        best_s = (float)(sxq / sqq);
    }
    return best_s;
}

/* ---- steps 2 and 3: integer scales and final quants ------------------------------------- */

/* Quants of one sub-block for the stored scale ds and offset dm (x = ds * q - dm) and their
 * weighted error, computed as the dequantizer does. */
static double requant(const float *x, const float *w, int n, float ds, float dm, int qlo, int qhi,
                      int *q) {
    double e = 0.0;
    for (int i = 0; i < n; i++) {
        q[i] = ds != 0.0f ? round_clamp((x[i] + dm) / ds, qlo, qhi) : 0;
        const float v = ds * (float)q[i];
        const double d = (double)(v - dm) - (double)x[i];
        e += w[i] * d * d;
    }
    return e;
}

static void quantize_block(const kfmt *f, const float *src, const float *imp, kblock *kb) {
    float x[QK], w[QK], s[MAX_SUBS], m[MAX_SUBS];
    const int nsub = QK / f->sub;
    prepare(src, imp, f->sub, x, w);
    float d, dmin = 0.0f;
    if (f->asym) {
        float smax = 0.0f, mmax = 0.0f;
        for (int j = 0; j < nsub; j++) {
            solve_asym(x + j * f->sub, w + j * f->sub, f->sub, f->qhi, &s[j], &m[j]);
            if (s[j] > smax) smax = s[j];
            if (m[j] > mmax) mmax = m[j];
        }
        kb->d = scale_f16(smax / (float)f->shi);
        kb->dmin = scale_f16(mmax / (float)f->shi);
        d = slm_f16_to_f32(kb->d);
        dmin = slm_f16_to_f32(kb->dmin);
    } else {
        float sm = 0.0f;
        for (int j = 0; j < nsub; j++) {
            s[j] = solve_sym(x + j * f->sub, w + j * f->sub, f->sub, f->qlo, f->qhi);
            m[j] = 0.0f;
            if (fabsf(s[j]) > fabsf(sm)) sm = s[j];
        }
        kb->d = scale_f16(sm / (float)f->slo); /* the largest scale maps to the most negative */
        kb->dmin = 0;
        d = slm_f16_to_f32(kb->d);
    }
    for (int j = 0; j < nsub; j++) {
        const float *xj = x + j * f->sub, *wj = w + j * f->sub;
        const int sc0 = d != 0.0f ? round_clamp(s[j] / d, f->slo, f->shi) : 0;
        const int mn0 = f->asym && dmin != 0.0f ? round_clamp(m[j] / dmin, 0, f->shi) : 0;
        const int mspan = f->asym && dmin != 0.0f ? 1 : 0;
        double best = INFINITY;
        int q[32];
        kb->sc[j] = sc0;
        kb->mn[j] = mn0;
        for (int a = sc0 - 1; a <= sc0 + 1; a++) {
            if (a < f->slo || a > f->shi) continue;
            for (int b = mn0 - mspan; b <= mn0 + mspan; b++) {
                if (b < 0 || b > f->shi) continue;
                const float ds = d * (float)a, dm = dmin * (float)b;
                const double e = requant(xj, wj, f->sub, ds, dm, f->asym ? 0 : f->qlo, f->qhi, q);
                if (e < best) {
                    best = e;
                    kb->sc[j] = a;
                    kb->mn[j] = b;
                    memcpy(kb->q + j * f->sub, q, (size_t)f->sub * sizeof *q);
                }
            }
        }
        if (!(best < INFINITY)) /* only when every error is NaN: not reachable on clamped input */
            requant(xj, wj, f->sub, d * (float)sc0, dmin * (float)mn0, f->asym ? 0 : f->qlo, f->qhi,
                    kb->q + j * f->sub);
    }
}

/* ---- packing (layouts: the block structs in core/dtype.c) -------------------------------- */

static void put_f16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

/* q2_k: scales[16], qs[64], d, dmin (84 bytes). */
static void pack_q2_k(const kblock *kb, uint8_t *p) {
    memset(p, 0, 84);
    for (int i = 0; i < 16; i++) p[i] = (uint8_t)(kb->sc[i] | (kb->mn[i] << 4));
    for (int e = 0; e < QK; e++) {
        const int h = e / 128, s = (e / 32) % 4, l = e % 32;
        p[16 + 32 * h + l] |= (uint8_t)(kb->q[e] << (2 * s));
    }
    put_f16(p + 80, kb->d);
    put_f16(p + 82, kb->dmin);
}

/* q3_k: hmask[32], qs[64], scales[12], d (110 bytes). */
static void pack_q3_k(const kblock *kb, uint8_t *p) {
    uint8_t *hmask = p, *qs = p + 32, *sc = p + 96;
    memset(p, 0, 110);
    for (int i = 0; i < 16; i++) {
        const int u = kb->sc[i] + 32; /* 0..63 */
        if (i < 8) sc[i] |= (uint8_t)(u & 15);
        else sc[i - 8] |= (uint8_t)((u & 15) << 4);
        sc[8 + i % 4] |= (uint8_t)((u >> 4) << (2 * (i / 4)));
    }
    for (int e = 0; e < QK; e++) {
        const int h = e / 128, s = (e / 32) % 4, l = e % 32;
        const int u = kb->q[e] + 4; /* 0..7: low 2 bits, and the high bit set means "no -4" */
        qs[32 * h + l] |= (uint8_t)((u & 3) << (2 * s));
        hmask[l] |= (uint8_t)((u >> 2) << (e / 32));
    }
    put_f16(p + 108, kb->d);
}

/* 6-bit scales and offsets of 8 sub-blocks into the 12 bytes shared by q4_k and q5_k. */
static void pack_scale_min(const kblock *kb, uint8_t s[12]) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)(kb->sc[j] | ((kb->sc[j + 4] >> 4) << 6));
        s[j + 4] = (uint8_t)(kb->mn[j] | ((kb->mn[j + 4] >> 4) << 6));
        s[j + 8] = (uint8_t)((kb->sc[j + 4] & 15) | ((kb->mn[j + 4] & 15) << 4));
    }
}

/* q4_k: d, dmin, scales[12], qs[128] (144 bytes). */
static void pack_q4_k(const kblock *kb, uint8_t *p) {
    memset(p, 0, 144);
    put_f16(p, kb->d);
    put_f16(p + 2, kb->dmin);
    pack_scale_min(kb, p + 4);
    for (int j = 0; j < 8; j++)
        for (int l = 0; l < 32; l++) p[16 + 32 * (j / 2) + l] |= (uint8_t)(kb->q[32 * j + l] << (4 * (j % 2)));
}

/* q5_k: d, dmin, scales[12], qh[32], qs[128] (176 bytes). */
static void pack_q5_k(const kblock *kb, uint8_t *p) {
    uint8_t *qh = p + 16, *qs = p + 48;
    memset(p, 0, 176);
    put_f16(p, kb->d);
    put_f16(p + 2, kb->dmin);
    pack_scale_min(kb, p + 4);
    for (int j = 0; j < 8; j++)
        for (int l = 0; l < 32; l++) {
            const int q = kb->q[32 * j + l];
            qs[32 * (j / 2) + l] |= (uint8_t)((q & 15) << (4 * (j % 2)));
            qh[l] |= (uint8_t)((q >> 4) << j);
        }
}

/* q6_k: ql[128], qh[64], scales[16], d (210 bytes). */
static void pack_q6_k(const kblock *kb, uint8_t *p) {
    uint8_t *ql = p, *qh = p + 128;
    memset(p, 0, 210);
    for (int e = 0; e < QK; e++) {
        const int h = e / 128, i = (e / 64) % 2, m = e % 64, s2 = m / 32, l = m % 32;
        const int u = kb->q[e] + 32; /* 0..63 */
        ql[64 * h + m] |= (uint8_t)((u & 15) << (4 * i));
        qh[32 * h + l] |= (uint8_t)((u >> 4) << (2 * (2 * i + s2)));
    }
    for (int i = 0; i < 16; i++) p[192 + i] = (uint8_t)(int8_t)kb->sc[i];
    put_f16(p + 208, kb->d);
}

/* ---- rows ------------------------------------------------------------------------------- */

typedef struct {
    const kfmt *f;
    void (*pack)(const kblock *kb, uint8_t *p);
    size_t bytes;
} kind;

static const kind *kind_of(uint32_t t) {
    static const kind kinds[] = {
        {&F_Q2_K, pack_q2_k, 84}, {&F_Q3_K, pack_q3_k, 110}, {&F_Q4_K, pack_q4_k, 144},
        {&F_Q5_K, pack_q5_k, 176}, {&F_Q6_K, pack_q6_k, 210},
    };
    if (t < SLM_DT_Q2_K || t > SLM_DT_Q6_K) return NULL;
    return &kinds[t - SLM_DT_Q2_K];
}

bool slm_quantize_k(uint32_t t, const float *src, void *dst, int64_t n, const float *imp) {
    const kind *k = kind_of(t);
    if (!k || n < 0 || n % QK != 0) return false;
    uint8_t *p = dst;
    kblock kb;
    for (int64_t i = 0; i < n; i += QK, p += k->bytes) {
        quantize_block(k->f, src + i, imp ? imp + i : NULL, &kb);
        k->pack(&kb, p);
    }
    return true;
}

void slm_quantize_q2_k(const float *src, void *dst, int64_t n) { slm_quantize_k(SLM_DT_Q2_K, src, dst, n, NULL); }
void slm_quantize_q3_k(const float *src, void *dst, int64_t n) { slm_quantize_k(SLM_DT_Q3_K, src, dst, n, NULL); }
void slm_quantize_q4_k(const float *src, void *dst, int64_t n) { slm_quantize_k(SLM_DT_Q4_K, src, dst, n, NULL); }
void slm_quantize_q5_k(const float *src, void *dst, int64_t n) { slm_quantize_k(SLM_DT_Q5_K, src, dst, n, NULL); }
void slm_quantize_q6_k(const float *src, void *dst, int64_t n) { slm_quantize_k(SLM_DT_Q6_K, src, dst, n, NULL); }
