/* requant.c - tensor rewriting shared by the model-writing commands (see requant.h). */
#include "compress/requant.h"

#include <fnmatch.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/dtype.h"
#include "core/gq.h"
#include "core/sha256.h"
#include "model/model.h"

uint32_t slm_rq_file_type(uint32_t dtype) {
    switch (dtype) {
    case SLM_DT_F32: return 0;
    case SLM_DT_F16: return 1;
    case SLM_DT_Q4_0: return 2;
    case SLM_DT_Q4_1: return 3;
    case SLM_DT_Q8_0: return 7;
    case SLM_DT_Q5_0: return 8;
    case SLM_DT_Q5_1: return 9;
    case SLM_DT_Q2_K: return 10;
    case SLM_DT_Q3_K: return 11; /* Q3_K_S */
    case SLM_DT_Q4_K: return 14; /* Q4_K_S */
    case SLM_DT_Q5_K: return 16; /* Q5_K_S */
    case SLM_DT_Q6_K: return 18;
    case SLM_DT_BF16: return 32;
    default: return 1024;
    }
}

int slm_rq_gq_layout(uint32_t t) {
    if (slm_gq_format_of(t, NULL)) return (int)t;
    switch (t) {
    case SLM_DT_Q4_0: return slm_gq_type(4, 32, false);
    case SLM_DT_Q4_1: return slm_gq_type(4, 32, true);
    case SLM_DT_Q8_0: return slm_gq_type(8, 32, false);
    default: return -1;
    }
}

/* Whether matrix `name` ("<base>.weight") has a codebook table or outlier tensors. */
static bool has_companions(const slm_gguf *g, const char *name) {
    static const char *const suffix[] = {"codebook", "outlier_rows", "outlier_cols", "outlier_vals"};
    const size_t n = strlen(name), w = strlen(".weight");
    if (n <= w || strcmp(name + n - w, ".weight")) return false;
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        char b[192];
        snprintf(b, sizeof b, "%.*s.%s", (int)(n - w), name, suffix[i]);
        if (slm_gguf_find_tensor(g, b)) return true;
    }
    return false;
}

bool slm_rq_is_weight_matrix(const slm_gguf_tensor *t, const char *name) {
    if (t->n_dims != 2) return false;
    if (!strcmp(name, "token_embd.weight") || !strcmp(name, "output.weight")) return true;
    if (strncmp(name, "blk.", 4) || name[4] < '0' || name[4] > '9') return false;
    const char *p = name + 4;
    while (*p >= '0' && *p <= '9') p++;
    if (*p != '.') return false;
    return (fnmatch("*.attn_*.weight", p, 0) == 0 || fnmatch("*.ffn_*.weight", p, 0) == 0);
}

static bool affected(const slm_rq_opts *o, const char *name) {
    return o && o->hooks && o->hooks->affects && o->hooks->affects(o->hooks->user, name);
}

/* Whether a tensor of type in with rows of cols elements can be rewritten as out; if not, *note says why. */
static bool convertible(uint32_t in, uint32_t out, int64_t cols, bool hook_types, bool in_mat, const char **note) {
    const slm_dtype_traits *ti = slm_dtype_get(in), *to = slm_dtype_get(out);
    if (!ti || (!ti->to_float && !in_mat)) {
        *note = "input dtype cannot be dequantized; kept";
        return false;
    }
    if (!to || (!to->from_float && !hook_types)) {
        *note = "no quantizer for the target type; kept";
        return false;
    }
    if (cols % to->block_size != 0) {
        *note = "row length not a multiple of the block size; kept";
        return false;
    }
    return true;
}

