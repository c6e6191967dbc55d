/* The conv family's per-ISA table. Same rule as csrc/dispatch.c: each ISA file compiles its
 * own target; a backend the build lacks has no table (NULL). */
#include <stddef.h>
#include "conv.h"

const fq_conv_kernels *fq_conv_kernels_scalar(void);
#ifdef FQ_COMPILE_AVX2
void fq_dw_exact_avx2(const fq_dw_tile_geom *, int32_t, const uint8_t *, const fq_dw_weights *, int32_t, int32_t, int32_t *);
void fq_dw_saturate_avx2(const fq_dw_tile_geom *, int32_t, const uint8_t *, const fq_dw_weights *, int32_t, int32_t, int32_t *);
static const fq_conv_kernels avx2_table = {"avx2", fq_dw_exact_avx2, fq_dw_saturate_avx2};
#endif
#ifdef FQ_COMPILE_AVX512
void fq_dw_exact_avx512(const fq_dw_tile_geom *, int32_t, const uint8_t *, const fq_dw_weights *, int32_t, int32_t, int32_t *);
void fq_dw_saturate_avx512(const fq_dw_tile_geom *, int32_t, const uint8_t *, const fq_dw_weights *, int32_t, int32_t, int32_t *);
static const fq_conv_kernels avx512_table = {"avx512vnni", fq_dw_exact_avx512, fq_dw_saturate_avx512};
#endif

const fq_conv_kernels *fq_conv_kernels_for(int backend) {
    switch (backend) {
    case FQ_BACKEND_SCALAR: return fq_conv_kernels_scalar();
#ifdef FQ_COMPILE_AVX2
    case FQ_BACKEND_AVX2: return &avx2_table;
#endif
#ifdef FQ_COMPILE_AVX512
    case FQ_BACKEND_AVX512VNNI: return &avx512_table;
#endif
    default: return NULL;
    }
}
