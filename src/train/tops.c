/* tops.c - training ops: forward / backward pairs (see tops.h).
 *
 * The math follows the inference engine (src/kernels/ops.c, src/kernels/attention.c): RMSNorm
 * with the sum of squares in double, RoPE angles pos * scale * base^(-2i/rope_dim) in NORM or
 * NEOX pairing over the first rope_dim dims of each head, attention scaled by 1/sqrt(head_dim)
 * with head h reading KV group h / (H/KV), SwiGLU silu(gate) * up.
 *
 * Determinism: every output element is computed by one thread in a fixed order; sums over
 * token rows (bias gradients) are split over columns, never over rows, so the result does not
 * depend on the thread count. */
#include "tops.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#ifndef SLM_TRAIN_DOUBLE
#include "sgemm.h"
#endif

/* exp of activations: float in the float build, double in the double build */
#ifdef SLM_TRAIN_DOUBLE
#define TEXP(x) exp(x)
#else
#define TEXP(x) expf(x)
#endif

/* ---- matrix products ----------------------------------------------------------------------
 * C[M][N] = op(A) op(B) + beta C, the slm_sgemm contract. The float build calls slm_sgemm; the
 * double build runs plain loops split over rows of C. */
#ifdef SLM_TRAIN_DOUBLE
typedef struct {
    bool ta, tb;
    int M, N, K, lda, ldb, ldc;
    const treal *A, *B;
    treal beta;
    treal *C;
} tg_args;

static void tg_rows(void *arg, int ith, int nth) {
    const tg_args *a = arg;
    long lo, hi;
    slm_pool_split(a->M, ith, nth, 1, &lo, &hi);
    for (long i = lo; i < hi; i++) {
        treal *c = a->C + (size_t)i * a->ldc;
        for (int j = 0; j < a->N; j++) {
            treal s = 0;
            for (int k = 0; k < a->K; k++) {
                const treal x = a->ta ? a->A[(size_t)k * a->lda + i] : a->A[(size_t)i * a->lda + k];
                const treal y = a->tb ? a->B[(size_t)j * a->ldb + k] : a->B[(size_t)k * a->ldb + j];
                s += x * y;
            }
            c[j] = a->beta != 0 ? a->beta * c[j] + s : s;
        }
    }
}

static void tgemm(slm_pool *pool, bool ta, bool tb, int M, int N, int K, const treal *A, int lda, const treal *B,
                  int ldb, treal beta, treal *C, int ldc) {
    tg_args a = {ta, tb, M, N, K, lda, ldb, ldc, A, B, beta, C};
    if (M <= 0 || N <= 0) return;
    slm_pool_run(pool, tg_rows, &a);
}
#else
static void tgemm(slm_pool *pool, bool ta, bool tb, int M, int N, int K, const treal *A, int lda, const treal *B,
                  int ldb, treal beta, treal *C, int ldc) {
    slm_sgemm(pool, ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
}
#endif

/* ---- embedding ---------------------------------------------------------------------------- */

void slm_t_embed_forward(treal *out, const int32_t *tok, const treal *embd, int N, int D) {
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * D, embd + (size_t)tok[n] * D, (size_t)D * sizeof(treal));
}

void slm_t_embed_backward(treal *dembd, const treal *dout, const int32_t *tok, int N, int D) {
    for (int n = 0; n < N; n++) {
        treal *d = dembd + (size_t)tok[n] * D;
        const treal *g = dout + (size_t)n * D;
        for (int i = 0; i < D; i++) d[i] += g[i];
    }
}

/* ---- RMSNorm ------------------------------------------------------------------------------ */

void slm_t_rmsnorm_forward(treal *out, treal *rstd, const treal *in, const treal *w, int N, int D, float eps) {
    for (int n = 0; n < N; n++) {
        const treal *x = in + (size_t)n * D;
        treal *o = out + (size_t)n * D;
        double ss = 0;
        for (int i = 0; i < D; i++) ss += (double)x[i] * x[i];
        const treal r = (treal)(1.0 / sqrt(ss / D + eps));
        rstd[n] = r;
        for (int i = 0; i < D; i++) o[i] = x[i] * r * w[i];
    }
}

