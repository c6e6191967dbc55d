/* Portable epilogue: zero-point corrections, then one requantization mode per tile.
 *   acc[m,n] = raw[m,n] + col_offset[n] - row_sum[m] * zw[n]        (wrapping int32)
 * then docs/ARITHMETIC.md §6, §7 or §8 (requant.h, requant_fixedpoint.h), or float / int32 output. */
#include "fastq.h"
#include "requant.h"
#include "requant_fixedpoint.h"

static inline int32_t corrected_acc(const int32_t *tile_row, int32_t c, int32_t row_sum,
                                    int32_t n, const fq_epilogue *ep) {
    int32_t acc = fq_wrap_add(tile_row[c], ep->col_offset[n]);
    if (ep->w_zero_point) acc = fq_wrap_add(acc, -fq_wrap_mul(row_sum, ep->w_zero_point[n]));
    return acc;
}

void fq_epilogue_scalar(int32_t mr, int32_t nc, const int32_t *tile, const int32_t *row_sums,
                        int32_t n0, const fq_epilogue *ep, void *out, ptrdiff_t ldo) {
    for (int32_t i = 0; i < mr; i++) {
        const int32_t *t = tile + (size_t)i * FQ_NR;
        int32_t rs = row_sums ? row_sums[i] : 0;
        switch (ep->kind) {
        case FQ_EPI_INT32: {
            int32_t *o = (int32_t *)out + (ptrdiff_t)i * ldo + n0;
            for (int32_t c = 0; c < nc; c++) o[c] = corrected_acc(t, c, rs, n0 + c, ep);
            break;
        }
        case FQ_EPI_FLOAT: {
            /* dynamic quantization, fastq.DynamicQuantizedLinear: scale[n] = f32(sx * sw[n]);
             * FBGEMM's compiled requantizeForFloatAvx2 fuses the multiply and the bias add
             * (one rounding), QNNPACK's q8gemm_dq rounds twice. */
            float *o = (float *)out + (ptrdiff_t)i * ldo + n0;
            for (int32_t c = 0; c < nc; c++) {
                int32_t n = n0 + c;
                float f = (float)corrected_acc(t, c, rs, n, ep);
                float y;
                if (!ep->bias) y = f * ep->scale[n];
                else if (ep->float_fma) y = fmaf(f, ep->scale[n], ep->bias[n]);
                else y = f * ep->scale[n] + ep->bias[n];   /* -ffp-contract=off: two roundings */
                if (ep->float_relu && y < 0.0f) y = 0.0f;
                o[c] = y;
            }
            break;
        }
        case FQ_EPI_FBGEMM: {
            uint8_t *o = (uint8_t *)out + (ptrdiff_t)i * ldo + n0;
            for (int32_t c = 0; c < nc; c++) {
                int32_t n = n0 + c;
                int32_t q = fq_requant_fbgemm(corrected_acc(t, c, rs, n, ep),
                                              ep->bias ? ep->bias[n] : 0.0f, ep->scale[n],
                                              ep->out_zero_point, ep->out_min, ep->out_max);
                o[c] = (uint8_t)(q ^ ep->out_xor);
            }
            break;
        }
        case FQ_EPI_QNNPACK: {
            uint8_t *o = (uint8_t *)out + (ptrdiff_t)i * ldo + n0;
            for (int32_t c = 0; c < nc; c++) {
                int32_t n = n0 + c;
                int32_t q = fq_requant_qnnpack(corrected_acc(t, c, rs, n, ep), ep->scale[n],
                                               ep->out_zero_point, ep->out_min, ep->out_max);
                o[c] = (uint8_t)(q ^ ep->out_xor);
            }
            break;
        }
        case FQ_EPI_TFLITE: {
            uint8_t *o = (uint8_t *)out + (ptrdiff_t)i * ldo + n0;
            for (int32_t c = 0; c < nc; c++) {
                int32_t n = n0 + c;
                int32_t acc = corrected_acc(t, c, rs, n, ep);
                int32_t y = fq_multiply_by_quantized_multiplier_rounding(acc, ep->multiplier[n], ep->shift[n],
                                                                         ep->rounding);
                int32_t q = fq_tflite_output(y, ep->out_zero_point, ep->out_min, ep->out_max);
                o[c] = (uint8_t)(q ^ ep->out_xor);
            }
            break;
        }
        }
    }
}
