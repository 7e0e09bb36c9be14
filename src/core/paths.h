/* paths.h - where the default model lives. */
#ifndef SLM_PATHS_H
#define SLM_PATHS_H

#include <stddef.h>

#define SLM_DEFAULT_MODEL_NAME "SmolLM2-135M-Instruct.Q4_1.gguf"

/* The default model path: $SLIMLM_MODEL if set, else the cache directory used by
 * scripts/fetch-model.sh ($SLIMLM_CACHE, else $XDG_CACHE_HOME/slimlm, else ~/.cache/slimlm)
 * followed by SLM_DEFAULT_MODEL_NAME. Returns buf. */
char *slm_default_model_path(char *buf, size_t cap);

#endif
