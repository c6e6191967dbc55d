/* The public pooling calls: one look-up in the backend table, then that ISA's kernel. */
#include "pool/pool.h"

static const fq_pool_kernels *kernels(int isa) {
    return fq_kernels_run(FQ_FAMILY_POOL, isa)->pool;
}

void fq_max_pool_nhwc(int isa, const fq_pool_geometry *g, const uint8_t *x, uint8_t *y) {
    kernels(isa)->max_pool_nhwc(g, x, y);
}

void fq_plane_sums(int isa, const uint8_t *x, int64_t planes, int64_t hw, int32_t *sums) {
    kernels(isa)->plane_sums(x, planes, hw, sums);
}
