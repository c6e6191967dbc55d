/* Portable epilogues, one function per (variant, output type), built from the scalar
 * primitives of requant.h and requant_fixedpoint.h:
 *   acc[m,n] = raw[m,n] + col_offset[n] - row_sum[m] * zw[n]        (wrapping int32)
 * then one requantization step per column (docs/ARITHMETIC.md §6, §7, §8). The SIMD epilogues
 * are tested against these, and are these where an ISA has no SIMD variant (the table says). */
#include "fastq.h"
#include "gemm/kernels.h"
#include "gemm/requant.h"
#include "fixedpoint/requant_fixedpoint.h"

static inline int32_t corrected_acc(const int32_t *tile_row, int32_t c, int32_t row_sum,
                                    int32_t n, const fq_epilogue *ep) {
    int32_t acc = fq_wrap_add(tile_row[c], ep->col_offset[n]);
    if (ep->w_zero_point) acc = fq_wrap_add(acc, -fq_wrap_mul(row_sum, ep->w_zero_point[n]));
    return acc;
}

/* ---- one column each: acc -> the stored value ------------------------------------------- */
static inline int32_t step_int32(const fq_epilogue *ep, int32_t n, int32_t acc) {
    (void)ep; (void)n;
    return acc;
}

/* dynamic quantization, scale[n] = f32(sx * sw[n]): FBGEMM's compiled requantizeForFloatAvx2
 * fuses the multiply and the bias add (one rounding), QNNPACK's q8gemm_dq rounds twice */
static inline float float_relu(const fq_epilogue *ep, float y) {
    return ep->float_relu && y < 0.0f ? 0.0f : y;
}
static inline float step_float_fma(const fq_epilogue *ep, int32_t n, int32_t acc) {
    return float_relu(ep, fmaf((float)acc, ep->scale[n], ep->bias[n]));
}
static inline float step_float_two(const fq_epilogue *ep, int32_t n, int32_t acc) {
    return float_relu(ep, (float)acc * ep->scale[n] + ep->bias[n]);   /* -ffp-contract=off */
}

static inline int32_t step_fbgemm(const fq_epilogue *ep, int32_t n, int32_t acc) {
    return fq_requant_fbgemm(acc, ep->bias[n], ep->bias_mult, ep->scale[n], ep->out_zero_point,
                             ep->out_min, ep->out_max);
}
static inline int32_t step_qnnpack(const fq_epilogue *ep, int32_t n, int32_t acc) {
    return fq_requant_qnnpack(acc, ep->scale[n], ep->out_zero_point, ep->out_min, ep->out_max);
}
static inline int32_t step_fixed_double(const fq_epilogue *ep, int32_t n, int32_t acc) {
    return fq_tflite_output(fq_multiply_by_quantized_multiplier(acc, ep->multiplier[n], ep->shift[n]),
                            ep->out_zero_point, ep->out_min, ep->out_max);
}
static inline int32_t step_fixed_single(const fq_epilogue *ep, int32_t n, int32_t acc) {
    return fq_tflite_output(fq_multiply_by_quantized_multiplier_single(acc, ep->multiplier[n], ep->shift[n]),
                            ep->out_zero_point, ep->out_min, ep->out_max);
}
static inline int32_t step_fixed_double_up(const fq_epilogue *ep, int32_t n, int32_t acc) {
    return fq_tflite_output(
        fq_multiply_by_quantized_multiplier_double_up(acc, ep->multiplier[n], ep->shift[n]),
        ep->out_zero_point, ep->out_min, ep->out_max);
}

/* oneDNN: computed in the output's own terms (int8: zy - 128), returned in uint8 terms so the
 * byte store's XOR gives back the own-terms byte ((r + 128) ^ 0x80 = r, modulo 256) */
static inline int32_t step_onednn(const fq_epilogue *ep, int32_t n, int32_t acc) {
    int32_t off = ep->out_signed ? 128 : 0;
    return off + fq_requant_onednn(acc, ep->src_scale, ep->scale[n], ep->bias[n], ep->out_scale_inv,
                                   (float)(ep->out_zero_point - off), (float)(ep->out_min - off),
                                   (float)(ep->out_max - off));
}

/* The tile loop, once per step and output type; STORE turns a step's value into an element:
 * bytes are XORed with XOR (0x80: int8 = uint8 - 128). */
