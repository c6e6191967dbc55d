/* The GEMM family's kernels per ISA, as runtime/backends.c's fill functions list them. */
#ifndef FASTQ_GEMM_KERNELS_H
#define FASTQ_GEMM_KERNELS_H
#include "fastq.h"

/* Width of panel p of an N-column matrix (fastq.h): 64, the last one N's remainder rounded
 * up to 16. */
static inline int32_t fq_panel_width(int32_t n, int32_t p) {
    int32_t left = n - p * FQ_NR;
    return left >= FQ_NR ? FQ_NR : (left + FQ_NR_STEP - 1) / FQ_NR_STEP * FQ_NR_STEP;
}

/* Rows per tile of the AVX-512 kernels per panel width 16, 32, 48, 64: as many rows as keep
 * about 24 accumulators (rows x zmm per k-group) in registers, at most FQ_MR_MAX. */
#define FQ_MR_AVX512_W16 16
#define FQ_MR_AVX512_W32 12
#define FQ_MR_AVX512_W48 8
#define FQ_MR_AVX512_W64 6

void fq_ukernel_scalar(int32_t, int32_t, const uint8_t *, ptrdiff_t, uint8_t, const int8_t *, int32_t, int32_t, int32_t *);
void fq_row_sums_scalar(const uint8_t *, ptrdiff_t, int32_t, int32_t, uint8_t, int32_t *);
void fq_epilogues_scalar(fq_epilogue_fn table[FQ_EPV_COUNT][2]);
void fq_fused_scalar(fq_fused_fn table[FQ_NR_WIDTHS][FQ_EPV_COUNT]);   /* the byte variants */
void fq_pack_panels_scalar(const int8_t *, ptrdiff_t, int32_t, int32_t, int8_t *, int32_t *, int32_t *, int32_t *);

#ifdef FQ_COMPILE_AVX2
void fq_ukernel_avx2(int32_t, int32_t, const uint8_t *, ptrdiff_t, uint8_t, const int8_t *, int32_t, int32_t, int32_t *);
void fq_gemv_avx2(int32_t, int32_t, const uint8_t *, ptrdiff_t, uint8_t, const int8_t *, int32_t, int32_t, int32_t *);
void fq_row_sums_avx2(const uint8_t *, ptrdiff_t, int32_t, int32_t, uint8_t, int32_t *);
void fq_epilogues_avx2(fq_epilogue_fn table[FQ_EPV_COUNT][2]);   /* sets the variants it has */
void fq_fused_avx2(fq_fused_fn table[FQ_NR_WIDTHS][FQ_EPV_COUNT]);
void fq_pack_panels_avx2(const int8_t *, ptrdiff_t, int32_t, int32_t, int8_t *, int32_t *, int32_t *, int32_t *);
#define FQ_MR_AVX2 4
#endif

#ifdef FQ_COMPILE_AVX512
/* one per panel width 16, 32, 48, 64 (rows per tile FQ_MR_AVX512_W*) */
void fq_ukernel_avx512vnni_w16(int32_t, int32_t, const uint8_t *, ptrdiff_t, uint8_t, const int8_t *, int32_t, int32_t, int32_t *);
void fq_ukernel_avx512vnni_w32(int32_t, int32_t, const uint8_t *, ptrdiff_t, uint8_t, const int8_t *, int32_t, int32_t, int32_t *);
void fq_ukernel_avx512vnni_w48(int32_t, int32_t, const uint8_t *, ptrdiff_t, uint8_t, const int8_t *, int32_t, int32_t, int32_t *);
void fq_ukernel_avx512vnni_w64(int32_t, int32_t, const uint8_t *, ptrdiff_t, uint8_t, const int8_t *, int32_t, int32_t, int32_t *);
void fq_gemv_avx512vnni(int32_t, int32_t, const uint8_t *, ptrdiff_t, uint8_t, const int8_t *, int32_t, int32_t, int32_t *);
void fq_row_sums_avx512(const uint8_t *, ptrdiff_t, int32_t, int32_t, uint8_t, int32_t *);
void fq_epilogues_avx512(fq_epilogue_fn table[FQ_EPV_COUNT][2]);
/* the microkernels with the byte epilogue applied to the accumulators in registers */
void fq_fused_avx512vnni(fq_fused_fn table[FQ_NR_WIDTHS][FQ_EPV_COUNT]);
/* the same over runs of K (fq_k_runs), uint8 A */
void fq_fused_runs_avx512vnni(fq_fused_runs_fn table[FQ_NR_WIDTHS][FQ_EPV_COUNT]);
#endif

#endif
