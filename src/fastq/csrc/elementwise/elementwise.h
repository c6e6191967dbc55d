/* Elementwise quantized ops on the residual path (add, mul), each the arithmetic of one torch
 * kernel: see reference.py (qadd_fbgemm, qadd_qnnpack, qmul) and docs/ARITHMETIC.md. The public
 * calls (fq_qadd_fbgemm, fq_qadd_qnnpack, fq_qmul in fastq.h) go through the backend table;
 * each ISA supplies one table of the three. */
#ifndef FASTQ_ELEMENTWISE_H
#define FASTQ_ELEMENTWISE_H
#include <stdint.h>

typedef struct fq_elementwise_kernels {
    const char *name;
    /* the formulas of fq_qadd_fbgemm / fq_qadd_qnnpack / fq_qmul in fastq.h */
    void (*qadd_fbgemm)(const void *a, const void *b, void *y, int64_t n, int64_t n_vec,
                        float a_scale, int32_t a_zero_point, float b_scale, int32_t b_zero_point,
                        float inv_scale, int32_t zero_point, int relu, int is_signed);
    void (*qadd_qnnpack)(const uint8_t *a, const uint8_t *b, uint8_t *y, int64_t n,
                         int32_t zero_point_product, uint32_t a_multiplier, uint32_t b_multiplier,
                         uint32_t shift, int32_t zero_point, int32_t y_min, int32_t y_max);
    void (*qmul)(const void *a, const void *b, void *y, int64_t n, int32_t a_zero_point,
                 int32_t b_zero_point, float multiplier, int32_t zero_point, int relu, int is_signed);
} fq_elementwise_kernels;

/* The scalar loops: the scalar backend's kernels, and the tails of the SIMD ones. */
void fq_qadd_fbgemm_scalar(const void *a, const void *b, void *y, int64_t n, int64_t n_vec,
                           float a_scale, int32_t a_zero_point, float b_scale, int32_t b_zero_point,
                           float inv_scale, int32_t zero_point, int relu, int is_signed);
void fq_qadd_qnnpack_scalar(const uint8_t *a, const uint8_t *b, uint8_t *y, int64_t n,
                            int32_t zero_point_product, uint32_t a_multiplier, uint32_t b_multiplier,
                            uint32_t shift, int32_t zero_point, int32_t y_min, int32_t y_max);
void fq_qmul_scalar(const void *a, const void *b, void *y, int64_t n, int32_t a_zero_point,
                    int32_t b_zero_point, float multiplier, int32_t zero_point, int relu, int is_signed);

const fq_elementwise_kernels *fq_elementwise_scalar(void);
const fq_elementwise_kernels *fq_elementwise_avx2(void);    /* AVX2 + FMA bodies */
#endif