/* out_i = x_i r w_i, r = (mean x^2 + eps)^-1/2, dr/dx_j = -r^3 x_j / D:
 * din_j = r (dout_j w_j) - r^3 x_j / D * sum_i dout_i w_i x_i;  dw_i = sum_n dout_i x_i r. */
void slm_t_rmsnorm_backward(treal *din, treal *dw, const treal *dout, const treal *in, const treal *w,
                            const treal *rstd, int N, int D) {
    for (int n = 0; n < N; n++) {
        const treal *x = in + (size_t)n * D, *g = dout + (size_t)n * D;
        const treal r = rstd[n];
        if (din) {
            double dot = 0;
            for (int i = 0; i < D; i++) dot += (double)g[i] * w[i] * x[i];
            const treal c = (treal)(dot * r * r * r / D);
            treal *d = din + (size_t)n * D;
            for (int i = 0; i < D; i++) d[i] += r * g[i] * w[i] - c * x[i];
        }
        if (dw)
            for (int i = 0; i < D; i++) dw[i] += g[i] * x[i] * r;
    }
}

/* ---- linear ------------------------------------------------------------------------------- */

typedef struct {
    treal *dbias;
    const treal *dout;
    int N, O;
} bias_args;

/* dbias[o] += sum over rows of dout[.][o]: columns split between threads, rows summed in order. */
static void bias_task(void *arg, int ith, int nth) {
    const bias_args *a = arg;
    long lo, hi;
    slm_pool_split(a->O, ith, nth, 16, &lo, &hi);
    for (long o = lo; o < hi; o++) {
        double s = 0;
        for (int n = 0; n < a->N; n++) s += a->dout[(size_t)n * a->O + o];
        a->dbias[o] += (treal)s;
    }
}

void slm_t_linear_forward(slm_pool *pool, treal *out, const treal *in, const treal *w, const treal *bias, int N,
                          int I, int O) {
    tgemm(pool, false, true, N, O, I, in, I, w, I, 0, out, O); /* out[N][O] = in[N][I] W[O][I]^T */
    if (bias)
        for (int n = 0; n < N; n++) {
            treal *o = out + (size_t)n * O;
            for (int j = 0; j < O; j++) o[j] += bias[j];
        }
}

void slm_t_linear_backward(slm_pool *pool, treal *din, treal *dw, treal *dbias, const treal *dout, const treal *in,
                           const treal *w, int N, int I, int O) {
    if (din) tgemm(pool, false, false, N, I, O, dout, O, w, I, 1, din, I); /* din[N][I] += dout[N][O] W[O][I] */
    if (dw) tgemm(pool, true, false, O, I, N, dout, O, in, I, 1, dw, I);   /* dW[O][I] += dout^T in */
    if (dbias) {
        bias_args a = {dbias, dout, N, O};
        slm_pool_run(pool, bias_task, &a);
    }
}

/* ---- LoRA --------------------------------------------------------------------------------- */

typedef struct {
    treal *out;
    const treal *tmp, *b;
    treal scale;
    int N, O, R;
} lora_up_args;

/* out[n][o] += scale * sum_r tmp[n][r] b[o][r]; rows split between threads. */
static void lora_up_task(void *arg, int ith, int nth) {
    const lora_up_args *a = arg;
    long lo, hi;
    slm_pool_split(a->N, ith, nth, 1, &lo, &hi);
    for (long n = lo; n < hi; n++) {
        const treal *t = a->tmp + (size_t)n * a->R;
        treal *o = a->out + (size_t)n * a->O;
        for (int j = 0; j < a->O; j++) {
            const treal *b = a->b + (size_t)j * a->R;
            treal s = 0;
            for (int r = 0; r < a->R; r++) s += t[r] * b[r];
            o[j] += a->scale * s;
        }
    }
}

void slm_t_lora_forward(slm_pool *pool, treal *out, treal *tmp, const treal *in, const treal *a, const treal *b,
                        float scale, int N, int I, int O, int R) {
    tgemm(pool, false, true, N, R, I, in, I, a, I, 0, tmp, R); /* tmp[N][R] = in A^T */
    lora_up_args u = {out, tmp, b, (treal)scale, N, O, R};
    slm_pool_run(pool, lora_up_task, &u);
}

