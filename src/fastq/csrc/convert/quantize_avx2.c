/* AVX2 + FMA conversions (backend avx2): the vector twins of quantize.c's scalar kernels, bit
 * for bit. 8 floats per vector; tails go through a small zero-padded buffer (AVX2 has no
 * masked byte stores), so every element takes the vector path. */
#include <string.h>
#include "convert/convert.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#pragma GCC target("avx2,fma")
#include <immintrin.h>

/* fmaf, then clamp in float (vminps returns its second operand when either is NaN, so
 * min(t, qmax) sends NaN to qmax), then cvtps2dq (half to even under the default MXCSR). */
static inline __m256i quantize8(__m256 x, __m256 inv, __m256 zp, __m256 lo, __m256 hi) {
    __m256 t = _mm256_fmadd_ps(x, inv, zp);            /* one rounding */
    t = _mm256_min_ps(t, hi);                          /* t NaN -> hi: operand order matters */
    t = _mm256_max_ps(t, lo);
    return _mm256_cvtps_epi32(t);
}

/* 32 floats -> 32 bytes. The packs work within 128-bit lanes; values fit, nothing saturates. */
static inline void quantize32(const float *x, uint8_t *q, __m256 inv, __m256 zp, __m256 lo,
                              __m256 hi, int is_signed) {
    __m256i a = quantize8(_mm256_loadu_ps(x), inv, zp, lo, hi);
    __m256i b = quantize8(_mm256_loadu_ps(x + 8), inv, zp, lo, hi);
    __m256i c = quantize8(_mm256_loadu_ps(x + 16), inv, zp, lo, hi);
    __m256i d = quantize8(_mm256_loadu_ps(x + 24), inv, zp, lo, hi);
    __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    __m256i bytes = is_signed ? _mm256_packs_epi16(ab, cd) : _mm256_packus_epi16(ab, cd);
    /* dwords now hold a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7 */
    bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, bytes);
}

static void quantize_avx2(const float *x, int64_t n, float inv_scale, float zero_point,
                          int32_t qmin, int32_t qmax, uint8_t *q) {
    const __m256 inv = _mm256_set1_ps(inv_scale), zp = _mm256_set1_ps(zero_point);
    const __m256 lo = _mm256_set1_ps((float)qmin), hi = _mm256_set1_ps((float)qmax);
    const int is_signed = qmin < 0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) quantize32(x + i, q + i, inv, zp, lo, hi, is_signed);
    if (i < n) {
        float xt[32] = {0};
        uint8_t qt[32];
        memcpy(xt, x + i, (size_t)(n - i) * sizeof(float));
        quantize32(xt, qt, inv, zp, lo, hi, is_signed);
        memcpy(q + i, qt, (size_t)(n - i));
    }
}

/* (float)(q - zp) is exact (|q - zp| <= 510), then one rounding multiply: scalar's twin */
static inline void dequantize8(__m256i v, __m256i zp, __m256 s, float *x) {
    _mm256_storeu_ps(x, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(v, zp)), s));
}

/* 8 bytes widened to int32 lanes: zero extension for uint8, sign extension for int8 */
static inline __m256i widen8(const void *p, int is_signed) {
    __m128i v = _mm_loadl_epi64((const __m128i *)p);
    return is_signed ? _mm256_cvtepi8_epi32(v) : _mm256_cvtepu8_epi32(v);
}

static void dequantize_avx2(const void *q, int is_signed, int64_t n, int32_t zero_point, float scale,
                            float *x) {
    const uint8_t *qb = (const uint8_t *)q;
    const __m256i zp = _mm256_set1_epi32(zero_point);
    const __m256 s = _mm256_set1_ps(scale);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) dequantize8(widen8(qb + i, is_signed), zp, s, x + i);
    if (i < n) {   /* tail through a zero-padded copy: nothing is read past q + n */
        uint8_t qt[8] = {0};
        float xt[8];
        memcpy(qt, qb + i, (size_t)(n - i));
        dequantize8(widen8(qt, is_signed), zp, s, xt);
        memcpy(x + i, xt, (size_t)(n - i) * sizeof(float));
    }
}

static void dequantize_u8_avx2(const uint8_t *q, int64_t n, int32_t zero_point, float scale, float *x) {
    dequantize_avx2(q, 0, n, zero_point, scale, x);
}

static void dequantize_s8_avx2(const int8_t *q, int64_t n, int32_t zero_point, float scale, float *x) {
    dequantize_avx2(q, 1, n, zero_point, scale, x);
}

/* One pass: running min / max and a sticky "not finite" flag (|x| > FLT_MAX, unordered for
 * NaN). The tail buffer is filled with x[0], which changes neither min nor max. */
static int minmax_avx2(const float *x, int64_t n, float *min_out, float *max_out) {
    const __m256 fill = _mm256_set1_ps(x[0]);
    const __m256 big = _mm256_set1_ps(3.40282347e38f);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 mn0 = fill, mx0 = fill, mn1 = fill, mx1 = fill;
    __m256 bad = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_and_ps(a, abs_mask), big, _CMP_NLE_UQ));
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_and_ps(b, abs_mask), big, _CMP_NLE_UQ));
        mn0 = _mm256_min_ps(mn0, a);
        mx0 = _mm256_max_ps(mx0, a);
        mn1 = _mm256_min_ps(mn1, b);
        mx1 = _mm256_max_ps(mx1, b);
    }
    if (i < n) {
        float xt[16];
        for (int j = 0; j < 16; j++) xt[j] = i + j < n ? x[i + j] : x[0];
        __m256 a = _mm256_loadu_ps(xt), b = _mm256_loadu_ps(xt + 8);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_and_ps(a, abs_mask), big, _CMP_NLE_UQ));
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_and_ps(b, abs_mask), big, _CMP_NLE_UQ));
        mn0 = _mm256_min_ps(mn0, a);
        mx0 = _mm256_max_ps(mx0, a);
        mn1 = _mm256_min_ps(mn1, b);
        mx1 = _mm256_max_ps(mx1, b);
    }
    float mn[8], mx[8];
    _mm256_storeu_ps(mn, _mm256_min_ps(mn0, mn1));
    _mm256_storeu_ps(mx, _mm256_max_ps(mx0, mx1));
    float lo = mn[0], hi = mx[0];
    for (int j = 1; j < 8; j++) {
        lo = mn[j] < lo ? mn[j] : lo;
        hi = mx[j] > hi ? mx[j] : hi;
    }
    *min_out = lo;
    *max_out = hi;
    return _mm256_movemask_ps(bad) == 0;
}

static const fq_convert_kernels kernels_avx2 = {
    "avx2", quantize_avx2, dequantize_u8_avx2, dequantize_s8_avx2, minmax_avx2,
};

const fq_convert_kernels *fq_convert_avx2(void) { return &kernels_avx2; }

#else
const fq_convert_kernels *fq_convert_avx2(void) { return 0; }
#endif
