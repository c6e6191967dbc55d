/* Elementwise quantized ops on the residual path (add, mul), each the arithmetic of one torch
 * kernel: see reference.py (qadd_fbgemm, qadd_qnnpack, qmul) and docs/ARITHMETIC.md. */
/* simd = 0 forces the scalar C loops (tests hold them equal to the AVX2 bodies). */
#ifndef FASTQ_ELEMENTWISE_H
#define FASTQ_ELEMENTWISE_H
#include <stdint.h>

/* torch qadd_kernel (x86 / fbgemm engines): the first n_vec elements as the vectorized body
 * (dequantize fmaf(s, q, s * -zp), quantize zp + rne(c * inv_s)), the rest as its scalar tail
 * (dequantize (q - zp) * s, quantize rne(zp + c * inv_s)). Values are uint8 or (is_signed) int8. */
void fastq_qadd_fbgemm(const void *a, const void *b, void *y, int64_t n, int64_t n_vec,
                       float a_scale, int32_t a_zero_point, float b_scale, int32_t b_zero_point,
                       float inv_scale, int32_t zero_point, int relu, int is_signed, int simd);

/* QNNPACK q8 add (uint8): y = clamp(zp + rshift_round_away(zpp + a * am + b * bm, shift)),
 * all in wrapping int32 as the C code does. */
void fastq_qadd_qnnpack(const uint8_t *a, const uint8_t *b, uint8_t *y, int64_t n,
                        int32_t zero_point_product, uint32_t a_multiplier, uint32_t b_multiplier,
                        uint32_t shift, int32_t zero_point, int32_t y_min, int32_t y_max, int simd);

/* torch qmul_kernel (every engine for uint8): y = clamp(zp + rne((float)((a - za) * (b - zb)) * m)),
 * relu: max(y, zp). */
void fastq_qmul(const void *a, const void *b, void *y, int64_t n, int32_t a_zero_point,
                int32_t b_zero_point, float multiplier, int32_t zero_point, int relu, int is_signed,
                int simd);
#endif