void slm_t_lora_backward(slm_pool *pool, treal *din, treal *da, treal *db, treal *dtmp, const treal *dout,
                         const treal *in, const treal *tmp, const treal *a, const treal *b, float scale, int N, int I,
                         int O, int R) {
    const size_t nr = (size_t)N * R;
    /* dtmp = scale * dout B   [N][R] */
    tgemm(pool, false, false, N, R, O, dout, O, b, R, 0, dtmp, R);
    for (size_t i = 0; i < nr; i++) dtmp[i] *= (treal)scale;
    if (din) tgemm(pool, false, false, N, I, R, dtmp, R, a, I, 1, din, I); /* din += dtmp A */
    if (da) tgemm(pool, true, false, R, I, N, dtmp, R, in, I, 1, da, I);   /* dA += dtmp^T in */
    if (db) {
        /* dB[O][R] += dout^T (scale * tmp) */
        for (size_t i = 0; i < nr; i++) dtmp[i] = (treal)scale * tmp[i];
        tgemm(pool, true, false, O, R, N, dout, O, dtmp, R, 1, db, R);
    }
}

/* ---- RoPE --------------------------------------------------------------------------------- */

/* Rotate the first rope_dim dims of every head of row n by sign * angle(pos). */
static void rope_rows(treal *x, int N, int T, int n_heads, const slm_config *c, double sign) {
    const int hd = c->head_dim, half = c->rope_dim / 2, neox = c->rope_mode == SLM_ROPE_NEOX;
    const size_t stride = (size_t)n_heads * hd;
    for (int n = 0; n < N; n++) {
        /* the engine's angle: float position times float scale, then in double */
        const float pos = (float)(n % T) * c->rope_scale;
        treal *row = x + (size_t)n * stride;
        for (int i = 0; i < half; i++) {
            const double ang = (double)pos * pow((double)c->rope_base, -2.0 * i / c->rope_dim);
            const treal cs = (treal)cos(ang), sn = (treal)(sign * sin(ang));
            const int ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
            for (int h = 0; h < n_heads; h++) {
                treal *v = row + (size_t)h * hd;
                const treal x0 = v[ia], x1 = v[ib];
                v[ia] = x0 * cs - x1 * sn;
                v[ib] = x0 * sn + x1 * cs;
            }
        }
    }
}

void slm_t_rope_forward(treal *x, int N, int T, int n_heads, const slm_config *c) {
    rope_rows(x, N, T, n_heads, c, 1.0);
}

/* The rotation is orthogonal: its transpose is the rotation by the opposite angle. */
void slm_t_rope_backward(treal *dx, int N, int T, int n_heads, const slm_config *c) {
    rope_rows(dx, N, T, n_heads, c, -1.0);
}

/* ---- attention ---------------------------------------------------------------------------- */

/* The products of one (sequence, head) are matrix products on the calling thread (the pool
 * splits the heads; slm_sgemm in the float build): S = Q K^T, O = P V; backward dP = dO V^T,
 * dV += P^T dO, dQ += dS K, dK += dS^T Q. S is computed in full and its upper triangle then
 * overwritten: P (and dS) are zero there, so the full products are exact. */
typedef struct {
    treal *out, *att, *dq, *dk, *dv, *datt;
    const treal *dout, *q, *k, *v;
    int B, T, H, KV, hd;
} attn_args;

static void attn_fwd_task(void *arg, int ith, int nth) {
    const attn_args *a = arg;
    const int T = a->T, H = a->H, hd = a->hd, group = a->H / a->KV;
    const int qd = H * hd, kvd = a->KV * hd;
    const treal scale = (treal)(1.0f / sqrtf((float)hd));
    for (long it = ith; it < (long)a->B * H; it += nth) {
        const int b = (int)(it / H), h = (int)(it % H);
        const treal *q = a->q + (size_t)b * T * qd + (size_t)h * hd;
        const treal *k = a->k + (size_t)b * T * kvd + (size_t)(h / group) * hd;
        const treal *v = a->v + (size_t)b * T * kvd + (size_t)(h / group) * hd;
        treal *att = a->att + (size_t)it * T * T;
        tgemm(NULL, false, true, T, T, hd, q, qd, k, kvd, 0.0f, att, T);
        for (int t = 0; t < T; t++) {
            treal *p = att + (size_t)t * T;
            treal mx = -INFINITY;
            for (int j = 0; j <= t; j++) {
                p[j] *= scale;
                if (p[j] > mx) mx = p[j];
            }
            double sum = 0;
            for (int j = 0; j <= t; j++) {
                p[j] = TEXP(p[j] - mx);
                sum += p[j];
            }
            const treal inv = (treal)(1.0 / sum);
            for (int j = 0; j <= t; j++) p[j] *= inv;
            for (int j = t + 1; j < T; j++) p[j] = 0;
        }
        tgemm(NULL, false, false, T, hd, T, att, T, v, kvd, 0.0f, a->out + (size_t)b * T * qd + (size_t)h * hd, qd);
    }
}

