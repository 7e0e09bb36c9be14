/* cmd_tokenize.c - `slimlm tokenize`: show how the model's tokenizer splits a text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common.h"
#include "compress/pack.h"
#include "core/paths.h"

static const char *const usage =
    "usage: slimlm tokenize [-m MODEL] (-p TEXT | -f FILE) [--ids] [--add-special] [--no-special]\n"
    "\n"
    "Tokenize a text with the model's tokenizer and print one token per line (id and piece),\n"
    "or with --ids the ids as a list.\n"
    "\n"
    "  -m, --model PATH   GGUF or packed file (default: the fetched SmolLM2-135M-Instruct)\n"
    "  -p, --prompt TEXT  text to tokenize\n"
    "  -f, --file PATH    read the text from a file\n"
    "  --ids              print only the ids, as [1, 2, 3]\n"
    "  --add-special      add BOS/EOS as the model's tokenizer asks\n"
    "  --no-special       treat special-token text as plain text\n"
    "  -h, --help         this help\n";

int cmd_tokenize(int argc, char **argv) {
    const char *cmd = "tokenize", *model = NULL, *prompt = NULL, *file = NULL;
    bool ids_only = false, add_special = false, parse_special = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(model = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!(prompt = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (!(file = cli_value(cmd, argc, argv, &i))) return 1;
        } else if (!strcmp(a, "--ids")) {
            ids_only = true;
        } else if (!strcmp(a, "--add-special")) {
            add_special = true;
        } else if (!strcmp(a, "--no-special")) {
            parse_special = false;
        } else {
            return cli_fail(cmd, "unknown option '%s' (see --help)", a);
        }
    }
    if (!!prompt + !!file != 1) return cli_fail(cmd, "give exactly one of -p or -f (see --help)");
    size_t len = 0;
    char *text = NULL;
    if (file && !(text = cli_read_file(cmd, file, &len))) return 1;
    if (prompt) len = strlen(prompt);
    slm_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 1;
    char def[4096];
    slm_gguf *g = NULL;
    const char *path = model ? model : slm_default_model_path(def, sizeof def);
    slm_status s = slm_pack_open_gguf(path, &g);
    if (!s) s = slm_tokenizer_load(g, &tok);
    if (!s) s = slm_tokenizer_encode(tok, prompt ? prompt : text, len, add_special, parse_special, &ids, &n);
    if (s) {
        cli_fail_status(cmd, s);
        goto out;
    }
    if (ids_only) {
        putchar('[');
        for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
        puts("]");
    } else {
        for (size_t i = 0; i < n; i++) {
            char piece[256];
            int pl = slm_tokenizer_piece(tok, ids[i], true, piece, sizeof piece);
            printf("%6d -> '", ids[i]);
            for (int j = 0; j < pl && j < (int)sizeof piece; j++) {
                unsigned char c = (unsigned char)piece[j];
                if (c == '\n') fputs("\\n", stdout);
                else if (c == '\t') fputs("\\t", stdout);
                else if (c < 0x20) printf("\\x%02x", c);
                else putchar(c);
            }
            puts("'");
        }
    }
    rc = 0;
out:
    free(ids);
    free(text);
    slm_tokenizer_free(tok);
    slm_gguf_free(g);
    return rc;
}
