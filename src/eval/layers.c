/* layers.c - per-layer values: scanning command tables, the layers file. */
#include "layers.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/atomic_file.h"
#include "../core/strbuf.h"

slm_status slm_layers_add(slm_layers *L, const char *step, int layer, const char *column, double value) {
    if (L->n == L->cap) {
        int cap = L->cap ? 2 * L->cap : 64;
        slm_layer_val *v = realloc(L->v, (size_t)cap * sizeof *v);
        if (!v) return slm_error(SLM_ERR_NOMEM, "layers: out of memory");
        L->v = v;
        L->cap = cap;
    }
    slm_layer_val *x = &L->v[L->n++];
    snprintf(x->step, sizeof x->step, "%s", step);
    snprintf(x->column, sizeof x->column, "%s", column);
    x->layer = layer;
    x->value = value;
    return SLM_OK;
}

void slm_layers_free(slm_layers *L) {
    free(L->v);
    L->v = NULL;
    L->n = L->cap = 0;
}

enum { T_NONE, T_TENSOR, T_AWQ, T_PRUNE };

static const char *const awq_groups[4] = {"qkv", "gate/up", "o", "down"};

/* One line of a table; returns the table kind for the next line. */
static int scan_line(slm_layers *L, const char *step, int table, const char *s, slm_status *st) {
    if (!strncmp(s, "tensor ", 7) && strstr(s, "rel rmse")) return T_TENSOR;
    if (!strncmp(s, "layer ", 6) && strstr(s, "alpha") && strstr(s, "err/plain")) return T_AWQ;
    if (!strncmp(s, "layer ", 6) && strstr(s, "sparsity") && strstr(s, "removed")) return T_PRUNE;
    if (table == T_TENSOR) {
        int layer, n = 0;
        char name[64];
        if (sscanf(s, "blk.%d.%63[^. ].weight%n", &layer, name, &n) < 2 || n == 0) return table;
        const char *last = strrchr(s, ' ');
        char *end;
        double v = last ? strtod(last + 1, &end) : 0;
        if (last && end != last + 1 && *end == 0) *st = slm_layers_add(L, step, layer, name, v);
        return table;
    }
    if (table == T_AWQ) {
        int layer;
        double a[8];
        if (sscanf(s, "%d %lf %lf %lf %lf %lf %lf %lf %lf", &layer, &a[0], &a[1], &a[2], &a[3], &a[4], &a[5], &a[6],
                   &a[7]) == 9)
            for (int g = 0; g < 4 && !*st; g++) *st = slm_layers_add(L, step, layer, awq_groups[g], a[2 * g + 1]);
        return table;
    }
    if (table == T_PRUNE) {
        int layer;
        double w, k, sp, r1, r2;
        if (sscanf(s, "%d %lf %lf %lf%% %lf%% %lf%%", &layer, &w, &k, &sp, &r1, &r2) == 6) {
            *st = slm_layers_add(L, step, layer, "w2_removed", r1 / 100.0);
            if (!*st) *st = slm_layers_add(L, step, layer, "wx2_removed", r2 / 100.0);
        }
        return table;
    }
    return T_NONE;
}

slm_status slm_layers_scan(slm_layers *L, const char *step, const char *text) {
    int table = T_NONE;
    char line[1024];
    slm_status st = SLM_OK;
    for (const char *p = text; *p && !st;) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n >= sizeof line) n = sizeof line - 1;
        memcpy(line, p, n);
        line[n] = 0;
        table = scan_line(L, step, table, line, &st);
        if (!e) break;
        p = e + 1;
    }
    return st;
}

slm_status slm_layers_write(const slm_layers *L, const char *path) {
    slm_sb b = {0};
    slm_sb_printf(&b, "# slimlm layers v1: step layer column value\n");
    for (int i = 0; i < L->n; i++)
        slm_sb_printf(&b, "%s\t%d\t%s\t%.6g\n", L->v[i].step, L->v[i].layer, L->v[i].column, L->v[i].value);
    if (b.oom) {
        slm_sb_free(&b);
        return slm_error(SLM_ERR_NOMEM, "layers: out of memory");
    }
    slm_afile f;
    slm_status s = slm_afile_open(&f, path);
    if (!s) {
        slm_afile_write(&f, b.p, b.len);
        s = slm_afile_commit(&f);
    }
    slm_sb_free(&b);
    return s;
}

slm_status slm_layers_read(slm_layers *L, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return slm_error(SLM_ERR_IO, "%s: %s", path, strerror(errno));
    char line[1024];
    int ln = 0;
    slm_status s = SLM_OK;
    while (!s && fgets(line, sizeof line, f)) {
        ln++;
        char step[64], col[64], extra[2];
        int layer;
        double v;
        const char *p = line + strspn(line, " \t");
        if (*p == '#' || *p == '\n' || *p == 0) continue;
        if (sscanf(p, "%63s %d %63s %lf %1s", step, &layer, col, &v, extra) != 4 || layer < 0 || layer > 100000 ||
            strlen(step) >= 32 || strlen(col) >= 32)
            s = slm_error(SLM_ERR_FORMAT, "%s:%d: expected 'STEP LAYER COLUMN VALUE'", path, ln);
        else s = slm_layers_add(L, step, layer, col, v);
    }
    fclose(f);
    return s;
}
