/* report.c - size accounting, the base file key, and the table and JSON of `slimlm eval`. */
#include "report.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/sha256.h"

slm_status slm_report_size(const slm_model *m, const char *path, slm_report_row *r) {
    struct stat st;
    if (stat(path, &st) != 0) return slm_error(SLM_ERR_IO, "%s: %s", path, strerror(errno));
    r->file_bytes = (uint64_t)st.st_size;
    r->n_params = r->n_bytes = r->mat_params = r->mat_bytes = 0;
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
        const slm_gguf_tensor *t = &m->gguf->tensors[i];
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) n *= (uint64_t)t->ne[d];
        r->n_bytes += t->nbytes;
        if (slm_model_is_companion(t->name.ptr, t->name.len)) { /* bytes of a matrix, no weights */
            r->mat_bytes += t->nbytes;
            continue;
        }
        r->n_params += n;
        if (t->n_dims == 2) {
            r->mat_params += n;
            r->mat_bytes += t->nbytes;
        }
    }
    r->bpw = r->n_params ? 8.0 * (double)r->n_bytes / (double)r->n_params : 0;
    r->mat_bpw = r->mat_params ? 8.0 * (double)r->mat_bytes / (double)r->mat_params : 0;
    return SLM_OK;
}

void slm_report_base_key(const char model_sha[65], const char text_sha[65], int n_ctx, int n_chunks, int top_k,
                         const char *kv_type, char key[65]) {
    char desc[512];
    int len = snprintf(desc, sizeof desc, "slimlm klbase v1\nmodel %.64s\ntext %.64s\nctx %d\nchunks %d\ntop_k %d\nkv %s\n",
                       model_sha, text_sha, n_ctx, n_chunks, top_k, kv_type);
    if (len < 0 || len >= (int)sizeof desc) len = (int)sizeof desc - 1;
    slm_sha256_hex(desc, (size_t)len, key);
}

static const char *nonempty(const char *s) { return s && *s ? s : NULL; }

char *slm_report_cache_dir(char *buf, size_t cap) {
    const char *c = nonempty(getenv("SLIMLM_CACHE"));
    const char *x = nonempty(getenv("XDG_CACHE_HOME"));
    const char *h = nonempty(getenv("HOME"));
    if (c) snprintf(buf, cap, "%s/klbase", c);
    else if (x) snprintf(buf, cap, "%s/slimlm/klbase", x);
    else snprintf(buf, cap, "%s/.cache/slimlm/klbase", h ? h : ".");
    return buf;
}

/* ---- table ---- */

static void cell(FILE *f, bool has, int width, int prec, double v) {
    if (has) fprintf(f, " %*.*f", width, prec, v);
    else fprintf(f, " %*s", width, "-");
}

void slm_report_table(FILE *f, const slm_report_row *rows, int n, bool with_kl, int tg_tokens, int pp_tokens) {
    int w = 5;
    bool mem = false;
    for (int i = 0; i < n && (tg_tokens > 0 || pp_tokens > 0); i++) mem = mem || rows[i].has_mem;
    for (int i = 0; i < n; i++) {
        int l = (int)strlen(rows[i].name) + (rows[i].is_base ? 7 : 0);
        if (l > w) w = l;
    }
    char tg[32], pp[32];
    snprintf(tg, sizeof tg, "tg%d t/s", tg_tokens);
    snprintf(pp, sizeof pp, "pp%d t/s", pp_tokens);
    fprintf(f, "%-*s %9s %6s %7s %9s", w, "model", "size MiB", "bpw", "mat bpw", "ppl");
    if (with_kl) fprintf(f, " %10s %10s %7s %9s", "KL mean", "KL p99", "top-1", "ppl ratio");
    if (pp_tokens > 0) fprintf(f, " %10s", pp);
    if (tg_tokens > 0) fprintf(f, " %10s", tg);
    if (mem) fprintf(f, " %9s", "peak MiB");
    fputc('\n', f);
    for (int i = 0; i < n; i++) {
        const slm_report_row *r = &rows[i];
        char name[1100];
        snprintf(name, sizeof name, "%s%s", r->name, r->is_base ? " (base)" : "");
        fprintf(f, "%-*s %9.2f %6.3f %7.3f", w, name, (double)r->file_bytes / (1024.0 * 1024.0), r->bpw, r->mat_bpw);
        cell(f, r->has_ppl, 9, 4, r->ppl);
        if (with_kl) {
            cell(f, r->has_kl, 10, 6, r->kl_mean);
            cell(f, r->has_kl, 10, 6, r->kl_p99);
            cell(f, r->has_kl, 7, 4, r->top1);
            cell(f, r->has_kl, 9, 5, r->ppl_ratio);
        }
        if (pp_tokens > 0) cell(f, r->has_pp, 10, 2, r->pp);
        if (tg_tokens > 0) cell(f, r->has_tg, 10, 2, r->tg);
        if (mem) cell(f, r->has_mem, 9, 1, (double)r->peak_rss / (1024.0 * 1024.0));
        fputc('\n', f);
    }
}

/* ---- JSON ---- */

static void jnum(slm_sb *b, const char *key, bool has, const char *fmt, double v) {
    slm_sb_printf(b, ", \"%s\": ", key);
    if (has) slm_sb_printf(b, fmt, v);
    else slm_sb_printf(b, "null");
}