#define STORE_AS_IS(v, XOR) (v)
#define STORE_BYTE(v, XOR) ((uint8_t)((v) ^ (XOR)))
#define DEFINE_EPILOGUE(NAME, STEP, OUT_T, STORE, XOR)                                      \
    static void NAME(int32_t mr, int32_t nc, const int32_t *tile, const int32_t *row_sums,   \
                     int32_t n0, const fq_epilogue *ep, void *out, ptrdiff_t ldo) {          \
        for (int32_t i = 0; i < mr; i++) {                                                   \
            const int32_t *t = tile + (size_t)i * FQ_NR;                                     \
            int32_t rs = row_sums ? row_sums[i] : 0;                                         \
            OUT_T *o = (OUT_T *)out + (ptrdiff_t)i * ldo + n0;                               \
            for (int32_t c = 0; c < nc; c++)                                                 \
                o[c] = STORE(STEP(ep, n0 + c, corrected_acc(t, c, rs, n0 + c, ep)), XOR);    \
        }                                                                                    \
    }
#define DEFINE_BYTE_EPILOGUES(NAME, STEP)                         \
    DEFINE_EPILOGUE(NAME##_u8, STEP, uint8_t, STORE_BYTE, 0)      \
    DEFINE_EPILOGUE(NAME##_s8, STEP, uint8_t, STORE_BYTE, 0x80)

DEFINE_EPILOGUE(epi_int32, step_int32, int32_t, STORE_AS_IS, 0)
DEFINE_EPILOGUE(epi_float_fma, step_float_fma, float, STORE_AS_IS, 0)
DEFINE_EPILOGUE(epi_float_two, step_float_two, float, STORE_AS_IS, 0)
DEFINE_BYTE_EPILOGUES(epi_fbgemm, step_fbgemm)
DEFINE_BYTE_EPILOGUES(epi_qnnpack, step_qnnpack)
DEFINE_BYTE_EPILOGUES(epi_fixed_double, step_fixed_double)
DEFINE_BYTE_EPILOGUES(epi_fixed_single, step_fixed_single)
DEFINE_BYTE_EPILOGUES(epi_fixed_double_up, step_fixed_double_up)
DEFINE_BYTE_EPILOGUES(epi_onednn, step_onednn)

/* Fills every entry: [variant][out_signed]; int32 / float output has no byte type. */
void fq_epilogues_scalar(fq_epilogue_fn table[FQ_EPV_COUNT][2]) {
    table[FQ_EPV_INT32][0] = table[FQ_EPV_INT32][1] = epi_int32;
    table[FQ_EPV_FLOAT_FMA][0] = table[FQ_EPV_FLOAT_FMA][1] = epi_float_fma;
    table[FQ_EPV_FLOAT_TWO_ROUNDINGS][0] = table[FQ_EPV_FLOAT_TWO_ROUNDINGS][1] = epi_float_two;
    table[FQ_EPV_FBGEMM][0] = epi_fbgemm_u8;
    table[FQ_EPV_FBGEMM][1] = epi_fbgemm_s8;
    table[FQ_EPV_QNNPACK][0] = epi_qnnpack_u8;
    table[FQ_EPV_QNNPACK][1] = epi_qnnpack_s8;
    table[FQ_EPV_FIXED_DOUBLE][0] = epi_fixed_double_u8;
    table[FQ_EPV_FIXED_DOUBLE][1] = epi_fixed_double_s8;
    table[FQ_EPV_FIXED_DOUBLE_RIGHT][0] = epi_fixed_double_u8;    /* the general code serves */
    table[FQ_EPV_FIXED_DOUBLE_RIGHT][1] = epi_fixed_double_s8;
    table[FQ_EPV_FIXED_SINGLE][0] = epi_fixed_single_u8;
    table[FQ_EPV_FIXED_SINGLE][1] = epi_fixed_single_s8;
    table[FQ_EPV_FIXED_DOUBLE_UP][0] = epi_fixed_double_up_u8;
    table[FQ_EPV_FIXED_DOUBLE_UP][1] = epi_fixed_double_up_s8;
    table[FQ_EPV_ONEDNN][0] = epi_onednn_u8;
    table[FQ_EPV_ONEDNN][1] = epi_onednn_s8;
}

#define FUSED_UKERNEL fq_ukernel_scalar
#define FUSED_TABLE fq_fused_scalar
#include "gemm/fused_twin.h"
