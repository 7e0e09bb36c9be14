/* chat.h - turning a conversation into the prompt text the model was trained on.
 *
 * GGUF files carry a Jinja chat template (tokenizer.chat_template). We do not run Jinja:
 * we recognize the common template families by their markers and render them with code.
 * A template we do not recognize is an error naming the problem, never a silent guess. */
#ifndef SLM_CHAT_H
#define SLM_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "../core/status.h"

typedef enum {
    SLM_CHAT_CHATML = 0, /* <|im_start|>role\n...<|im_end|>\n  (SmolLM2, Qwen2) */
    SLM_CHAT_LLAMA2,     /* <s>[INST] <<SYS>>...<</SYS>> ... [/INST] */
    SLM_CHAT_LLAMA3,     /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    SLM_CHAT_ZEPHYR,     /* <|user|>\n...</s>\n */
    SLM_CHAT_GEMMA,      /* <start_of_turn>user\n...<end_of_turn>\n */
    SLM_CHAT_PHI3,       /* <|user|>\n...<|end|>\n */
    SLM_CHAT_COUNT
} slm_chat_kind;

typedef struct {
    slm_chat_kind kind;
    char default_system[512]; /* system message the template inserts when none is given ("" if none) */
} slm_chat_template;

typedef struct {
    const char *role; /* "system", "user" or "assistant" */
    const char *content;
} slm_chat_msg;

/* Recognize a template by its text. SLM_ERR_UNSUPPORTED (with a message) if unknown. */
slm_status slm_chat_detect(const char *tmpl, size_t len, slm_chat_template *out);
/* Template by name ("chatml", "llama2", "llama3", "zephyr", "gemma", "phi3"). */
slm_status slm_chat_by_name(const char *name, slm_chat_template *out);
const char *slm_chat_kind_name(slm_chat_kind k);

/* Render messages; add_generation_prompt appends the assistant header so the model answers.
 * *out is malloc'd (free() it). Rendering is prefix-stable: rendering a conversation extended
 * by more messages starts with the rendering of the shorter one (without generation prompt,
 * or with it when the next message is the assistant's). */
slm_status slm_chat_render(const slm_chat_template *t, const slm_chat_msg *msgs, int n, bool add_generation_prompt,
                           char **out);

#endif
