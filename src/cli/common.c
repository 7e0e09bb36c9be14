/* common.c - flag parsing, model loading and error reporting for the subcommands. */
#include "common.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/paths.h"

int cli_fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "slimlm %s: error: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int cli_fail_status(const char *cmd, slm_status s) {
    const char *m = slm_last_error();
    return cli_fail(cmd, "%s", *m ? m : slm_status_name(s));
}

const char *cli_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        cli_fail(cmd, "%s needs a value (see --help)", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

bool cli_int(const char *cmd, const char *flag, const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        cli_fail(cmd, "%s: '%s' is not an integer in [%ld, %ld]", flag, v, lo, hi);
        return false;
    }
    *out = x;
    return true;
}

bool cli_float(const char *cmd, const char *flag, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi)) {
        cli_fail(cmd, "%s: '%s' is not a number in [%g, %g]", flag, v, lo, hi);
        return false;
    }
    *out = x;
    return true;
}

const char *const cli_sampling_help =
    "sampling:\n"
    "  --temp T             temperature, 0 = greedy (default 0.8)\n"
    "  --top-k K            keep the K most likely tokens, 0 = off (default 40)\n"
    "  --top-p P            nucleus: smallest set with probability >= P, 1 = off (default 0.95)\n"
    "  --min-p P            drop tokens below P x the top probability, 0 = off (default 0.05)\n"
    "  --repeat-penalty R   penalize recent tokens, 1 = off (default 1.0)\n"
    "  --repeat-last-n N    tokens the penalty looks back over (default 64)\n"
    "  -s, --seed S         random seed (default 0; same seed, same text)\n";

int cli_sampling_flag(const char *cmd, int argc, char **argv, int *i, slm_sampler_params *p) {
    const char *a = argv[*i], *v;
    double d;
    long l;
    if (!strcmp(a, "--temp")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || !cli_float(cmd, a, v, 0, 100, &d)) return -1;
        p->temperature = (float)d;
    } else if (!strcmp(a, "--top-k")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || !cli_int(cmd, a, v, 0, 1 << 24, &l)) return -1;
        p->top_k = (int)l;
    } else if (!strcmp(a, "--top-p")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || !cli_float(cmd, a, v, 1e-6, 1, &d)) return -1;
        p->top_p = (float)d;
    } else if (!strcmp(a, "--min-p")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || !cli_float(cmd, a, v, 0, 0.999999, &d)) return -1;
        p->min_p = (float)d;
    } else if (!strcmp(a, "--repeat-penalty")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || !cli_float(cmd, a, v, 1e-3, 100, &d)) return -1;
        p->repeat_penalty = (float)d;
    } else if (!strcmp(a, "--repeat-last-n")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || !cli_int(cmd, a, v, 0, 1 << 20, &l)) return -1;
        p->repeat_last_n = (int)l;
    } else if (!strcmp(a, "-s") || !strcmp(a, "--seed")) {
        char *end;
        if (!(v = cli_value(cmd, argc, argv, i))) return -1;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end || v[0] == '-') {
            cli_fail(cmd, "%s: '%s' is not a non-negative integer", a, v);
            return -1;
        }
        p->seed = x;
    } else {
        return 0;
    }
    return 1;
}

const char *const cli_engine_help =
    "engine:\n"
    "  -m, --model PATH     GGUF model (default: the fetched SmolLM2-135M-Instruct)\n"
    "  -t, --threads N      worker threads (default: all CPUs)\n"
    "  --kv-type T          KV cache element type: f16 (default) or f32\n"
    "  --isa NAME           kernels: avx512, avx2, scalar, or ref (exact f32 reference);\n"
    "                       default: the best this CPU has ($SLIMLM_ISA overrides)\n"
    "  --early-exit C       tokens decoded one at a time leave after the first layer whose\n"
    "                       output has cosine >= C with its input (the later layers only cache\n"
    "                       keys and values); perplexity then scores token by token\n"
    "  --exit-min L         no early exit before layer L (default: a quarter of the layers)\n";

