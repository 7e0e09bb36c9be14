/* test_train_grad.c - backward passes of the training ops and of the whole trainable model
 * against central finite differences, everything in double precision.
 *
 * The ops and the model are compiled here with SLM_TRAIN_DOUBLE (treal = double). Each op's
 * loss is a random linear functional of its output (the losses are their own scalar); every
 * element of every input and parameter gradient is compared with (L(x+e) - L(x-e)) / 2e.
 * Forward values are checked too where an independent formula exists: RoPE against the
 * engine's float kernel, the losses against direct sums, attention rows against a plain
 * softmax. The model runs on tiny random configs (llama / qwen2 biases, NORM / NEOX RoPE with
 * rope_dim < head_dim, tied / untied, LoRA, frozen embeddings) with B and T below the
 * allocated maximum; frozen tensors must get exactly zero gradient. */
#define SLM_TRAIN_DOUBLE
#include "../src/train/tops.c"
#include "../src/train/tmodel.c"

#include "kernels/ops.h"
#include "test.h"

static uint64_t rng = 12345;
static double gauss(void) {
    double u = 0, v;
    while (u <= 1e-12) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        u = (double)(rng >> 11) / 9007199254740992.0;
    }
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    v = (double)(rng >> 11) / 9007199254740992.0;
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static void fill(double *x, size_t n, double base, double sc) {
    for (size_t i = 0; i < n; i++) x[i] = base + sc * gauss();
}


#define EPS 1e-6
#define TOL 1e-6

/* The loss of the op under test at the current inputs. */
typedef double (*loss_fn)(void *ctx);

/* Compare an analytic gradient g[n] of x[n] with central differences of f; returns the error
 * max |g - fd| / max(max |fd|, 1e-8). */
static double fd_error(loss_fn f, void *ctx, double *x, const double *g, size_t n) {
    double emax = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        const double x0 = x[i];
        x[i] = x0 + EPS;
        const double lp = f(ctx);
        x[i] = x0 - EPS;
        const double lm = f(ctx);
        x[i] = x0;
        const double fd = (lp - lm) / (2 * EPS);
        emax = fmax(emax, fabs(fd - g[i]));
        scale = fmax(scale, fabs(fd));
    }
    return emax / fmax(scale, 1e-8);
}

#define CHECK_FD(label, f, ctx, x, g, n)                                               \
    do {                                                                               \
        const double e_ = fd_error(f, ctx, x, g, n);                                   \
        CHECK(e_ < TOL, "%s: gradient relative error %.3g", label, e_);                \
    } while (0)

