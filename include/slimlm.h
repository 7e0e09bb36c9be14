/* slimlm.h - the library's public entry point.
 *
 * Include this to use libslimlm: it brings in the module headers a program needs to load a
 * GGUF model, tokenize, run the forward pass, sample, chat, and measure perplexity. Every
 * fallible call returns an slm_status; slm_last_error() says what went wrong. */
#ifndef SLIMLM_H
#define SLIMLM_H

#define SLM_VERSION "0.1.0"

#include "core/status.h"
#include "core/gguf.h"
#include "core/dtype.h"
#include "core/threadpool.h"
#include "model/model.h"
#include "model/forward.h"
#include "model/tokenizer.h"
#include "model/sampler.h"
#include "model/chat.h"
#include "model/generate.h"
#include "eval/perplexity.h"

#endif
