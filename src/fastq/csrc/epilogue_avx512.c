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
#include "fixedpoint_avx512.h"
#include "fixedpoint_lanes.h"

#define LANES 16

/* per-call constants, hoisted out of the tile loop (byte stores may alias *ep) */
typedef struct {
    __m512i zy, lo_q, hi_q, xor_;
    __m512 bias_mult;
    __mmask16 relu;
} consts;

static inline consts make_consts(const fq_epilogue *ep, int32_t xor_) {
    consts k;
    k.zy = _mm512_set1_epi32(ep->out_zero_point);
    k.lo_q = _mm512_set1_epi32(ep->out_min - ep->out_zero_point);
    k.hi_q = _mm512_set1_epi32(ep->out_max - ep->out_zero_point);
    k.xor_ = _mm512_set1_epi32(xor_);
    k.bias_mult = _mm512_set1_ps(ep->bias_mult);
    k.relu = ep->float_relu ? (__mmask16)0xFFFF : (__mmask16)0;
    return k;
}

static inline __mmask16 lanes(int32_t left) {
    return left >= LANES ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
}

static inline __m512i corrected(const int32_t *t, const fq_epilogue *ep, int32_t n, __m512i row_sum) {
    __m512i acc = _mm512_add_epi32(_mm512_load_si512((const void *)t),
                                   _mm512_loadu_si512((const void *)(ep->col_offset + n)));
    if (ep->w_zero_point)
        acc = _mm512_sub_epi32(acc, _mm512_mullo_epi32(
            row_sum, _mm512_loadu_si512((const void *)(ep->w_zero_point + n))));
    return acc;
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

/* ---- one step each: 16 accumulators of columns n.. -> stored -------------------------------- */
static inline void step_int32(const consts *k, const fq_epilogue *ep, int32_t n, __m512i acc,
                              int32_t left, int32_t *o) {
    (void)k; (void)ep; (void)n;
    _mm512_mask_storeu_epi32(o, lanes(left), acc);
}
static inline void step_float_fma(const consts *k, const fq_epilogue *ep, int32_t n, __m512i acc,
                                  int32_t left, float *o) {
    store_float(k, _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), _mm512_loadu_ps(ep->scale + n),
                                   _mm512_loadu_ps(ep->bias + n)), left, o);
}
static inline void step_float_two(const consts *k, const fq_epilogue *ep, int32_t n, __m512i acc,
                                  int32_t left, float *o) {
    store_float(k, _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_loadu_ps(ep->scale + n)),
                                 _mm512_loadu_ps(ep->bias + n)), left, o);
}
static inline void step_fbgemm(const consts *k, const fq_epilogue *ep, int32_t n, __m512i acc,
                               int32_t left, uint8_t *o) {
    __m512 f = _mm512_fmadd_ps(_mm512_loadu_ps(ep->bias + n), k->bias_mult, _mm512_cvtepi32_ps(acc));
    __m512 y = _mm512_mul_ps(f, _mm512_loadu_ps(ep->scale + n));
    store_bytes(k, _mm512_cvtps_epi32(y), left, o);
}
static inline void step_qnnpack(const consts *k, const fq_epilogue *ep, int32_t n, __m512i acc,
                                int32_t left, uint8_t *o) {
    __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_loadu_ps(ep->scale + n));
    store_bytes(k, _mm512_cvtps_epi32(y), left, o);
}
#define FIXED_STEP(NAME, FN)                                                                      \
    static inline void NAME(const consts *k, const fq_epilogue *ep, int32_t n, __m512i acc,       \
                            int32_t left, uint8_t *o) {                                           \
        store_bytes(k, FN(acc, _mm512_loadu_si512((const void *)(ep->multiplier + n)),            \
                          _mm512_loadu_si512((const void *)(ep->shift + n))), left, o);           \
    }
FIXED_STEP(step_fixed_double, fqv_multiply_by_quantized_multiplier)
FIXED_STEP(step_fixed_single, fqv_multiply_by_quantized_multiplier_single)
FIXED_STEP(step_fixed_double_up, fqv_multiply_by_quantized_multiplier_double_up)

/* the tile loop, once per step and output type */
#define DEFINE_EPILOGUE(NAME, STEP, OUT_T, XOR)                                                  \
    static void NAME(int32_t mr, int32_t nc, const int32_t *tile, const int32_t *row_sums,        \
                     int32_t n0, const fq_epilogue *ep, void *out, ptrdiff_t ldo) {               \
        const consts k = make_consts(ep, XOR);                                                    \
        for (int32_t i = 0; i < mr; i++) {                                                        \
            const int32_t *t = tile + (size_t)i * FQ_NR;                                          \
            const __m512i rs = _mm512_set1_epi32(row_sums ? row_sums[i] : 0);                     \
            OUT_T *o = (OUT_T *)out + (ptrdiff_t)i * ldo + n0;                                    \
            for (int32_t c = 0; c < nc; c += LANES)                                               \
                STEP(&k, ep, n0 + c, corrected(t + c, ep, n0 + c, rs), nc - c, o + c);            \
        }                                                                                         \
    }
#define DEFINE_BYTE_EPILOGUES(NAME, STEP)              \
    DEFINE_EPILOGUE(NAME##_u8, STEP, uint8_t, 0)       \
    DEFINE_EPILOGUE(NAME##_s8, STEP, uint8_t, 0x80)

DEFINE_EPILOGUE(epi_int32, step_int32, int32_t, 0)
DEFINE_EPILOGUE(epi_float_fma, step_float_fma, float, 0)
DEFINE_EPILOGUE(epi_float_two, step_float_two, float, 0)
DEFINE_BYTE_EPILOGUES(epi_fbgemm, step_fbgemm)
DEFINE_BYTE_EPILOGUES(epi_qnnpack, step_qnnpack)
DEFINE_BYTE_EPILOGUES(epi_fixed_double, step_fixed_double)
DEFINE_BYTE_EPILOGUES(epi_fixed_single, step_fixed_single)
DEFINE_BYTE_EPILOGUES(epi_fixed_double_up, step_fixed_double_up)

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
    table[FQ_EPV_FIXED_SINGLE][0] = epi_fixed_single_u8;
    table[FQ_EPV_FIXED_SINGLE][1] = epi_fixed_single_s8;
    table[FQ_EPV_FIXED_DOUBLE_UP][0] = epi_fixed_double_up_u8;
    table[FQ_EPV_FIXED_DOUBLE_UP][1] = epi_fixed_double_up_s8;
}
#endif