/* One item per (sequence, KV group): its query heads in order, so dk / dv of a group are
 * written by one thread. ds = p (dp - sum p dp) scale. */
static void attn_bwd_task(void *arg, int ith, int nth) {
    const attn_args *a = arg;
    const int T = a->T, H = a->H, hd = a->hd, group = a->H / a->KV;
    const int qd = H * hd, kvd = a->KV * hd;
    const treal scale = (treal)(1.0f / sqrtf((float)hd));
    for (long it = ith; it < (long)a->B * a->KV; it += nth) {
        const int b = (int)(it / a->KV), g = (int)(it % a->KV);
        const size_t kvo = (size_t)b * T * kvd + (size_t)g * hd;
        for (int h = g * group; h < (g + 1) * group; h++) {
            const size_t qo = (size_t)b * T * qd + (size_t)h * hd, ah = ((size_t)b * H + h) * T * T;
            const treal *att = a->att + ah;
            treal *datt = a->datt + ah;
            tgemm(NULL, false, true, T, T, hd, a->dout + qo, qd, a->v + kvo, kvd, 0.0f, datt, T);
            tgemm(NULL, true, false, T, hd, T, att, T, a->dout + qo, qd, 1.0f, a->dv + kvo, kvd);
            for (int t = 0; t < T; t++) {
                const treal *p = att + (size_t)t * T;
                treal *dp = datt + (size_t)t * T;
                double dot = 0;
                for (int j = 0; j <= t; j++) dot += (double)p[j] * dp[j];
                for (int j = 0; j <= t; j++) dp[j] = p[j] * (dp[j] - (treal)dot) * scale;
                for (int j = t + 1; j < T; j++) dp[j] = 0;
            }
            tgemm(NULL, false, false, T, hd, T, datt, T, a->k + kvo, kvd, 1.0f, a->dq + qo, qd);
            tgemm(NULL, true, false, T, hd, T, datt, T, a->q + qo, qd, 1.0f, a->dk + kvo, kvd);
        }
    }
}

void slm_t_attention_forward(slm_pool *pool, treal *out, treal *att, const treal *q, const treal *k,
                             const treal *v, int B, int T, int H, int KV, int hd) {
    attn_args a = {.out = out, .att = att, .q = q, .k = k, .v = v, .B = B, .T = T, .H = H, .KV = KV, .hd = hd};
    slm_pool_run(pool, attn_fwd_task, &a);
}

void slm_t_attention_backward(slm_pool *pool, treal *dq, treal *dk, treal *dv, treal *datt, const treal *dout,
                              const treal *q, const treal *k, const treal *v, const treal *att, int B, int T, int H,
                              int KV, int hd) {
    attn_args a = {.dq = dq, .dk = dk, .dv = dv, .datt = datt, .dout = dout, .q = q, .k = k, .v = v,
                   .att = (treal *)att, .B = B, .T = T, .H = H, .KV = KV, .hd = hd};
    slm_pool_run(pool, attn_bwd_task, &a);
}

/* ---- SwiGLU ------------------------------------------------------------------------------- */

void slm_t_swiglu_forward(treal *out, const treal *gate, const treal *up, long n) {
    for (long i = 0; i < n; i++) {
        const treal g = gate[i];
        out[i] = g / (1 + TEXP(-g)) * up[i];
    }
}

