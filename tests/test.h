/* test.h - a minimal test harness: CHECK counts, the summary line is what tests/run.sh reads. */
#ifndef SLM_TEST_H
#define SLM_TEST_H

#include <stdio.h>
#include <stdlib.h>

#include "core/paths.h"

static int t_passed, t_failed;

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        if (cond) {                                                       \
            t_passed++;                                                   \
        } else {                                                          \
            t_failed++;                                                   \
            fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);         \
            fprintf(stderr, __VA_ARGS__);                                 \
            fputc('\n', stderr);                                          \
        }                                                                 \
    } while (0)

/* Print "<name>: N passed, M failed" and return the process exit code. */
static inline int test_summary(const char *name) {
    printf("%s: %d passed, %d failed\n", name, t_passed, t_failed);
    return t_failed ? 1 : 0;
}

/* Path of the real model fixture (same rule as the CLI). */
static inline const char *test_model_path(void) {
    static char buf[4096];
    return slm_default_model_path(buf, sizeof buf);
}

#endif
