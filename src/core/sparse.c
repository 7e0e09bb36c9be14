/* sparse.c - sparse weight formats. */
#include "core/sparse.h"

const slm_dtype_traits *slm_sp_traits(uint32_t t) {
    (void)t;
    return NULL;
}

int slm_sp_act_type(uint32_t t) {
    (void)t;
    return -1;
}
