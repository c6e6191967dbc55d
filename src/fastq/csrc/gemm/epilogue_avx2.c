/* AVX2 epilogues: 8 columns per step, lane by lane the scalar steps of epilogue_scalar.c, one
 * function per (variant, output type) in the table fq_epilogues_avx2 fills (the AVX-512 file
 * explains each instruction's rounding; the same instructions on ymm). The fixed-point steps
 * are fixedpoint_lanes.h over fixedpoint_avx2.h. */
#include "fastq.h"
#include "gemm/kernels.h"
#ifdef FQ_COMPILE_AVX2
#pragma GCC target("avx2,fma")
#include <immintrin.h>
#include <string.h>
#include "fixedpoint/fixedpoint_avx2.h"
#include "fixedpoint/fixedpoint_lanes.h"

#define LANES 8

typedef struct {
    __m256i zy, lo_q, hi_q, xor_;
    __m256 bias_mult;
    __m256 relu;          /* all ones when ReLU */
    __m256 src_scale, out_scale_inv, zy_f, lo_f, hi_f;   /* oneDNN, own terms of the output type */
} consts;

static inline consts make_consts(const fq_epilogue *ep, int32_t xor_) {
    consts k;
    k.zy = _mm256_set1_epi32(ep->out_zero_point);
    k.lo_q = _mm256_set1_epi32(ep->out_min - ep->out_zero_point);
    k.hi_q = _mm256_set1_epi32(ep->out_max - ep->out_zero_point);
    k.xor_ = _mm256_set1_epi32(xor_);
    k.bias_mult = _mm256_set1_ps(ep->bias_mult);
    k.relu = _mm256_castsi256_ps(_mm256_set1_epi32(ep->float_relu ? -1 : 0));
    int32_t off = xor_ ? 128 : 0;
    k.src_scale = _mm256_set1_ps(ep->src_scale);
    k.out_scale_inv = _mm256_set1_ps(ep->out_scale_inv);
    k.zy_f = _mm256_set1_ps((float)(ep->out_zero_point - off));
    k.lo_f = _mm256_set1_ps((float)(ep->out_min - off));
    k.hi_f = _mm256_set1_ps((float)(ep->out_max - off));
    return k;
}

static inline __m256i lanes_mask(int32_t left) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(left), idx);
}

/* r (rounded, before the zero point) -> bytes: the low byte of each lane (in 0..255 after the
 * clamp), 8 of them, `left` stored */
static inline void store_low_bytes(__m256i q, int32_t left, uint8_t *o) {
    const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    __m256i b = _mm256_shuffle_epi8(q, pick);
    b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1));
    uint64_t v = (uint64_t)_mm_cvtsi128_si64(_mm256_castsi256_si128(b));
    memcpy(o, &v, left >= LANES ? 8 : (size_t)left);
}
static inline void store_bytes(const consts *k, __m256i r, int32_t left, uint8_t *o) {
    store_low_bytes(_mm256_xor_si256(fqv_tflite_output(r, k->zy, k->lo_q, k->hi_q), k->xor_), left, o);
}

static inline void store_float(const consts *k, __m256 y, int32_t left, float *o) {
    /* ReLU: y < 0 -> 0, as the scalar compare */
    __m256 negative = _mm256_and_ps(_mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_LT_OQ), k->relu);
    y = _mm256_andnot_ps(negative, y);
    if (left >= LANES) _mm256_storeu_ps(o, y);
    else _mm256_maskstore_ps(o, lanes_mask(left), y);
}

