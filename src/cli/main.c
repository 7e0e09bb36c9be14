/* main.c - `slimlm <command>`: dispatch only. */
#include <stdio.h>
#include <string.h>

#include "commands.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"run", cmd_run, "generate text from a prompt"},
    {"chat", cmd_chat, "interactive multi-turn chat with the model's chat template"},
    {"info", cmd_info, "architecture, metadata and tensor table of a GGUF model"},
    {"perplexity", cmd_perplexity, "perplexity of a text; KL divergence against a base model"},
    {"tokenize", cmd_tokenize, "show the token ids and pieces of a text"},
    {"logits", cmd_logits, "write the logits of every position of a token sequence (raw f32)"},
    {"quantize", cmd_quantize, "re-quantize the weight matrices (llama.cpp types, group formats q4g128 ...)"},
    {"awq", cmd_awq, "activation-aware quantization: calibrate, search scales, fold, quantize"},
    {"cluster", cmd_cluster, "weight clustering: per-row k-means codebooks (cb4, cb8, cb16), LUT kernels"},
    {"share", cmd_share, "parameter sharing: layers that share stored matrices, low-rank per-layer deltas"},
    {"prune", cmd_prune, "remove weights: unstructured or 2:4 (magnitude, Wanda) into sparse formats; structured"},
    {"distill", cmd_distill, "knowledge distillation: train a smaller or LoRA student on a teacher's logits"},
    {"bench", cmd_bench, "prompt and generation speed (pp/tg tokens/s), memory bandwidth"},
    {"eval", cmd_eval, "size, perplexity and KL against a base for several models side by side"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server with continuous batching"},
    {"pack", cmd_pack, "lossless entropy-coded model file (loads directly; zstd or own coder)"},
    {"unpack", cmd_unpack, "restore the original GGUF file of a packed model, byte for byte"},
    {"compress", cmd_compress, "run a recipe of steps (prune, distill, awq, quantize, cluster, pack); model card"},
    {"report", cmd_report, "HTML page and PNG figures (gnuplot) from eval JSON: KL vs bits, Pareto frontier"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: slimlm <command> [options]   (slimlm <command> --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "slimlm: error: unknown command '%s' (see slimlm --help)\n", argv[1]);
    return 2;
}
