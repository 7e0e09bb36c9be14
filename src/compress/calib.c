/* calib.c - calibration statistics: per-channel sums, reservoir samples, the pipeline over a
 * text file, and the calibration file (docs/FORMATS.md, "Calibration file"). */
#include "calib.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "../core/atomic_file.h"
#include "../core/le.h"
#include "../core/sha256.h"

#define CALIB_MAGIC "SLMCALIB"
#define CALIB_VERSION 1u
#define CALIB_HEADER 128
#define CALIB_MAX_LAYERS 4096
#define CALIB_MAX_DIM (1 << 20)
#define CALIB_MAX_TEXT ((size_t)1 << 30)

typedef struct {
    double *sum_abs, *sum_sq;  /* [dim] */
    float *mean_abs, *mean_sq; /* [dim] sums / seen */
    float *rows;               /* [keep_rows][dim] reservoir slots */
    uint64_t seen;             /* rows observed */
    uint64_t rng;              /* reservoir random state */
} calib_point;

struct slm_calib {
    int n_layers;
    int dims[SLM_TAP_COUNT];
    int keep_rows;
    uint64_t seed;
    int n_samples, seq_len;   /* set by slm_calib_run */
    uint64_t model_size;      /* bytes of the model file */
    uint8_t model_hash[32];   /* SHA-256 of the model file before its tensor data */
    bool bad;                 /* a row of the wrong shape was observed */
    calib_point *pts;         /* [n_layers][SLM_TAP_COUNT] */
};

/* splitmix64: small, seedable, good enough for offsets and reservoir slots */
static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* uniform in [0, n), n >= 1, without modulo bias */
static uint64_t rng_below(uint64_t *s, uint64_t n) {
    const uint64_t threshold = (0 - n) % n; /* 2^64 mod n */
    uint64_t r;
    do r = rng_next(s);
    while (r < threshold);
    return r % n;
}

slm_calib_params slm_calib_params_default(void) {
    return (slm_calib_params){NULL, 64, 256, 512, 1, false};
}

static void model_dims(const slm_config *cfg, int dims[SLM_TAP_COUNT]) {
    dims[SLM_TAP_ATTN_IN] = cfg->dim;
    dims[SLM_TAP_ATTN_OUT] = cfg->n_heads * cfg->head_dim;
    dims[SLM_TAP_FFN_IN] = cfg->dim;
    dims[SLM_TAP_FFN_MID] = cfg->ffn_dim;
}

static void model_fingerprint(const slm_model *m, uint64_t *size, uint8_t hash[32]) {
    memset(hash, 0, 32);
    *size = 0;
    if (!m->gguf) return;
    slm_sha256 h;
    slm_sha256_init(&h);
    slm_sha256_update(&h, m->gguf->buf, m->gguf->data_offset);
    slm_sha256_final(&h, hash);
    *size = m->gguf->size;
}

void slm_calib_free(slm_calib *c) {
    if (!c) return;
    if (c->pts)
        for (int i = 0; i < c->n_layers * SLM_TAP_COUNT; i++) {
            calib_point *P = &c->pts[i];
            free(P->sum_abs);
            free(P->sum_sq);
            free(P->mean_abs);
            free(P->mean_sq);
            free(P->rows);
        }
    free(c->pts);
    free(c);
}

