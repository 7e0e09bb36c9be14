/* cmd_report.c - `slimlm report`: figures (gnuplot, PNG) and a self-contained HTML page from
 * the JSON of `slimlm eval`, plus per-layer heatmaps from layers files. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "commands.h"
#include "common.h"
#include "core/atomic_file.h"
#include "core/strbuf.h"
#include "eval/layers.h"
#include "eval/plot.h"

static const char *const usage =
    "usage: slimlm report EVAL.json [MORE.json ...] -o DIR [--layers FILE]... [--title T]\n"
    "\n"
    "Reads the JSON written by `slimlm eval --json` (several files are merged; a model path seen\n"
    "twice is kept once) and writes into DIR:\n"
    "  kl_bpw.png      KL(base||model) mean against bits per weight, log scale; the Pareto\n"
    "                  frontier (no other model has fewer bits and lower KL) joined and marked\n"
    "  ppl_size.png    perplexity (log scale) against file size (MiB)\n"
    "  speed_size.png  tokens/s (pp and tg, where measured) against file size\n"
    "  layers-STEP.png per-layer heatmap of each step of the layers files (--layers: the\n"
    "                  OUT.layers.tsv that `slimlm compress` writes; format in docs/RECIPES.md)\n"
    "  index.html      the table of all models and the figures (relative links; no network)\n"
    "  *.dat, *.gp     the data and gnuplot scripts behind each figure\n"
    "Figures are drawn by gnuplot (pngcairo terminal), the program $GNUPLOT or `gnuplot`.\n"
    "\n"
    "  -o, --out DIR     output directory (created)\n"
    "  --layers FILE     per-layer values (repeatable)\n"
    "  --title T         page title (default 'slimlm compression report')\n"
    "  -h, --help        this help\n";

static const char *cmd = "report";

#define MAX_ROWS 256
#define MAX_JSON 32
#define MAX_LAYERS_FILES 16

typedef struct {
    char name[256], path[1024];
    bool is_base;
    double mib, bpw, ppl, kl_mean, kl_p99, top1, pp, tg, peak;
    bool pareto;
} point;

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    slm_sb b = {0};
    char buf[4096];
    size_t n;
    slm_sb_printf(&b, "%s", "");
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) slm_sb_printf(&b, "%.*s", (int)n, buf);
    fclose(f);
    if (b.oom) slm_sb_free(&b);
    return b.p;
}

static bool load_json(const char *path, point *pts, int *n) {
    char *t = slurp(path);
    if (!t) return cli_fail(cmd, "%s: %s", path, strerror(errno)), false;
    cJSON *j = cJSON_Parse(t);
    free(t);
    const cJSON *models = cJSON_GetObjectItemCaseSensitive(j, "models");
    if (!cJSON_IsArray(models)) {
        cJSON_Delete(j);
        return cli_fail(cmd, "%s: not the JSON of `slimlm eval --json` (no \"models\" array)", path), false;
    }
    const cJSON *m;
    cJSON_ArrayForEach(m, models) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "name");
        const cJSON *mp = cJSON_GetObjectItemCaseSensitive(m, "path");
        if (!cJSON_IsString(name) || !cJSON_IsString(mp)) {
            cJSON_Delete(j);
            return cli_fail(cmd, "%s: a model without \"name\" and \"path\"", path), false;
        }
        bool dup = false;
        for (int i = 0; i < *n; i++) dup = dup || !strcmp(pts[i].path, mp->valuestring);
        if (dup) continue;
        if (*n == MAX_ROWS) {
            cJSON_Delete(j);
            return cli_fail(cmd, "more than %d models", MAX_ROWS), false;
        }
        point *p = &pts[(*n)++];
        memset(p, 0, sizeof *p);
        snprintf(p->name, sizeof p->name, "%s", name->valuestring);
        snprintf(p->path, sizeof p->path, "%s", mp->valuestring);
        p->is_base = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "is_base"));
        p->mib = num(m, "file_mib");
        p->bpw = num(m, "bpw");
        p->ppl = num(m, "ppl");
        p->kl_mean = num(m, "kl_mean");
        p->kl_p99 = num(m, "kl_p99");
        p->top1 = num(m, "top1_agree");
        p->pp = num(m, "pp_tokens_per_s");
        p->tg = num(m, "tg_tokens_per_s");
        p->peak = num(m, "peak_rss_mib");
    }
    cJSON_Delete(j);
    return true;
}

/* ---- writing files ---- */