static double dotv(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static bool all_zero(const double *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (x[i] != 0) return false;
    return true;
}

/* ---- embedding ---------------------------------------------------------------------------- */

enum { EN = 7, ED = 5, EV = 6 };
typedef struct {
    double embd[EV * ED], out[EN * ED], r[EN * ED];
    int32_t tok[EN];
} embed_ctx;

static double embed_loss(void *p) {
    embed_ctx *c = p;
    slm_t_embed_forward(c->out, c->tok, c->embd, EN, ED);
    return dotv(c->out, c->r, EN * ED);
}

static void test_embed(void) {
    embed_ctx c;
    const int32_t tok[EN] = {3, 1, 3, 0, 5, 3, 1};
    memcpy(c.tok, tok, sizeof tok);
    fill(c.embd, EV * ED, 0, 1);
    fill(c.r, EN * ED, 0, 1);
    double g[EV * ED] = {0};
    embed_loss(&c);
    slm_t_embed_backward(g, c.r, c.tok, EN, ED);
    CHECK_FD("embed", embed_loss, &c, c.embd, g, EV * ED);
    CHECK(all_zero(g + 2 * ED, ED) && all_zero(g + 4 * ED, ED), "embed: unused rows got gradient");
}

/* ---- RMSNorm ------------------------------------------------------------------------------ */

enum { NN = 3, ND = 7 };
typedef struct {
    double in[NN * ND], w[ND], out[NN * ND], rstd[NN], r[NN * ND];
} norm_ctx;

static double norm_loss(void *p) {
    norm_ctx *c = p;
    slm_t_rmsnorm_forward(c->out, c->rstd, c->in, c->w, NN, ND, 1e-5f);
    return dotv(c->out, c->r, NN * ND);
}

static void test_rmsnorm(void) {
    norm_ctx c;
    fill(c.in, NN * ND, 0.3, 1);
    fill(c.w, ND, 1, 0.3);
    fill(c.r, NN * ND, 0, 1);
    double din[NN * ND] = {0}, dw[ND] = {0};
    norm_loss(&c);
    /* forward against the formula */
    double ss = 0;
    for (int i = 0; i < ND; i++) ss += c.in[ND + i] * c.in[ND + i];
    CHECK(fabs(c.out[ND + 2] - c.in[ND + 2] / sqrt(ss / ND + (double)1e-5f) * c.w[2]) < 1e-12, "rmsnorm forward");
    slm_t_rmsnorm_backward(din, dw, c.r, c.in, c.w, c.rstd, NN, ND);
    CHECK_FD("rmsnorm din", norm_loss, &c, c.in, din, NN * ND);
    CHECK_FD("rmsnorm dw", norm_loss, &c, c.w, dw, ND);
}

/* ---- linear and LoRA ---------------------------------------------------------------------- */

enum { LN = 3, LI = 5, LO = 7, LR = 2 };
typedef struct {
    slm_pool *pool;
    double in[LN * LI], w[LO * LI], bias[LO], out[LN * LO], r[LN * LO];
    double a[LR * LI], b[LO * LR], tmp[LN * LR];
    bool lora;
} lin_ctx;

static double lin_loss(void *p) {
    lin_ctx *c = p;
    slm_t_linear_forward(c->pool, c->out, c->in, c->w, c->bias, LN, LI, LO);
    if (c->lora) slm_t_lora_forward(c->pool, c->out, c->tmp, c->in, c->a, c->b, 0.75f, LN, LI, LO, LR);
    return dotv(c->out, c->r, LN * LO);
}

static void test_linear(slm_pool *pool) {
    lin_ctx c = {.pool = pool};
    fill(c.in, LN * LI, 0, 1);
    fill(c.w, LO * LI, 0, 1);
    fill(c.bias, LO, 0, 1);
    fill(c.r, LN * LO, 0, 1);
    fill(c.a, LR * LI, 0, 1);
    fill(c.b, LO * LR, 0, 1);
    double din[LN * LI] = {0}, dw[LO * LI] = {0}, db[LO] = {0};
    lin_loss(&c);
    /* forward against a direct sum */
    double y = c.bias[4];
    for (int i = 0; i < LI; i++) y += c.in[2 * LI + i] * c.w[4 * LI + i];
    CHECK(fabs(c.out[2 * LO + 4] - y) < 1e-12, "linear forward");
    slm_t_linear_backward(pool, din, dw, db, c.r, c.in, c.w, LN, LI, LO);
    CHECK_FD("linear din", lin_loss, &c, c.in, din, LN * LI);
    CHECK_FD("linear dw", lin_loss, &c, c.w, dw, LO * LI);
    CHECK_FD("linear dbias", lin_loss, &c, c.bias, db, LO);
    /* frozen weight and no bias gradient: din the same, nothing else written */
    double din2[LN * LI] = {0};
    slm_t_linear_backward(pool, din2, NULL, NULL, c.r, c.in, c.w, LN, LI, LO);
    CHECK(!memcmp(din, din2, sizeof din), "linear: din differs with a frozen weight");
    /* accumulation: a second backward adds */
    slm_t_linear_backward(pool, din2, NULL, NULL, c.r, c.in, c.w, LN, LI, LO);
    CHECK(fabs(din2[3] - 2 * din[3]) < 1e-12, "linear: din does not accumulate");

    /* LoRA */
    c.lora = true;
    double ldin[LN * LI] = {0}, lda[LR * LI] = {0}, ldb[LO * LR] = {0}, dtmp[LN * LR];
    memset(din, 0, sizeof din);
    lin_loss(&c);
    slm_t_linear_backward(pool, ldin, NULL, NULL, c.r, c.in, c.w, LN, LI, LO);
    slm_t_lora_backward(pool, ldin, lda, ldb, dtmp, c.r, c.in, c.tmp, c.a, c.b, 0.75f, LN, LI, LO, LR);
    CHECK_FD("lora din", lin_loss, &c, c.in, ldin, LN * LI);
    CHECK_FD("lora da", lin_loss, &c, c.a, lda, LR * LI);
    CHECK_FD("lora db", lin_loss, &c, c.b, ldb, LO * LR);
}

/* ---- RoPE --------------------------------------------------------------------------------- */

enum { RB = 2, RT = 3, RH = 2, RHD = 6 };
typedef struct {
    slm_config cfg;
    double x[RB * RT * RH * RHD], y[RB * RT * RH * RHD], r[RB * RT * RH * RHD];
} rope_ctx;

static double rope_loss(void *p) {
    rope_ctx *c = p;
    memcpy(c->y, c->x, sizeof c->x);
    slm_t_rope_forward(c->y, RB * RT, RT, RH, &c->cfg);
    return dotv(c->y, c->r, RB * RT * RH * RHD);
}

static void test_rope(slm_rope_mode mode) {
    rope_ctx c;
    memset(&c.cfg, 0, sizeof c.cfg);
    c.cfg.head_dim = RHD;
    c.cfg.rope_dim = 4;
    c.cfg.rope_base = 100.0f;
    c.cfg.rope_scale = 0.5f;
    c.cfg.rope_mode = mode;
    const int n = RB * RT * RH * RHD;
    fill(c.x, n, 0, 1);
    fill(c.r, n, 0, 1);
    rope_loss(&c);
    /* forward against the engine's kernel, position by position */
    double emax = 0;
    for (int row = 0; row < RB * RT; row++) {
        float v[RH * RHD], cs[2], sn[2];
        for (int i = 0; i < RH * RHD; i++) v[i] = (float)c.x[row * RH * RHD + i];
        slm_rope_table(cs, sn, 4, (float)(row % RT) * 0.5f, 100.0f);
        slm_rope(v, RH, RHD, 4, cs, sn, mode == SLM_ROPE_NEOX);
        for (int i = 0; i < RH * RHD; i++) emax = fmax(emax, fabs(v[i] - c.y[row * RH * RHD + i]));
    }
    CHECK(emax < 1e-5, "rope %s: forward differs from the engine by %g", mode ? "neox" : "norm", emax);
    /* dims past rope_dim untouched */
    CHECK(c.y[RH * RHD + 5] == c.x[RH * RHD + 5] && c.y[RHD + 4] == c.x[RHD + 4], "rope: tail dims changed");
    double g[RB * RT * RH * RHD];
    memcpy(g, c.r, sizeof g);
    slm_t_rope_backward(g, RB * RT, RT, RH, &c.cfg);
    CHECK_FD(mode ? "rope neox" : "rope norm", rope_loss, &c, c.x, g, n);
}

/* ---- attention ---------------------------------------------------------------------------- */

enum { AB = 2, AT = 5, AH = 4, AKV = 2, AHD = 3, AQD = AH * AHD, AKVD = AKV * AHD, AN = AB * AT };
typedef struct {
    slm_pool *pool;
    double q[AN * AQD], k[AN * AKVD], v[AN * AKVD], out[AN * AQD], att[AB * AH * AT * AT], r[AN * AQD];
} attn_ctx;

static double attn_loss(void *p) {
    attn_ctx *c = p;
    slm_t_attention_forward(c->pool, c->out, c->att, c->q, c->k, c->v, AB, AT, AH, AKV, AHD);
    return dotv(c->out, c->r, AN * AQD);
}

static void test_attention(slm_pool *pool) {
    attn_ctx c = {.pool = pool};
    fill(c.q, AN * AQD, 0, 1);
    fill(c.k, AN * AKVD, 0, 1);
    fill(c.v, AN * AKVD, 0, 1);
    fill(c.r, AN * AQD, 0, 1);
    attn_loss(&c);
    /* one output against a plain softmax: sequence 1, head 3 (KV group 1), position 3 */
    {
        const int b = 1, h = 3, t = 3, g = 1;
        double s[AT], mx = -1e300, sum = 0, o0 = 0;
        for (int j = 0; j <= t; j++) {
            s[j] = 0;
            for (int i = 0; i < AHD; i++) s[j] += c.q[(b * AT + t) * AQD + h * AHD + i] * c.k[(b * AT + j) * AKVD + g * AHD + i];
            s[j] /= sqrt((double)AHD);
            mx = fmax(mx, s[j]);
        }
        for (int j = 0; j <= t; j++) sum += exp(s[j] - mx);
        for (int j = 0; j <= t; j++) o0 += exp(s[j] - mx) / sum * c.v[(b * AT + j) * AKVD + g * AHD + 0];
        CHECK(fabs(o0 - c.out[(b * AT + t) * AQD + h * AHD]) < 1e-6, "attention forward: %g vs %g", o0,
              c.out[(b * AT + t) * AQD + h * AHD]);
        const double *row = c.att + ((size_t)(b * AH + h) * AT + t) * AT;
        CHECK(row[t + 1] == 0 && fabs(row[0] + row[1] + row[2] + row[3] - 1) < 1e-12, "attention probabilities");
    }
    double dq[AN * AQD] = {0}, dk[AN * AKVD] = {0}, dv[AN * AKVD] = {0}, datt[AB * AH * AT * AT];
    slm_t_attention_backward(pool, dq, dk, dv, datt, c.r, c.q, c.k, c.v, c.att, AB, AT, AH, AKV, AHD);
    CHECK_FD("attention dq", attn_loss, &c, c.q, dq, AN * AQD);
    CHECK_FD("attention dk", attn_loss, &c, c.k, dk, AN * AKVD);
    CHECK_FD("attention dv", attn_loss, &c, c.v, dv, AN * AKVD);
}

/* ---- SwiGLU ------------------------------------------------------------------------------- */

enum { SN = 11 };
typedef struct {
    double gate[SN], up[SN], out[SN], r[SN];
} swiglu_ctx;

static double swiglu_loss(void *p) {
    swiglu_ctx *c = p;
    slm_t_swiglu_forward(c->out, c->gate, c->up, SN);
    return dotv(c->out, c->r, SN);
}

static void test_swiglu(void) {
    swiglu_ctx c;
    fill(c.gate, SN, 0, 2);
    fill(c.up, SN, 0, 1);
    fill(c.r, SN, 0, 1);
    swiglu_loss(&c);
    CHECK(fabs(c.out[4] - c.gate[4] / (1 + exp(-c.gate[4])) * c.up[4]) < 1e-14, "swiglu forward");
    double dg[SN] = {0}, du[SN] = {0};
    slm_t_swiglu_backward(dg, du, c.r, c.gate, c.up, SN);
    CHECK_FD("swiglu dgate", swiglu_loss, &c, c.gate, dg, SN);
    CHECK_FD("swiglu dup", swiglu_loss, &c, c.up, du, SN);
}

/* ---- losses ------------------------------------------------------------------------------- */

enum { XN = 4, XV = 7 };
typedef struct {
    double z[XN * XV];
    float t[XN * XV];
    int32_t tgt[XN];
    int kind; /* 0 ce, 1 kl, 2 rkl */
    float tau;
} loss_ctx;

static double any_loss(loss_ctx *c, double scale, double *d) {
    switch (c->kind) {
    case 0: return slm_t_ce_loss(c->z, c->tgt, XN, XV, scale, d);
    case 1: return slm_t_kl_loss(c->z, c->t, XN, XV, c->tau, scale, d);
    default: return slm_t_rkl_loss(c->z, c->t, XN, XV, c->tau, scale, d);
    }
}

static double loss_loss(void *p) { return 1.3 * any_loss(p, 1.0, NULL); }

/* log softmax(x / tau) of one row, directly. */
static void logsm(const double *x, int V, double tau, double *out) {
    double s = 0;
    for (int i = 0; i < V; i++) s += exp(x[i] / tau);
    for (int i = 0; i < V; i++) out[i] = x[i] / tau - log(s);
}

static void test_loss(int kind, float tau) {
    loss_ctx c = {.kind = kind, .tau = tau};
    const int32_t tgt[XN] = {2, -1, 6, 0};
    memcpy(c.tgt, tgt, sizeof tgt);
    fill(c.z, XN * XV, 0, 1.5);
    for (int i = 0; i < XN * XV; i++) c.t[i] = (float)(1.5 * gauss());
    char label[64];
    snprintf(label, sizeof label, "%s tau %g", kind == 0 ? "ce" : kind == 1 ? "kl" : "rkl", (double)tau);
    /* value against direct sums */
    double ref = 0;
    for (int n = 0; n < XN; n++) {
        double lq[XV], lp[XV], t[XV];
        for (int i = 0; i < XV; i++) t[i] = c.t[n * XV + i];
        logsm(c.z + n * XV, XV, kind == 0 ? 1.0 : tau, lq);
        logsm(t, XV, tau, lp);
        if (kind == 0) {
            if (tgt[n] >= 0) ref -= lq[tgt[n]];
        } else
            for (int i = 0; i < XV; i++)
                ref += kind == 1 ? (double)tau * tau * exp(lp[i]) * (lp[i] - lq[i])
                                 : (double)tau * tau * exp(lq[i]) * (lq[i] - lp[i]);
    }
    const double val = any_loss(&c, 1.0, NULL);
    CHECK(fabs(val - ref) < 1e-12 * fmax(1, fabs(ref)), "%s: loss %.15g, direct %.15g", label, val, ref);
    double d[XN * XV] = {0};
    any_loss(&c, 1.3, d);
    CHECK_FD(label, loss_loss, &c, c.z, d, XN * XV);
    if (kind == 0) CHECK(all_zero(d + XV, XV), "ce: the skipped row got a gradient");
    /* a student equal to the teacher: zero loss and gradient */
    if (kind) {
        for (int i = 0; i < XN * XV; i++) c.z[i] = c.t[i];
        memset(d, 0, sizeof d);
        const double z = any_loss(&c, 1.0, d);
        double gm = 0;
        for (int i = 0; i < XN * XV; i++) gm = fmax(gm, fabs(d[i]));
        CHECK(fabs(z) < 1e-12 && gm < 1e-12, "%s: equal distributions give loss %g, gradient %g", label, z, gm);
    }
}

/* ---- the whole model ---------------------------------------------------------------------- */

enum { MB = 2, MT = 5, MV = 40 };
typedef struct {
    slm_tmodel *m;
    int32_t tok[MB * MT], tgt[MB * MT];
    float teacher[MB * MT * MV];
    double logits[MB * MT * MV], dlogits[MB * MT * MV];
} model_ctx;

static double model_loss(void *p) {
    model_ctx *c = p;
    slm_tmodel_forward(c->m, c->tok, MB, MT, c->logits);
    return slm_t_kl_loss(c->logits, c->teacher, MB * MT, MV, 2.0f, 1.0, NULL) +
           0.5 * slm_t_ce_loss(c->logits, c->tgt, MB * MT, MV, 1.0, NULL);
}

typedef struct {
    const char *label;
    bool qwen2, tied, neox;
    int layers, rope_dim, lora;
    bool lora_only, freeze_embd;
    int threads;
    bool share; /* layers in pairs share matrices (l uses l - l % 2); with lora > 0 the adapters are deltas */
    int kv_group; /* > 1: layers in groups of this many attend to the first one's keys and values */
} variant;

static void test_model(const variant *vr) {
    slm_tcfg tc = {0};
    slm_config *c = &tc.cfg;
    c->arch = vr->qwen2 ? SLM_ARCH_QWEN2 : SLM_ARCH_LLAMA;
    c->n_layers = vr->layers;
    c->dim = 16;
    c->ffn_dim = 24;
    c->n_heads = 4;
    c->n_kv_heads = 2;
    c->head_dim = 4;
    c->vocab_size = MV;
    c->ctx_len = 64;
    c->rope_dim = vr->rope_dim;
    c->rope_base = 50.0f;
    c->rope_scale = vr->neox ? 0.5f : 1.0f;
    c->norm_eps = 1e-5f;
    c->rope_mode = vr->neox ? SLM_ROPE_NEOX : SLM_ROPE_NORM;
    tc.tied = vr->tied;
    tc.qkv_bias = vr->qwen2;
    tc.lora_rank = vr->lora;
    tc.lora_alpha = vr->lora ? 3.0f : 0.0f;
    if (vr->share) {
        tc.shared = true;
        tc.deltas = vr->lora > 0;
        for (int l = 0; l < vr->layers; l++) tc.share_map[l] = l - l % 2;
    }
    if (vr->kv_group > 1) {
        tc.kv_shared = true;
        for (int l = 0; l < vr->layers; l++) tc.kv_map[l] = l - l % vr->kv_group;
    }
    model_ctx mc;
    /* allocated for a larger batch than used: strides must follow max_B / max_T */
    CHECK(slm_tmodel_create(&tc, MB + 1, MT + 2, NULL, &mc.m) == SLM_OK, "%s: create: %s", vr->label,
          slm_last_error());
    if (!mc.m) return;
    slm_tmodel *m = mc.m;
    int n_tab;
    const slm_tparam *tab = slm_tmodel_params(m, &n_tab);
    double *w = slm_tmodel_weights(m);
    for (int i = 0; i < n_tab; i++)
        fill(w + tab[i].offset, tab[i].n, tab[i].kind == SLM_TP_VECTOR && strstr(tab[i].name, "norm") ? 1.0 : 0.0,
             tab[i].kind == SLM_TP_VECTOR ? 0.2 : 0.4);
    slm_tmodel_set_trainable(m, vr->lora_only, vr->freeze_embd);
    for (int i = 0; i < MB * MT; i++) {
        mc.tok[i] = (int32_t)(rng >> 33) % MV;
        gauss();
        mc.tgt[i] = i == 3 ? -1 : (int32_t)((rng >> 35) % MV);
        gauss();
    }
    mc.tok[7] = mc.tok[2]; /* a repeated token: embedding rows collect several gradients */
    for (int i = 0; i < MB * MT * MV; i++) mc.teacher[i] = (float)(2 * gauss());

    slm_tmodel_zero_grad(m);
    model_loss(&mc);
    memset(mc.dlogits, 0, sizeof mc.dlogits);
    slm_t_kl_loss(mc.logits, mc.teacher, MB * MT, MV, 2.0f, 1.0, mc.dlogits);
    slm_t_ce_loss(mc.logits, mc.tgt, MB * MT, MV, 0.5, mc.dlogits);
    slm_tmodel_backward(m, mc.dlogits);
    const double *g = slm_tmodel_grads(m);
    if (vr->threads > 1) {
        /* the same step on a pool: bit-identical logits and gradients */
        slm_pool *pool = NULL;
        slm_tmodel *mt = NULL;
        CHECK(slm_pool_create(vr->threads, &pool) == SLM_OK, "pool");
        CHECK(slm_tmodel_create(&tc, MB + 1, MT + 2, pool, &mt) == SLM_OK, "create");
        if (mt) {
            static double lt[MB * MT * MV], dlt[MB * MT * MV];
            memcpy(slm_tmodel_weights(mt), w, slm_tmodel_n_params(m) * sizeof *w);
            slm_tmodel_set_trainable(mt, vr->lora_only, vr->freeze_embd);
            slm_tmodel_zero_grad(mt);
            slm_tmodel_forward(mt, mc.tok, MB, MT, lt);
            memset(dlt, 0, sizeof dlt);
            slm_t_kl_loss(lt, mc.teacher, MB * MT, MV, 2.0f, 1.0, dlt);
            slm_t_ce_loss(lt, mc.tgt, MB * MT, MV, 0.5, dlt);
            CHECK(!memcmp(lt, mc.logits, sizeof lt), "%s: logits differ with %d threads", vr->label, vr->threads);
            slm_tmodel_backward(mt, dlt);
            CHECK(!memcmp(slm_tmodel_grads(mt), g, slm_tmodel_n_params(m) * sizeof *g),
                  "%s: gradients differ with %d threads", vr->label, vr->threads);
        }
        slm_tmodel_free(mt);
        slm_pool_free(pool);
    }
    int n_checked = 0, n_frozen = 0;
    for (int i = 0; i < n_tab; i++) {
        char label[128];
        snprintf(label, sizeof label, "%s: %s", vr->label, tab[i].name);
        if (!tab[i].trainable) {
            /* tied: the output head shares the embedding's entry */
            CHECK(all_zero(g + tab[i].offset, tab[i].n), "%s: frozen tensor has a gradient", label);
            n_frozen++;
            continue;
        }
        CHECK(!all_zero(g + tab[i].offset, tab[i].n), "%s: zero gradient", label);
        CHECK_FD(label, model_loss, &mc, w + tab[i].offset, g + tab[i].offset, tab[i].n);
        n_checked++;
    }
    CHECK(n_checked > 0, "%s: nothing trainable", vr->label);
    int n_adapters = 0; /* 7 pairs per layer; a layer reading another's keys has no k / v adapters */
    for (int l = 0; l < vr->layers; l++) n_adapters += vr->kv_group > 1 && l % vr->kv_group ? 10 : 14;
    if (vr->lora && vr->lora_only) CHECK(n_checked == n_adapters, "%s: %d adapters trainable", vr->label, n_checked);
    if (vr->freeze_embd) CHECK(n_frozen >= 1 && !slm_tmodel_find(m, "token_embd.weight")->trainable, "%s: embd", vr->label);
    slm_tmodel_free(m);
}

static void test_table(void) {
    slm_tcfg tc = {0};
    tc.cfg = (slm_config){.n_layers = 2, .dim = 16, .ffn_dim = 24, .n_heads = 4, .n_kv_heads = 2, .head_dim = 4,
                          .vocab_size = 40, .rope_dim = 4, .rope_base = 1e4f, .rope_scale = 1, .norm_eps = 1e-5f};
    tc.qkv_bias = true;
    tc.lora_rank = 3;
    slm_tmodel *m = NULL;
    CHECK(slm_tmodel_create(&tc, 1, 4, NULL, &m) == SLM_OK, "create: %s", slm_last_error());
    if (!m) return;
    int n;
    const slm_tparam *t = slm_tmodel_params(m, &n);
    /* embd, 2 x (9 + 3 biases + 14 adapters), out norm, output */
    CHECK(n == 1 + 2 * 26 + 2, "table has %d entries", n);
    size_t off = 0;
    bool contiguous = true;
    for (int i = 0; i < n; i++) {
        contiguous &= t[i].offset == off && t[i].n == (size_t)(t[i].rows * t[i].cols);
        off += t[i].n;
    }
    CHECK(contiguous && off == slm_tmodel_n_params(m), "table offsets");
    const slm_tparam *p = slm_tmodel_find(m, "blk.1.attn_k.bias");
    CHECK(p && p->rows == 1 && p->cols == 8 && p->kind == SLM_TP_VECTOR, "attn_k.bias entry");
    p = slm_tmodel_find(m, "blk.0.ffn_down.lora_a");
    CHECK(p && p->rows == 3 && p->cols == 24 && p->kind == SLM_TP_LORA && p->trainable, "ffn_down.lora_a entry");
    p = slm_tmodel_find(m, "blk.0.ffn_down.lora_b");
    CHECK(p && p->rows == 16 && p->cols == 3, "ffn_down.lora_b entry");
    CHECK(!slm_tmodel_find(m, "blk.0.attn_q.weight")->trainable, "LoRA default: base frozen");
    CHECK(slm_tmodel_output(m) != slm_tmodel_tok_embd(m) && slm_tmodel_find(m, "output.weight"), "untied head");
    CHECK(slm_tmodel_layer(m, 1)->bk == slm_tmodel_weights(m) + slm_tmodel_find(m, "blk.1.attn_k.bias")->offset,
          "layer view");
    slm_tmodel_free(m);
    tc.lora_rank = 0;
    tc.tied = true;
    tc.qkv_bias = false;
    CHECK(slm_tmodel_create(&tc, 1, 4, NULL, &m) == SLM_OK, "create");
    if (!m) return;
    CHECK(slm_tmodel_output(m) == slm_tmodel_tok_embd(m) && !slm_tmodel_find(m, "output.weight") &&
              !slm_tmodel_find(m, "blk.0.attn_q.bias") && slm_tmodel_find(m, "blk.0.attn_q.weight")->trainable,
          "tied table");
    slm_tmodel_free(m);
    tc.cfg.n_kv_heads = 3;
    CHECK(slm_tmodel_create(&tc, 1, 4, NULL, &m) == SLM_ERR_ARG && !m, "4 heads in 3 groups accepted");
}

int main(void) {
    slm_pool *pool = NULL;
    CHECK(slm_pool_create(3, &pool) == SLM_OK, "pool");
    test_embed();
    test_rmsnorm();
    test_linear(NULL);
    test_linear(pool);
    test_rope(SLM_ROPE_NORM);
    test_rope(SLM_ROPE_NEOX);
    test_attention(NULL);
    test_attention(pool);
    test_swiglu();
    test_loss(0, 1.0f);
    for (int k = 1; k <= 2; k++) {
        test_loss(k, 1.0f);
        test_loss(k, 2.0f);
    }
    slm_pool_free(pool);
    test_table();
    const variant vs[] = {
        {"llama untied", false, false, false, 3, 4, 0, false, false, 1, false, 0},
        {"qwen2 tied neox", true, true, true, 2, 2, 0, false, false, 3, false, 0},
        {"lora", false, false, false, 2, 4, 2, true, false, 1, false, 0},
        {"qwen2 lora tied", true, true, true, 2, 4, 3, true, false, 2, false, 0},
        {"lora all trainable", false, true, false, 1, 4, 2, false, false, 2, false, 0},
        {"freeze embd tied", false, true, false, 1, 4, 0, false, true, 1, false, 0},
        {"freeze embd untied", true, false, true, 2, 2, 0, false, true, 1, false, 0},
        {"shared pairs, deltas", false, true, false, 3, 4, 2, false, false, 2, true, 0},
        {"shared pairs qwen2, no deltas", true, false, true, 4, 2, 0, false, false, 1, true, 0},
        {"kv shared in pairs", false, false, false, 3, 4, 0, false, false, 2, false, 2},
        {"kv shared in threes, shared pairs, deltas, qwen2", true, true, true, 4, 4, 2, false, false, 2, true, 3},
        {"kv shared, lora", false, true, false, 3, 4, 2, true, false, 1, false, 2},
    };
    for (size_t i = 0; i < sizeof vs / sizeof *vs; i++) test_model(&vs[i]);
    return test_summary("train_grad");
}
