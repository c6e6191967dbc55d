/* The public add / mul calls: one look-up in the backend table, then that ISA's kernel. */
#include "fastq.h"
#include "elementwise/elementwise.h"

static const fq_elementwise_kernels *kernels(int isa) {
    return fq_kernels_run(FQ_FAMILY_ELEMENTWISE, isa)->elementwise;
}

void fq_qadd_fbgemm(int isa, const void *a, const void *b, void *y, int64_t n, int64_t n_vec,
                    float a_scale, int32_t a_zero_point, float b_scale, int32_t b_zero_point,
                    float inv_scale, int32_t zero_point, int relu, int is_signed) {
    kernels(isa)->qadd_fbgemm(a, b, y, n, n_vec, a_scale, a_zero_point, b_scale, b_zero_point, inv_scale,
                              zero_point, relu, is_signed);
}

void fq_qadd_qnnpack(int isa, const uint8_t *a, const uint8_t *b, uint8_t *y, int64_t n,
                     int32_t zero_point_product, uint32_t a_multiplier, uint32_t b_multiplier,
                     uint32_t shift, int32_t zero_point, int32_t y_min, int32_t y_max) {
    kernels(isa)->qadd_qnnpack(a, b, y, n, zero_point_product, a_multiplier, b_multiplier, shift,
                               zero_point, y_min, y_max);
}

void fq_qclamp(int isa, const void *x, void *y, int64_t n, int32_t lo, int32_t hi, int is_signed) {
    kernels(isa)->clamp(x, y, n, lo, hi, is_signed);
}

void fq_qmul(int isa, const void *a, const void *b, void *y, int64_t n, int64_t n_vec, int32_t a_zero_point,
             int32_t b_zero_point, float multiplier, int32_t zero_point, int relu, int is_signed) {
    kernels(isa)->qmul(a, b, y, n, n_vec, a_zero_point, b_zero_point, multiplier, zero_point, relu, is_signed);
}
