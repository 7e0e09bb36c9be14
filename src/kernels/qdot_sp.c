/* qdot_sp.c - binds the sparse formats' kernels to the tables. */
#include "qdot_impl.h"

void slm_qdot_sp_fill(slm_kernels *k, slm_isa isa) {
    (void)k;
    (void)isa;
}
