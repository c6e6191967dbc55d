/* im2col compiled for AVX2 (the body: im2col_body.h; the scalar twin: im2col.c). */
#include "conv/conv.h"
#ifdef FQ_COMPILE_AVX2
#pragma GCC target("avx2,fma")
#define FQ_IM2COL_NAME fq_im2col_avx2
#include "conv/im2col_body.h"
#endif
