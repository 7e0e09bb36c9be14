/* strbuf.c - growable text buffer. */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void slm_sb_printf(slm_sb *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 1024;
        while (cap - b->len <= (size_t)n) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

void slm_sb_json_str(slm_sb *b, const char *s) {
    slm_sb_printf(b, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') slm_sb_printf(b, "\\%c", *c);
        else if (*c < 0x20) slm_sb_printf(b, "\\u%04x", *c);
        else slm_sb_printf(b, "%c", *c);
    }
    slm_sb_printf(b, "\"");
}

void slm_sb_free(slm_sb *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}
