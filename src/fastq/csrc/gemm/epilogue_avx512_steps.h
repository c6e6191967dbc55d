/* The AVX-512 epilogue steps (per-call constants, per-column-block constants, one step of 16
 * accumulators of a row -> stored), shared by the tile epilogues (epilogue_avx512.c) and the
 * fused microkernels (ukernel_avx512vnni.c), so both run the very same instructions per lane.
 * The arithmetic, lane by lane, is epilogue_avx512.c's header comment. Include after a target
 * pragma with avx512f, avx512bw, avx512vl. */
#ifndef FASTQ_GEMM_EPILOGUE_AVX512_STEPS_H
#define FASTQ_GEMM_EPILOGUE_AVX512_STEPS_H
#include <immintrin.h>
#include "fastq.h"
#include "fixedpoint/fixedpoint_avx512.h"
#include "fixedpoint/fixedpoint_lanes.h"

#define LANES 16

/* per-call constants, hoisted out of the tile loop (byte stores may alias *ep) */
typedef struct {
    __m512i zy, lo_q, hi_q, xor_;
    __m512 bias_mult;
    __mmask16 relu;
    __m512 src_scale, out_scale_inv, zy_f, lo_f, hi_f;   /* oneDNN, own terms of the output type */
} consts;

static inline consts make_consts(const fq_epilogue *ep, int32_t xor_) {
    consts k;
    k.zy = _mm512_set1_epi32(ep->out_zero_point);
    k.lo_q = _mm512_set1_epi32(ep->out_min - ep->out_zero_point);
    k.hi_q = _mm512_set1_epi32(ep->out_max - ep->out_zero_point);
    k.xor_ = _mm512_set1_epi32(xor_);
    k.bias_mult = _mm512_set1_ps(ep->bias_mult);
    k.relu = ep->float_relu ? (__mmask16)0xFFFF : (__mmask16)0;
    int32_t off = xor_ ? 128 : 0;
    k.src_scale = _mm512_set1_ps(ep->src_scale);
    k.out_scale_inv = _mm512_set1_ps(ep->out_scale_inv);
    k.zy_f = _mm512_set1_ps((float)(ep->out_zero_point - off));
    k.lo_f = _mm512_set1_ps((float)(ep->out_min - off));
    k.hi_f = _mm512_set1_ps((float)(ep->out_max - off));
    return k;
}

static inline __mmask16 lanes(int32_t left) {
    return left >= LANES ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
}

/* r (rounded, before the zero point) -> bytes */
static inline void store_bytes(const consts *k, __m512i r, int32_t left, uint8_t *o) {
    __m512i q = _mm512_xor_si512(fqv_tflite_output(r, k->zy, k->lo_q, k->hi_q), k->xor_);
    _mm512_mask_cvtepi32_storeu_epi8(o, lanes(left), q);
}

static inline void store_float(const consts *k, __m512 y, int32_t left, float *o) {
    __mmask16 negative = _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_LT_OQ) & k->relu;
    _mm512_mask_storeu_ps(o, lanes(left), _mm512_mask_mov_ps(y, negative, _mm512_setzero_ps()));
}

static inline __m512i load_i(const int32_t *p) { return _mm512_loadu_si512((const void *)p); }

/* ---- one step each: the per-column constants of columns n.. (loaded / derived once per column
 * block), then 16 accumulators of one row -> stored ------------------------------------------- */
typedef struct { int unused; } cols_none;
static inline cols_none cols_int32(const fq_epilogue *ep, int32_t n) {
    (void)ep; (void)n;
    cols_none c = {0};
    return c;
}
static inline void step_int32(const consts *k, const cols_none *c, __m512i acc, int32_t left, int32_t *o) {
    (void)k; (void)c;
    _mm512_mask_storeu_epi32(o, lanes(left), acc);
}

typedef struct { __m512 scale; } cols_scale_only;
static inline cols_scale_only cols_scale(const fq_epilogue *ep, int32_t n) {
    cols_scale_only c;
    c.scale = _mm512_loadu_ps(ep->scale + n);     /* qnnpack: no bias array (it is in col_offset) */
    return c;
}

typedef struct { __m512 scale, bias; } cols_float;
static inline cols_float cols_scale_bias(const fq_epilogue *ep, int32_t n) {
    cols_float c;
    c.scale = _mm512_loadu_ps(ep->scale + n);
    c.bias = _mm512_loadu_ps(ep->bias + n);
    return c;
}
static inline void step_float_fma(const consts *k, const cols_float *c, __m512i acc, int32_t left, float *o) {
    store_float(k, _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), c->scale, c->bias), left, o);
}
static inline void step_float_two(const consts *k, const cols_float *c, __m512i acc, int32_t left, float *o) {
    store_float(k, _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc), c->scale), c->bias), left, o);
}
static inline void step_fbgemm(const consts *k, const cols_float *c, __m512i acc, int32_t left, uint8_t *o) {
    __m512 f = _mm512_fmadd_ps(c->bias, k->bias_mult, _mm512_cvtepi32_ps(acc));
    store_bytes(k, _mm512_cvtps_epi32(_mm512_mul_ps(f, c->scale)), left, o);
}
static inline void step_qnnpack(const consts *k, const cols_scale_only *c, __m512i acc, int32_t left, uint8_t *o) {
    store_bytes(k, _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_cvtepi32_ps(acc), c->scale)), left, o);
}
/* oneDNN (requant.h fq_requant_onednn): vmulps / vaddps each round once, the float clamp
 * (vmaxps / vminps against integers) precedes vcvtps2dq, and the own-terms result's low byte is
 * the stored byte for uint8 and int8 alike (vpmovdb truncates) */
static inline void step_onednn(const consts *k, const cols_float *c, __m512i acc, int32_t left, uint8_t *o) {
    __m512 y = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc), k->src_scale), c->scale);
    y = _mm512_add_ps(y, c->bias);
    __m512 t = _mm512_add_ps(_mm512_mul_ps(y, k->out_scale_inv), k->zy_f);
    t = _mm512_min_ps(_mm512_max_ps(t, k->lo_f), k->hi_f);
    _mm512_mask_cvtepi32_storeu_epi8(o, lanes(left), _mm512_cvtps_epi32(t));
}

#define FIXED_STEP(NAME, T, FN)                                                                  \
    static inline T cols_##NAME(const fq_epilogue *ep, int32_t n) {                              \
        return FN##_for(load_i(ep->multiplier + n), load_i(ep->shift + n));                      \
    }                                                                                            \
    static inline void step_##NAME(const consts *k, const T *c, __m512i acc, int32_t left,       \
                                   uint8_t *o) {                                                 \
        store_bytes(k, FN##_apply(acc, c), left, o);                                             \
    }
FIXED_STEP(fixed_double, fqv_mbqm, fqv_multiply_by_quantized_multiplier)
FIXED_STEP(fixed_double_right, fqv_mbqm, fqv_multiply_by_quantized_multiplier_right)
FIXED_STEP(fixed_single, fqv_single, fqv_multiply_by_quantized_multiplier_single)
FIXED_STEP(fixed_double_up, fqv_mbqm_up, fqv_multiply_by_quantized_multiplier_double_up)

#endif
