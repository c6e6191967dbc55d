/* Elementwise fixed-point requantization of int32 arrays (fastq.multiply_by_quantized_multiplier):
 * out[i] = MultiplyByQuantizedMultiplier(x[i], multiplier[c], shift[c]), c = i % n_channels,
 * i.e. per-channel parameters broadcast along the last axis (n_channels == 1: per tensor). */
#include "fastq.h"
#include "fixedpoint/fixedpoint.h"
#include "fixedpoint/requant_fixedpoint.h"

/* One loop per variant so each inner loop has no branch on the rounding. */
#define FQ_MBQM_LOOP(fn)                                                              \
    do {                                                                              \
        if (n_channels == 1) {                                                        \
            const int32_t q = multiplier[0], s = shift[0];                            \
            for (int64_t i = 0; i < n; i++) out[i] = fn(x[i], q, s);                  \
        } else {                                                                      \
            for (int64_t row = 0; row < n; row += n_channels)                         \
                for (int64_t c = 0; c < n_channels; c++)                              \
                    out[row + c] = fn(x[row + c], multiplier[c], shift[c]);           \
        }                                                                             \
    } while (0)

void fq_mbqm_array_scalar(const int32_t *x, int64_t n, const int32_t *multiplier, const int32_t *shift,
                          int64_t n_channels, int rounding, int32_t *out) {
    switch (rounding) {
    case FQ_ROUNDING_SINGLE: FQ_MBQM_LOOP(fq_multiply_by_quantized_multiplier_single); break;
    case FQ_ROUNDING_DOUBLE_UP: FQ_MBQM_LOOP(fq_multiply_by_quantized_multiplier_double_up); break;
    default: FQ_MBQM_LOOP(fq_multiply_by_quantized_multiplier); break;
    }
}

/* through the backend table, so FASTQ_BACKEND reaches this family like every other */
void fq_multiply_by_quantized_multiplier_array(const int32_t *x, int64_t n, const int32_t *multiplier,
                                               const int32_t *shift, int64_t n_channels,
                                               int rounding, int32_t *out) {
    fq_kernels_run(FQ_FAMILY_FIXEDPOINT, -1)->multiply_by_quantized_multiplier(x, n, multiplier, shift,
                                                                                n_channels, rounding, out);
}
