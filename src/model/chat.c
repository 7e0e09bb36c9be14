/* chat.c - chat template families, detected from the Jinja text and rendered in code. */
#include "chat.h"

#include "../core/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[SLM_CHAT_COUNT] = {
    [SLM_CHAT_CHATML] = "chatml", [SLM_CHAT_LLAMA2] = "llama2", [SLM_CHAT_LLAMA3] = "llama3",
    [SLM_CHAT_ZEPHYR] = "zephyr", [SLM_CHAT_GEMMA] = "gemma",   [SLM_CHAT_PHI3] = "phi3",
};

const char *slm_chat_kind_name(slm_chat_kind k) { return (unsigned)k < SLM_CHAT_COUNT ? kind_names[k] : "unknown"; }

static const char *find_n(const char *hay, size_t len, const char *needle) {
    size_t nl = strlen(needle);
    if (nl == 0 || nl > len) return NULL;
    for (size_t i = 0; i + nl <= len; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, nl) == 0) return hay + i;
    return NULL;
}

/* The ChatML families put a default system prompt in a literal like
 * '<|im_start|>system\nYou are ...<|im_end|>\n' guarded by "messages[0]['role'] != 'system'". */
static void extract_default_system(const char *t, size_t len, slm_chat_template *out) {
    out->default_system[0] = 0;
    if (!find_n(t, len, "!= 'system'") && !find_n(t, len, "!= \"system\"")) return;
    const char *marker = "<|im_start|>system\n";
    const char *s = find_n(t, len, marker);
    if (!s) return;
    s += strlen(marker);
    const char *e = find_n(s, len - (size_t)(s - t), "<|im_end|>");
    if (!e) return;
    size_t n = (size_t)(e - s);
    /* only a plain literal: no template expressions inside */
    if (find_n(s, n, "{{") || find_n(s, n, "{%") || find_n(s, n, "'") || n >= sizeof out->default_system) return;
    memcpy(out->default_system, s, n);
    out->default_system[n] = 0;
}

slm_status slm_chat_detect(const char *t, size_t len, slm_chat_template *out) {
    memset(out, 0, sizeof *out);
    if (!t || len == 0) return slm_error(SLM_ERR_UNSUPPORTED, "chat: the model has no chat template (use --template)");
    if (find_n(t, len, "<|im_start|>")) {
        out->kind = SLM_CHAT_CHATML;
        extract_default_system(t, len, out);
    } else if (find_n(t, len, "<|start_header_id|>")) {
        out->kind = SLM_CHAT_LLAMA3;
    } else if (find_n(t, len, "<start_of_turn>")) {
        out->kind = SLM_CHAT_GEMMA;
    } else if (find_n(t, len, "<|user|>") && find_n(t, len, "<|end|>")) {
        out->kind = SLM_CHAT_PHI3;
    } else if (find_n(t, len, "<|user|>")) {
        out->kind = SLM_CHAT_ZEPHYR;
    } else if (find_n(t, len, "[INST]")) {
        out->kind = SLM_CHAT_LLAMA2;
    } else {
        return slm_error(SLM_ERR_UNSUPPORTED,
                         "chat: unrecognized chat template (known: chatml, llama2, llama3, zephyr, gemma, phi3; "
                         "choose one with --template)");
    }
    return SLM_OK;
}

slm_status slm_chat_by_name(const char *name, slm_chat_template *out) {
    memset(out, 0, sizeof *out);
    for (int k = 0; k < SLM_CHAT_COUNT; k++)
        if (strcmp(name, kind_names[k]) == 0) {
            out->kind = (slm_chat_kind)k;
            return SLM_OK;
        }
    return slm_error(SLM_ERR_ARG, "chat: unknown template '%s' (chatml, llama2, llama3, zephyr, gemma, phi3)", name);
}

/* Append count strings. */
static void sb_addv(slm_sb *b, int count, ...) {
    va_list ap;
    va_start(ap, count);
    for (int i = 0; i < count; i++) slm_sb_printf(b, "%s", va_arg(ap, const char *));
    va_end(ap);
}

static void sb_add(slm_sb *b, const char *s) { slm_sb_printf(b, "%s", s); }

