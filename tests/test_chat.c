/* test_chat.c - chat template detection and rendering. */
#include <stdlib.h>
#include <string.h>

#include "model/chat.h"
#include "test.h"

/* SmolLM2-Instruct's template (from the model file). */
static const char *smollm_tmpl =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' "
    "+ message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}";

static char *render(const slm_chat_template *t, const slm_chat_msg *m, int n, bool gen) {
    char *out = NULL;
    slm_status s = slm_chat_render(t, m, n, gen, &out);
    CHECK(s == SLM_OK, "render: %s", slm_last_error());
    return out;
}

int main(void) {
    slm_chat_template t;
    CHECK(slm_chat_detect(smollm_tmpl, strlen(smollm_tmpl), &t) == SLM_OK && t.kind == SLM_CHAT_CHATML, "chatml");
    CHECK(!strcmp(t.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face"),
          "default system prompt extracted: '%s'", t.default_system);

    slm_chat_msg conv[] = {{"user", "Hi"}, {"assistant", "Hello!"}, {"user", "What is 2+2?"}};
    char *s = render(&t, conv, 1, true);
    CHECK(s && !strcmp(s, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
                          "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
          "chatml render: %s", s);
    /* prefix stability across turns */
    char *s3 = render(&t, conv, 3, true);
    CHECK(s && s3 && !strncmp(s3, s, strlen(s)), "turn 1 prompt is a prefix of turn 2 prompt");
    free(s);
    free(s3);
    slm_chat_msg sys[] = {{"system", "Be brief."}, {"user", "Hi"}};
    s = render(&t, sys, 2, false);
    CHECK(s && !strcmp(s, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"),
          "explicit system replaces the default: %s", s);
    free(s);

    struct {
        const char *tmpl;
        slm_chat_kind kind;
    } fams[] = {
        {"{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}", SLM_CHAT_LLAMA3},
        {"{{ '<start_of_turn>' + role + '\n' }}", SLM_CHAT_GEMMA},
        {"{{ '<|user|>\n' + message['content'] + '<|end|>\n' }}", SLM_CHAT_PHI3},
        {"{{ '<|user|>\n' + message['content'] + eos_token }}", SLM_CHAT_ZEPHYR},
        {"{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}", SLM_CHAT_LLAMA2},
    };
    for (size_t i = 0; i < sizeof fams / sizeof *fams; i++)
        CHECK(slm_chat_detect(fams[i].tmpl, strlen(fams[i].tmpl), &t) == SLM_OK && t.kind == fams[i].kind,
              "family %zu detected", i);
    CHECK(slm_chat_detect("{{ messages }}", 14, &t) == SLM_ERR_UNSUPPORTED && strstr(slm_last_error(), "--template"),
          "unknown template is an error that names the way out");
    CHECK(slm_chat_detect(NULL, 0, &t) == SLM_ERR_UNSUPPORTED, "missing template is an error");

    CHECK(slm_chat_by_name("llama3", &t) == SLM_OK, "by name");
    s = render(&t, conv, 1, true);
    CHECK(s && !strcmp(s, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                          "<|start_header_id|>assistant<|end_header_id|>\n\n"),
          "llama3 render: %s", s);
    free(s);
    CHECK(slm_chat_by_name("llama2", &t) == SLM_OK, "by name");
    s = render(&t, sys, 2, true);
    CHECK(s && !strcmp(s, "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]"), "llama2 render: %s", s);
    free(s);
    CHECK(slm_chat_by_name("gemma", &t) == SLM_OK, "by name");
    s = render(&t, conv, 2, true);
    CHECK(s && !strcmp(s, "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
                          "<start_of_turn>model\n"),
          "gemma render: %s", s);
    free(s);
    CHECK(slm_chat_by_name("vicuna", &t) == SLM_ERR_ARG, "unknown name rejected");
    slm_chat_msg bad[] = {{"robot", "x"}};
    char *o = NULL;
    CHECK(slm_chat_render(&t, bad, 1, true, &o) == SLM_ERR_ARG && o == NULL, "unknown role rejected");
    return test_summary("test_chat");
}
