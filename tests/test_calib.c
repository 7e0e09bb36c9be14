/* test_calib.c - the forward-pass tap and the calibration statistics on the real model.
 *
 * Independent references: the layer-0 attention input is recomputed from the embedding table
 * and the norm weights (dequantized with the dtype traits, normalized in double); channel
 * means are recomputed from every tapped row; reservoir rows must be tapped rows, and the
 * inclusion frequency of each row over many seeds must be uniform. The file is checked by
 * round trip, truncation at many lengths, flipped bytes and a model of another shape. */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compress/calib.h"
#include "core/dtype.h"
#include "model/forward.h"
#include "test.h"

enum { N_SAMPLES = 4, SEQ = 32, KEEP = 16, BATCH = 12 };

static char g_dir[256];

static const char *path_in(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static int dir_entries(void) {
    DIR *d = opendir(g_dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(sz > 0 ? (size_t)sz : 1);
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

static void write_all(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(p, 1, n, f);
    fclose(f);
}

static const char *k_text =
    "The river town was built on the old trade road, where wagons once crossed the ford "
    "before the stone bridge was raised in the spring of 1842. Its market sold wool, salt, "
    "iron tools and dried fish, and travellers stayed at the two inns by the square. In the "
    "following decades the railway reached the valley, the mill was rebuilt with a steam "
    "engine, and the population doubled. A school, a library and a small hospital were "
    "opened by the council, which also paved the main streets and installed gas lamps. "
    "During the long winter of 1881 the river froze completely, and the townspeople held a "
    "fair on the ice that is still remembered in local songs. Today the town is known for "
    "its museum of rural life, its annual music festival, and the walking paths that follow "
    "the river through the hills to the lakes in the north.\n";

/* ---- a tap that records every row (and optionally feeds a calibration) ---- */

typedef struct {
    int n_layers, dims[SLM_TAP_COUNT];
    float *rows[64][SLM_TAP_COUNT]; /* [cap][dim] per (layer, point) */
    int n[64][SLM_TAP_COUNT];
    int cap;
    long calls, bad, resid_calls;
    slm_calib *feed; /* also passed on to slm_calib_observe when set */
} recorder;

static void record_tap(void *user, int layer, int point, const float *x, int n_tokens, int dim) {
    recorder *r = user;
    r->calls++;
    if (point == SLM_TAP_RESID) { /* the residual stream: layers 0..n_layers, model width */
        if (layer < 0 || layer > r->n_layers || dim != r->dims[SLM_TAP_ATTN_IN]) r->bad++;
        else r->resid_calls++;
        if (r->feed) slm_calib_observe(r->feed, layer, point, x, n_tokens, dim); /* ignored by calib */
        return;
    }
    if (layer < 0 || layer >= r->n_layers || point < 0 || point >= SLM_TAP_COUNT || dim != r->dims[point] ||
        r->n[layer][point] + n_tokens > r->cap) {
        r->bad++;
        return;
    }
    memcpy(r->rows[layer][point] + (size_t)r->n[layer][point] * dim, x, (size_t)n_tokens * dim * sizeof(float));
    r->n[layer][point] += n_tokens;
    if (r->feed) slm_calib_observe(r->feed, layer, point, x, n_tokens, dim);
}

static void noop_tap(void *user, int layer, int point, const float *x, int n_tokens, int dim) {
    (void)layer, (void)point, (void)x, (void)n_tokens, (void)dim;
    ++*(long *)user;
}

static int find_row(const recorder *r, int l, int p, const float *row) {
    const size_t d = (size_t)r->dims[p];
    for (int i = 0; i < r->n[l][p]; i++)
        if (!memcmp(r->rows[l][p] + i * d, row, d * sizeof(float))) return i;
    return -1;
}

static bool same_stats(const slm_calib *a, const slm_calib *b, bool rows_too) {
    if (slm_calib_n_layers(a) != slm_calib_n_layers(b) || slm_calib_n_tokens(a) != slm_calib_n_tokens(b)) return false;
    for (int l = 0; l < slm_calib_n_layers(a); l++)
        for (int p = 0; p < SLM_TAP_COUNT; p++) {
            const size_t d = (size_t)slm_calib_dim(a, p);
            if (d != (size_t)slm_calib_dim(b, p)) return false;
            if (memcmp(slm_calib_mean_abs(a, l, p), slm_calib_mean_abs(b, l, p), d * sizeof(float)) ||
                memcmp(slm_calib_mean_sq(a, l, p), slm_calib_mean_sq(b, l, p), d * sizeof(float)))
                return false;
            int na, nb;
            const float *ra = slm_calib_rows(a, l, p, &na), *rb = slm_calib_rows(b, l, p, &nb);
            if (na != nb || (rows_too && memcmp(ra, rb, (size_t)na * d * sizeof(float)))) return false;
        }
    return true;
}

/* Layer-0 attention input from the model's tensors: rmsnorm(embedding row) * attn_norm. */
static void check_embedding_tap(const slm_model *m, const recorder *r, const int32_t *windows) {
    const slm_dtype_traits *tr = slm_dtype_get(m->tok_embd.type);
    CHECK(tr && tr->to_float, "embedding dtype has a dequantizer");
    if (!tr || !tr->to_float) return;
    const int dim = m->cfg.dim;
    float *e = malloc((size_t)dim * sizeof *e);
    double worst = 0;
    for (int t = 0; t < r->n[0][SLM_TAP_ATTN_IN]; t++) {
        const int32_t id = windows[t];
        tr->to_float((const uint8_t *)m->tok_embd.data + (size_t)id * m->tok_embd.row_bytes, e, dim);
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)e[i] * e[i];
        const double inv = 1.0 / sqrt(ss / dim + m->cfg.norm_eps);
        const float *got = r->rows[0][SLM_TAP_ATTN_IN] + (size_t)t * dim;
        for (int i = 0; i < dim; i++) {
            const double want = e[i] * inv * m->layers[0].attn_norm[i];
            const double err = fabs(got[i] - want) / (1.0 + fabs(want));
            if (!(err <= worst)) worst = err;
        }
    }
    CHECK(worst <= 1e-5, "layer 0 attention input = rmsnorm(embedding) * norm weight (worst rel. error %g)", worst);
    free(e);
}

/* Channel means of the module against the mean over every recorded row. */
static void check_means(const slm_calib *c, const recorder *r) {
    double worst = 0;
    int bad_counts = 0;
    for (int l = 0; l < r->n_layers; l++)
        for (int p = 0; p < SLM_TAP_COUNT; p++) {
            const int d = r->dims[p], n = r->n[l][p];
            if ((uint64_t)n != slm_calib_n_tokens(c)) bad_counts++;
            const float *ma = slm_calib_mean_abs(c, l, p), *ms = slm_calib_mean_sq(c, l, p);
            for (int i = 0; i < d; i++) {
                double sa = 0, sq = 0;
                for (int t = 0; t < n; t++) {
                    const double v = r->rows[l][p][(size_t)t * d + i];
                    sa += fabs(v);
                    sq += v * v;
                }
                sa /= n;
                sq /= n;
                double e1 = fabs(ma[i] - sa) / (1e-30 + sa), e2 = fabs(ms[i] - sq) / (1e-30 + sq);
                if (sa == 0 && ma[i] == 0) e1 = 0;
                if (sq == 0 && ms[i] == 0) e2 = 0;
                if (!(e1 <= worst)) worst = e1;
                if (!(e2 <= worst)) worst = e2;
            }
        }
    CHECK(bad_counts == 0, "every (layer, point) saw %llu rows", (unsigned long long)slm_calib_n_tokens(c));
    CHECK(worst <= 1e-6, "mean |x| and mean x^2 match the recorded rows (worst rel. error %g)", worst);
}

/* Inclusion frequency of each of N rows in a reservoir of K over many seeds is K/N. */
static void check_uniform(const slm_model *m) {
    slm_model one = *m; /* one layer; no file, so no fingerprint to hash per calibration */
    one.cfg.n_layers = 1;
    one.gguf = NULL;
    enum { N = 32, K = 8, SEEDS = 2000 };
    const int dim = m->cfg.dim;
    float *x = calloc((size_t)N * dim, sizeof *x);
    for (int i = 0; i < N; i++) x[(size_t)i * dim] = (float)i;
    int hits[N] = {0}, bad = 0;
    for (int s = 0; s < SEEDS; s++) {
        slm_calib *c;
        if (slm_calib_create(&one, K, 1000 + s, &c)) {
            bad++;
            continue;
        }
        /* rows arrive in uneven batches, as from a forward pass */
        slm_calib_observe(c, 0, SLM_TAP_ATTN_IN, x, 5, dim);
        slm_calib_observe(c, 0, SLM_TAP_ATTN_IN, x + 5 * (size_t)dim, N - 5, dim);
        int n;
        const float *rows = slm_calib_rows(c, 0, SLM_TAP_ATTN_IN, &n);
        if (n != K) bad++;
        int seen[N] = {0};
        for (int i = 0; i < n; i++) {
            const float v = rows[(size_t)i * dim];
            const int id = (int)v;
            if (v != (float)id || id < 0 || id >= N || seen[id]++) bad++;
            else hits[id]++;
        }
        slm_calib_free(c);
    }
    CHECK(bad == 0, "reservoirs hold K distinct input rows (%d problems)", bad);
    /* expected SEEDS*K/N = 500 per row; chi-square with 31 degrees of freedom */
    const double e = (double)SEEDS * K / N;
    double chi = 0;
    for (int i = 0; i < N; i++) chi += (hits[i] - e) * (hits[i] - e) / e;
    CHECK(chi < 70, "inclusion is uniform over rows (chi-square %.1f, 31 dof)", chi);
    /* the rows that filled the reservoir are not favoured or penalized (an off-by-one in the
     * replacement draw moves their share from K/N to (K-1)/(N-1), 7 standard deviations) */
    int first = 0;
    for (int i = 0; i < K; i++) first += hits[i];
    const double sd = sqrt(K * e * (1.0 - (double)K / N));
    CHECK(fabs(first - K * e) < 4 * sd, "first %d rows kept %d times, expected %.0f +- %.0f", K, first, K * e, sd);
    free(x);
}

static void check_file(const slm_model *m, const slm_calib *a, const recorder *r) {
    CHECK(slm_calib_save(a, path_in("a.calib")) == SLM_OK, "save: %s", slm_last_error());
    slm_calib *b = NULL;
    CHECK(slm_calib_load(path_in("a.calib"), m, &b) == SLM_OK, "load: %s", slm_last_error());
    if (!b) return;
    CHECK(same_stats(a, b, true), "load(save(x)) == x");
    CHECK(slm_calib_keep_rows(b) == KEEP && slm_calib_seed(b) == slm_calib_seed(a) &&
              slm_calib_n_samples(b) == N_SAMPLES && slm_calib_seq_len(b) == SEQ,
          "header fields round-trip");
    CHECK(slm_calib_same_model(b, m), "the model fingerprint matches");
    CHECK(slm_calib_save(b, path_in("b.calib")) == SLM_OK, "save again");
    size_t na = 0, nb = 0;
    uint8_t *fa = read_all(path_in("a.calib"), &na), *fb = read_all(path_in("b.calib"), &nb);
    CHECK(fa && fb && na == nb && !memcmp(fa, fb, na), "saving twice gives the same bytes");
    free(fb);
    slm_calib_free(b);

    /* a model of another shape */
    slm_model other = *m;
    other.cfg.ffn_dim += 64;
    b = (slm_calib *)1;
    CHECK(slm_calib_load(path_in("a.calib"), &other, &b) == SLM_ERR_ARG && b == NULL, "wider FFN rejected");
    other = *m;
    other.cfg.n_layers -= 1;
    CHECK(slm_calib_load(path_in("a.calib"), &other, &b) == SLM_ERR_ARG && b == NULL, "fewer layers rejected");
    CHECK(slm_calib_load(path_in("missing.calib"), m, &b) == SLM_ERR_IO, "missing file");

    /* flipped magic, version, a body byte, the checksum, an extra byte */
    struct {
        size_t at;
        slm_status want;
        const char *what;
    } flips[] = {{0, SLM_ERR_FORMAT, "magic"},
                 {8, SLM_ERR_UNSUPPORTED, "version"},
                 {110, SLM_ERR_FORMAT, "reserved byte"},
                 {na / 2, SLM_ERR_FORMAT, "body byte"},
                 {na - 40, SLM_ERR_FORMAT, "last row byte"},
                 {na - 1, SLM_ERR_FORMAT, "checksum byte"}};
    for (size_t i = 0; i < sizeof flips / sizeof *flips && fa; i++) {
        fa[flips[i].at] ^= 0x10;
        write_all(path_in("bad.calib"), fa, na);
        fa[flips[i].at] ^= 0x10;
        slm_status s = slm_calib_load(path_in("bad.calib"), m, &b);
        CHECK(s == flips[i].want && b == NULL, "flipped %s: %s (%s)", flips[i].what, slm_status_name(s), slm_last_error());
    }
    if (fa) {
        uint8_t *longer = malloc(na + 1);
        memcpy(longer, fa, na);
        longer[na] = 0;
        write_all(path_in("bad.calib"), longer, na + 1);
        free(longer);
        CHECK(slm_calib_load(path_in("bad.calib"), m, &b) == SLM_ERR_FORMAT, "trailing byte rejected");
    }
    free(fa);

    /* truncation: a small calibration (one layer, 6 rows kept of 9) at many lengths */
    slm_model one = *m;
    one.cfg.n_layers = 1;
    slm_calib *s1 = NULL;
    CHECK(slm_calib_create(&one, 6, 3, &s1) == SLM_OK, "small calibration");
    if (!s1) return;
    for (int p = 0; p < SLM_TAP_COUNT; p++) slm_calib_observe(s1, 0, p, r->rows[2][p], 9, r->dims[p]);
    CHECK(slm_calib_save(s1, path_in("small.calib")) == SLM_OK, "save small");
    size_t ns = 0;
    uint8_t *fs = read_all(path_in("small.calib"), &ns);
    int wrong = 0, tried = 0;
    for (size_t len = 0; fs && len < ns; len += len < 600 ? 1 : 251) {
        write_all(path_in("cut.calib"), fs, len);
        b = (slm_calib *)1;
        if (slm_calib_load(path_in("cut.calib"), &one, &b) != SLM_ERR_FORMAT || b != NULL) wrong++;
        tried++;
    }
    write_all(path_in("cut.calib"), fs, ns - 1);
    if (slm_calib_load(path_in("cut.calib"), &one, &b) != SLM_ERR_FORMAT) wrong++;
    CHECK(wrong == 0, "truncated files: %d of %d lengths not rejected cleanly", wrong, tried + 1);
    slm_calib *s2 = NULL;
    CHECK(slm_calib_load(path_in("small.calib"), &one, &s2) == SLM_OK && s2 && same_stats(s1, s2, true),
          "small round trip");
    slm_calib_free(s2);
    free(fs);

    /* unwritable targets leave nothing behind */
    mkdir(path_in("subdir"), 0755);
    const int before = dir_entries();
    CHECK(slm_calib_save(s1, path_in("subdir")) != SLM_OK, "saving onto a directory fails");
    CHECK(slm_calib_save(s1, path_in("no/such/dir.calib")) != SLM_OK, "saving into a missing directory fails");
    CHECK(dir_entries() == before, "no file left after failed saves (%d entries, %d before)", dir_entries(), before);
    slm_calib_free(s1);
}

static void cleanup_dir(void) {
    DIR *d = opendir(g_dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            const char *p = path_in(e->d_name);
            if (remove(p) != 0) rmdir(p);
        }
    closedir(d);
    rmdir(g_dir);
}

int main(void) {
    slm_model *m = NULL;
    slm_status s = slm_model_load(test_model_path(), &m);
    CHECK(s == SLM_OK, "load %s: %s (run scripts/fetch-model.sh)", test_model_path(), slm_last_error());
    if (s) return test_summary("test_calib");
    slm_tokenizer *tok = NULL;
    CHECK(slm_tokenizer_load(m->gguf, &tok) == SLM_OK, "tokenizer: %s", slm_last_error());
    snprintf(g_dir, sizeof g_dir, "/tmp/test_calib.XXXXXX");
    CHECK(mkdtemp(g_dir) != NULL, "temp dir");
    write_all(path_in("text.txt"), k_text, strlen(k_text));

    slm_ctx *ctx = NULL;
    slm_ctx_params cp = {.n_ctx = 64, .max_batch = BATCH};
    CHECK(slm_ctx_create(m, &cp, &ctx) == SLM_OK, "context: %s", slm_last_error());
    if (!tok || !ctx) return test_summary("test_calib");
    const int L = m->cfg.n_layers, V = m->cfg.vocab_size;

    /* a tap that does nothing changes nothing */
    int32_t ids[SEQ];
    for (int i = 0; i < SEQ; i++) ids[i] = (int32_t)((i * 7919 + 13) % 20000);
    float *l0 = malloc((size_t)SEQ * V * sizeof *l0), *l1 = malloc((size_t)SEQ * V * sizeof *l1);
    long calls = 0;
    CHECK(slm_ctx_eval(ctx, ids, SEQ, SEQ, l0) == SLM_OK, "eval without tap");
    slm_ctx_truncate(ctx, 0);
    slm_ctx_set_tap(ctx, noop_tap, &calls);
    CHECK(slm_ctx_eval(ctx, ids, SEQ, SEQ, l1) == SLM_OK, "eval with tap");
    slm_ctx_set_tap(ctx, NULL, NULL);
    slm_ctx_truncate(ctx, 0);
    CHECK(!memcmp(l0, l1, (size_t)SEQ * V * sizeof *l0), "logits bit-identical with a no-op tap");
    const long batches = (SEQ + BATCH - 1) / BATCH;
    /* four linear inputs per layer plus the residual stream entering each layer and leaving the last */
    CHECK(calls == ((long)L * SLM_TAP_COUNT + L + 1) * batches, "tap called %ld times, want %ld", calls,
          ((long)L * SLM_TAP_COUNT + L + 1) * batches);
    free(l0);
    free(l1);

    /* the windows */
    slm_calib_params p = slm_calib_params_default();
    CHECK(p.n_samples == 64 && p.seq_len == 256 && p.keep_rows == 512 && p.seed == 1, "defaults");
    p.text_path = path_in("text.txt");
    p.n_samples = N_SAMPLES;
    p.seq_len = SEQ;
    p.keep_rows = KEEP;
    p.seed = 7;
    int32_t *text_ids = NULL, *win = NULL, *win2 = NULL;
    size_t n_text = 0;
    CHECK(slm_tokenizer_encode(tok, k_text, strlen(k_text), false, false, &text_ids, &n_text) == SLM_OK, "encode");
    const int32_t bos = slm_tokenizer_add_bos(tok) ? slm_tokenizer_bos(tok) : -1;
    CHECK(slm_calib_windows(text_ids, n_text, bos, &p, &win) == SLM_OK, "windows: %s", slm_last_error());
    CHECK(slm_calib_windows(text_ids, n_text, bos, &p, &win2) == SLM_OK && !memcmp(win, win2, sizeof(int32_t) * N_SAMPLES * SEQ),
          "windows are deterministic");
    int bad_windows = 0;
    const int body = SEQ - (bos >= 0);
    for (int w = 0; w < N_SAMPLES; w++) {
        const int32_t *x = win + (size_t)w * SEQ;
        if (bos >= 0 && x[0] != bos) bad_windows++;
        bool found = false;
        for (size_t o = 0; o + body <= n_text && !found; o++)
            found = !memcmp(text_ids + o, x + (bos >= 0), (size_t)body * sizeof *x);
        if (!found) bad_windows++;
    }
    CHECK(bad_windows == 0, "each window is [BOS] + a run of the text's tokens");
    free(win2);

    /* the pipeline, and the same by hand with a recording tap */
    slm_calib *a = NULL, *hand = NULL;
    CHECK(slm_calib_run(ctx, tok, &p, &a) == SLM_OK, "run: %s", slm_last_error());
    CHECK(slm_ctx_len(ctx) == 0 && ctx->tap == NULL, "context left empty, tap removed");
    recorder *r = calloc(1, sizeof *r);
    r->n_layers = L;
    memcpy(r->dims, (int[]){m->cfg.dim, m->cfg.n_heads * m->cfg.head_dim, m->cfg.dim, m->cfg.ffn_dim}, sizeof r->dims);
    r->cap = N_SAMPLES * SEQ;
    for (int l = 0; l < L && l < 64; l++)
        for (int q = 0; q < SLM_TAP_COUNT; q++) r->rows[l][q] = malloc((size_t)r->cap * r->dims[q] * sizeof(float));
    CHECK(L <= 64 && slm_calib_create(m, KEEP, 7, &hand) == SLM_OK, "create");
    if (!a || !hand || L > 64) return test_summary("test_calib");
    r->feed = hand;
    slm_ctx_set_tap(ctx, record_tap, r);
    for (int w = 0; w < N_SAMPLES; w++) {
        slm_ctx_truncate(ctx, 0);
        CHECK(slm_ctx_eval(ctx, win + (size_t)w * SEQ, SEQ, 0, NULL) == SLM_OK, "eval window %d", w);
    }
    slm_ctx_set_tap(ctx, NULL, NULL);
    slm_ctx_truncate(ctx, 0);
    CHECK(r->bad == 0, "tap arguments in range");
    CHECK(r->resid_calls == (long)N_SAMPLES * ((SEQ + BATCH - 1) / BATCH) * (L + 1), "residual taps %ld",
          r->resid_calls);
    CHECK(slm_calib_n_tokens(a) == (uint64_t)N_SAMPLES * SEQ, "tokens seen %llu",
          (unsigned long long)slm_calib_n_tokens(a));
    CHECK(same_stats(a, hand, true), "slm_calib_run equals feeding the same windows by hand");

    check_embedding_tap(m, r, win);
    check_means(a, r);

    /* reservoir: KEEP rows, each a tapped row; another seed picks other rows, same means */
    int n_rows = 0, strangers = 0, wrong_n = 0;
    for (int l = 0; l < L; l++)
        for (int q = 0; q < SLM_TAP_COUNT; q++) {
            const float *rows = slm_calib_rows(a, l, q, &n_rows);
            if (n_rows != KEEP) wrong_n++;
            for (int i = 0; i < n_rows; i++)
                if (find_row(r, l, q, rows + (size_t)i * r->dims[q]) < 0) strangers++;
        }
    CHECK(wrong_n == 0 && strangers == 0, "reservoirs: %d with the wrong count, %d rows never tapped", wrong_n,
          strangers);
    slm_calib *other = NULL;
    CHECK(slm_calib_create(m, KEEP, 8, &other) == SLM_OK, "create seed 8");
    for (int l = 0; l < L && other; l++)
        for (int q = 0; q < SLM_TAP_COUNT; q++)
            for (int t = 0; t < r->n[l][q]; t += BATCH) {
                const int n = r->n[l][q] - t < BATCH ? r->n[l][q] - t : BATCH;
                slm_calib_observe(other, l, q, r->rows[l][q] + (size_t)t * r->dims[q], n, r->dims[q]);
            }
    CHECK(other && same_stats(a, other, false), "another seed: same means");
    CHECK(other && !same_stats(a, other, true), "another seed: another sample");
    slm_calib_free(other);
    check_uniform(m);

    /* bad shapes and arguments */
    slm_calib *c = NULL;
    CHECK(slm_calib_create(m, KEEP, 1, &c) == SLM_OK, "create");
    float junk[8] = {0};
    slm_calib_observe(c, 0, SLM_TAP_ATTN_IN, junk, 1, 8);
    CHECK(slm_calib_eval(c, ctx, ids, 4) == SLM_ERR_ARG, "a row of the wrong width is reported");
    CHECK(slm_calib_n_tokens(c) == 4, "the evaluation itself still counted");
    slm_calib_free(c);
    slm_calib_params q = p;
    q.seq_len = 65;
    CHECK(slm_calib_run(ctx, tok, &q, &c) == SLM_ERR_ARG && !c, "window longer than the context");
    q = p;
    q.seq_len = 60;
    q.text_path = path_in("short.txt");
    write_all(q.text_path, "A short line.", 13);
    CHECK(slm_calib_run(ctx, tok, &q, &c) == SLM_ERR_ARG && !c, "text shorter than a window: %s", slm_last_error());
    q.text_path = path_in("none.txt");
    CHECK(slm_calib_run(ctx, tok, &q, &c) == SLM_ERR_IO && !c, "missing text");
    q = p;
    q.keep_rows = -1;
    CHECK(slm_calib_run(ctx, tok, &q, &c) == SLM_ERR_ARG && !c, "negative keep_rows");

    check_file(m, a, r);

    for (int l = 0; l < L; l++)
        for (int k = 0; k < SLM_TAP_COUNT; k++) free(r->rows[l][k]);
    free(r);
    free(win);
    free(text_ids);
    slm_calib_free(a);
    slm_calib_free(hand);
    slm_ctx_free(ctx);
    slm_tokenizer_free(tok);
    slm_model_free(m);
    cleanup_dir();
    return test_summary("test_calib");
}