int cli_engine_flag(const char *cmd, int argc, char **argv, int *i, cli_engine_opts *o) {
    const char *a = argv[*i], *v;
    long l;
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        if (!(o->model = cli_value(cmd, argc, argv, i))) return -1;
    } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || !cli_int(cmd, a, v, 1, 512, &l)) return -1;
        o->ctx.n_threads = (int)l;
    } else if (!strcmp(a, "--kv-type")) {
        if (!(v = cli_value(cmd, argc, argv, i))) return -1;
        if (!strcmp(v, "f16")) o->ctx.kv_type = SLM_KV_F16;
        else if (!strcmp(v, "f32")) o->ctx.kv_type = SLM_KV_F32;
        else return cli_fail(cmd, "--kv-type: '%s' is not f16 or f32", v), -1;
    } else if (!strcmp(a, "--early-exit")) {
        double d;
        if (!(v = cli_value(cmd, argc, argv, i)) || !cli_float(cmd, a, v, 0.0, 1.0, &d)) return -1;
        if (d <= 0) return cli_fail(cmd, "--early-exit: a cosine threshold in (0, 1]"), -1;
        o->ctx.early_exit = (float)d;
    } else if (!strcmp(a, "--exit-min")) {
        if (!(v = cli_value(cmd, argc, argv, i)) || !cli_int(cmd, a, v, 1, 4096, &l)) return -1;
        o->ctx.exit_min = (int)l;
    } else if (!strcmp(a, "--isa")) {
        if (!(v = cli_value(cmd, argc, argv, i))) return -1;
        int isa = slm_isa_from_name(v);
        if (isa < 0) return cli_fail(cmd, "--isa: '%s' is not one of avx512, avx2, scalar, ref", v), -1;
        o->ctx.isa = (slm_isa)isa;
        o->ctx.isa_set = true;
    } else {
        return 0;
    }
    return 1;
}

bool cli_engine_load(const char *cmd, const cli_engine_opts *o, bool need_tokenizer, cli_engine *e) {
    char def[4096];
    const char *model_path = o->model;
    memset(e, 0, sizeof *e);
    const char *path = model_path ? model_path : slm_default_model_path(def, sizeof def);
    struct stat st;
    if (!model_path && stat(path, &st) != 0) {
        cli_fail(cmd, "default model %s not found: run scripts/fetch-model.sh, or give one with -m", path);
        return false;
    }
    slm_status s = slm_model_load(path, &e->model);
    if (s) {
        cli_fail_status(cmd, s);
        return false;
    }
    if (need_tokenizer && (s = slm_tokenizer_load(e->model->gguf, &e->tok))) {
        cli_fail(cmd, "%s: %s", path, slm_last_error());
        cli_engine_free(e);
        return false;
    }
    if ((s = slm_ctx_create(e->model, &o->ctx, &e->ctx))) {
        cli_fail_status(cmd, s);
        cli_engine_free(e);
        return false;
    }
    return true;
}

void cli_engine_free(cli_engine *e) {
    slm_ctx_free(e->ctx);
    slm_tokenizer_free(e->tok);
    slm_model_free(e->model);
    memset(e, 0, sizeof *e);
}

bool cli_parse_ids(const char *cmd, const char *s, int32_t **ids, int *n) {
    int cap = 16, cnt = 0;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    if (!v) return cli_fail(cmd, "out of memory"), false;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (errno || end == p || x < 0 || x > INT32_MAX || (*end && *end != ',')) {
            free(v);
            cli_fail(cmd, "--ids: '%s' is not a comma-separated list of token ids", s);
            return false;
        }
        if (cnt == cap) {
            int32_t *nv = realloc(v, (size_t)(cap *= 2) * sizeof *v);
            if (!nv) {
                free(v);
                return cli_fail(cmd, "out of memory"), false;
            }
            v = nv;
        }
        v[cnt++] = (int32_t)x;
        p = *end ? end + 1 : end;
    }
    if (cnt == 0) {
        free(v);
        cli_fail(cmd, "--ids: empty list");
        return false;
    }
    *ids = v;
    *n = cnt;
    return true;
}

char *cli_read_file(const char *cmd, const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_fail(cmd, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = cap > ((size_t)1 << 31) ? NULL : realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - 1 - n, f);
        n += r;
        if (r == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf || err) {
        free(buf);
        cli_fail(cmd, "%s: read failed%s", path, buf ? "" : " (file too large or out of memory)");
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

bool cli_check_output(const char *cmd, const char *in, const char *out) {
    struct stat si, so;
    if (!strcmp(in, out) ||
        (stat(in, &si) == 0 && stat(out, &so) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino)) {
        cli_fail(cmd, "output %s is the input file; choose another name", out);
        return false;
    }
    if (stat(out, &so) == 0 && S_ISDIR(so.st_mode)) {
        cli_fail(cmd, "output %s is a directory", out);
        return false;
    }
    char dir[4096];
    const char *slash = strrchr(out, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == out) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - out), out);
    struct stat sd;
    if (stat(dir, &sd) != 0 || !S_ISDIR(sd.st_mode)) {
        cli_fail(cmd, "output directory %s does not exist", dir);
        return false;
    }
    if (access(dir, W_OK) != 0) {
        cli_fail(cmd, "output directory %s is not writable: %s", dir, strerror(errno));
        return false;
    }
    return true;
}
