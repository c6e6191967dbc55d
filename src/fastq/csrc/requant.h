/* Requantization primitives, one scalar function per step, each with its exact rounding.
 * The SIMD epilogues reproduce these lane by lane; epilogue_scalar.c is built from them.
 * Build with -ffp-contract=off: a fused a + b*c would round once instead of twice. */
#ifndef FASTQ_REQUANT_H
#define FASTQ_REQUANT_H

#include <stdint.h>
#include <math.h>

/* Two's-complement wrapping add and multiply (what vpaddd / vpmulld do; no C overflow UB). */
static inline int32_t fq_wrap_add(int32_t a, int32_t b) {
    return (int32_t)((uint32_t)a + (uint32_t)b);
}
static inline int32_t fq_wrap_mul(int32_t a, int32_t b) {
    return (int32_t)((uint32_t)a * (uint32_t)b);
}

/* Float -> int32, round half to even; |y| >= 2^31 or NaN gives INT32_MIN, as cvtps2dq does
 * (the "integer indefinite" value). */
static inline int32_t fq_round_float_to_int32(float y) {
    if (!(y > -2147483648.0f && y < 2147483648.0f)) {
        /* -2^31 itself is representable and converts exactly to INT32_MIN as well */
        return INT32_MIN;
    }
    return (int32_t)nearbyintf(y);   /* default rounding mode: half to even */
}

/* Clamp to [lo, hi]. */
static inline int32_t fq_clamp(int32_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

/* r + zero_point clamped to [lo, hi], computed exactly (no int32 wrap). FBGEMM and QNNPACK
 * both pack to int16 with saturation, add the zero point with a saturating int16 add and pack
 * to uint8 with saturation: for 0 <= zero_point <= 255 that equals the exact clamp. */
static inline int32_t fq_add_zero_point_clamp(int32_t r, int32_t zero_point, int32_t lo, int32_t hi) {
    int64_t q = (int64_t)r + zero_point;
    return (int32_t)(q < lo ? lo : (q > hi ? hi : q));
}

/* docs/ARITHMETIC.md §6: f = f32((float)acc + bias); y = f32(f * mult); q = clamp(rne(y) + zy). */
static inline int32_t fq_requant_fbgemm(int32_t acc, float bias, float mult,
                                        int32_t zero_point, int32_t lo, int32_t hi) {
    float f = (float)acc;
    f = f + bias;
    float y = f * mult;
    return fq_add_zero_point_clamp(fq_round_float_to_int32(y), zero_point, lo, hi);
}

/* docs/ARITHMETIC.md §7: y = f32((float)acc * req), acc already holding the int32 bias. */
static inline int32_t fq_requant_qnnpack(int32_t acc, float req,
                                         int32_t zero_point, int32_t lo, int32_t hi) {
    float y = (float)acc * req;
    return fq_add_zero_point_clamp(fq_round_float_to_int32(y), zero_point, lo, hi);
}

#endif