static bool save(const char *dir, const char *file, const slm_sb *b) {
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (b->oom) return cli_fail(cmd, "out of memory"), false;
    slm_afile f;
    slm_status s = slm_afile_open(&f, path);
    if (!s) {
        slm_afile_write(&f, b->p ? b->p : "", b->len);
        s = slm_afile_commit(&f);
    }
    if (s) return cli_fail_status(cmd, s), false;
    return true;
}

/* A path inside a gnuplot single-quoted string ('' is a quote). */
static void gp_path(slm_sb *b, const char *dir, const char *file) {
    slm_sb_printf(b, "'");
    for (const char *c = dir; *c; c++) slm_sb_printf(b, *c == '\'' ? "''" : "%c", *c);
    slm_sb_printf(b, "/%s'", file);
}

static void gp_head(slm_sb *b, const char *dir, const char *png, const char *title, const char *xl, const char *yl) {
    slm_sb_printf(b, "set terminal pngcairo size 960,640 noenhanced font 'sans,11'\nset output ");
    gp_path(b, dir, png);
    slm_sb_printf(b, "\nset title '%s'\nset xlabel '%s'\nset ylabel '%s'\nset grid\nset key top right\n"
                     "set datafile missing 'NaN'\n",
                  title, xl, yl);
}

static void dat_name(slm_sb *b, const char *name) {
    char q[300];
    slm_plot_quote(name, q, sizeof q);
    slm_sb_printf(b, " \"%s\"\n", q);
}

/* Draw a figure: script text b saved as DIR/NAME.gp, run. */
static bool draw(const char *dir, const char *name, const slm_sb *b) {
    char gp[300], path[4400];
    snprintf(gp, sizeof gp, "%s.gp", name);
    if (!save(dir, gp, b)) return false;
    snprintf(path, sizeof path, "%s/%s", dir, gp);
    slm_status s = slm_plot_gnuplot(path);
    if (s) return cli_fail_status(cmd, s), false;
    return true;
}

static bool fig_kl(const char *dir, point *pts, int n, bool *drawn) {
    double x[MAX_ROWS], y[MAX_ROWS];
    bool on[MAX_ROWS];
    int m = 0;
    bool positive = true;
    for (int i = 0; i < n; i++) {
        bool use = !pts[i].is_base && !isnan(pts[i].kl_mean) && !isnan(pts[i].bpw);
        x[i] = use ? pts[i].bpw : NAN;
        y[i] = use ? pts[i].kl_mean : NAN;
        m += use;
        if (use && pts[i].kl_mean <= 0) positive = false;
    }
    *drawn = m > 0;
    if (!m) return true;
    slm_plot_pareto(x, y, n, on);
    slm_sb d = {0}, f = {0}, g = {0};
    slm_sb_printf(&d, "# bpw kl_mean name\n");
    slm_sb_printf(&f, "# Pareto frontier, by bits per weight: bpw kl_mean name\n");
    int order[MAX_ROWS], k = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i])) order[k++] = i;
    for (int a = 1; a < k; a++) /* insertion sort by bpw */
        for (int b = a; b > 0 && x[order[b]] < x[order[b - 1]]; b--) {
            int t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
    for (int a = 0; a < k; a++) {
        int i = order[a];
        pts[i].pareto = on[i];
        slm_sb_printf(&d, "%.6f %.8g", x[i], y[i]);
        dat_name(&d, pts[i].name);
        if (on[i]) {
            slm_sb_printf(&f, "%.6f %.8g", x[i], y[i]);
            dat_name(&f, pts[i].name);
        }
    }
    bool ok = save(dir, "kl_bpw.dat", &d) && save(dir, "kl_bpw_pareto.dat", &f);
    gp_head(&g, dir, "kl_bpw.png", "KL divergence against bits per weight", "bits per weight (all tensors)",
            "KL(base || model), mean per token");
    if (positive) slm_sb_printf(&g, "set logscale y\n");
    slm_sb_printf(&g, "plot ");
    gp_path(&g, dir, "kl_bpw.dat");
    slm_sb_printf(&g, " using 1:2 with points pt 7 ps 1.3 lc rgb '#7f7f7f' title 'models', \\\n  ");
    gp_path(&g, dir, "kl_bpw_pareto.dat");
    slm_sb_printf(&g, " using 1:2 with linespoints pt 7 ps 1.6 lw 2 lc rgb '#d62728' title 'Pareto frontier', \\\n  ");
    gp_path(&g, dir, "kl_bpw.dat");
    slm_sb_printf(&g, " using 1:2:3 with labels offset 1,0.6 left font ',9' notitle\n");
    ok = ok && draw(dir, "kl_bpw", &g);
    slm_sb_free(&d);
    slm_sb_free(&f);
    slm_sb_free(&g);
    return ok;
}

