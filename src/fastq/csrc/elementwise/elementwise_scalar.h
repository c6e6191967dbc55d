/* Element access and rounding shared by the scalar loops (elementwise_scalar.c). */
#ifndef FASTQ_ELEMENTWISE_SCALAR_H
#define FASTQ_ELEMENTWISE_SCALAR_H
#include <math.h>
#include <stdint.h>

static inline int32_t fq_ew_load(const void *p, int64_t i, int is_signed) {
    return is_signed ? (int32_t)((const int8_t *)p)[i] : (int32_t)((const uint8_t *)p)[i];
}

static inline void fq_ew_store(void *p, int64_t i, int32_t v, int is_signed) {
    if (is_signed) ((int8_t *)p)[i] = (int8_t)v; else ((uint8_t *)p)[i] = (uint8_t)v;
}

/* float -> int32 after clipping into int32 range: what the add's scalar tail gives once clamped
 * to 8 bits (it rounds and clamps in double, so it saturates; NaN never reaches here: the
 * inputs are finite sums of dequantized values). */
static inline int32_t fq_ew_rne_clip(float t) {
    if (t > 2147483520.0f) t = 2147483520.0f;
    if (t < -2147483648.0f) t = -2147483648.0f;
    return (int32_t)nearbyintf(t);
}

/* float -> int32 as x86 cvtps2dq (round half to even): outside int32 or NaN it gives INT32_MIN.
 * torch's vector bodies then add the zero point in wrapping int32 (fq_ew_wrap_add). */
static inline int32_t fq_ew_cvtps_i32(float t) {
    if (!(t >= -2147483648.0f && t < 2147483648.0f)) return INT32_MIN;
    return (int32_t)nearbyintf(t);
}

/* float -> int64 as lrintf on x86-64 (cvtss2si): outside int64 or NaN it gives INT64_MIN. */
static inline int64_t fq_ew_lrintf_i64(float t) {
    if (!(t >= -9223372036854775808.0f && t < 9223372036854775808.0f)) return INT64_MIN;
    return (int64_t)nearbyintf(t);
}

static inline int32_t fq_ew_wrap_add(int32_t r, int32_t zero_point) {
    return (int32_t)((uint32_t)r + (uint32_t)zero_point);
}

/* The add body's quantize (fbgemm's QuantizeAvx2/512): t capped at 2^31 - 128 (NaN too: minps
 * returns its second operand), converted, the zero point added wrapping. */
static inline int32_t fq_ew_add_body_q(float t, int32_t zero_point) {
    if (!(t < 2147483520.0f)) t = 2147483520.0f;
    return fq_ew_wrap_add(fq_ew_cvtps_i32(t), zero_point);
}

static inline int32_t fq_ew_clamp(int64_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : (v > hi ? hi : (int32_t)v);
}
#endif
