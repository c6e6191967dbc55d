/* AVX2 kernels (exact: int16 widening + vpmaddwd). Placeholder until written: not compiled in. */
#include "fastq.h"
const fq_kernels *fq_kernels_avx2(void) { return NULL; }