static bool fig_ppl(const char *dir, const point *pts, int n, bool *drawn) {
    slm_sb d = {0}, g = {0};
    int m = 0;
    slm_sb_printf(&d, "# MiB ppl is_base name\n");
    for (int i = 0; i < n; i++) {
        if (isnan(pts[i].ppl) || isnan(pts[i].mib)) continue;
        m++;
        slm_sb_printf(&d, "%.4f %.6f %d", pts[i].mib, pts[i].ppl, pts[i].is_base);
        dat_name(&d, pts[i].name);
    }
    *drawn = m > 0;
    bool ok = true;
    if (m) {
        ok = save(dir, "ppl_size.dat", &d);
        gp_head(&g, dir, "ppl_size.png", "Perplexity against size", "file size (MiB)", "perplexity");
        /* perplexities of broken and fine models differ by orders of magnitude */
        slm_sb_printf(&g, "set logscale y\nplot ");
        gp_path(&g, dir, "ppl_size.dat");
        slm_sb_printf(&g, " using 1:($3 == 0 ? $2 : NaN) with points pt 7 ps 1.3 lc rgb '#1f77b4' title 'compressed', \\\n  ");
        gp_path(&g, dir, "ppl_size.dat");
        slm_sb_printf(&g, " using 1:($3 == 1 ? $2 : NaN) with points pt 5 ps 1.6 lc rgb '#2ca02c' title 'base', \\\n  ");
        gp_path(&g, dir, "ppl_size.dat");
        slm_sb_printf(&g, " using 1:2:4 with labels offset 1,0.6 left font ',9' notitle\n");
        ok = ok && draw(dir, "ppl_size", &g);
    }
    slm_sb_free(&d);
    slm_sb_free(&g);
    return ok;
}

static bool fig_speed(const char *dir, const point *pts, int n, bool *drawn) {
    slm_sb d = {0}, g = {0};
    int m = 0;
    slm_sb_printf(&d, "# MiB pp_tokens_per_s tg_tokens_per_s name\n");
    for (int i = 0; i < n; i++) {
        if (isnan(pts[i].mib) || (isnan(pts[i].pp) && isnan(pts[i].tg))) continue;
        m++;
        slm_sb_printf(&d, "%.4f %.3f %.3f", pts[i].mib, pts[i].pp, pts[i].tg);
        dat_name(&d, pts[i].name);
    }
    *drawn = m > 0;
    bool ok = true;
    if (m) {
        ok = save(dir, "speed_size.dat", &d);
        gp_head(&g, dir, "speed_size.png", "Speed against size", "file size (MiB)", "tokens/s");
        slm_sb_printf(&g, "set logscale y\nplot ");
        gp_path(&g, dir, "speed_size.dat");
        slm_sb_printf(&g, " using 1:2 with points pt 7 ps 1.3 lc rgb '#9467bd' title 'prompt (pp)', \\\n  ");
        gp_path(&g, dir, "speed_size.dat");
        slm_sb_printf(&g, " using 1:3 with points pt 9 ps 1.5 lc rgb '#ff7f0e' title 'generation (tg)', \\\n  ");
        gp_path(&g, dir, "speed_size.dat");
        slm_sb_printf(&g, " using 1:($3 == $3 ? $3 : $2):4 with labels offset 1,0.6 left font ',9' notitle\n");
        ok = ok && draw(dir, "speed_size", &g);
    }
    slm_sb_free(&d);
    slm_sb_free(&g);
    return ok;
}

