/* test_memory.c - streamed writing: tensors produced at write time (slm_gguf_writer_add_tensor_src)
 * and the one-pass conversion (slm_rq_convert_write) against the in-memory path.
 *
 * - a produced file is byte-identical to the same tensors given as borrowed buffers; each
 *   producer is called once, in order, and released right after its tensor is written;
 * - slm_rq_convert_write gives the same bytes, errors and sizes as slm_rq_convert +
 *   slm_rq_add_tensors + slm_gguf_writer_write, for several target types and a fold hook, and
 *   keeps no converted data (dst NULL) afterwards;
 * - a producer's error and a failed disk write (the fail_after hook) leave nothing behind, and
 *   no tensor is produced after the failure;
 * - slm_rq_sha256 equals the SHA-256 of the whole file. */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compress/requant.h"
#include "core/dtype.h"
#include "core/gguf_write.h"
#include "core/sha256.h"
#include "core/threadpool.h"
#include "test.h"

static char g_dir[64];

static const char *path_in(const char *name) {
    static char buf[4][128];
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

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)sz + 1);
    *n = p ? fread(p, 1, (size_t)sz, f) : 0;
    fclose(f);
    return p;
}

static bool same_files(const char *a, const char *b) {
    size_t na, nb;
    unsigned char *pa = read_all(a, &na), *pb = read_all(b, &nb);
    const bool same = pa && pb && na == nb && memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return same;
}

/* ---- the input model: a few f32 tensors, matrices and vectors -------------------------- */

enum { N_T = 6, COLS = 256 };
static const char *const t_names[N_T] = {"token_embd.weight", "blk.0.attn_norm.weight", "blk.0.attn_q.weight",
                                         "blk.0.ffn_down.weight", "blk.0.ffn_norm.weight", "output_norm.weight"};
static const int64_t t_rows[N_T] = {40, 1, 24, 16, 1, 1};
static float *t_data[N_T];

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void make_input(const char *path) {
    slm_gguf_writer *w;
    slm_gguf_writer_create(&w);
    slm_gguf_writer_set_str(w, "general.architecture", "llama");
    for (int i = 0; i < N_T; i++) {
        const size_t n = (size_t)(COLS * t_rows[i]);
        t_data[i] = malloc(n * sizeof(float));
        for (size_t k = 0; k < n; k++) t_data[i][k] = frand() * (k % 7 == 0 ? 4.0f : 1.0f);
        const int64_t ne[2] = {COLS, t_rows[i]};
        slm_gguf_writer_add_tensor(w, t_names[i], t_rows[i] > 1 ? 2 : 1, ne, SLM_DT_F32, t_data[i], n * 4);
    }
    slm_status s = slm_gguf_writer_write(w, path);
    CHECK(s == SLM_OK, "input written: %s", slm_last_error());
    slm_gguf_writer_free(w);
}

/* ---- producers -------------------------------------------------------------------------- */

typedef struct {
    int produced[N_T], released[N_T];
    int order[2 * N_T], n_events;
    int fail_at; /* produce fails for this index (-1: never) */
    bool outstanding; /* a tensor was produced and not released yet */
    bool overlap;     /* a second tensor was produced while one was outstanding */
} counts;

static slm_status produce(void *user, size_t i, const void **data) {
    counts *c = user;
    c->produced[i]++;
    c->order[c->n_events++] = (int)i;
    if ((int)i == c->fail_at) return slm_error(SLM_ERR_NOMEM, "tensor %zu: producer failed", i);
    if (c->outstanding) c->overlap = true;
    c->outstanding = true;
    /* a copy the writer does not own, freed by release */
    const size_t n = (size_t)(COLS * t_rows[i]) * sizeof(float);
    void *p = malloc(n);
    memcpy(p, t_data[i], n);
    *data = p;
    return SLM_OK;
}

static void release(void *user, size_t i, const void *data) {
    counts *c = user;
    c->released[i]++;
    c->order[c->n_events++] = (int)i + 100;
    c->outstanding = false;
    free((void *)data);
}

static slm_gguf_writer *writer_with(bool produced, counts *c) {
    slm_gguf_writer *w;
    slm_gguf_writer_create(&w);
    slm_gguf_writer_set_str(w, "general.architecture", "llama");
    for (int i = 0; i < N_T; i++) {
        const int64_t ne[2] = {COLS, t_rows[i]};
        const size_t n = (size_t)(COLS * t_rows[i]) * 4;
        const uint32_t nd = t_rows[i] > 1 ? 2 : 1;
        if (produced) {
            const slm_gguf_tensor_source src = {.produce = produce, .release = release, .user = c, .index = (size_t)i};
            slm_status s = slm_gguf_writer_add_tensor_src(w, t_names[i], nd, ne, SLM_DT_F32, n, &src);
            CHECK(s == SLM_OK, "add_tensor_src %d: %s", i, slm_last_error());
        } else {
            slm_gguf_writer_add_tensor(w, t_names[i], nd, ne, SLM_DT_F32, t_data[i], n);
        }
    }
    return w;
}

