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
    void (*qmul)(const void *a, const void *b, void *y, int64_t n, int64_t n_vec, int32_t a_zero_point,
                 int32_t b_zero_point, float multiplier, int32_t zero_point, int relu, int is_signed);
    /* the formula of fq_qclamp in fastq.h */
    void (*clamp)(const void *x, void *y, int64_t n, int32_t lo, int32_t hi, int is_signed);
} fq_elementwise_kernels;

/* QNNPACK hands its add kernel 4096-element tiles; its SIMD code shifts a tile of >= 8 elements
 * by psrad (a count above 31 fills with the sign: a shift by 31), a tile of 1..7 by a scalar
 * sar (count mod 32). Shifts 32..35 (scale ratios below 2^-10) tell them apart: the first
 * fq_qnnpack_long_end(n) elements of an n-element add are the psrad ones. */
#define FQ_QNNPACK_ADD_TILE 4096
static inline int64_t fq_qnnpack_long_end(int64_t n) {
    int64_t last = n % FQ_QNNPACK_ADD_TILE;
    return last != 0 && last < 8 ? n - last : n;
}

/* The scalar loops: the scalar backend's kernels, and the tails of the SIMD ones. Each takes
 * the split its torch kernel makes (n_vec body elements, n_long psrad elements) from the caller,
 * so a SIMD kernel hands over its leftover with the split shifted by what it did. */
void fq_qadd_fbgemm_scalar(const void *a, const void *b, void *y, int64_t n, int64_t n_vec,
                           float a_scale, int32_t a_zero_point, float b_scale, int32_t b_zero_point,
                           float inv_scale, int32_t zero_point, int relu, int is_signed);
void fq_qadd_qnnpack_scalar(const uint8_t *a, const uint8_t *b, uint8_t *y, int64_t n,
                            int32_t zero_point_product, uint32_t a_multiplier, uint32_t b_multiplier,
                            uint32_t shift, int32_t zero_point, int32_t y_min, int32_t y_max);
void fq_qadd_qnnpack_scalar_split(const uint8_t *a, const uint8_t *b, uint8_t *y, int64_t n, int64_t n_long,
                                  int32_t zero_point_product, uint32_t a_multiplier, uint32_t b_multiplier,
                                  uint32_t shift, int32_t zero_point, int32_t y_min, int32_t y_max);
void fq_qclamp_scalar(const void *x, void *y, int64_t n, int32_t lo, int32_t hi, int is_signed);
void fq_qmul_scalar(const void *a, const void *b, void *y, int64_t n, int64_t n_vec, int32_t a_zero_point,
                    int32_t b_zero_point, float multiplier, int32_t zero_point, int relu, int is_signed);

const fq_elementwise_kernels *fq_elementwise_scalar(void);
const fq_elementwise_kernels *fq_elementwise_avx2(void);    /* AVX2 + FMA bodies */
const fq_elementwise_kernels *fq_elementwise_avx512(void);  /* AVX-512 add body and clamp, AVX2's rest */
#endif
