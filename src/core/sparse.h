/* sparse.h - slimlm's sparse weight formats (ids SLM_DT_SP_FIRST ..): traits and layouts. */
#ifndef SLM_SPARSE_H
#define SLM_SPARSE_H

#include <stdint.h>

#include "dtype.h"

/* Traits of sparse dtype t, or NULL if t is not one. */
const slm_dtype_traits *slm_sp_traits(uint32_t t);
/* Activation dtype the kernels of sparse dtype t take, or -1. */
int slm_sp_act_type(uint32_t t);

#endif