/* An empty calibration with m's shape; the model fingerprint is taken by the callers. */
static slm_status calib_alloc(const slm_model *m, int keep_rows, uint64_t seed, slm_calib **out) {
    *out = NULL;
    const slm_config *cfg = &m->cfg;
    if (keep_rows < 0 || keep_rows > SLM_CALIB_MAX_KEEP)
        return slm_error(SLM_ERR_ARG, "calibration: keep_rows %d outside [0, %d]", keep_rows, SLM_CALIB_MAX_KEEP);
    if (cfg->n_layers < 1 || cfg->n_layers > CALIB_MAX_LAYERS)
        return slm_error(SLM_ERR_ARG, "calibration: %d layers not supported", cfg->n_layers);
    slm_calib *c = calloc(1, sizeof *c);
    if (!c) return slm_error(SLM_ERR_NOMEM, "calibration: out of memory");
    c->n_layers = cfg->n_layers;
    model_dims(cfg, c->dims);
    c->keep_rows = keep_rows;
    c->seed = seed;
    for (int p = 0; p < SLM_TAP_COUNT; p++)
        if (c->dims[p] < 1 || c->dims[p] > CALIB_MAX_DIM) {
            slm_calib_free(c);
            return slm_error(SLM_ERR_ARG, "calibration: input width %d of point %d not supported", c->dims[p], p);
        }
    c->pts = calloc((size_t)c->n_layers * SLM_TAP_COUNT, sizeof *c->pts);
    if (!c->pts) {
        slm_calib_free(c);
        return slm_error(SLM_ERR_NOMEM, "calibration: out of memory");
    }
    for (int i = 0; i < c->n_layers * SLM_TAP_COUNT; i++) {
        calib_point *P = &c->pts[i];
        const size_t d = (size_t)c->dims[i % SLM_TAP_COUNT];
        P->sum_abs = calloc(d, sizeof(double));
        P->sum_sq = calloc(d, sizeof(double));
        P->mean_abs = calloc(d, sizeof(float));
        P->mean_sq = calloc(d, sizeof(float));
        P->rows = malloc((keep_rows ? (size_t)keep_rows * d : 1) * sizeof(float));
        P->rng = seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(i + 1));
        if (!P->sum_abs || !P->sum_sq || !P->mean_abs || !P->mean_sq || !P->rows) {
            slm_calib_free(c);
            return slm_error(SLM_ERR_NOMEM, "calibration: out of memory for %d rows per input", keep_rows);
        }
    }
    *out = c;
    return SLM_OK;
}

slm_status slm_calib_create(const slm_model *m, int keep_rows, uint64_t seed, slm_calib **out) {
    slm_status s = calib_alloc(m, keep_rows, seed, out);
    if (!s) model_fingerprint(m, &(*out)->model_size, (*out)->model_hash);
    return s;
}

static void update_means(calib_point *P, int dim) {
    const double inv = P->seen ? 1.0 / (double)P->seen : 0.0;
    for (int i = 0; i < dim; i++) {
        P->mean_abs[i] = (float)(P->sum_abs[i] * inv);
        P->mean_sq[i] = (float)(P->sum_sq[i] * inv);
    }
}

void slm_calib_observe(void *user, int layer, int point, const float *x, int n_tokens, int dim) {
    slm_calib *c = user;
    if (point == SLM_TAP_RESID) return; /* not a linear input */
    if (layer < 0 || layer >= c->n_layers || point < 0 || point >= SLM_TAP_COUNT || dim != c->dims[point] ||
        n_tokens < 0) {
        c->bad = true;
        return;
    }
    calib_point *P = &c->pts[(size_t)layer * SLM_TAP_COUNT + point];
    const size_t d = (size_t)dim;
    for (int t = 0; t < n_tokens; t++) {
        const float *row = x + (size_t)t * d;
        for (size_t i = 0; i < d; i++) {
            const double v = row[i];
            P->sum_abs[i] += fabs(v);
            P->sum_sq[i] += v * v;
        }
        /* algorithm R: row number seen (0-based) replaces a uniform slot with probability keep/(seen+1) */
        uint64_t slot = P->seen;
        if (slot >= (uint64_t)c->keep_rows) slot = rng_below(&P->rng, P->seen + 1);
        if (slot < (uint64_t)c->keep_rows) memcpy(P->rows + slot * d, row, d * sizeof(float));
        P->seen++;
    }
    update_means(P, dim);
}

static slm_status check_same_shape(const slm_calib *c, const slm_model *m, const char *what) {
    int dims[SLM_TAP_COUNT];
    model_dims(&m->cfg, dims);
    if (m->cfg.n_layers != c->n_layers || memcmp(dims, c->dims, sizeof dims) != 0)
        return slm_error(SLM_ERR_ARG,
                         "%s: calibration has %d layers with inputs %d/%d/%d/%d, the model %d layers with %d/%d/%d/%d",
                         what, c->n_layers, c->dims[0], c->dims[1], c->dims[2], c->dims[3], m->cfg.n_layers,
                         dims[0], dims[1], dims[2], dims[3]);
    return SLM_OK;
}

