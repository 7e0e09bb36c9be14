/* codebook.c - clustered weight formats. */
#include "core/codebook.h"

const slm_dtype_traits *slm_cb_traits(uint32_t t) {
    (void)t;
    return NULL;
}

int slm_cb_act_type(uint32_t t) {
    (void)t;
    return -1;
}
