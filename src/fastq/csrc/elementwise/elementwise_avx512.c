/* Elementwise quantized add (torch's fbgemm body) and clamp with AVX-512: 16 lanes of the add a
 * step, 64 bytes of the clamp; everything else, and every leftover, is AVX2's table and the
 * scalar loops of elementwise_scalar.c (the tester holds all backends equal to the scalar loops
 * on every length 0..130). Each lane computes exactly what the AVX2 body does: fma dequantize,
 * float add, max with 0, multiply by 1/s_y, min with 2^31 - 128, cvtps2dq (MXCSR: ties to even),
 * wrapping zero point add, clamp. */
#include "fastq.h"
#include "elementwise/elementwise.h"

#ifdef FQ_COMPILE_AVX512
#pragma GCC target("avx512f,avx512bw,avx512vl")
#include <immintrin.h>

static inline __m512i load16(const void *p, int64_t i, int is_signed) {
    __m128i v = _mm_loadu_si128((const __m128i *)((const uint8_t *)p + i));
    return is_signed ? _mm512_cvtepi8_epi32(v) : _mm512_cvtepu8_epi32(v);
}

static int64_t qadd_fbgemm_body_avx512(const void *a, const void *b, void *y, int64_t n_vec, float a_scale,
                                       float a_premul, float b_scale, float b_premul, float inv_scale,
                                       int32_t zero_point, int relu, int is_signed, int32_t qmin, int32_t qmax) {
    const __m512 sa = _mm512_set1_ps(a_scale), pa = _mm512_set1_ps(a_premul);
    const __m512 sb = _mm512_set1_ps(b_scale), pb = _mm512_set1_ps(b_premul);
    const __m512 inv = _mm512_set1_ps(inv_scale), zero = _mm512_setzero_ps();
    const __m512 cap = _mm512_set1_ps(2147483520.0f);
    const __m512i zp = _mm512_set1_epi32(zero_point), lo = _mm512_set1_epi32(qmin), hi = _mm512_set1_epi32(qmax);
    int64_t i = 0;
    for (; i + 16 <= n_vec; i += 16) {
        __m512 da = _mm512_fmadd_ps(sa, _mm512_cvtepi32_ps(load16(a, i, is_signed)), pa);
        __m512 db = _mm512_fmadd_ps(sb, _mm512_cvtepi32_ps(load16(b, i, is_signed)), pb);
        __m512 c = _mm512_add_ps(da, db);
        if (relu) c = _mm512_max_ps(c, zero);
        __m512 t = _mm512_min_ps(_mm512_mul_ps(c, inv), cap);      /* NaN -> cap, as minps */
        __m512i r = _mm512_add_epi32(_mm512_cvtps_epi32(t), zp);
        r = _mm512_min_epi32(_mm512_max_epi32(r, lo), hi);
        _mm_storeu_si128((__m128i *)((uint8_t *)y + i), _mm512_cvtepi32_epi8(r));
    }
    return i;
}

static void qadd_fbgemm_avx512(const void *a, const void *b, void *y, int64_t n, int64_t n_vec,
                               float a_scale, int32_t a_zero_point, float b_scale, int32_t b_zero_point,
                               float inv_scale, int32_t zero_point, int relu, int is_signed) {
    const int32_t qmin = is_signed ? -128 : 0, qmax = is_signed ? 127 : 255;
    if (n_vec > n) n_vec = n;
    int64_t i = relu ? qadd_fbgemm_body_avx512(a, b, y, n_vec, a_scale, a_scale * -(float)a_zero_point, b_scale,
                                               b_scale * -(float)b_zero_point, inv_scale, zero_point, 1,
                                               is_signed, qmin, qmax)
                     : qadd_fbgemm_body_avx512(a, b, y, n_vec, a_scale, a_scale * -(float)a_zero_point, b_scale,
                                               b_scale * -(float)b_zero_point, inv_scale, zero_point, 0,
                                               is_signed, qmin, qmax);
    /* the AVX2 kernel does the rest (its 8-lane body, then the scalar body and tail) */
    fq_elementwise_avx2()->qadd_fbgemm((const uint8_t *)a + i, (const uint8_t *)b + i, (uint8_t *)y + i, n - i,
                                       n_vec - i, a_scale, a_zero_point, b_scale, b_zero_point, inv_scale,
                                       zero_point, relu, is_signed);
}

static void qclamp_avx512(const void *x, void *y, int64_t n, int32_t lo, int32_t hi, int is_signed) {
    const __m512i l = _mm512_set1_epi8((char)lo), h = _mm512_set1_epi8((char)hi);
    const uint8_t *xp = (const uint8_t *)x;
    uint8_t *yp = (uint8_t *)y;
    int64_t i = 0;
    if (is_signed)
        for (; i + 64 <= n; i += 64)
            _mm512_storeu_si512(yp + i, _mm512_min_epi8(_mm512_max_epi8(_mm512_loadu_si512(xp + i), l), h));
    else
        for (; i + 64 <= n; i += 64)
            _mm512_storeu_si512(yp + i, _mm512_min_epu8(_mm512_max_epu8(_mm512_loadu_si512(xp + i), l), h));
    fq_elementwise_avx2()->clamp(xp + i, yp + i, n - i, lo, hi, is_signed);
}

const fq_elementwise_kernels *fq_elementwise_avx512(void) {
    /* AVX2's table with the add and the clamp replaced; filled on the first call (the backend
     * table is built once, at import, under the GIL) */
    static fq_elementwise_kernels k;
    static int filled;
    if (!filled) {
        k = *fq_elementwise_avx2();
        k.name = "avx512";
        k.qadd_fbgemm = qadd_fbgemm_avx512;
        k.clamp = qclamp_avx512;
        filled = 1;
    }
    return &k;
}
#else
const fq_elementwise_kernels *fq_elementwise_avx512(void) { return 0; }
#endif
