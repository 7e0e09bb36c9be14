/* qdot_cb.c - binds the codebook formats' kernels to the tables. */
#include "qdot_impl.h"

void slm_qdot_cb_fill(slm_kernels *k, slm_isa isa) {
    (void)k;
    (void)isa;
}
