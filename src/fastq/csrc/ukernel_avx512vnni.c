/* AVX-512 VNNI kernels. Placeholder until written: not compiled in. */
#include "fastq.h"
const fq_kernels *fq_kernels_avx512vnni(void) { return NULL; }
