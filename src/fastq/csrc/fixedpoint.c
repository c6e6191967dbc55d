/* Elementwise fixed-point requantization of int32 arrays (fastq.multiply_by_quantized_multiplier):
 * out[i] = MultiplyByQuantizedMultiplier(x[i], multiplier[c], shift[c]), c = i % n_channels,
 * i.e. per-channel parameters broadcast along the last axis (n_channels == 1: per tensor). */
#include "fastq.h"
#include "requant_fixedpoint.h"

void fq_multiply_by_quantized_multiplier_array(const int32_t *x, int64_t n, const int32_t *multiplier,
                                               const int32_t *shift, int64_t n_channels,
                                               int single_rounding, int32_t *out) {
    if (n_channels == 1) {
        const int32_t q = multiplier[0], s = shift[0];
        if (single_rounding)
            for (int64_t i = 0; i < n; i++) out[i] = fq_multiply_by_quantized_multiplier_single(x[i], q, s);
        else
            for (int64_t i = 0; i < n; i++) out[i] = fq_multiply_by_quantized_multiplier(x[i], q, s);
        return;
    }
    for (int64_t row = 0; row < n; row += n_channels) {
        const int32_t *xr = x + row;
        int32_t *orow = out + row;
        if (single_rounding)
            for (int64_t c = 0; c < n_channels; c++)
                orow[c] = fq_multiply_by_quantized_multiplier_single(xr[c], multiplier[c], shift[c]);
        else
            for (int64_t c = 0; c < n_channels; c++)
                orow[c] = fq_multiply_by_quantized_multiplier(xr[c], multiplier[c], shift[c]);
    }
}
