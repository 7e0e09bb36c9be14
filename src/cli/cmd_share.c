/* cmd_share.c - `slimlm share`: convert a model to cross-layer shared weights with optional
 * per-layer low-rank deltas; the output runs in every command unchanged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common.h"
#include "compress/pack.h"
#include "compress/share.h"
#include "core/dtype.h"
#include "core/gguf.h"
#include "core/paths.h"

static const char *const usage =
    "usage: slimlm share -m IN -o OUT (--groups N | --loop K | --keep-layers LIST | --kv-share G)\n"
    "                    [--rank R] [--identity] [options]\n"
    "\n"
    "Parameter sharing across layers. Several layers use one stored set of matrices (q, k, v,\n"
    "o, gate, up, down), mapped once; each layer keeps its own norms and can add a low-rank\n"
    "delta W_l = W_shared + B_l A_l, applied as a side product (x -> A_l x -> B_l (A_l x)).\n"
    "Prints each layer's reconstruction error (relative Frobenius over its seven matrices).\n"
    "\n"
    "  -m, --model IN       input model, a GGUF or packed file (default: the fetched\n"
    "                       SmolLM2-135M-Instruct)\n"
    "  -o, --out OUT        output file (written atomically; must differ from IN)\n"
    "  --groups N           N groups of adjacent layers share (30 layers, N 15: pairs)\n"
    "  --loop K             K unique layers repeated: layer l uses layer l mod K\n"
    "  --keep-layers LIST   only these layers store matrices (e.g. 0,1,20-29); every other layer\n"
    "                       uses the last kept layer before it (default init: source; keep\n"
    "                       layer 0 to heal the result with `slimlm distill`)\n"
    "  --kv-share G         cross-layer attention: in each group of G adjacent layers the\n"
    "                       later ones attend to the first one's keys and values (no wk / wv\n"
    "                       of their own; the KV cache shrinks G-fold); combines with the above\n"
    "  --rank R             per-layer delta rank from a truncated SVD of W_l - W_shared\n"
    "                       (default 0: none; clipped to min(rows, cols) of each matrix)\n"
    "  --init mean|best|source  shared matrix: the group mean (default), the member closest to\n"
    "                       the others, or the storing layer's own matrices\n"
    "  --identity           layers that use another layer's matrices start as the identity\n"
    "                       (attention norm and value bias zero, FFN norm x 1e-3), so they add\n"
    "                       (nearly) nothing until trained: with --init source the model starts\n"
    "                       as its stored layers alone (the depth-pruned model), and\n"
    "                       `slimlm distill --student` heals from there\n"
    "  --type f16|f32       dtype of the shared matrices (default f16; quantize the output\n"
    "                       afterwards with `slimlm quantize`, which keeps the deltas)\n"
    "  --delta-type f16|f32 dtype of the deltas (default f16)\n"
    "  --seed N             SVD sketch seed (default 1)\n"
    "  -q, --quiet          no progress and no table\n"
    "  -h, --help           this help\n";

static const char *cmd = "share";

enum { MAX_KEEP = 4096 };

/* "0,1,20-29" -> ascending layer indices; false on bad syntax, descending or repeated entries */
static bool parse_layers(const char *s, int *out, int *n) {
    *n = 0;
    while (*s) {
        char *end;
        long a = strtol(s, &end, 10), b;
        if (end == s || a < 0 || a >= MAX_KEEP) return false;
        b = a;
        s = end;
        if (*s == '-') {
            b = strtol(s + 1, &end, 10);
            if (end == s + 1 || b < a || b >= MAX_KEEP) return false;
            s = end;
        }
        for (long l = a; l <= b; l++) {
            if (*n == MAX_KEEP || (*n && l <= out[*n - 1])) return false;
            out[(*n)++] = (int)l;
        }
        if (*s == ',') s++;
        else if (*s) return false;
    }
    return *n > 0;
}