/* One heatmap per step name of the layers values: columns x layers. */
static bool fig_layers(const char *dir, const slm_layers *L, slm_sb *html) {
    bool *seen = calloc((size_t)L->n + 1, 1);
    if (!seen) return cli_fail(cmd, "out of memory"), false;
    bool ok = true;
    for (int i = 0; i < L->n && ok; i++) {
        if (seen[i]) continue;
        const char *step = L->v[i].step;
        char cols[64][32];
        int nc = 0, nl = 0;
        for (int j = i; j < L->n; j++) {
            if (strcmp(L->v[j].step, step)) continue;
            seen[j] = true;
            if (L->v[j].layer + 1 > nl) nl = L->v[j].layer + 1;
            int c = 0;
            while (c < nc && strcmp(cols[c], L->v[j].column)) c++;
            if (c == nc && nc < 64) snprintf(cols[nc++], 32, "%s", L->v[j].column);
        }
        double *grid = malloc((size_t)nc * (size_t)nl * sizeof *grid);
        if (!grid) {
            cli_fail(cmd, "out of memory");
            ok = false;
            break;
        }
        for (int k = 0; k < nc * nl; k++) grid[k] = NAN;
        for (int j = i; j < L->n; j++) {
            if (strcmp(L->v[j].step, step)) continue;
            for (int c = 0; c < nc; c++)
                if (!strcmp(cols[c], L->v[j].column)) grid[L->v[j].layer * nc + c] = L->v[j].value;
        }
        char safe[64], file[128];
        int s = 0;
        for (const char *c = step; *c && s < 60; c++)
            safe[s++] = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-' ? *c : '_';
        safe[s] = 0;
        slm_sb d = {0}, g = {0};
        slm_sb_printf(&d, "# column layer value (step %s)\n", safe);
        for (int l = 0; l < nl; l++) {
            for (int c = 0; c < nc; c++) slm_sb_printf(&d, "%d %d %.6g\n", c, l, grid[l * nc + c]);
            slm_sb_printf(&d, "\n");
        }
        free(grid);
        snprintf(file, sizeof file, "layers-%s.dat", safe);
        ok = save(dir, file, &d);
        snprintf(file, sizeof file, "layers-%s.png", safe);
        char title[200];
        snprintf(title, sizeof title, "Per-layer error: step %s", safe);
        gp_head(&g, dir, file, title, "", "layer");
        slm_sb_printf(&g, "set palette rgbformulae 22,13,-31\nset cblabel 'value'\nset xtics (");
        for (int c = 0; c < nc; c++) {
            char q[64];
            slm_plot_quote(cols[c], q, sizeof q);
            slm_sb_printf(&g, "%s\"%s\" %d", c ? ", " : "", q, c);
        }
        slm_sb_printf(&g, ") rotate by -30\nset ytics 1\nset xrange [-0.5:%d.5]\nset yrange [-0.5:%d.5]\nunset grid\nplot ", nc - 1,
                      nl - 1);
        snprintf(file, sizeof file, "layers-%s.dat", safe);
        gp_path(&g, dir, file);
        slm_sb_printf(&g, " using 1:2:3 with image notitle\n");
        snprintf(file, sizeof file, "layers-%s", safe);
        ok = ok && draw(dir, file, &g);
        slm_sb_printf(html, "<h2>Per-layer figures: step %s</h2>\n<p><img src=\"layers-%s.png\" alt=\"per-layer heatmap of step %s\"></p>\n",
                      safe, safe, safe);
        slm_sb_free(&d);
        slm_sb_free(&g);
    }
    free(seen);
    return ok;
}

/* ---- the page ---- */

static void html_text(slm_sb *b, const char *s) {
    for (; *s; s++) {
        if (*s == '<') slm_sb_printf(b, "&lt;");
        else if (*s == '>') slm_sb_printf(b, "&gt;");
        else if (*s == '&') slm_sb_printf(b, "&amp;");
        else if (*s == '"') slm_sb_printf(b, "&quot;");
        else slm_sb_printf(b, "%c", *s);
    }
}

static void html_num(slm_sb *b, double v, const char *fmt) {
    slm_sb_printf(b, "<td>");
    if (isnan(v)) slm_sb_printf(b, "-");
    else slm_sb_printf(b, fmt, v);
    slm_sb_printf(b, "</td>");
}

static void html_table(slm_sb *b, const point *pts, int n) {
    slm_sb_printf(b, "<table>\n<tr><th>model</th><th>size MiB</th><th>bits/weight</th><th>perplexity</th><th>KL mean</th>"
                     "<th>KL p99</th><th>top-1</th><th>pp t/s</th><th>tg t/s</th><th>peak MiB</th><th>Pareto</th></tr>\n");
    for (int i = 0; i < n; i++) {
        const point *p = &pts[i];
        slm_sb_printf(b, "<tr%s><td title=\"", p->pareto ? " class=\"pareto\"" : "");
        html_text(b, p->path);
        slm_sb_printf(b, "\">");
        html_text(b, p->name);
        slm_sb_printf(b, "%s</td>", p->is_base ? " (base)" : "");
        html_num(b, p->mib, "%.2f");
        html_num(b, p->bpw, "%.3f");
        html_num(b, p->ppl, "%.4f");
        html_num(b, p->kl_mean, "%.6f");
        html_num(b, p->kl_p99, "%.6f");
        html_num(b, p->top1, "%.4f");
        html_num(b, p->pp, "%.1f");
        html_num(b, p->tg, "%.1f");
        html_num(b, p->peak, "%.1f");
        slm_sb_printf(b, "<td>%s</td></tr>\n", p->pareto ? "&#9679;" : "");
    }
    slm_sb_printf(b, "</table>\n");
}

