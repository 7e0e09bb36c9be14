/* status.h - one error convention for the whole library.
 *
 * Every fallible function returns an slm_status. The failing function records a one-line
 * message (what was wrong and where) with slm_error(); callers read it with slm_last_error().
 * The message buffer is thread-local, so threads do not clobber each other's errors. */
#ifndef SLM_STATUS_H
#define SLM_STATUS_H

typedef enum {
    SLM_OK = 0,
    SLM_ERR_IO,          /* open/read/write/mmap failed */
    SLM_ERR_FORMAT,      /* malformed input file or data */
    SLM_ERR_UNSUPPORTED, /* well-formed but not supported (dtype, architecture, template) */
    SLM_ERR_NOMEM,       /* allocation failed */
    SLM_ERR_ARG,         /* bad argument from the caller or the user */
    SLM_ERR_NOT_FOUND,   /* a key, tensor or token that does not exist */
    SLM_ERR_FULL,        /* a fixed-size resource (KV pool, context) is exhausted */
    SLM_ERR_COUNT
} slm_status;

/* Stable name of a status ("ok", "io", "format", ...). */
const char *slm_status_name(slm_status s);

/* Record a printf-style message for the current thread and return s (for `return slm_error(...)`). */
slm_status slm_error(slm_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Prefix the current thread's message with "prefix: " (adds context on the way up); returns s. */
slm_status slm_error_prefix(slm_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The last message recorded on this thread ("" if none). */
const char *slm_last_error(void);

#endif
