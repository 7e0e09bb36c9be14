/* cmd_info.c - `slimlm info`: what is inside a GGUF file. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "common.h"
#include "compress/pack.h"
#include "core/dtype.h"
#include "core/paths.h"

static const char *const usage =
    "usage: slimlm info [MODEL | -m MODEL] [--no-tensors] [--full]\n"
    "\n"
    "Print a GGUF model's architecture, metadata and tensor table (dtype, shape, bytes) with the\n"
    "total size and bits per weight. MODEL, a GGUF or packed file, defaults to the fetched\n"
    "SmolLM2-135M-Instruct; for a packed file one more line gives its size on disk.\n"
    "\n"
    "  --no-tensors   omit the tensor table\n"
    "  --full         print long strings and arrays in full (default: abbreviated)\n"
    "  -h, --help     this help\n";

/* Print a file string with control characters escaped, at most max bytes (0: all). */
static void print_str(slm_gguf_str s, size_t max) {
    size_t n = max && s.len > max ? max : (size_t)s.len;
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
    if (n < s.len) printf("... (%" PRIu64 " bytes)", s.len);
}

static void print_scalar_elem(uint32_t type, const uint8_t *p) {
    switch (type) {
    case SLM_GGUF_UINT8: printf("%u", p[0]); break;
    case SLM_GGUF_INT8: printf("%d", (int8_t)p[0]); break;
    case SLM_GGUF_UINT16: { uint16_t v; memcpy(&v, p, 2); printf("%u", v); break; }
    case SLM_GGUF_INT16: { int16_t v; memcpy(&v, p, 2); printf("%d", v); break; }
    case SLM_GGUF_UINT32: { uint32_t v; memcpy(&v, p, 4); printf("%u", v); break; }
    case SLM_GGUF_INT32: { int32_t v; memcpy(&v, p, 4); printf("%d", v); break; }
    case SLM_GGUF_FLOAT32: { float v; memcpy(&v, p, 4); printf("%g", v); break; }
    case SLM_GGUF_BOOL: printf("%s", p[0] ? "true" : "false"); break;
    case SLM_GGUF_UINT64: { uint64_t v; memcpy(&v, p, 8); printf("%" PRIu64, v); break; }
    case SLM_GGUF_INT64: { int64_t v; memcpy(&v, p, 8); printf("%" PRId64, v); break; }
    case SLM_GGUF_FLOAT64: { double v; memcpy(&v, p, 8); printf("%g", v); break; }
    default: printf("?");
    }
}


static void print_value(const slm_gguf_value *v, bool full) {
    switch (v->type) {
    case SLM_GGUF_STRING: print_str(v->str, full ? 0 : 120); break;
    case SLM_GGUF_BOOL: printf("%s", v->b ? "true" : "false"); break;
    case SLM_GGUF_FLOAT32:
    case SLM_GGUF_FLOAT64: printf("%g", v->f64); break;
    case SLM_GGUF_INT8:
    case SLM_GGUF_INT16:
    case SLM_GGUF_INT32:
    case SLM_GGUF_INT64: printf("%" PRId64, v->i64); break;
    case SLM_GGUF_ARRAY: {
        uint64_t show = full ? v->arr.n : (v->arr.n < 8 ? v->arr.n : 8);
        printf("%s[%" PRIu64 "] [", slm_gguf_vtype_name(v->arr.type), v->arr.n);
        for (uint64_t i = 0; i < show; i++) {
            if (i) printf(", ");
            if (v->arr.items) print_value(&v->arr.items[i], full);
            else print_scalar_elem(v->arr.type, v->arr.raw + i * slm_gguf_scalar_bytes(v->arr.type));
        }
        printf(show < v->arr.n ? ", ...]" : "]");
        break;
    }
    default: printf("%" PRIu64, v->u64);
    }
}