static void test_producers(void) {
    slm_gguf_writer *w = writer_with(false, NULL);
    CHECK(slm_gguf_writer_write(w, path_in("borrowed.gguf")) == SLM_OK, "borrowed write: %s", slm_last_error());
    slm_gguf_writer_free(w);

    counts c = {.fail_at = -1};
    w = writer_with(true, &c);
    CHECK(slm_gguf_writer_write(w, path_in("produced.gguf")) == SLM_OK, "produced write: %s", slm_last_error());
    slm_gguf_writer_free(w);
    CHECK(same_files(path_in("borrowed.gguf"), path_in("produced.gguf")), "produced file == borrowed file");
    bool once = true, in_order = c.n_events == 2 * N_T;
    for (int i = 0; i < N_T; i++) {
        once = once && c.produced[i] == 1 && c.released[i] == 1;
        in_order = in_order && c.order[2 * i] == i && c.order[2 * i + 1] == i + 100;
    }
    CHECK(once, "each tensor produced and released once");
    CHECK(in_order && !c.overlap, "produce i, release i, produce i+1: one tensor at a time");

    /* a producer's error: the write fails with its status, nothing is left */
    const int before = dir_entries();
    counts e = {.fail_at = 3};
    w = writer_with(true, &e);
    slm_status s = slm_gguf_writer_write(w, path_in("failed.gguf"));
    slm_gguf_writer_free(w);
    CHECK(s == SLM_ERR_NOMEM, "producer error returned (status %d)", s);
    CHECK(strstr(slm_last_error(), "producer failed") != NULL, "message kept: %s", slm_last_error());
    CHECK(dir_entries() == before && access(path_in("failed.gguf"), F_OK) != 0, "nothing left after a producer error");
    CHECK(e.produced[4] == 0 && e.produced[5] == 0 && e.released[3] == 0, "no tensor produced after the failure");
    CHECK(e.released[0] == 1 && e.released[2] == 1, "tensors written before the failure were released");

    /* a disk failure in the middle of the data: nothing left, the rest not produced */
    counts d = {.fail_at = -1};
    w = writer_with(true, &d);
    slm_gguf_writer_fail_after(w, 600 + (uint64_t)COLS * 40 * 4); /* inside tensor 1 or 2 */
    s = slm_gguf_writer_write(w, path_in("full.gguf"));
    slm_gguf_writer_free(w);
    CHECK(s == SLM_ERR_IO, "fail_after with producers fails (status %d)", s);
    CHECK(dir_entries() == before, "nothing left after a failed disk write");
    CHECK(d.produced[N_T - 1] == 0, "tensors after the failure not produced");
    bool balanced = true;
    for (int i = 0; i < N_T; i++) balanced = balanced && d.produced[i] == d.released[i];
    CHECK(balanced, "every produced tensor released");

    /* argument checks */
    w = writer_with(false, NULL);
    const int64_t ne[1] = {COLS};
    const slm_gguf_tensor_source none = {0};
    CHECK(slm_gguf_writer_add_tensor_src(w, "x", 1, ne, SLM_DT_F32, COLS * 4, &none) == SLM_ERR_ARG, "no producer");
    const slm_gguf_tensor_source src = {.produce = produce, .release = release, .user = &c};
    CHECK(slm_gguf_writer_add_tensor_src(w, "x", 1, ne, SLM_DT_F32, COLS * 2, &src) == SLM_ERR_ARG, "wrong size");
    slm_gguf_writer_free(w);
}

/* ---- streamed conversion ---------------------------------------------------------------- */

static bool fold_affects(void *user, const char *name) {
    (void)user;
    return strstr(name, "attn_norm") || strstr(name, "attn_q");
}
static void fold_row(void *user, const char *name, int64_t row, float *x, int64_t n) {
    (void)user;
    const float s = strstr(name, "norm") ? 0.5f : 2.0f;
    for (int64_t i = 0; i < n; i++) x[i] *= s * (1.0f + 0.01f * (float)((row + i) % 5));
}

static slm_status write_in_memory(slm_pool *pool, const slm_gguf *g, const int *want, const slm_rq_opts *o,
                                  const char *path, slm_rq_tensor **ts) {
    slm_gguf_writer *w;
    slm_gguf_writer_create(&w);
    slm_gguf_writer_copy_kvs(w, g);
    slm_status s = slm_rq_plan(g, want, o, ts);
    if (!s) s = slm_rq_convert(pool, g, *ts, o);
    if (!s) s = slm_rq_add_tensors(w, g, *ts);
    if (!s) s = slm_gguf_writer_write(w, path);
    slm_gguf_writer_free(w);
    return s;
}

static slm_status write_streamed(slm_pool *pool, const slm_gguf *g, const int *want, const slm_rq_opts *o,
                                 const char *path, slm_rq_tensor **ts) {
    slm_gguf_writer *w;
    slm_gguf_writer_create(&w);
    slm_gguf_writer_copy_kvs(w, g);
    slm_status s = slm_rq_plan(g, want, o, ts);
    if (!s) s = slm_rq_convert_write(pool, g, *ts, o, w, path);
    slm_gguf_writer_free(w);
    return s;
}

