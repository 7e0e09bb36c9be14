/* cmd_pack.c - `slimlm pack` / `slimlm unpack`: lossless entropy-coded model files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "common.h"
#include "compress/pack.h"
#include "core/dtype.h"
#include "core/gguf.h"

static const char *const pack_usage =
    "usage: slimlm pack IN OUT [--codec auto|zstd|own|raw] [--level N] [-q]\n"
    "\n"
    "Write a packed copy of the GGUF model IN to OUT: the file's exact bytes cut into the\n"
    "header/metadata and one segment per tensor (with the padding after it), each coded on its\n"
    "own with a CRC-32, plus the SHA-256 of the whole file. `slimlm unpack` restores IN byte for\n"
    "byte; every command that loads a model (run, chat, logits, ...) reads OUT directly.\n"
    "Prints bytes in/out, ratio and the codecs used per tensor type.\n"
    "\n"
    "  --codec C   auto (default: the smallest of the three per tensor), zstd, own (slimlm's\n"
    "              coder: block fields split into streams, static rANS), raw (stored)\n"
    "  --level N   zstd level, 1..19 (default 3)\n"
    "  -q, --quiet no progress and no table (totals only)\n"
    "  -h, --help  this help\n";

static const char *const unpack_usage =
    "usage: slimlm unpack IN OUT\n"
    "\n"
    "Restore the original GGUF file of the packed model IN into OUT (written atomically). Every\n"
    "segment's CRC-32 and the whole file's SHA-256 are verified; on any mismatch nothing is\n"
    "written and the error names the tensor.\n"
    "\n"
    "  -h, --help  this help\n";

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void progress(void *ud, size_t done, size_t total) {
    (void)ud;
    fprintf(stderr, "\rpack: %zu/%zu segments", done, total);
    if (done == total) fputs("\r\033[K", stderr);
}

/* One row of the summary: a tensor type. */
typedef struct {
    uint32_t dtype;
    size_t n;
    uint64_t raw, coded;
    size_t by_codec[SLM_PACK_CODEC_COUNT];
} type_row;

static void print_summary(const slm_pack_seg_info *info, size_t n, bool table, double secs, const char *out) {
    type_row *rows = calloc(n, sizeof *rows);
    size_t nr = 0;
    uint64_t raw = 0, coded = SLM_PACK_HEADER_BYTES;
    for (size_t i = 0; i < n; i++) {
        if (rows) {
            size_t r = 0;
            while (r < nr && rows[r].dtype != info[i].dtype) r++;
            if (r == nr) rows[nr++].dtype = info[i].dtype;
            rows[r].n++;
            rows[r].raw += info[i].raw;
            rows[r].coded += info[i].coded;
            rows[r].by_codec[info[i].codec]++;
        }
        raw += info[i].raw;
        coded += info[i].coded;
    }
    if (table && rows) {
        printf("%-10s %8s %14s %14s %7s  %s\n", "type", "segments", "bytes in", "bytes out", "ratio", "codecs");
        for (size_t r = 0; r < nr; r++) {
            char codecs[96] = "";
            size_t k = 0;
            for (int c = 0; c < SLM_PACK_CODEC_COUNT; c++)
                if (rows[r].by_codec[c])
                    k += (size_t)snprintf(codecs + k, sizeof codecs - k, "%s%s %zu", k ? ", " : "",
                                          slm_pack_codec_name(c), rows[r].by_codec[c]);
            const char *name = rows[r].dtype == SLM_PACK_DTYPE_META ? "metadata" : slm_dtype_name(rows[r].dtype);
            printf("%-10s %8zu %14llu %14llu %7.3f  %s\n", name, rows[r].n, (unsigned long long)rows[r].raw,
                   (unsigned long long)rows[r].coded, rows[r].coded ? (double)rows[r].raw / (double)rows[r].coded : 0.0,
                   codecs);
        }
    }
    printf("total: %zu segments, %llu -> %llu bytes, ratio %.3f (%.1f%% of the input), %.2f s\n", n,
           (unsigned long long)raw, (unsigned long long)coded, (double)raw / (double)coded,
           100.0 * (double)coded / (double)(raw ? raw : 1), secs);
    printf("wrote %s\n", out);
    free(rows);
}

int cmd_pack(int argc, char **argv) {
    const char *cmd = "pack", *in = NULL, *out = NULL;
    slm_pack_opts o = {.codec = SLM_PACK_AUTO, .level = 3};
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long l;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(pack_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--codec")) {
            if (!(v = cli_value(cmd, argc, argv, &i))) return 2;
            if (!strcmp(v, "auto")) o.codec = SLM_PACK_AUTO;
            else if (!strcmp(v, "zstd")) o.codec = SLM_PACK_ZSTD;
            else if (!strcmp(v, "own")) o.codec = SLM_PACK_OWN;
            else if (!strcmp(v, "raw")) o.codec = SLM_PACK_RAW;
            else return cli_fail(cmd, "--codec: '%s' is not auto, zstd, own or raw", v), 2;
        } else if (!strcmp(a, "--level")) {
            if (!(v = cli_value(cmd, argc, argv, &i)) || !cli_int(cmd, a, v, 1, 19, &l)) return 2;
            o.level = (int)l;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = true;
        } else if (a[0] == '-' && a[1]) {
            return cli_fail(cmd, "unknown option '%s' (see --help)", a), 2;
        } else if (!in) {
            in = a;
        } else if (!out) {
            out = a;
        } else {
            return cli_fail(cmd, "unexpected argument '%s' (usage: slimlm pack IN OUT)", a), 2;
        }
    }
    if (!in || !out) return cli_fail(cmd, "need IN and OUT (usage: slimlm pack IN OUT [options])"), 2;
    slm_gguf *g = NULL;
    slm_status s = slm_gguf_open(in, &g);
    if (s) {
        if (slm_pack_is_packed_file(in)) return cli_fail(cmd, "%s is already packed", in);
        return cli_fail_status(cmd, s);
    }
    if (!cli_check_output(cmd, in, out)) {
        slm_gguf_free(g);
        return 1;
    }
    if (!quiet && isatty(2)) o.progress = progress;
    slm_pack_seg_info *info = NULL;
    size_t n = 0;
    double t0 = now();
    s = slm_pack_write(g, out, &o, &info, &n);
    slm_gguf_free(g);
    if (s) {
        if (o.progress) fputs("\r\033[K", stderr);
        return cli_fail_status(cmd, s);
    }
    print_summary(info, n, !quiet, now() - t0, out);
    free(info);
    return 0;
}

int cmd_unpack(int argc, char **argv) {
    const char *cmd = "unpack", *in = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(unpack_usage, stdout);
            return 0;
        } else if (a[0] == '-' && a[1]) {
            return cli_fail(cmd, "unknown option '%s' (see --help)", a), 2;
        } else if (!in) {
            in = a;
        } else if (!out) {
            out = a;
        } else {
            return cli_fail(cmd, "unexpected argument '%s' (usage: slimlm unpack IN OUT)", a), 2;
        }
    }
    if (!in || !out) return cli_fail(cmd, "need IN and OUT (usage: slimlm unpack IN OUT)"), 2;
    if (!cli_check_output(cmd, in, out)) return 1;
    double t0 = now();
    slm_status s = slm_pack_unpack_file(in, out);
    if (s) return cli_fail_status(cmd, s);
    printf("unpacked %s -> %s (verified), %.2f s\n", in, out, now() - t0);
    return 0;
}