slm_status slm_calib_eval(slm_calib *c, slm_ctx *ctx, const int32_t *tokens, int n) {
    slm_status s = check_same_shape(c, ctx->model, "calibration");
    if (s) return s;
    const slm_tap_fn old = ctx->tap;
    void *old_user = ctx->tap_user;
    slm_ctx_truncate(ctx, 0);
    slm_ctx_set_tap(ctx, slm_calib_observe, c);
    s = slm_ctx_eval(ctx, tokens, n, 0, NULL);
    slm_ctx_set_tap(ctx, old, old_user);
    slm_ctx_truncate(ctx, 0);
    if (!s && c->bad) s = slm_error(SLM_ERR_ARG, "calibration: rows of an unexpected shape were observed");
    return s;
}

/* Every window through layer 0, then every window through layer 1, ...: the same statistics as
 * window after window through the whole model (each point sees its rows in the same order; the
 * layer-range evaluation is bit-identical), but only one layer's weights are in use at a time:
 * after each layer the model's mapped pages are dropped, so a model larger than memory
 * calibrates with one layer's weights plus the windows' residual streams resident. */
static slm_status calib_layerwise(slm_calib *c, slm_ctx *ctx, const int32_t *windows, const slm_calib_params *p) {
    slm_status s = check_same_shape(c, ctx->model, "calibration");
    if (s) return s;
    const int dim = ctx->model->cfg.dim, L = ctx->model->cfg.n_layers, seq = p->seq_len;
    const slm_gguf *g = ctx->model->gguf;
    float *x = malloc((size_t)p->n_samples * (size_t)seq * (size_t)dim * sizeof *x);
    if (!x)
        return slm_error(SLM_ERR_NOMEM, "calibration: out of memory for %d windows of %d x %d", p->n_samples, seq, dim);
    for (int w = 0; w < p->n_samples && !s; w++)
        s = slm_ctx_embed(ctx, windows + (size_t)w * seq, seq, x + (size_t)w * seq * dim);
    const slm_tap_fn old = ctx->tap;
    void *old_user = ctx->tap_user;
    slm_ctx_set_tap(ctx, slm_calib_observe, c);
    for (int l = 0; l < L && !s; l++) {
        for (int w = 0; w < p->n_samples && !s; w++)
            s = slm_ctx_eval_layers(ctx, x + (size_t)w * seq * dim, seq, l, l + 1);
        if (g && g->map) (void)madvise(g->map, g->size, MADV_DONTNEED); /* read-only file pages: reloaded on use */
        if (p->progress)
            fprintf(stderr, "\rcalibration: layer %d/%d (%d windows of %d tokens)", l + 1, L, p->n_samples, seq);
    }
    if (p->progress) fputc('\n', stderr);
    slm_ctx_set_tap(ctx, old, old_user);
    slm_ctx_truncate(ctx, 0);
    free(x);
    if (!s && c->bad) s = slm_error(SLM_ERR_ARG, "calibration: rows of an unexpected shape were observed");
    return s;
}

static slm_status check_params(const slm_calib_params *p) {
    if (p->n_samples < 1 || p->n_samples > (1 << 24))
        return slm_error(SLM_ERR_ARG, "calibration: n_samples %d outside [1, %d]", p->n_samples, 1 << 24);
    if (p->seq_len < 2 || p->seq_len > (1 << 22))
        return slm_error(SLM_ERR_ARG, "calibration: seq_len %d outside [2, %d]", p->seq_len, 1 << 22);
    if (p->keep_rows < 0 || p->keep_rows > SLM_CALIB_MAX_KEEP)
        return slm_error(SLM_ERR_ARG, "calibration: keep_rows %d outside [0, %d]", p->keep_rows, SLM_CALIB_MAX_KEEP);
    return SLM_OK;
}