slm_status slm_rq_plan(const slm_gguf *g, const int *want, const slm_rq_opts *o, slm_rq_tensor **out) {
    const size_t nt = (size_t)g->n_tensors;
    slm_rq_tensor *ts = calloc(nt ? nt : 1, sizeof *ts);
    if (!ts) return slm_error(SLM_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < nt; i++) {
        const slm_gguf_tensor *t = &g->tensors[i];
        slm_rq_tensor *p = &ts[i];
        if (t->name.len >= sizeof p->name) {
            free(ts);
            return slm_error(SLM_ERR_FORMAT, "tensor #%zu: name longer than %zu bytes", i, sizeof p->name - 1);
        }
        slm_gguf_str_copy(t->name, p->name, sizeof p->name);
        p->in_type = p->out_type = t->type;
        p->cols = t->ne[0];
        p->n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        p->rows = p->cols ? p->n / p->cols : 0;
        p->src = t->data;
        p->in_bytes = p->out_bytes = t->nbytes;
        p->gq = -1;
        if (t->n_dims == 2 && has_companions(g, p->name)) {
            slm_status s = slm_model_bind_matrix(g, p->name, &p->in_mat);
            if (s) {
                free(ts);
                return s;
            }
            p->has_in_mat = true;
        }
        const bool fold = affected(o, p->name);
        int target = want[i];
        if (target < 0 && !fold) continue;
        if (target < 0) target = (int)t->type;
        const char *note = NULL;
        if (!convertible(t->type, (uint32_t)target, p->cols, o && o->hook_types, p->has_in_mat, &note)) {
            if (!fold) {
                p->note = note;
                continue;
            }
            /* folding must happen: fall back to a float type */
            target = t->n_dims == 1 ? SLM_DT_F32 : SLM_DT_F16;
            p->note = "folded; stored as a float type";
            if (!convertible(t->type, (uint32_t)target, p->cols, o && o->hook_types, p->has_in_mat, &note)) {
                free(ts);
                return slm_error(SLM_ERR_UNSUPPORTED, "tensor '%s' (%s) cannot be rewritten: %s", p->name,
                                 slm_dtype_name(t->type), note);
            }
        }
        size_t row;
        if (!slm_row_bytes((uint32_t)target, p->cols, &row) ||
            __builtin_mul_overflow(row, (size_t)p->rows, &p->out_bytes)) {
            free(ts);
            return slm_error(SLM_ERR_ARG, "tensor '%s': size overflows", p->name);
        }
        p->out_type = (uint32_t)target;
        p->convert = true;
        if (o && o->clip_search) p->gq = slm_rq_gq_layout(p->out_type);
    }
    /* the companions of a converted matrix go: its new rows hold everything */
    for (size_t i = 0; i < nt; i++) {
        const char *nm = ts[i].name, *dot = strrchr(nm, '.');
        if (!dot || !slm_model_is_companion(nm, strlen(nm))) continue;
        char base[160];
        snprintf(base, sizeof base, "%.*s.weight", (int)(dot - nm), nm);
        for (size_t k = 0; k < nt; k++)
            if (ts[k].convert && ts[k].has_in_mat && !strcmp(ts[k].name, base)) ts[i].drop = true;
    }
    *out = ts;
    return SLM_OK;
}

/* ---- conversion ---------------------------------------------------------------------- */

typedef struct {
    slm_rq_tensor *p;
    const slm_rq_opts *o;
    size_t in_row, out_row;
    float *scratch;      /* [nth][2 * cols]: a row in f32, and its round trip */
    double *err2, *ref2; /* [nth] */
    const float *imp;    /* per-column importance, or NULL */
} job;