int cmd_info(int argc, char **argv) {
    const char *cmd = "info", *path = NULL;
    bool tensors = true, full = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(path = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--no-tensors")) {
            tensors = false;
        } else if (!strcmp(a, "--full")) {
            full = true;
        } else if (a[0] == '-') {
            return cli_fail(cmd, "unknown option '%s' (see --help)", a);
        } else if (!path) {
            path = a;
        } else {
            return cli_fail(cmd, "more than one model given");
        }
    }
    char def[4096];
    if (!path) path = slm_default_model_path(def, sizeof def);
    slm_gguf *g;
    slm_status s = slm_pack_open_gguf(path, &g);
    if (s) return cli_fail_status(cmd, s);

    printf("file:         %s\n", path);
    struct stat st;
    if (!g->map && stat(path, &st) == 0) /* opened from memory: a packed file, verified */
        printf("packed:       yes, %lld bytes on disk for %zu bytes of GGUF (%.1f%%)\n", (long long)st.st_size,
               g->size, g->size ? 100.0 * (double)st.st_size / (double)g->size : 0.0);
    printf("gguf:         version %u, %" PRIu64 " metadata keys, %" PRIu64 " tensors, alignment %zu, data at %zu\n",
           g->version, g->n_kv, g->n_tensors, g->alignment, g->data_offset);
    slm_config cfg;
    if (slm_config_from_gguf(g, &cfg) == SLM_OK) {
        printf("architecture: %s: %d layers, dim %d, ffn %d, heads %d (kv %d), head dim %d, context %d\n",
               cfg.arch_name, cfg.n_layers, cfg.dim, cfg.ffn_dim, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim,
               cfg.ctx_len);
        printf("              rope %s base %g dims %d scale %g, rms eps %g\n",
               cfg.rope_mode == SLM_ROPE_NEOX ? "neox" : "normal", cfg.rope_base, cfg.rope_dim, cfg.rope_scale,
               cfg.norm_eps);
    } else {
        printf("architecture: (not runnable: %s)\n", slm_last_error());
    }
    printf("\nmetadata:\n");
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const slm_gguf_kv *kv = &g->kv[i];
        printf("  ");
        for (uint64_t j = 0; j < kv->key.len; j++)
            putchar(isprint((unsigned char)kv->key.ptr[j]) ? kv->key.ptr[j] : '?');
        printf(" (%s) = ", slm_gguf_vtype_name(kv->value.type));
        print_value(&kv->value, full);
        putchar('\n');
    }
    uint64_t total_n = 0, total_b = 0, by_type_n[SLM_DT_COUNT] = {0}, by_type_b[SLM_DT_COUNT] = {0};
    if (tensors) printf("\n%-4s %-36s %-6s %-22s %12s\n", "#", "tensor", "dtype", "shape", "bytes");
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const slm_gguf_tensor *t = &g->tensors[i];
        uint64_t n = 1;
        char shape[64] = "[";
        for (uint32_t d = 0; d < t->n_dims; d++) {
            n *= (uint64_t)t->ne[d];
            char part[24];
            snprintf(part, sizeof part, d ? ", %" PRId64 : "%" PRId64, t->ne[d]);
            strncat(shape, part, sizeof shape - strlen(shape) - 2);
        }
        strcat(shape, "]");
        total_n += n;
        total_b += t->nbytes;
        if (t->type < SLM_DT_COUNT) {
            by_type_n[t->type] += n;
            by_type_b[t->type] += t->nbytes;
        }
        if (tensors) {
            char name[64];
            printf("%-4" PRIu64 " %-36s %-6s %-22s %12zu\n", i, slm_gguf_str_copy(t->name, name, sizeof name),
                   slm_dtype_name(t->type), shape, t->nbytes);
        }
    }
    printf("\nby dtype:\n");
    for (int t = 0; t < SLM_DT_COUNT; t++)
        if (by_type_n[t])
            printf("  %-6s %12" PRIu64 " weights %12" PRIu64 " bytes  %6.3f bits/weight\n", slm_dtype_name(t),
                   by_type_n[t], by_type_b[t], 8.0 * by_type_b[t] / by_type_n[t]);
    printf("total: %" PRIu64 " weights, %" PRIu64 " bytes (%.2f MiB), %.3f bits per weight; file %zu bytes\n",
           total_n, total_b, total_b / 1048576.0, total_n ? 8.0 * total_b / total_n : 0.0, g->size);
    slm_gguf_free(g);
    return 0;
}