static void test_convert_write(slm_pool *pool, const slm_gguf *g) {
    const uint32_t types[] = {SLM_DT_Q4_0, SLM_DT_Q8_0, SLM_DT_Q4_K, SLM_DT_F16};
    const slm_rq_hooks hooks = {.affects = fold_affects, .fold_row = fold_row};
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        for (int folded = 0; folded < 2; folded++) {
            int want[N_T];
            for (int i = 0; i < N_T; i++) want[i] = t_rows[i] > 1 && i != 3 ? (int)types[k] : -1;
            const slm_rq_opts o = {.clip_search = types[k] == SLM_DT_Q4_0, .hooks = folded ? &hooks : NULL};
            slm_rq_tensor *a = NULL, *b = NULL;
            slm_status sa = write_in_memory(pool, g, want, &o, path_in("a.gguf"), &a);
            slm_status sb = write_streamed(pool, g, want, &o, path_in("b.gguf"), &b);
            const char *tn = slm_dtype_name(types[k]);
            CHECK(sa == SLM_OK && sb == SLM_OK, "%s fold %d: writes succeed (%d, %d: %s)", tn, folded, sa, sb,
                  slm_last_error());
            CHECK(same_files(path_in("a.gguf"), path_in("b.gguf")), "%s fold %d: streamed file == in-memory file", tn,
                  folded);
            bool same = a && b, none_kept = b != NULL;
            for (int i = 0; same && i < N_T; i++) {
                same = a[i].convert == b[i].convert && a[i].out_type == b[i].out_type &&
                       a[i].out_bytes == b[i].out_bytes && a[i].err2 == b[i].err2 && a[i].ref2 == b[i].ref2;
                none_kept = none_kept && b[i].dst == NULL;
            }
            CHECK(same, "%s fold %d: same plan, sizes and error sums", tn, folded);
            CHECK(none_kept, "%s fold %d: no converted data kept after the write", tn, folded);
            bool converted = false;
            for (int i = 0; b && i < N_T; i++) converted = converted || (b[i].convert && b[i].err2 > 0);
            CHECK(types[k] == SLM_DT_F16 || converted, "%s fold %d: something was quantized", tn, folded);
            slm_rq_free(a, N_T);
            slm_rq_free(b, N_T);
            unlink(path_in("a.gguf"));
            unlink(path_in("b.gguf"));
        }
    }

    /* a conversion error in the middle (the fixed fail_after of the writer) leaves nothing */
    const int before = dir_entries();
    int want[N_T];
    for (int i = 0; i < N_T; i++) want[i] = t_rows[i] > 1 ? SLM_DT_Q8_0 : -1;
    slm_gguf_writer *w;
    slm_gguf_writer_create(&w);
    slm_gguf_writer_copy_kvs(w, g);
    slm_gguf_writer_fail_after(w, 2000);
    slm_rq_tensor *ts = NULL;
    slm_status s = slm_rq_plan(g, want, NULL, &ts);
    if (!s) s = slm_rq_convert_write(pool, g, ts, NULL, w, path_in("fail.gguf"));
    CHECK(s == SLM_ERR_IO && dir_entries() == before, "streamed write failing on disk leaves nothing (status %d)", s);
    bool freed = ts != NULL;
    for (int i = 0; ts && i < N_T; i++) freed = freed && ts[i].dst == NULL;
    CHECK(freed, "no converted data kept after a failed write");
    slm_rq_free(ts, N_T);
    slm_gguf_writer_free(w);
}

static void test_sha(const slm_gguf *g, const char *path) {
    char a[65], b[65];
    slm_rq_sha256(g, a);
    slm_status s = slm_sha256_file(path, b);
    CHECK(s == SLM_OK && !strcmp(a, b), "chunked sha256 of the mapping == sha256 of the file (%s vs %s)", a, b);
    /* the mapping still reads the same bytes after its pages were dropped */
    const float *q = slm_gguf_find_tensor(g, "blk.0.attn_q.weight")->data;
    CHECK(!memcmp(q, t_data[2], (size_t)COLS * (size_t)t_rows[2] * 4), "data intact after dropping pages");
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/slm_memtest.XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    make_input(path_in("in.gguf"));
    test_producers();
    slm_gguf *g = NULL;
    slm_pool *pool = NULL;
    if (slm_gguf_open(path_in("in.gguf"), &g) == SLM_OK && slm_pool_create(2, &pool) == SLM_OK) {
        test_convert_write(pool, g);
        test_sha(g, path_in("in.gguf"));
    } else {
        CHECK(false, "input opened: %s", slm_last_error());
    }
    slm_pool_free(pool);
    slm_gguf_free(g);
    for (int i = 0; i < N_T; i++) free(t_data[i]);
    const char *names[] = {"in.gguf", "borrowed.gguf", "produced.gguf"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) unlink(path_in(names[i]));
    CHECK(dir_entries() == 0, "test directory empty at the end (%d entries)", dir_entries());
    rmdir(g_dir);
    return test_summary("test_memory");
}