slm_status slm_calib_windows(const int32_t *ids, size_t n_ids, int32_t bos, const slm_calib_params *p,
                             int32_t **out) {
    *out = NULL;
    slm_status s = check_params(p);
    if (s) return s;
    const size_t body = (size_t)p->seq_len - (bos >= 0 ? 1 : 0);
    if (n_ids < body)
        return slm_error(SLM_ERR_ARG, "calibration: the text has %zu tokens, fewer than a window of %zu", n_ids, body);
    int32_t *w = malloc((size_t)p->n_samples * (size_t)p->seq_len * sizeof *w);
    if (!w) return slm_error(SLM_ERR_NOMEM, "calibration: out of memory for %d windows", p->n_samples);
    uint64_t rng = p->seed;
    for (int i = 0; i < p->n_samples; i++) {
        int32_t *dst = w + (size_t)i * p->seq_len;
        const size_t off = (size_t)rng_below(&rng, (uint64_t)(n_ids - body) + 1);
        if (bos >= 0) *dst++ = bos;
        memcpy(dst, ids + off, body * sizeof *ids);
    }
    *out = w;
    return SLM_OK;
}

static slm_status read_text(const char *path, char **out, size_t *len) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return slm_error(SLM_ERR_IO, "calibration: cannot open %s", path);
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0 || (uint64_t)st.st_size > CALIB_MAX_TEXT) {
        fclose(f);
        return slm_error(SLM_ERR_IO, "calibration: %s: cannot size or too large", path);
    }
    const size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return slm_error(SLM_ERR_NOMEM, "calibration: out of memory for %s", path);
    }
    const size_t got = fread(buf, 1, n, f);
    fclose(f);
    if (got != n) {
        free(buf);
        return slm_error(SLM_ERR_IO, "calibration: short read of %s", path);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return SLM_OK;
}

slm_status slm_calib_run(slm_ctx *ctx, const slm_tokenizer *tok, const slm_calib_params *p, slm_calib **out) {
    *out = NULL;
    slm_status s = check_params(p);
    if (s) return s;
    if (!p->text_path) return slm_error(SLM_ERR_ARG, "calibration: no text file");
    if (p->seq_len > ctx->p.n_ctx)
        return slm_error(SLM_ERR_ARG, "calibration: seq_len %d exceeds the context size %d", p->seq_len,
                         ctx->p.n_ctx);
    char *text = NULL;
    size_t len = 0;
    if ((s = read_text(p->text_path, &text, &len))) return s;
    int32_t *ids = NULL, *windows = NULL;
    size_t n_ids = 0;
    s = slm_tokenizer_encode(tok, text, len, false, false, &ids, &n_ids);
    free(text);
    if (s) return slm_error_prefix(s, "calibration: %s", p->text_path);
    const int32_t bos = slm_tokenizer_add_bos(tok) ? slm_tokenizer_bos(tok) : -1;
    s = slm_calib_windows(ids, n_ids, bos, p, &windows);
    free(ids);
    if (s) return slm_error_prefix(s, "%s", p->text_path);
    slm_calib *c = NULL;
    if ((s = slm_calib_create(ctx->model, p->keep_rows, p->seed, &c))) {
        free(windows);
        return s;
    }
    s = calib_layerwise(c, ctx, windows, p);
    free(windows);
    if (s) {
        slm_calib_free(c);
        return s;
    }
    c->n_samples = p->n_samples;
    c->seq_len = p->seq_len;
    *out = c;
    return SLM_OK;
}

/* ---- accessors ---- */

static const calib_point *point_at(const slm_calib *c, int layer, int point) {
    if (layer < 0 || layer >= c->n_layers || point < 0 || point >= SLM_TAP_COUNT) return NULL;
    return &c->pts[(size_t)layer * SLM_TAP_COUNT + point];
}

int slm_calib_n_layers(const slm_calib *c) { return c->n_layers; }
int slm_calib_dim(const slm_calib *c, int point) {
    return point >= 0 && point < SLM_TAP_COUNT ? c->dims[point] : 0;
}
int slm_calib_keep_rows(const slm_calib *c) { return c->keep_rows; }
uint64_t slm_calib_n_tokens(const slm_calib *c) { return c->pts[0].seen; }
int slm_calib_n_samples(const slm_calib *c) { return c->n_samples; }
int slm_calib_seq_len(const slm_calib *c) { return c->seq_len; }
uint64_t slm_calib_seed(const slm_calib *c) { return c->seed; }