/* silu(g) = g s(g), s = sigmoid; silu'(g) = s (1 + g (1 - s)). */
void slm_t_swiglu_backward(treal *dgate, treal *dup, const treal *dout, const treal *gate, const treal *up, long n) {
    for (long i = 0; i < n; i++) {
        const treal g = gate[i];
        const treal s = 1 / (1 + TEXP(-g));
        const treal silu = g * s;
        if (dgate) dgate[i] += dout[i] * up[i] * s * (1 + g * (1 - s));
        if (dup) dup[i] += dout[i] * silu;
    }
}

/* ---- losses ------------------------------------------------------------------------------- */

/* exp of the losses' per-element terms: float precision in the float build (the terms are
 * still combined in double), double in the double build. */
#ifdef SLM_TRAIN_DOUBLE
#define LEXP(x) exp(x)
#else
#define LEXP(x) ((double)expf((float)(x)))
#endif

/* max and log(sum exp((x - max) / tau)) of a row; x is treal or float. */
#define ROW_LSE(x, V, tau, mx_out, lse_out)                                     \
    do {                                                                        \
        double mx_ = -INFINITY, s_ = 0;                                         \
        for (int i_ = 0; i_ < (V); i_++)                                        \
            if ((double)(x)[i_] > mx_) mx_ = (double)(x)[i_];                   \
        for (int i_ = 0; i_ < (V); i_++) s_ += LEXP(((double)(x)[i_] - mx_) / (tau)); \
        (mx_out) = mx_;                                                         \
        (lse_out) = log(s_);                                                    \
    } while (0)

double slm_t_ce_loss(const treal *logits, const int32_t *targets, int N, int V, double scale, treal *dlogits) {
    double total = 0;
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) continue;
        const treal *z = logits + (size_t)n * V;
        double mx, lse;
        ROW_LSE(z, V, 1.0, mx, lse);
        total += mx + lse - (double)z[targets[n]];
        if (dlogits) {
            treal *d = dlogits + (size_t)n * V;
            for (int i = 0; i < V; i++) d[i] += (treal)(scale * LEXP((double)z[i] - mx - lse));
            d[targets[n]] -= (treal)scale;
        }
    }
    return total;
}

/* tau^2 KL(p || q), p = softmax(t / tau), q = softmax(z / tau); d/dz_i = tau (q_i - p_i). */
double slm_t_kl_loss(const treal *logits, const float *teacher, int N, int V, float tau, double scale,
                     treal *dlogits) {
    const double T = tau;
    double total = 0;
    for (int n = 0; n < N; n++) {
        const treal *z = logits + (size_t)n * V;
        const float *t = teacher + (size_t)n * V;
        double mz, lz, mt, lt;
        ROW_LSE(z, V, T, mz, lz);
        ROW_LSE(t, V, T, mt, lt);
        double kl = 0;
        treal *d = dlogits ? dlogits + (size_t)n * V : NULL;
        for (int i = 0; i < V; i++) {
            const double lp = ((double)t[i] - mt) / T - lt, lq = ((double)z[i] - mz) / T - lz;
            const double p = LEXP(lp);
            kl += p * (lp - lq);
            if (d) d[i] += (treal)(scale * T * (LEXP(lq) - p));
        }
        total += T * T * kl;
    }
    return total;
}

/* tau^2 KL(q || p); d/dz_i = tau q_i ((log q_i - log p_i) - KL(q || p)). */
double slm_t_rkl_loss(const treal *logits, const float *teacher, int N, int V, float tau, double scale,
                      treal *dlogits) {
    const double T = tau;
    double total = 0;
    for (int n = 0; n < N; n++) {
        const treal *z = logits + (size_t)n * V;
        const float *t = teacher + (size_t)n * V;
        double mz, lz, mt, lt;
        ROW_LSE(z, V, T, mz, lz);
        ROW_LSE(t, V, T, mt, lt);
        double kl = 0;
        for (int i = 0; i < V; i++) {
            const double lp = ((double)t[i] - mt) / T - lt, lq = ((double)z[i] - mz) / T - lz;
            kl += LEXP(lq) * (lq - lp);
        }
        total += T * T * kl;
        if (dlogits) {
            treal *d = dlogits + (size_t)n * V;
            for (int i = 0; i < V; i++) {
                const double lp = ((double)t[i] - mt) / T - lt, lq = ((double)z[i] - mz) / T - lz;
                d[i] += (treal)(scale * T * LEXP(lq) * ((lq - lp) - kl));
            }
        }
    }
    return total;
}
