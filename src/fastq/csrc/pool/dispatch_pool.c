/* The pool family's per-ISA table (AVX-512 machines run the AVX2 pooling: memory bound). */
#include <stddef.h>
#include "pool.h"

const fq_pool_kernels *fq_pool_kernels_scalar(void);
#ifdef FQ_COMPILE_AVX2
void fq_max_pool_nhwc_avx2(const fq_pool_geometry *g, const uint8_t *x, uint8_t *y);
void fq_plane_sums_avx2(const uint8_t *x, int64_t planes, int64_t hw, int32_t *sums);
static const fq_pool_kernels avx2_pool = {"avx2", fq_max_pool_nhwc_avx2, fq_plane_sums_avx2};
#endif

const fq_pool_kernels *fq_pool_kernels_for(int backend) {
    switch (backend) {
    case FQ_BACKEND_SCALAR: return fq_pool_kernels_scalar();
#ifdef FQ_COMPILE_AVX2
    case FQ_BACKEND_AVX2:
    case FQ_BACKEND_AVX512VNNI: return &avx2_pool;
#endif
    default: return NULL;
    }
}
