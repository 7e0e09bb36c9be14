/* codebook.h - clustered weight formats (ids SLM_DT_CB_FIRST ..): indices into a codebook: traits and layouts. */
#ifndef SLM_CODEBOOK_H
#define SLM_CODEBOOK_H

#include <stdint.h>

#include "dtype.h"

/* Traits of codebook dtype t, or NULL if t is not one. */
const slm_dtype_traits *slm_cb_traits(uint32_t t);
/* Activation dtype the kernels of codebook dtype t take, or -1. */
int slm_cb_act_type(uint32_t t);

#endif
