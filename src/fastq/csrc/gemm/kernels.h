/* The GEMM family's kernels per ISA, as runtime/backends.c's fill functions list them. */
#ifndef FASTQ_GEMM_KERNELS_H
#define FASTQ_GEMM_KERNELS_H
#include "fastq.h"

void fq_ukernel_scalar(int32_t, int32_t, const uint8_t *, ptrdiff_t, uint8_t, const int8_t *, int32_t, int32_t *);
void fq_row_sums_scalar(const uint8_t *, ptrdiff_t, int32_t, int32_t, uint8_t, int32_t *);
void fq_epilogues_scalar(fq_epilogue_fn table[FQ_EPV_COUNT][2]);
void fq_pack_panels_scalar(const int8_t *, ptrdiff_t, int32_t, int32_t, int8_t *, int32_t *, int32_t *, int32_t *);

#ifdef FQ_COMPILE_AVX2
void fq_ukernel_avx2(int32_t, int32_t, const uint8_t *, ptrdiff_t, uint8_t, const int8_t *, int32_t, int32_t *);
void fq_gemv_avx2(int32_t, int32_t, const uint8_t *, ptrdiff_t, uint8_t, const int8_t *, int32_t, int32_t *);
void fq_row_sums_avx2(const uint8_t *, ptrdiff_t, int32_t, int32_t, uint8_t, int32_t *);
void fq_epilogues_avx2(fq_epilogue_fn table[FQ_EPV_COUNT][2]);   /* sets the variants it has */
void fq_pack_panels_avx2(const int8_t *, ptrdiff_t, int32_t, int32_t, int8_t *, int32_t *, int32_t *, int32_t *);
#define FQ_MR_AVX2 4
#endif

#ifdef FQ_COMPILE_AVX512
void fq_ukernel_avx512vnni(int32_t, int32_t, const uint8_t *, ptrdiff_t, uint8_t, const int8_t *, int32_t, int32_t *);
void fq_gemv_avx512vnni(int32_t, int32_t, const uint8_t *, ptrdiff_t, uint8_t, const int8_t *, int32_t, int32_t *);
void fq_row_sums_avx512(const uint8_t *, ptrdiff_t, int32_t, int32_t, uint8_t, int32_t *);
void fq_epilogues_avx512(fq_epilogue_fn table[FQ_EPV_COUNT][2]);
#define FQ_MR_AVX512 6
#endif

#endif
