/* AVX2 epilogues: 8 columns per step, lane by lane the scalar steps of epilogue_scalar.c, one
 * function per (variant, output type) in the table fq_epilogues_avx2 fills (the AVX-512 file
 * explains each instruction's rounding; the same instructions on ymm). The fixed-point steps
 * are fixedpoint_lanes.h over fixedpoint_avx2.h. */
#include "fastq.h"
#ifdef FQ_COMPILE_AVX2
#pragma GCC target("avx2,fma")
#include <immintrin.h>
#include <string.h>
#include "fixedpoint_avx2.h"
#include "fixedpoint_lanes.h"

#define LANES 8

typedef struct {
    __m256i zy, lo_q, hi_q, xor_;
    __m256 bias_mult;
    __m256 relu;          /* all ones when ReLU */
} consts;

static inline consts make_consts(const fq_epilogue *ep, int32_t xor_) {
    consts k;
    k.zy = _mm256_set1_epi32(ep->out_zero_point);
    k.lo_q = _mm256_set1_epi32(ep->out_min - ep->out_zero_point);
    k.hi_q = _mm256_set1_epi32(ep->out_max - ep->out_zero_point);
    k.xor_ = _mm256_set1_epi32(xor_);
    k.bias_mult = _mm256_set1_ps(ep->bias_mult);
    k.relu = _mm256_castsi256_ps(_mm256_set1_epi32(ep->float_relu ? -1 : 0));
    return k;
}

static inline __m256i lanes_mask(int32_t left) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(left), idx);
}

static inline __m256i corrected(const int32_t *t, const fq_epilogue *ep, int32_t n, __m256i row_sum) {
    __m256i acc = _mm256_add_epi32(_mm256_load_si256((const __m256i *)t),
                                   _mm256_loadu_si256((const __m256i *)(ep->col_offset + n)));
    if (ep->w_zero_point)
        acc = _mm256_sub_epi32(acc, _mm256_mullo_epi32(
            row_sum, _mm256_loadu_si256((const __m256i *)(ep->w_zero_point + n))));
    return acc;
}

/* r (rounded, before the zero point) -> bytes: the low byte of each lane (in 0..255 after the
 * clamp), 8 of them, `left` stored */
static inline void store_bytes(const consts *k, __m256i r, int32_t left, uint8_t *o) {
    __m256i q = _mm256_xor_si256(fqv_tflite_output(r, k->zy, k->lo_q, k->hi_q), k->xor_);
    const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    __m256i b = _mm256_shuffle_epi8(q, pick);
    b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1));
    uint64_t v = (uint64_t)_mm_cvtsi128_si64(_mm256_castsi256_si128(b));
    memcpy(o, &v, left >= LANES ? 8 : (size_t)left);
}

static inline void store_float(const consts *k, __m256 y, int32_t left, float *o) {
    /* ReLU: y < 0 -> 0, as the scalar compare */
    __m256 negative = _mm256_and_ps(_mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_LT_OQ), k->relu);
    y = _mm256_andnot_ps(negative, y);
    if (left >= LANES) _mm256_storeu_ps(o, y);
    else _mm256_maskstore_ps(o, lanes_mask(left), y);
}

/* ---- one step each: 8 accumulators of columns n.. -> stored ---------------------------------- */
static inline void step_int32(const consts *k, const fq_epilogue *ep, int32_t n, __m256i acc,
                              int32_t left, int32_t *o) {
    (void)k; (void)ep; (void)n;
    if (left >= LANES) _mm256_storeu_si256((__m256i *)o, acc);
    else _mm256_maskstore_epi32(o, lanes_mask(left), acc);
}
static inline void step_float_fma(const consts *k, const fq_epilogue *ep, int32_t n, __m256i acc,
                                  int32_t left, float *o) {
    store_float(k, _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_loadu_ps(ep->scale + n),
                                   _mm256_loadu_ps(ep->bias + n)), left, o);
}
static inline void step_float_two(const consts *k, const fq_epilogue *ep, int32_t n, __m256i acc,
                                  int32_t left, float *o) {
    store_float(k, _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_loadu_ps(ep->scale + n)),
                                 _mm256_loadu_ps(ep->bias + n)), left, o);
}
static inline void step_fbgemm(const consts *k, const fq_epilogue *ep, int32_t n, __m256i acc,
                               int32_t left, uint8_t *o) {
    __m256 f = _mm256_fmadd_ps(_mm256_loadu_ps(ep->bias + n), k->bias_mult, _mm256_cvtepi32_ps(acc));
    __m256 y = _mm256_mul_ps(f, _mm256_loadu_ps(ep->scale + n));
    store_bytes(k, _mm256_cvtps_epi32(y), left, o);
}
static inline void step_qnnpack(const consts *k, const fq_epilogue *ep, int32_t n, __m256i acc,
                                int32_t left, uint8_t *o) {
    __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_loadu_ps(ep->scale + n));
    store_bytes(k, _mm256_cvtps_epi32(y), left, o);
}
#define FIXED_STEP(NAME, FN)                                                                      \
    static inline void NAME(const consts *k, const fq_epilogue *ep, int32_t n, __m256i acc,       \
                            int32_t left, uint8_t *o) {                                           \
        store_bytes(k, FN(acc, _mm256_loadu_si256((const __m256i *)(ep->multiplier + n)),         \
                          _mm256_loadu_si256((const __m256i *)(ep->shift + n))), left, o);        \
    }
FIXED_STEP(step_fixed_double, fqv_multiply_by_quantized_multiplier)
FIXED_STEP(step_fixed_single, fqv_multiply_by_quantized_multiplier_single)
FIXED_STEP(step_fixed_double_up, fqv_multiply_by_quantized_multiplier_double_up)

#define DEFINE_EPILOGUE(NAME, STEP, OUT_T, XOR)                                                  \
    static void NAME(int32_t mr, int32_t nc, const int32_t *tile, const int32_t *row_sums,        \
                     int32_t n0, const fq_epilogue *ep, void *out, ptrdiff_t ldo) {               \
        const consts k = make_consts(ep, XOR);                                                    \
        for (int32_t i = 0; i < mr; i++) {                                                        \
            const int32_t *t = tile + (size_t)i * FQ_NR;                                          \
            const __m256i rs = _mm256_set1_epi32(row_sums ? row_sums[i] : 0);                     \
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

/* every variant has an AVX2 function */
void fq_epilogues_avx2(fq_epilogue_fn table[FQ_EPV_COUNT][2]) {
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
