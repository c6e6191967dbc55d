/* im2col compiled for AVX-512 (the body: im2col_body.h; the scalar twin: im2col.c). */
#include "conv/conv.h"
#ifdef FQ_COMPILE_AVX512
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma")
#define FQ_IM2COL_NAME fq_im2col_avx512
#include "conv/im2col_body.h"
#endif