static void convert_rows(void *arg, int ith, int nth) {
    job *j = arg;
    slm_rq_tensor *p = j->p;
    const slm_dtype_traits *ti = slm_dtype_get(p->in_type), *to = slm_dtype_get(p->out_type);
    const int64_t cols = p->cols;
    float *x = j->scratch + (size_t)ith * 2 * (size_t)cols, *y = x + cols;
    const slm_rq_hooks *h = j->o ? j->o->hooks : NULL;
    const bool fold = h && h->fold_row && h->affects && h->affects(h->user, p->name);
    long lo, hi;
    slm_pool_split((long)p->rows, ith, nth, 1, &lo, &hi);
    double e2 = 0, r2 = 0;
    for (long r = lo; r < hi; r++) {
        const uint8_t *src = (const uint8_t *)p->src + (size_t)r * j->in_row;
        uint8_t *dst = (uint8_t *)p->dst + (size_t)r * j->out_row;
        if (p->has_in_mat) slm_mat_row(&p->in_mat, r, x);
        else ti->to_float(src, x, cols);
        if (fold) h->fold_row(h->user, p->name, r, x, cols);
        if (h && h->quantize_row && h->quantize_row(h->user, p, r, x, j->imp, dst)) {
            /* stored by the hook */
        } else if (p->gq >= 0) {
            const slm_gq_opts go = {.clip_search = true, .importance = j->imp};
            slm_gq_quantize_row((uint32_t)p->gq, x, dst, cols, &go);
        } else {
            to->from_float(x, dst, cols);
        }
        if (!(h && h->decode_row && h->decode_row(h->user, p, r, dst, y))) to->to_float(dst, y, cols);
        for (int64_t i = 0; i < cols; i++) {
            const double d = (double)x[i] - (double)y[i];
            e2 += d * d;
            r2 += (double)x[i] * (double)x[i];
        }
    }
    j->err2[ith] = e2;
    j->ref2[ith] = r2;
}

static slm_status convert_one(slm_pool *pool, slm_rq_tensor *p, const slm_rq_opts *o) {
    const int nth = slm_pool_size(pool);
    job j = {.p = p, .o = o};
    if (!slm_row_bytes(p->in_type, p->cols, &j.in_row) || !slm_row_bytes(p->out_type, p->cols, &j.out_row))
        return slm_error(SLM_ERR_ARG, "tensor '%s': bad row length", p->name);
    const size_t cols = (size_t)(p->cols ? p->cols : 1);
    p->dst = malloc(p->out_bytes ? p->out_bytes : 1);
    j.scratch = malloc((size_t)nth * 2 * cols * sizeof(float));
    float *imp_buf = malloc(cols * sizeof(float));
    j.err2 = calloc((size_t)nth, sizeof(double));
    j.ref2 = calloc((size_t)nth, sizeof(double));
    slm_status s = SLM_OK;
    bool extras = true;
    for (int e = 0; e < p->n_extra; e++) {
        free(p->extra[e].data);
        if (!(p->extra[e].data = calloc(p->extra[e].bytes ? p->extra[e].bytes : 1, 1))) extras = false;
    }
    const slm_rq_hooks *h = o ? o->hooks : NULL;
    if (!p->dst || !j.scratch || !j.err2 || !j.ref2 || !imp_buf || !extras) {
        s = slm_error(SLM_ERR_NOMEM, "tensor '%s': out of memory (%zu bytes)", p->name, p->out_bytes);
    } else {
        if ((p->gq >= 0 || (h && h->quantize_row)) && h && h->importance)
            j.imp = h->importance(h->user, p->name, imp_buf, p->cols);
        if (h && h->begin_tensor) s = h->begin_tensor(h->user, p, j.imp);
        if (!s && p->rows) {
            slm_pool_run(pool, convert_rows, &j);
            for (int i = 0; i < nth; i++) {
                p->err2 += j.err2[i];
                p->ref2 += j.ref2[i];
            }
        }
        if (h && h->end_tensor) h->end_tensor(h->user, p);
    }
    free(j.scratch);
    free(imp_buf);
    free(j.err2);
    free(j.ref2);
    return s;
}

/* Progress over the planned tensors: a bar (1) or a line per converted tensor (2). */
typedef struct {
    int mode;
    const char *label;
    uint64_t work_all, work_done;
} progress;

static progress progress_start(const slm_rq_tensor *ts, size_t nt, const slm_rq_opts *o) {
    progress pr = {.mode = o ? o->progress : 0, .label = o && o->label ? o->label : "convert"};
    for (size_t i = 0; i < nt; i++)
        if (ts[i].convert) pr.work_all += (uint64_t)ts[i].n;
    return pr;
}

