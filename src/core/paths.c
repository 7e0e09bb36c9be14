/* paths.c - default model location, shared by the CLI and the tests. */
#include "paths.h"

#include <stdio.h>
#include <stdlib.h>

static const char *nonempty(const char *s) { return s && *s ? s : NULL; }

char *slm_default_model_path(char *buf, size_t cap) {
    const char *m = nonempty(getenv("SLIMLM_MODEL"));
    const char *c = nonempty(getenv("SLIMLM_CACHE"));
    const char *x = nonempty(getenv("XDG_CACHE_HOME"));
    const char *h = nonempty(getenv("HOME"));
    if (m) snprintf(buf, cap, "%s", m);
    else if (c) snprintf(buf, cap, "%s/%s", c, SLM_DEFAULT_MODEL_NAME);
    else if (x) snprintf(buf, cap, "%s/slimlm/%s", x, SLM_DEFAULT_MODEL_NAME);
    else snprintf(buf, cap, "%s/.cache/slimlm/%s", h ? h : ".", SLM_DEFAULT_MODEL_NAME);
    return buf;
}
