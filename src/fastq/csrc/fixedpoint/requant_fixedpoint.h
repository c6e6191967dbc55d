/* Fixed-point requantization (gemmlowp fixedpoint.h, TensorFlow Lite common.cc), docs/ARITHMETIC.md §8.
 * One scalar function per step, each with its exact rounding; fixedpoint_lanes.h is the SIMD
 * twin, function for function. Valid shifts are -31..30 (callers check). No C overflow UB: where the
 * C++ reference overflows int32 (a left shift, a single-rounding result out of range), the
 * value wraps modulo 2^32 as the compiled reference does. */
#ifndef FASTQ_REQUANT_FIXEDPOINT_H
#define FASTQ_REQUANT_FIXEDPOINT_H

#include <stdint.h>

/* gemmlowp SaturatingRoundingDoublingHighMul: the integer nearest to a*b / 2^31.
 * The nudge 1 - 2^30 for negative products plus C's truncating division rounds ties toward
 * +infinity on both sides. INT32_MIN * INT32_MIN (= 2^31, the one overflow) gives INT32_MAX. */
static inline int32_t fq_saturating_rounding_doubling_high_mul(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1LL << 30) : (1 - (1LL << 30));
    return (int32_t)((ab + nudge) / (1LL << 31));   /* C division truncates toward zero */
}

/* gemmlowp RoundingDivideByPOT: round(x / 2^exponent), ties away from zero, 0 <= exponent <= 31. */
static inline int32_t fq_rounding_divide_by_pot(int32_t x, int exponent) {
    const int32_t mask = (int32_t)((1LL << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLite MultiplyByQuantizedMultiplier, "double rounding" (the reference default, also
 * CMSIS-NN's default arm_nn_requantize): the doubling high multiply rounds once, the right
 * shift rounds again. A left shift multiplies x by 2^shift with int32 wrap-around, as the
 * reference's x * (1 << shift) does. -31 <= shift <= 30. */
static inline int32_t fq_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift) {
    int left = shift > 0 ? shift : 0;
    int right = shift > 0 ? 0 : -shift;
    int32_t xs = (int32_t)((uint32_t)x << left);
    return fq_rounding_divide_by_pot(fq_saturating_rounding_doubling_high_mul(xs, multiplier), right);
}

/* round(x / 2^exponent), ties toward +infinity, 0 <= exponent <= 31: a rounding right shift
 * (ARM SRSHL / vrshlq_s32), exact (the sum is formed in int64, so x near INT32_MAX is fine). */
static inline int32_t fq_rounding_shift_right(int32_t x, int exponent) {
    return (int32_t)(((int64_t)x + (((int64_t)1 << exponent) >> 1)) >> exponent);
}

/* "double_up": the doubling high multiply of double rounding, then a rounding right shift with
 * ties toward +infinity (ARM SQRDMULH + SRSHL), as ruy and LiteRT's optimized kernels do. */
static inline int32_t fq_multiply_by_quantized_multiplier_double_up(int32_t x, int32_t multiplier, int32_t shift) {
    int left = shift > 0 ? shift : 0;
    int right = shift > 0 ? 0 : -shift;
    int32_t xs = (int32_t)((uint32_t)x << left);
    return fq_rounding_shift_right(fq_saturating_rounding_doubling_high_mul(xs, multiplier), right);
}

/* TFLITE_SINGLE_ROUNDING: (x * multiplier + 2^(30 - shift)) >> (31 - shift), one rounding,
 * ties toward +infinity. |x * multiplier| <= 2^62 and the rounding term <= 2^61, so int64
 * holds the sum. TFLite truncates the int64 result to int32 (a DCHECK in debug builds);
 * so does this. -31 <= shift <= 30. */
static inline int32_t fq_multiply_by_quantized_multiplier_single(int32_t x, int32_t multiplier, int32_t shift) {
    int total_shift = 31 - shift;
    int64_t round = (int64_t)1 << (total_shift - 1);
    int64_t r = ((int64_t)x * (int64_t)multiplier + round) >> total_shift;  /* arithmetic shift */
    return (int32_t)(uint32_t)(uint64_t)r;
}

/* The output step of a TFLite quantized op: y + zero point, clamped to [lo, hi]. The add is
 * exact (int64): TFLite's int32 add overflows (undefined behaviour) only when
 * |y| > 2^31 - 256, and exactness keeps int8 = uint8 - 128 an identity. */
static inline int32_t fq_tflite_output(int32_t y, int32_t zero_point, int32_t lo, int32_t hi) {
    int64_t q = (int64_t)y + zero_point;
    return (int32_t)(q < lo ? lo : (q > hi ? hi : q));
}

#endif