static bool float_type(const char *s, uint32_t *t) {
    if (!strcmp(s, "f16")) *t = SLM_DT_F16;
    else if (!strcmp(s, "f32")) *t = SLM_DT_F32;
    else return false;
    return true;
}

int cmd_share(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *val;
    long groups = 0, loop = 0, rank = 0, seed = 1, kv_share = 0;
    bool quiet = false, init_set = false;
    int keep[MAX_KEEP], n_keep = 0;
    slm_share_opts o = {.mat_type = SLM_DT_F16, .delta_type = SLM_DT_F16};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(in = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--out")) {
            if (!(out = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--groups")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 1, 1 << 16, &groups)) return 1;
        } else if (!strcmp(a, "--loop")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 1, 1 << 16, &loop)) return 1;
        } else if (!strcmp(a, "--kv-share")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 2, 1 << 16, &kv_share)) return 1;
        } else if (!strcmp(a, "--rank")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 0, 4096, &rank)) return 1;
        } else if (!strcmp(a, "--init")) {
            if (!(val = cli_value(cmd, argc, argv, &i))) return 1;
            init_set = true;
            if (!strcmp(val, "best")) o.init_best = true;
            else if (!strcmp(val, "source")) o.init_source = true;
            else if (strcmp(val, "mean")) return cli_fail(cmd, "--init '%s': use mean, best or source", val);
        } else if (!strcmp(a, "--identity")) {
            o.identity = true;
        } else if (!strcmp(a, "--keep-layers")) {
            if (!(val = cli_value(cmd, argc, argv, &i))) return 1;
            if (!parse_layers(val, keep, &n_keep)) return cli_fail(cmd, "--keep-layers '%s': expected a list like 0,1,20-29", val);
        } else if (!strcmp(a, "--type")) {
            if (!(val = cli_value(cmd, argc, argv, &i))) return 1;
            if (!float_type(val, &o.mat_type)) return cli_fail(cmd, "--type '%s': use f16 or f32", val);
        } else if (!strcmp(a, "--delta-type")) {
            if (!(val = cli_value(cmd, argc, argv, &i))) return 1;
            if (!float_type(val, &o.delta_type)) return cli_fail(cmd, "--delta-type '%s': use f16 or f32", val);
        } else if (!strcmp(a, "--seed")) {
            if (!(val = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, val, 0, 0x7fffffff, &seed)) return 1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = true;
        } else {
            return cli_fail(cmd, "unknown option '%s' (see --help)", a);
        }
    }
    if ((groups > 0) + (loop > 0) + (n_keep > 0) > 1)
        return cli_fail(cmd, "--groups, --loop and --keep-layers exclude each other");
    if (!groups && !loop && !n_keep && !kv_share)
        return cli_fail(cmd, "give --groups N, --loop K, --keep-layers LIST or --kv-share G");
    if (n_keep && !init_set) o.init_source = true;
    o.keep = keep;
    o.n_keep = n_keep;
    char default_path[4096];
    if (!in && !(in = slm_default_model_path(default_path, sizeof default_path)))
        return cli_fail(cmd, "no input model (-m IN)");
    if (!out) return cli_fail(cmd, "no output file (-o OUT)");
    if (!cli_check_output(cmd, in, out)) return 1;
    o.groups = (int)groups;
    o.loop = (int)loop;
    o.rank = (int)rank;
    o.kv_share = (int)kv_share;
    o.seed = (uint64_t)seed;
    o.progress = quiet ? 0 : 1;
    slm_gguf *g;
    slm_status s = slm_pack_open_gguf(in, &g);
    if (s) return cli_fail(cmd, "%s", slm_last_error());
    s = slm_share_convert(g, &o, out, quiet ? NULL : stdout);
    slm_gguf_free(g);
    if (s) return cli_fail(cmd, "%s", slm_last_error());
    if (!quiet) printf("wrote %s\n", out);
    return 0;
}
