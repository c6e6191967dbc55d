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
#include "gemm/epilogue_avx512_steps.h"

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
