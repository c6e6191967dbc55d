/* Requantization primitives, one scalar function per step, each with its exact rounding.
 * The SIMD epilogues reproduce these lane by lane; epilogue_scalar.c is built from them.
 * Build with -ffp-contract=off: a fused a + b*c would round once instead of twice. */
#ifndef FASTQ_REQUANT_H
#define FASTQ_REQUANT_H

#include <float.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

/* The exact shortcuts below need each float / double operation rounded to its own type; with
 * excess precision (x87, FLT_EVAL_METHOD != 0) the libm calls take over. */
#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#define FQ_EXCESS_PRECISION 1
#endif

/* fmaf(x, y, z) without a libm call where the compiler has no fused multiply-add instruction:
 * x*y is exact in double (24 + 24 bits), the sum is rounded to odd (TwoSum gives its error),
 * and a 53-bit round-to-odd value rounds to float exactly as the real sum would
 * (53 >= 2*24 + 2). Inf / NaN pass through (their error is NaN, and no bit is touched). */
static inline float fq_fmaf(float x, float y, float z) {
#if defined(FP_FAST_FMAF) || defined(FQ_EXCESS_PRECISION)
    return fmaf(x, y, z);                              /* one instruction (or needed) here */
#else
    double p = (double)x * (double)y;
    double zd = (double)z;
    double s = p + zd;
    double bp = s - p;
    double err = (p - (s - bp)) + (zd - bp);           /* s + err == p + z exactly */
    uint64_t bits;
    memcpy(&bits, &s, sizeof bits);
    if ((err > 0 || err < 0) && !(bits & 1))           /* inexact, even: step to the odd neighbour */
        bits += ((err > 0) == (s > 0)) ? 1 : (uint64_t)-1;
    memcpy(&s, &bits, sizeof bits);
    return (float)s;
#endif
}


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

/* torch x86 / fbgemm: f = fmaf(bias_b, bias_r, (float)acc) (the bias term and the accumulator
 * in one rounding); y = f32(f * mult); q = clamp(rne(y) + zy)   (docs/ARITHMETIC.md §6).
 * Per-tensor weights: bias_b = bias[n], bias_r = f32(1 / (double)atws), as FBGEMM's
 * requantization compiled with FMA contraction computes (float)acc + bias * rcp.
 * Per-channel weights: bias_b = f32(bias[n] / atws[n]), bias_r = 1, and fmaf(b, 1, a) is
 * f32(a + b): FBGEMM's divide cannot fuse. One formula serves both (reference.fbgemm_params). */
static inline int32_t fq_requant_fbgemm(int32_t acc, float bias_b, float bias_r, float mult,
                                        int32_t zero_point, int32_t lo, int32_t hi) {
    float f = fq_fmaf(bias_b, bias_r, (float)acc);
    float y = f * mult;
    return fq_add_zero_point_clamp(fq_round_float_to_int32(y), zero_point, lo, hi);
}

/* docs/ARITHMETIC.md §7: y = f32((float)acc * req), acc already holding the int32 bias. */
static inline int32_t fq_requant_qnnpack(int32_t acc, float req,
                                         int32_t zero_point, int32_t lo, int32_t hi) {
    float y = (float)acc * req;
    return fq_add_zero_point_clamp(fq_round_float_to_int32(y), zero_point, lo, hi);
}

/* torch x86 convolutions packed for oneDNN (docs/ARITHMETIC.md, CONV F2): oneDNN's post-op
 * order with every step its own float32 rounding (no fma): the source scale, then the weight
 * scale, then the float bias; the output scale as a reciprocal and the zero point added in
 * float before rounding. oneDNN saturates in float (to lo / hi, integers) before cvtps2dq, so
 * rne(clamp(t)) = clamp(rne(t)) for finite t, and a huge t saturates instead of turning INT32_MIN.
 * zy, lo, hi in the output type's own terms (int8: -128..127). */
static inline int32_t fq_requant_onednn(int32_t acc, float src_scale, float w_scale, float bias,
                                        float out_scale_inv, float zy, float lo, float hi) {
    float y = (float)acc * src_scale;
    y = y * w_scale;
    y = y + bias;
    float t = y * out_scale_inv;
    t = t + zy;
    t = t < lo ? lo : (t > hi ? hi : t);
    return (int32_t)nearbyintf(t);
}

#endif
