/* Fixed-point requantization (gemmlowp fixedpoint.h, TensorFlow Lite common.h), SPEC section 4.
 * Each primitive states its exact rounding; all arithmetic is done without C overflow UB. */
#ifndef FASTQ_REQUANT_FIXEDPOINT_H
#define FASTQ_REQUANT_FIXEDPOINT_H

#include <stdint.h>

/* round(a * b / 2^31), ties away from zero; the one overflowing case
 * INT32_MIN * INT32_MIN saturates to INT32_MAX.  (gemmlowp SaturatingRoundingDoublingHighMul) */
static inline int32_t fq_saturating_rounding_doubling_high_mul(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1LL << 30) : (1 - (1LL << 30));
    /* C division truncates toward zero */
    return (int32_t)((ab + nudge) / (1LL << 31));
}

/* round(x / 2^exponent), ties away from zero, 0 <= exponent <= 31.
 * (gemmlowp RoundingDivideByPOT) */
static inline int32_t fq_rounding_divide_by_pot(int32_t x, int exponent) {
    const int32_t mask = (int32_t)((1LL << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLite MultiplyByQuantizedMultiplier, "double rounding" (the reference default):
 * the doubling high multiply rounds once, the right shift rounds again.
 * A left shift (shift > 0) multiplies x by 2^shift with int32 wrap-around, as the
 * reference's x * (1 << shift) does when compiled for x86. */
static inline int32_t fq_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift) {
    int left = shift > 0 ? shift : 0;
    int right = shift > 0 ? 0 : -shift;
    int32_t xs = (int32_t)((uint32_t)x << left);
    return fq_rounding_divide_by_pot(fq_saturating_rounding_doubling_high_mul(xs, multiplier), right);
}

/* TFLITE_SINGLE_ROUNDING (also CMSIS-NN's option): one rounding, half up (toward +inf):
 * (x * multiplier + 2^(30 - shift)) >> (31 - shift), saturated to int32. */
static inline int32_t fq_multiply_by_quantized_multiplier_single(int32_t x, int32_t multiplier, int32_t shift) {
    int total_shift = 31 - shift;
    int64_t round = (int64_t)1 << (total_shift - 1);
    int64_t r = ((int64_t)x * (int64_t)multiplier + round) >> total_shift;
    return r > INT32_MAX ? INT32_MAX : (r < INT32_MIN ? INT32_MIN : (int32_t)r);
}

#endif