static inline __m256i load_i(const int32_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* ---- one step each: the per-column constants of columns n.. (loaded / derived once per column
 * block), then 8 accumulators of one row -> stored -------------------------------------------- */
typedef struct { int unused; } cols_none;
static inline cols_none cols_int32(const fq_epilogue *ep, int32_t n) {
    (void)ep; (void)n;
    cols_none c = {0};
    return c;
}
static inline void step_int32(const consts *k, const cols_none *c, __m256i acc, int32_t left, int32_t *o) {
    (void)k; (void)c;
    if (left >= LANES) _mm256_storeu_si256((__m256i *)o, acc);
    else _mm256_maskstore_epi32(o, lanes_mask(left), acc);
}

typedef struct { __m256 scale; } cols_scale_only;
static inline cols_scale_only cols_scale(const fq_epilogue *ep, int32_t n) {
    cols_scale_only c;
    c.scale = _mm256_loadu_ps(ep->scale + n);     /* qnnpack: no bias array (it is in col_offset) */
    return c;
}

typedef struct { __m256 scale, bias; } cols_float;
static inline cols_float cols_scale_bias(const fq_epilogue *ep, int32_t n) {
    cols_float c;
    c.scale = _mm256_loadu_ps(ep->scale + n);
    c.bias = _mm256_loadu_ps(ep->bias + n);
    return c;
}
static inline void step_float_fma(const consts *k, const cols_float *c, __m256i acc, int32_t left, float *o) {
    store_float(k, _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), c->scale, c->bias), left, o);
}
static inline void step_float_two(const consts *k, const cols_float *c, __m256i acc, int32_t left, float *o) {
    store_float(k, _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc), c->scale), c->bias), left, o);
}
static inline void step_fbgemm(const consts *k, const cols_float *c, __m256i acc, int32_t left, uint8_t *o) {
    __m256 f = _mm256_fmadd_ps(c->bias, k->bias_mult, _mm256_cvtepi32_ps(acc));
    store_bytes(k, _mm256_cvtps_epi32(_mm256_mul_ps(f, c->scale)), left, o);
}
static inline void step_qnnpack(const consts *k, const cols_scale_only *c, __m256i acc, int32_t left, uint8_t *o) {
    store_bytes(k, _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_cvtepi32_ps(acc), c->scale)), left, o);
}
/* oneDNN: as epilogue_avx512.c (float clamp before vcvtps2dq, the own-terms low byte stored) */
static inline void step_onednn(const consts *k, const cols_float *c, __m256i acc, int32_t left, uint8_t *o) {
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc), k->src_scale), c->scale);
    y = _mm256_add_ps(y, c->bias);
    __m256 t = _mm256_add_ps(_mm256_mul_ps(y, k->out_scale_inv), k->zy_f);
    t = _mm256_min_ps(_mm256_max_ps(t, k->lo_f), k->hi_f);
    store_low_bytes(_mm256_cvtps_epi32(t), left, o);
}

#define FIXED_STEP(NAME, T, FN)                                                                  \
    static inline T cols_##NAME(const fq_epilogue *ep, int32_t n) {                              \
        return FN##_for(load_i(ep->multiplier + n), load_i(ep->shift + n));                      \
    }                                                                                            \
    static inline void step_##NAME(const consts *k, const T *c, __m256i acc, int32_t left,       \
                                   uint8_t *o) {                                                 \
        store_bytes(k, FN##_apply(acc, c), left, o);                                             \
    }
FIXED_STEP(fixed_double, fqv_mbqm, fqv_multiply_by_quantized_multiplier)
FIXED_STEP(fixed_double_right, fqv_mbqm, fqv_multiply_by_quantized_multiplier_right)
FIXED_STEP(fixed_single, fqv_single, fqv_multiply_by_quantized_multiplier_single)
FIXED_STEP(fixed_double_up, fqv_mbqm_up, fqv_multiply_by_quantized_multiplier_double_up)

/* the tile loop (as in epilogue_avx512.c: column blocks outside, rows inside) */
#define DEFINE_EPILOGUE(NAME, COLS_T, COLS, STEP, OUT_T, XOR)                                     \
    static void NAME(int32_t mr, int32_t nc, const int32_t *tile, const int32_t *row_sums,        \
                     int32_t n0, const fq_epilogue *ep, void *out, ptrdiff_t ldo) {               \
        const consts k = make_consts(ep, XOR);                                                    \
        for (int32_t c = 0; c < nc; c += LANES) {                                                 \
            const int32_t n = n0 + c;                                                             \
            const COLS_T cols = COLS(ep, n);                                                      \
            const __m256i col_offset = load_i(ep->col_offset + n);                                \
            const __m256i zw = row_sums ? load_i(ep->w_zero_point + n) : _mm256_setzero_si256();  \
            for (int32_t i = 0; i < mr; i++) {                                                    \
                __m256i acc = _mm256_add_epi32(_mm256_load_si256((const __m256i *)(tile + i * FQ_NR + c)), \
                                               col_offset);                                       \
                if (row_sums)                                                                     \
                    acc = _mm256_sub_epi32(acc, _mm256_mullo_epi32(_mm256_set1_epi32(row_sums[i]), zw)); \
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
    table[FQ_EPV_FIXED_DOUBLE_RIGHT][0] = epi_fixed_double_right_u8;
    table[FQ_EPV_FIXED_DOUBLE_RIGHT][1] = epi_fixed_double_right_s8;
    table[FQ_EPV_FIXED_SINGLE][0] = epi_fixed_single_u8;
    table[FQ_EPV_FIXED_SINGLE][1] = epi_fixed_single_s8;
    table[FQ_EPV_FIXED_DOUBLE_UP][0] = epi_fixed_double_up_u8;
    table[FQ_EPV_FIXED_DOUBLE_UP][1] = epi_fixed_double_up_s8;
    table[FQ_EPV_ONEDNN][0] = epi_onednn_u8;
    table[FQ_EPV_ONEDNN][1] = epi_onednn_s8;
}

#define FUSED_UKERNEL fq_ukernel_avx2
#define FUSED_TABLE fq_fused_avx2
#include "gemm/fused_twin.h"
#endif
