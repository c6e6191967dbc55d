/* The fixed-point family's kernels per ISA (scalar only so far; SIMD lanes live in the GEMM
 * epilogues through fixedpoint_lanes.h). */
#ifndef FASTQ_FIXEDPOINT_H
#define FASTQ_FIXEDPOINT_H
#include "fastq.h"

void fq_mbqm_array_scalar(const int32_t *x, int64_t n, const int32_t *multiplier, const int32_t *shift,
                          int64_t n_channels, int rounding, int32_t *out);
#endif