static void progress_show(const progress *pr, const slm_rq_tensor *p, size_t i, size_t nt) {
    if (pr->mode == 1) {
        const int width = 30, fill = pr->work_all ? (int)(width * pr->work_done / pr->work_all) : width;
        fprintf(stderr, "\r\033[K%s: [%.*s%*s] %3d%% %zu/%zu %s", pr->label, fill, "##############################",
                width - fill, "", pr->work_all ? (int)(100 * pr->work_done / pr->work_all) : 100, i + 1, nt, p->name);
    } else if (pr->mode == 2 && p->convert) {
        fprintf(stderr, "%s: [%zu/%zu] %s %s -> %s\n", pr->label, i + 1, nt, p->name, slm_dtype_name(p->in_type),
                slm_dtype_name(p->out_type));
    }
}

static void progress_end(const progress *pr, bool failed) {
    if (pr->mode == 1) fputs(failed ? "\n" : "\r\033[K", stderr);
}

slm_status slm_rq_convert(slm_pool *pool, const slm_gguf *g, slm_rq_tensor *ts, const slm_rq_opts *o) {
    const size_t nt = (size_t)g->n_tensors;
    progress pr = progress_start(ts, nt, o);
    for (size_t i = 0; i < nt; i++) {
        slm_rq_tensor *p = &ts[i];
        progress_show(&pr, p, i, nt);
        slm_status s;
        if (p->convert && (s = convert_one(pool, p, o))) {
            progress_end(&pr, true);
            return s;
        }
        if (p->convert) pr.work_done += (uint64_t)p->n;
    }
    progress_end(&pr, false);
    return SLM_OK;
}

/* ---- streaming conversion ------------------------------------------------------------ */

void slm_rq_drop_pages(const slm_gguf *g, const void *p, size_t n) {
    if (!g || !g->map || !p || !n) return;
    const uint8_t *base = g->map, *lo = p, *hi = lo + n;
    if (lo < base || hi > base + g->size || hi < lo) return; /* not inside this mapping */
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)lo / page * page, b = ((uintptr_t)hi + page - 1) / page * page;
    /* the mapping is page-aligned, so the rounded range stays inside it */
    (void)madvise((void *)a, b - a, MADV_DONTNEED);
}

void slm_rq_drop_all(const slm_gguf *g) {
    if (g && g->map) (void)madvise(g->map, g->size, MADV_DONTNEED);
}

/* Hashing granule of slm_rq_sha256: pages are dropped after each chunk. */
#define SHA_CHUNK ((size_t)4 << 20)

