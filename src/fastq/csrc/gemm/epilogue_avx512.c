/* AVX-512 epilogues: 16 columns per step, lane by lane the scalar steps of epilogue_scalar.c,
 * one function per (variant, output type) in the table fq_epilogues_avx512 fills.
 *   acc = raw + col_offset[n] - row_sum * zw[n]      vpaddd / vpmulld / vpsubd: wrapping
 *   (float)acc                                       vcvtdq2ps: round half to even
 *   fmaf(b, r, f), fmaf(f, s, b)                     vfmadd231ps: one rounding, = fmaf
 *   rne(y), INT32_MIN when |y| >= 2^31 or NaN         vcvtps2dq: exactly fq_round_float_to_int32
 *   + zero point, saturating (FBGEMM and QNNPACK both pack to int16 with saturation and add
 *   the zero point with adds_epi16): for 0 <= zy, hi <= 255 that is clamp(r, lo - zy, hi - zy) + zy,
 *   computed without int32 overflow (fq_add_zero_point_clamp); int8 output XORs 0x80.
 *   fixed point: fixedpoint_lanes.h over fixedpoint_avx512.h (requant_fixedpoint.h's twin).
 * Padded columns (n >= N) are computed from the zero-padded per-column arrays and masked
 * off at the store. */
#include "fastq.h"
#ifdef FQ_COMPILE_AVX512
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni,fma")
#include <immintrin.h>
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

/* The tile loop, once per step and output type: column blocks outside, so each block's
 * constants are loaded and derived once for the tile's rows; acc = raw + col_offset - rs * zw
 * (row_sums is given exactly when w_zero_point is). */
#define DEFINE_EPILOGUE(NAME, COLS_T, COLS, STEP, OUT_T, XOR)                                     \
    static void NAME(int32_t mr, int32_t nc, const int32_t *tile, const int32_t *row_sums,        \
                     int32_t n0, const fq_epilogue *ep, void *out, ptrdiff_t ldo) {               \
        const consts k = make_consts(ep, XOR);                                                    \
        for (int32_t c = 0; c < nc; c += LANES) {                                                 \
            const int32_t n = n0 + c;                                                             \
            const COLS_T cols = COLS(ep, n);                                                      \
            const __m512i col_offset = load_i(ep->col_offset + n);                                \
            const __m512i zw = row_sums ? load_i(ep->w_zero_point + n) : _mm512_setzero_si512();  \
            for (int32_t i = 0; i < mr; i++) {                                                    \
                __m512i acc = _mm512_add_epi32(_mm512_load_si512((const void *)(tile + i * FQ_NR + c)), \
                                               col_offset);                                       \
                if (row_sums)                                                                     \
                    acc = _mm512_sub_epi32(acc, _mm512_mullo_epi32(_mm512_set1_epi32(row_sums[i]), zw)); \
                STEP(&k, &cols, acc, nc - c, (OUT_T *)out + (ptrdiff_t)i * ldo + n);              \
            }                                                                                     \
        }                                                                                         \
    }
#define DEFINE_BYTE_EPILOGUES(NAME, COLS_T, COLS, STEP)              \
    DEFINE_EPILOGUE(NAME##_u8, COLS_T, COLS, STEP, uint8_t, 0)       \
    DEFINE_EPILOGUE(NAME##_s8, COLS_T, COLS, STEP, uint8_t, 0x80)

DEFINE_EPILOGUE(epi_int32, cols_none, cols_int32, step_int32, int32_t, 0)
DEFINE_EPILOGUE(epi_float_fma, cols_float, cols_scale_bias, step_float_fma, float, 0)
DEFINE_EPILOGUE(epi_float_two, cols_float, cols_scale_bias, step_float_two, float, 0)
DEFINE_BYTE_EPILOGUES(epi_fbgemm, cols_float, cols_scale_bias, step_fbgemm)
DEFINE_BYTE_EPILOGUES(epi_qnnpack, cols_scale_only, cols_scale, step_qnnpack)
DEFINE_BYTE_EPILOGUES(epi_fixed_double, fqv_mbqm, cols_fixed_double, step_fixed_double)
DEFINE_BYTE_EPILOGUES(epi_fixed_double_right, fqv_mbqm, cols_fixed_double_right, step_fixed_double_right)
DEFINE_BYTE_EPILOGUES(epi_fixed_single, fqv_single, cols_fixed_single, step_fixed_single)
DEFINE_BYTE_EPILOGUES(epi_fixed_double_up, fqv_mbqm_up, cols_fixed_double_up, step_fixed_double_up)
DEFINE_BYTE_EPILOGUES(epi_onednn, cols_float, cols_scale_bias, step_onednn)

/* every variant has an AVX-512 function */
void fq_epilogues_avx512(fq_epilogue_fn table[FQ_EPV_COUNT][2]) {
    table[FQ_EPV_INT32][0] = table[FQ_EPV_INT32][1] = epi_int32;
    table[FQ_EPV_FLOAT_FMA][0] = table[FQ_EPV_FLOAT_FMA][1] = epi_float_fma;
    table[FQ_EPV_FLOAT_TWO_ROUNDINGS][0] = table[FQ_EPV_FLOAT_TWO_ROUNDINGS][1] = epi_float_two;
    table[FQ_EPV_FBGEMM][0] = epi_fbgemm_u8;
    table[FQ_EPV_FBGEMM][1] = epi_fbgemm_s8;
    table[FQ_EPV_QNNPACK][0] = epi_qnnpack_u8;
    table[FQ_EPV_QNNPACK][1] = epi_qnnpack_s8;
    table[FQ_EPV_FIXED_DOUBLE][0] = epi_fixed_double_u8;
    table[FQ_EPV_FIXED_DOUBLE][1] = epi_fixed_double_s8;
    table[FQ_EPV_FIXED_DOUBLE_RIGHT][0] = epi_fixed_double_right_u8;
    table[FQ_EPV_FIXED_DOUBLE_RIGHT][1] = epi_fixed_double_right_s8;
    table[FQ_EPV_FIXED_SINGLE][0] = epi_fixed_single_u8;
    table[FQ_EPV_FIXED_SINGLE][1] = epi_fixed_single_s8;
    table[FQ_EPV_FIXED_DOUBLE_UP][0] = epi_fixed_double_up_u8;
    table[FQ_EPV_FIXED_DOUBLE_UP][1] = epi_fixed_double_up_s8;
    table[FQ_EPV_ONEDNN][0] = epi_onednn_u8;
    table[FQ_EPV_ONEDNN][1] = epi_onednn_s8;
}
#endif