static void html_fig(slm_sb *b, bool drawn, const char *png, const char *title, const char *missing) {
    slm_sb_printf(b, "<h2>%s</h2>\n", title);
    if (drawn) slm_sb_printf(b, "<p><img src=\"%s\" alt=\"%s\"></p>\n", png, title);
    else slm_sb_printf(b, "<p class=\"note\">%s</p>\n", missing);
}

static bool mkdir_p(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) return false;
        *s = '/';
    }
    return mkdir(p, 0755) == 0 || errno == EEXIST;
}

int cmd_report(int argc, char **argv) {
    const char *jsons[MAX_JSON], *layers_files[MAX_LAYERS_FILES], *dir = NULL, *title = "slimlm compression report";
    int n_json = 0, n_layers = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--out")) {
            if (!(dir = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--layers")) {
            if (n_layers == MAX_LAYERS_FILES) return cli_fail(cmd, "at most %d --layers files", MAX_LAYERS_FILES);
            if (!(layers_files[n_layers++] = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--title")) {
            if (!(title = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (a[0] == '-') {
            return cli_fail(cmd, "unknown option '%s' (see --help)", a);
        } else {
            if (n_json == MAX_JSON) return cli_fail(cmd, "at most %d JSON files", MAX_JSON);
            jsons[n_json++] = a;
        }
    }
    if (!dir) return cli_fail(cmd, "-o DIR is required (see --help)");
    if (n_json == 0) return cli_fail(cmd, "no eval JSON given (see --help)");
    point *pts = calloc(MAX_ROWS, sizeof *pts);
    if (!pts) return cli_fail(cmd, "out of memory");
    int n = 0, rc = 1;
    slm_layers L = {0};
    slm_sb h = {0}, lh = {0};
    for (int i = 0; i < n_json; i++)
        if (!load_json(jsons[i], pts, &n)) goto out;
    for (int i = 0; i < n_layers; i++) {
        slm_status s = slm_layers_read(&L, layers_files[i]);
        if (s) {
            cli_fail_status(cmd, s);
            goto out;
        }
    }
    if (!mkdir_p(dir)) {
        cli_fail(cmd, "cannot create %s: %s", dir, strerror(errno));
        goto out;
    }
    bool d_kl, d_ppl, d_speed;
    if (!fig_kl(dir, pts, n, &d_kl) || !fig_ppl(dir, pts, n, &d_ppl) || !fig_speed(dir, pts, n, &d_speed) ||
        !fig_layers(dir, &L, &lh))
        goto out;
    slm_sb_printf(&h, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>");
    html_text(&h, title);
    slm_sb_printf(&h, "</title>\n<style>\nbody{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}\n"
                      "table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\n"
                      "td:first-child,th:first-child{text-align:left}tr.pareto{background:#fdecea}img{max-width:100%%}\n"
                      ".note{color:#777}\n</style>\n</head>\n<body>\n<h1>");
    html_text(&h, title);
    slm_sb_printf(&h, "</h1>\n<p>From");
    for (int i = 0; i < n_json; i++) {
        slm_sb_printf(&h, " <code>");
        html_text(&h, jsons[i]);
        slm_sb_printf(&h, "</code>");
    }
    slm_sb_printf(&h, " (<code>slimlm eval --json</code>). KL: KL(base || model) per token against the base model's "
                      "top-k distributions; bits per weight over all tensors; peak: the process's peak resident memory "
                      "while the model was loaded and evaluated. Rows on the Pareto frontier of KL against bits per weight "
                      "are shaded.</p>\n");
    html_table(&h, pts, n);
    html_fig(&h, d_kl, "kl_bpw.png", "KL against bits per weight", "No model with a KL measurement (run eval with --base).");
    html_fig(&h, d_ppl, "ppl_size.png", "Perplexity against size", "No perplexity measured.");
    html_fig(&h, d_speed, "speed_size.png", "Tokens/s against size", "No speed measured (run eval with --pp N / --tg N).");
    if (L.n) slm_sb_printf(&h, "%s", lh.p);
    else slm_sb_printf(&h, "<h2>Per-layer figures</h2>\n<p class=\"note\">None given (--layers FILE).</p>\n");
    slm_sb_printf(&h, "</body>\n</html>\n");
    if (!save(dir, "index.html", &h)) goto out;
    fprintf(stderr, "report: wrote %s/index.html (%d models)\n", dir, n);
    rc = 0;
out:
    slm_sb_free(&h);
    slm_sb_free(&lh);
    slm_layers_free(&L);
    free(pts);
    return rc;
}
