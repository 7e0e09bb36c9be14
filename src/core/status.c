/* status.c - error values and thread-local messages. */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char g_msg[512];

const char *slm_status_name(slm_status s) {
    static const char *names[SLM_ERR_COUNT] = {
        [SLM_OK] = "ok",
        [SLM_ERR_IO] = "io",
        [SLM_ERR_FORMAT] = "format",
        [SLM_ERR_UNSUPPORTED] = "unsupported",
        [SLM_ERR_NOMEM] = "out of memory",
        [SLM_ERR_ARG] = "bad argument",
        [SLM_ERR_NOT_FOUND] = "not found",
        [SLM_ERR_FULL] = "full",
    };
    if ((unsigned)s >= SLM_ERR_COUNT) return "unknown";
    return names[s];
}

slm_status slm_error(slm_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    return s;
}

slm_status slm_error_prefix(slm_status s, const char *fmt, ...) {
    char prefix[160], old[sizeof g_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_msg, sizeof old);
    size_t pl = strlen(prefix);
    if (pl + 2 >= sizeof g_msg) pl = sizeof g_msg - 3;
    memcpy(g_msg, prefix, pl);
    memcpy(g_msg + pl, ": ", 2);
    size_t ol = strnlen(old, sizeof old - 1), room = sizeof g_msg - pl - 3;
    if (ol > room) ol = room;
    memcpy(g_msg + pl + 2, old, ol);
    g_msg[pl + 2 + ol] = 0;
    return s;
}

const char *slm_last_error(void) { return g_msg; }