void slm_rq_sha256(const slm_gguf *g, char out[65]) {
    slm_sha256 c;
    slm_sha256_init(&c);
    for (size_t at = 0; at < g->size; at += SHA_CHUNK) {
        const size_t k = g->size - at < SHA_CHUNK ? g->size - at : SHA_CHUNK;
        slm_sha256_update(&c, g->buf + at, k);
        slm_rq_drop_pages(g, g->buf + at, k);
    }
    uint8_t d[32];
    slm_sha256_final(&c, d);
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* What the writer's producers share: one tensor is converted (or its input borrowed) when the
 * writer asks for it, and freed (input pages dropped) once it is written. */
typedef struct {
    slm_pool *pool;
    const slm_gguf *g;
    slm_rq_tensor *ts;
    const slm_rq_opts *o;
    progress pr;
    const uint8_t *lo, *hi; /* input bytes released so far (pages dropped) */
} stream;

static slm_status stream_produce(void *user, size_t i, const void **data) {
    stream *st = user;
    slm_rq_tensor *p = &st->ts[i];
    progress_show(&st->pr, p, i, (size_t)st->g->n_tensors);
    if (!p->convert) {
        *data = p->src;
        return SLM_OK;
    }
    slm_status s = convert_one(st->pool, p, st->o);
    if (s) {
        free(p->dst);
        p->dst = NULL;
        return s;
    }
    *data = p->dst;
    return SLM_OK;
}

/* Companion e of tensor i is source index i * EXTRA_SLOTS + 1 + e (its bytes exist once the
 * tensor before it was produced). */
enum { EXTRA_SLOTS = SLM_RQ_MAX_EXTRA + 1 };

static slm_status extra_produce(void *user, size_t index, const void **data) {
    stream *st = user;
    const slm_rq_extra *x = &st->ts[index / EXTRA_SLOTS].extra[index % EXTRA_SLOTS - 1];
    if (!x->data) return slm_error(SLM_ERR_ARG, "tensor '%s' was not produced", x->name);
    *data = x->data;
    return SLM_OK;
}

static void extra_release(void *user, size_t index, const void *data) {
    (void)data;
    stream *st = user;
    slm_rq_extra *x = &st->ts[index / EXTRA_SLOTS].extra[index % EXTRA_SLOTS - 1];
    free(x->data);
    x->data = NULL;
}

static void stream_release(void *user, size_t i, const void *data) {
    (void)data;
    stream *st = user;
    slm_rq_tensor *p = &st->ts[i];
    if (p->convert) {
        free(p->dst);
        p->dst = NULL;
        st->pr.work_done += (uint64_t)p->n;
    }
    /* Drop everything released so far, not only this tensor: reading a tensor maps the
     * neighbouring cached pages too (fault-around), some of them in tensors dropped before. */
    if (!p->src || !p->in_bytes) return;
    const uint8_t *a = p->src, *b = a + p->in_bytes;
    if (!st->lo || a < st->lo) st->lo = a;
    if (!st->hi || b > st->hi) st->hi = b;
    slm_rq_drop_pages(st->g, st->lo, (size_t)(st->hi - st->lo));
}

slm_status slm_rq_convert_write(slm_pool *pool, const slm_gguf *g, slm_rq_tensor *ts, const slm_rq_opts *o,
                                slm_gguf_writer *w, const char *path) {
    const size_t nt = (size_t)g->n_tensors;
    stream st = {.pool = pool, .g = g, .ts = ts, .o = o, .pr = progress_start(ts, nt, o)};
    for (size_t i = 0; i < nt; i++) {
        const slm_gguf_tensor *t = &g->tensors[i];
        if (ts[i].drop) continue;
        const slm_gguf_tensor_source src = {.produce = stream_produce, .release = stream_release, .user = &st,
                                            .index = i};
        slm_status s = slm_gguf_writer_add_tensor_src(w, ts[i].name, t->n_dims, t->ne, ts[i].out_type,
                                                      ts[i].out_bytes, &src);
        for (int e = 0; !s && e < ts[i].n_extra; e++) {
            const slm_rq_extra *x = &ts[i].extra[e];
            const slm_gguf_tensor_source xs = {.produce = extra_produce, .release = extra_release, .user = &st,
                                               .index = i * EXTRA_SLOTS + 1 + (size_t)e};
            const int64_t ne[4] = {x->ne0, 1, 1, 1};
            s = slm_gguf_writer_add_tensor_src(w, x->name, 1, ne, x->type, x->bytes, &xs);
        }
        if (s) return s;
    }
    slm_status s = slm_gguf_writer_write(w, path);
    progress_end(&st.pr, s != SLM_OK);
    return s;
}

slm_status slm_rq_add_tensors(slm_gguf_writer *w, const slm_gguf *g, const slm_rq_tensor *ts) {
    for (size_t i = 0; i < (size_t)g->n_tensors; i++) {
        const slm_gguf_tensor *t = &g->tensors[i];
        const slm_rq_tensor *p = &ts[i];
        if (p->drop) continue;
        slm_status s = slm_gguf_writer_add_tensor(w, p->name, t->n_dims, t->ne, p->out_type,
                                                  p->convert ? p->dst : p->src, p->out_bytes);
        for (int e = 0; !s && e < p->n_extra; e++) {
            const int64_t ne[4] = {p->extra[e].ne0, 1, 1, 1};
            s = slm_gguf_writer_add_tensor(w, p->extra[e].name, 1, ne, p->extra[e].type, p->extra[e].data,
                                           p->extra[e].bytes);
        }
        if (s) return s;
    }
    return SLM_OK;
}

slm_status slm_rq_add_extra(slm_rq_tensor *p, const char *name, uint32_t type, int64_t n) {
    size_t row;
    if (!p->convert || p->n_extra >= SLM_RQ_MAX_EXTRA || n < 1 || !slm_row_bytes(type, n, &row))
        return slm_error(SLM_ERR_ARG, "tensor '%s': cannot add companion '%s'", p->name, name);
    slm_rq_extra *x = &p->extra[p->n_extra];
    if (snprintf(x->name, sizeof x->name, "%s", name) >= (int)sizeof x->name)
        return slm_error(SLM_ERR_ARG, "companion name '%s' is too long", name);
    x->type = type;
    x->ne0 = n;
    x->bytes = row;
    x->data = NULL;
    p->n_extra++;
    return SLM_OK;
}

static void fmt_bytes(uint64_t b, char *buf, size_t cap) {
    if (b >= 10u << 20) snprintf(buf, cap, "%.1f MiB", (double)b / (1 << 20));
    else if (b >= 10u << 10) snprintf(buf, cap, "%.1f KiB", (double)b / (1 << 10));
    else snprintf(buf, cap, "%" PRIu64 " B", b);
}

void slm_rq_print_summary(FILE *f, const slm_rq_tensor *ts, size_t nt, bool per_tensor, const char *type_name) {
    uint64_t tin = 0, tout = 0, n_all = 0, q_n = 0, q_out = 0;
    double q_err2 = 0, q_ref2 = 0;
    int n_conv = 0;
    if (per_tensor) fprintf(f, "%-28s %-15s %12s %12s %10s\n", "tensor", "dtype", "bytes in", "bytes out", "rel rmse");
    for (size_t i = 0; i < nt; i++) {
        const slm_rq_tensor *p = &ts[i];
        size_t xb = 0;
        for (int e = 0; e < p->n_extra; e++) xb += p->extra[e].bytes;
        tin += p->in_bytes;
        tout += p->out_bytes + xb;
        n_all += (uint64_t)p->n;
        if (p->convert) {
            n_conv++;
            q_n += (uint64_t)p->n;
            q_out += p->out_bytes + xb;
            q_err2 += p->err2;
            q_ref2 += p->ref2;
        }
        if (!per_tensor && !p->note) continue;
        char dt[32], err[32] = "-";
        snprintf(dt, sizeof dt, "%s -> %s", slm_dtype_name(p->in_type), slm_dtype_name(p->out_type));
        if (p->convert) snprintf(err, sizeof err, "%.6f", p->ref2 > 0 ? sqrt(p->err2 / p->ref2) : 0.0);
        fprintf(f, "%-28s %-15s %12zu %12zu %10s%s%s\n", p->name, dt, p->in_bytes, p->out_bytes, err,
                p->note ? "  " : "", p->note ? p->note : "");
    }
    char a[32], b[32];
    fmt_bytes(tin, a, sizeof a);
    fmt_bytes(tout, b, sizeof b);
    fprintf(f,
            "total: %zu tensors (%d quantized to %s or overrides), %" PRIu64 " -> %" PRIu64 " bytes (%s -> %s), "
            "%.3f -> %.3f bits per weight\n",
            nt, n_conv, type_name, tin, tout, a, b, n_all ? 8.0 * (double)tin / (double)n_all : 0.0,
            n_all ? 8.0 * (double)tout / (double)n_all : 0.0);
    if (q_n)
        fprintf(f, "quantized matrices: %" PRIu64 " weights, %.3f bits per weight, rel rmse %.6f\n", q_n,
                8.0 * (double)q_out / (double)q_n, q_ref2 > 0 ? sqrt(q_err2 / q_ref2) : 0.0);
}

void slm_rq_free(slm_rq_tensor *ts, size_t n) {
    if (!ts) return;
    for (size_t i = 0; i < n; i++) {
        free(ts[i].dst);
        for (int e = 0; e < ts[i].n_extra; e++) free(ts[i].extra[e].data);
    }
    free(ts);
}