static bool valid_role(const char *r) {
    return strcmp(r, "system") == 0 || strcmp(r, "user") == 0 || strcmp(r, "assistant") == 0;
}

slm_status slm_chat_render(const slm_chat_template *t, const slm_chat_msg *msgs, int n, bool gen, char **out) {
    *out = NULL;
    for (int i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content || !valid_role(msgs[i].role))
            return slm_error(SLM_ERR_ARG, "chat: message %d has an unknown role '%s' (system, user, assistant)", i,
                             msgs[i].role ? msgs[i].role : "(null)");
    slm_sb b = {0};
    sb_add(&b, "");
    const bool has_sys = n > 0 && strcmp(msgs[0].role, "system") == 0;
    switch (t->kind) {
    case SLM_CHAT_CHATML:
        if (!has_sys && t->default_system[0] && (n > 0 || gen))
            sb_addv(&b, 3, "<|im_start|>system\n", t->default_system, "<|im_end|>\n");
        for (int i = 0; i < n; i++) sb_addv(&b, 5, "<|im_start|>", msgs[i].role, "\n", msgs[i].content, "<|im_end|>\n");
        if (gen) sb_add(&b, "<|im_start|>assistant\n");
        break;
    case SLM_CHAT_LLAMA3:
        sb_add(&b, "<|begin_of_text|>");
        for (int i = 0; i < n; i++)
            sb_addv(&b, 5, "<|start_header_id|>", msgs[i].role, "<|end_header_id|>\n\n", msgs[i].content, "<|eot_id|>");
        if (gen) sb_add(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case SLM_CHAT_GEMMA:
        /* Gemma has no system role: the system text is prepended to the first user turn. */
        for (int i = 0; i < n; i++) {
            if (strcmp(msgs[i].role, "system") == 0) {
                sb_addv(&b, 3, "<start_of_turn>user\n", msgs[i].content, "\n\n");
                if (i + 1 < n && strcmp(msgs[i + 1].role, "user") == 0) {
                    sb_addv(&b, 2, msgs[i + 1].content, "<end_of_turn>\n");
                    i++;
                } else {
                    sb_add(&b, "<end_of_turn>\n");
                }
                continue;
            }
            const char *role = strcmp(msgs[i].role, "assistant") == 0 ? "model" : "user";
            sb_addv(&b, 5, "<start_of_turn>", role, "\n", msgs[i].content, "<end_of_turn>\n");
        }
        if (gen) sb_add(&b, "<start_of_turn>model\n");
        break;
    case SLM_CHAT_ZEPHYR:
    case SLM_CHAT_PHI3: {
        const char *end = t->kind == SLM_CHAT_PHI3 ? "<|end|>\n" : "</s>\n";
        for (int i = 0; i < n; i++) sb_addv(&b, 5, "<|", msgs[i].role, "|>\n", msgs[i].content, end);
        if (gen) sb_add(&b, "<|assistant|>\n");
        break;
    }
    case SLM_CHAT_LLAMA2: {
        /* <s>[INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST] answer </s><s>[INST] user2 [/INST] */
        const char *sys = NULL;
        for (int i = 0; i < n; i++) {
            if (strcmp(msgs[i].role, "system") == 0) {
                sys = msgs[i].content;
            } else if (strcmp(msgs[i].role, "user") == 0) {
                sb_add(&b, "<s>[INST] ");
                if (sys) {
                    sb_addv(&b, 3, "<<SYS>>\n", sys, "\n<</SYS>>\n\n");
                    sys = NULL;
                }
                sb_addv(&b, 2, msgs[i].content, " [/INST]");
            } else {
                sb_addv(&b, 3, " ", msgs[i].content, " </s>");
            }
        }
        (void)gen; /* the assistant turn follows [/INST] directly */
        break;
    }
    default:
        free(b.p);
        return slm_error(SLM_ERR_ARG, "chat: bad template kind %d", (int)t->kind);
    }
    if (b.oom) {
        free(b.p);
        return slm_error(SLM_ERR_NOMEM, "chat: out of memory");
    }
    *out = b.p;
    return SLM_OK;
}