void slm_report_json_rows(slm_sb *b, const slm_report_row *rows, int n) {
    slm_sb_printf(b, "[");
    for (int i = 0; i < n; i++) {
        const slm_report_row *r = &rows[i];
        slm_sb_printf(b, "%s\n    {\"name\": ", i ? "," : "");
        slm_sb_json_str(b, r->name);
        slm_sb_printf(b, ", \"path\": ");
        slm_sb_json_str(b, r->path);
        slm_sb_printf(b,
                      ", \"is_base\": %s, \"file_bytes\": %llu, \"file_mib\": %.4f, \"n_params\": %llu, "
                      "\"n_bytes\": %llu, \"bpw\": %.6f, \"matrix_params\": %llu, \"matrix_bytes\": %llu, "
                      "\"matrix_bpw\": %.6f",
                      r->is_base ? "true" : "false", (unsigned long long)r->file_bytes,
                      (double)r->file_bytes / (1024.0 * 1024.0), (unsigned long long)r->n_params,
                      (unsigned long long)r->n_bytes, r->bpw, (unsigned long long)r->mat_params,
                      (unsigned long long)r->mat_bytes, r->mat_bpw);
        jnum(b, "ppl", r->has_ppl, "%.6f", r->ppl);
        jnum(b, "ppl_stderr", r->has_ppl && r->ppl_stderr >= 0, "%.6f", r->ppl_stderr);
        slm_sb_printf(b, ", \"scored\": %ld", r->has_ppl ? r->n_scored : 0L);
        jnum(b, "kl_mean", r->has_kl, "%.8f", r->kl_mean);
        jnum(b, "kl_p99", r->has_kl, "%.8f", r->kl_p99);
        jnum(b, "kl_max", r->has_kl, "%.8f", r->kl_max);
        jnum(b, "top1_agree", r->has_kl, "%.6f", r->top1);
        jnum(b, "ppl_ratio", r->has_kl, "%.6f", r->ppl_ratio);
        jnum(b, "tg_tokens_per_s", r->has_tg, "%.2f", r->tg);
        jnum(b, "pp_tokens_per_s", r->has_pp, "%.2f", r->pp);
        jnum(b, "peak_rss_mib", r->has_mem, "%.2f", (double)r->peak_rss / (1024.0 * 1024.0));
        jnum(b, "peak_delta_mib", r->has_mem, "%.2f", (double)r->peak_delta / (1024.0 * 1024.0));
        slm_sb_printf(b, "}");
    }
    slm_sb_printf(b, "%s]", n ? "\n  " : "");
}

/* ---- CSV ---- */

static void csv_num(slm_sb *b, bool has, const char *fmt, double v) {
    slm_sb_printf(b, ",");
    if (has) slm_sb_printf(b, fmt, v);
}

/* A CSV field: quoted when it holds a comma, quote or line break. */
static void csv_str(slm_sb *b, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) {
        slm_sb_printf(b, "%s", s);
        return;
    }
    slm_sb_printf(b, "\"");
    for (; *s; s++) slm_sb_printf(b, *s == '"' ? "\"\"" : "%c", *s);
    slm_sb_printf(b, "\"");
}

void slm_report_csv(slm_sb *b, const slm_report_row *rows, int n) {
    slm_sb_printf(b, "name,path,is_base,file_bytes,bpw,matrix_bpw,ppl,kl_mean,kl_p99,top1_agree,ppl_ratio,"
                     "pp_tokens_per_s,tg_tokens_per_s,peak_rss_mib,peak_delta_mib\n");
    for (int i = 0; i < n; i++) {
        const slm_report_row *r = &rows[i];
        csv_str(b, r->name);
        slm_sb_printf(b, ",");
        csv_str(b, r->path);
        slm_sb_printf(b, ",%d,%llu,%.6f,%.6f", r->is_base ? 1 : 0, (unsigned long long)r->file_bytes, r->bpw, r->mat_bpw);
        csv_num(b, r->has_ppl, "%.6f", r->ppl);
        csv_num(b, r->has_kl, "%.8f", r->kl_mean);
        csv_num(b, r->has_kl, "%.8f", r->kl_p99);
        csv_num(b, r->has_kl, "%.6f", r->top1);
        csv_num(b, r->has_kl, "%.6f", r->ppl_ratio);
        csv_num(b, r->has_pp, "%.2f", r->pp);
        csv_num(b, r->has_tg, "%.2f", r->tg);
        csv_num(b, r->has_mem, "%.2f", (double)r->peak_rss / (1024.0 * 1024.0));
        csv_num(b, r->has_mem, "%.2f", (double)r->peak_delta / (1024.0 * 1024.0));
        slm_sb_printf(b, "\n");
    }
}

/* ---- peak memory ---- */

bool slm_mem_reset_peak(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return false;
    bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

bool slm_mem_read(uint64_t *rss, uint64_t *hwm) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return false;
    char line[256];
    int found = 0;
    unsigned long long kb;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "VmRSS: %llu kB", &kb) == 1) *rss = (uint64_t)kb * 1024, found |= 1;
        else if (sscanf(line, "VmHWM: %llu kB", &kb) == 1) *hwm = (uint64_t)kb * 1024, found |= 2;
    }
    fclose(f);
    return found == 3;
}
