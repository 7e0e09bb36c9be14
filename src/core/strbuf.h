/* strbuf.h - a growable text buffer (for JSON documents and rendered prompts).
 * An allocation failure is remembered (oom) and makes later appends no-ops. */
#ifndef SLM_STRBUF_H
#define SLM_STRBUF_H

#include <stddef.h>

typedef struct {
    char *p;     /* NUL-terminated after the first append */
    size_t len, cap;
    int oom;
} slm_sb;

void slm_sb_printf(slm_sb *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Append s as a JSON string literal (quotes, escapes). */
void slm_sb_json_str(slm_sb *b, const char *s);
void slm_sb_free(slm_sb *b);

#endif