const float *slm_calib_mean_abs(const slm_calib *c, int layer, int point) {
    const calib_point *P = point_at(c, layer, point);
    return P ? P->mean_abs : NULL;
}

const float *slm_calib_mean_sq(const slm_calib *c, int layer, int point) {
    const calib_point *P = point_at(c, layer, point);
    return P ? P->mean_sq : NULL;
}

static int kept_rows(const slm_calib *c, const calib_point *P) {
    return P->seen < (uint64_t)c->keep_rows ? (int)P->seen : c->keep_rows;
}

const float *slm_calib_rows(const slm_calib *c, int layer, int point, int *n_rows) {
    const calib_point *P = point_at(c, layer, point);
    *n_rows = P ? kept_rows(c, P) : 0;
    return P ? P->rows : NULL;
}

bool slm_calib_same_model(const slm_calib *c, const slm_model *m) {
    uint64_t size;
    uint8_t hash[32];
    model_fingerprint(m, &size, hash);
    return size == c->model_size && memcmp(hash, c->model_hash, 32) == 0;
}

/* ---- file ---- */


/* Arrays are stored as the host's IEEE-754 floats; the format is little-endian. */
static bool host_little_endian(void) {
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

typedef struct {
    slm_afile a;
    slm_sha256 h;
} hash_writer;

static void hw_write(hash_writer *w, const void *p, size_t n) {
    slm_afile_write(&w->a, p, n);
    slm_sha256_update(&w->h, p, n);
}

slm_status slm_calib_save(const slm_calib *c, const char *path) {
    if (!host_little_endian()) return slm_error(SLM_ERR_UNSUPPORTED, "calibration: big-endian hosts not supported");
    uint8_t hdr[CALIB_HEADER] = {0};
    memcpy(hdr, CALIB_MAGIC, 8);
    slm_put_u32(hdr + 8, CALIB_VERSION);
    slm_put_u32(hdr + 12, (uint32_t)c->n_layers);
    for (int p = 0; p < SLM_TAP_COUNT; p++) slm_put_u32(hdr + 16 + 4 * p, (uint32_t)c->dims[p]);
    slm_put_u32(hdr + 32, (uint32_t)c->keep_rows);
    slm_put_u32(hdr + 36, (uint32_t)c->n_samples);
    slm_put_u32(hdr + 40, (uint32_t)c->seq_len);
    slm_put_u64(hdr + 48, c->seed);
    slm_put_u64(hdr + 56, slm_calib_n_tokens(c));
    slm_put_u64(hdr + 64, c->model_size);
    memcpy(hdr + 72, c->model_hash, 32);

    hash_writer w;
    slm_sha256_init(&w.h);
    slm_status s = slm_afile_open(&w.a, path);
    if (s) return s;
    hw_write(&w, hdr, sizeof hdr);
    const int n_pts = c->n_layers * SLM_TAP_COUNT;
    for (int i = 0; i < n_pts; i++) {
        uint8_t b[8];
        slm_put_u64(b, c->pts[i].seen);
        hw_write(&w, b, 8);
    }
    for (int i = 0; i < n_pts; i++) {
        const calib_point *P = &c->pts[i];
        const size_t d = (size_t)c->dims[i % SLM_TAP_COUNT];
        hw_write(&w, P->sum_abs, d * sizeof(double));
        hw_write(&w, P->sum_sq, d * sizeof(double));
        hw_write(&w, P->rows, (size_t)kept_rows(c, P) * d * sizeof(float));
    }
    uint8_t digest[32];
    slm_sha256_final(&w.h, digest);
    slm_afile_write(&w.a, digest, sizeof digest);
    s = slm_afile_commit(&w.a);
    if (s) return slm_error_prefix(s, "calibration: %s", path);
    return SLM_OK;
}

typedef struct {
    FILE *f;
    slm_sha256 h;
} hash_reader;

static bool hr_read(hash_reader *r, void *p, size_t n) {
    if (fread(p, 1, n, r->f) != n) return false;
    slm_sha256_update(&r->h, p, n);
    return true;
}

/* Header fields checked for self-consistency; the expected file size from them and the table. */
static slm_status parse_header(const uint8_t *h, const char *path) {
    if (memcmp(h, CALIB_MAGIC, 8) != 0) return slm_error(SLM_ERR_FORMAT, "%s: not a calibration file", path);
    if (slm_get_u32(h + 8) != CALIB_VERSION)
        return slm_error(SLM_ERR_UNSUPPORTED, "%s: calibration file version %u not supported", path, slm_get_u32(h + 8));
    for (int i = 104; i < CALIB_HEADER; i++)
        if (h[i]) return slm_error(SLM_ERR_FORMAT, "%s: reserved header bytes are not zero", path);
    if (slm_get_u32(h + 44)) return slm_error(SLM_ERR_FORMAT, "%s: reserved header bytes are not zero", path);
    const uint32_t L = slm_get_u32(h + 12), keep = slm_get_u32(h + 32);
    if (L < 1 || L > CALIB_MAX_LAYERS) return slm_error(SLM_ERR_FORMAT, "%s: bad layer count %u", path, L);
    if (keep > SLM_CALIB_MAX_KEEP) return slm_error(SLM_ERR_FORMAT, "%s: bad keep_rows %u", path, keep);
    for (int p = 0; p < SLM_TAP_COUNT; p++) {
        const uint32_t d = slm_get_u32(h + 16 + 4 * p);
        if (d < 1 || d > CALIB_MAX_DIM) return slm_error(SLM_ERR_FORMAT, "%s: bad input width %u", path, d);
    }
    if (slm_get_u32(h + 36) > (1u << 24) || slm_get_u32(h + 40) > (1u << 22))
        return slm_error(SLM_ERR_FORMAT, "%s: bad sample count or window length", path);
    return SLM_OK;
}

static slm_status load_body(slm_calib *c, hash_reader *r, const char *path) {
    const int n_pts = c->n_layers * SLM_TAP_COUNT;
    for (int i = 0; i < n_pts; i++) {
        calib_point *P = &c->pts[i];
        const int dim = c->dims[i % SLM_TAP_COUNT];
        const size_t d = (size_t)dim;
        if (!hr_read(r, P->sum_abs, d * sizeof(double)) || !hr_read(r, P->sum_sq, d * sizeof(double)) ||
            !hr_read(r, P->rows, (size_t)kept_rows(c, P) * d * sizeof(float)))
            return slm_error(SLM_ERR_FORMAT, "%s: truncated", path);
        for (size_t k = 0; k < d; k++)
            if (!(P->sum_abs[k] >= 0 && P->sum_sq[k] >= 0) || isinf(P->sum_abs[k]) || isinf(P->sum_sq[k]))
                return slm_error(SLM_ERR_FORMAT, "%s: invalid channel sums at input %d", path, i);
        update_means(P, dim);
    }
    uint8_t want[32], got[32];
    slm_sha256_final(&r->h, want);
    if (fread(got, 1, 32, r->f) != 32) return slm_error(SLM_ERR_FORMAT, "%s: truncated", path);
    if (memcmp(want, got, 32) != 0) return slm_error(SLM_ERR_FORMAT, "%s: checksum mismatch", path);
    return SLM_OK;
}

slm_status slm_calib_load(const char *path, const slm_model *m, slm_calib **out) {
    *out = NULL;
    if (!host_little_endian()) return slm_error(SLM_ERR_UNSUPPORTED, "calibration: big-endian hosts not supported");
    hash_reader r = {fopen(path, "rb"), {{0}, 0, {0}, 0}};
    if (!r.f) return slm_error(SLM_ERR_IO, "calibration: cannot open %s", path);
    slm_sha256_init(&r.h);
    struct stat st;
    uint8_t h[CALIB_HEADER];
    slm_calib *c = NULL;
    uint64_t *seen = NULL;
    slm_status s = SLM_OK;
    if (fstat(fileno(r.f), &st) != 0 || st.st_size < 0) {
        s = slm_error(SLM_ERR_IO, "calibration: cannot size %s", path);
        goto done;
    }
    if (!hr_read(&r, h, sizeof h)) {
        s = slm_error(SLM_ERR_FORMAT, "%s: truncated header", path);
        goto done;
    }
    if ((s = parse_header(h, path))) goto done;
    const uint32_t L = slm_get_u32(h + 12);
    const size_t n_pts = (size_t)L * SLM_TAP_COUNT;
    seen = malloc(n_pts * sizeof *seen);
    if (!seen) {
        s = slm_error(SLM_ERR_NOMEM, "calibration: out of memory");
        goto done;
    }
    /* the expected size, from the header and the table, before any large allocation */
    const uint64_t keep = slm_get_u32(h + 32), file_size = (uint64_t)st.st_size;
    uint64_t want = CALIB_HEADER + 8 * (uint64_t)n_pts + 32;
    for (size_t i = 0; i < n_pts; i++) {
        uint8_t b[8];
        if (!hr_read(&r, b, 8)) {
            s = slm_error(SLM_ERR_FORMAT, "%s: truncated", path);
            goto done;
        }
        seen[i] = slm_get_u64(b);
        const uint64_t d = slm_get_u32(h + 16 + 4 * (i % SLM_TAP_COUNT));
        const uint64_t rows = seen[i] < keep ? seen[i] : keep;
        want += d * 16 + rows * d * 4; /* each term < 2^45, at most 2^14 terms: no overflow */
        if (want > file_size) break;
    }
    if (want != file_size) {
        s = slm_error(SLM_ERR_FORMAT, "%s: %llu bytes, the header describes %s%llu", path,
                      (unsigned long long)file_size, want > file_size ? "at least " : "",
                      (unsigned long long)want);
        goto done;
    }
    if (slm_get_u64(h + 56) != seen[0]) {
        s = slm_error(SLM_ERR_FORMAT, "%s: token count does not match the table", path);
        goto done;
    }
    if ((s = calib_alloc(m, (int)keep, slm_get_u64(h + 48), &c))) goto done;
    int dims[SLM_TAP_COUNT];
    for (int p = 0; p < SLM_TAP_COUNT; p++) dims[p] = (int)slm_get_u32(h + 16 + 4 * p);
    if ((int)L != c->n_layers || memcmp(dims, c->dims, sizeof dims) != 0) {
        s = slm_error(SLM_ERR_ARG,
                      "%s: calibration for %u layers with inputs %d/%d/%d/%d, the model has %d layers with %d/%d/%d/%d",
                      path, L, dims[0], dims[1], dims[2], dims[3], c->n_layers, c->dims[0], c->dims[1], c->dims[2],
                      c->dims[3]);
        goto done;
    }
    c->n_samples = (int)slm_get_u32(h + 36);
    c->seq_len = (int)slm_get_u32(h + 40);
    c->model_size = slm_get_u64(h + 64);
    memcpy(c->model_hash, h + 72, 32);
    for (size_t i = 0; i < n_pts; i++) c->pts[i].seen = seen[i];
    s = load_body(c, &r, path);
done:
    fclose(r.f);
    free(seen);
    if (s) {
        slm_calib_free(c);
        return s;
    }
    *out = c;
    return SLM_OK;
}

int slm_calib_point_of(const char *name, int *layer) {
    static const struct {
        const char *suffix;
        int point;
    } k[] = {{".attn_q.weight", SLM_TAP_ATTN_IN},  {".attn_k.weight", SLM_TAP_ATTN_IN},
             {".attn_v.weight", SLM_TAP_ATTN_IN},  {".attn_output.weight", SLM_TAP_ATTN_OUT},
             {".ffn_gate.weight", SLM_TAP_FFN_IN}, {".ffn_up.weight", SLM_TAP_FFN_IN},
             {".ffn_down.weight", SLM_TAP_FFN_MID}};
    if (strncmp(name, "blk.", 4) || name[4] < '0' || name[4] > '9') return -1;
    char *end;
    const long l = strtol(name + 4, &end, 10);
    if (*end != '.' || l > 100000) return -1;
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (!strcmp(end, k[i].suffix)) {
            *layer = (int)l;
            return k[i].point;
        }
    return -1;
}
