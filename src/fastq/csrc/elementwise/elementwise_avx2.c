/* Elementwise quantized add / mul, AVX2 + FMA: 8 lanes at a time, then the scalar loops of
 * elementwise_scalar.c for what is left (the tester holds both equal to reference.py on every
 * length 0..130). */
#include "fastq.h"
#include "elementwise/elementwise.h"

#ifdef FQ_COMPILE_AVX2
#include <immintrin.h>

/* 8 values (uint8 or int8) -> 8 int32 lanes */
__attribute__((target("avx2")))
static inline __m256i load8(const void *p, int64_t i, int is_signed) {
    __m128i v = _mm_loadl_epi64((const __m128i *)((const uint8_t *)p + i));
    return is_signed ? _mm256_cvtepi8_epi32(v) : _mm256_cvtepu8_epi32(v);
}

/* 8 int32 lanes already inside [qmin, qmax] -> 8 bytes */
__attribute__((target("avx2")))
static inline void store8(void *p, int64_t i, __m256i r, int is_signed) {
    __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    __m128i p8 = is_signed ? _mm_packs_epi16(p16, p16) : _mm_packus_epi16(p16, p16);
    _mm_storel_epi64((__m128i *)((uint8_t *)p + i), p8);
}

/* torch's vector requantize: cvtps2dq (MXCSR default: round half to even; INT32_MIN outside
 * int32 or NaN), then the zero point added in wrapping int32. cap: t = min(t, 2^31 - 128)
 * first, as the add's QuantizeAvx2 does (the mul's RequantizeAvx2 does not). The scalar twins:
 * fq_ew_add_body_q, and fq_ew_wrap_add(fq_ew_cvtps_i32(t)) (elementwise_scalar.h). */
__attribute__((target("avx2")))
static inline __m256i body_quantize(__m256 t, __m256i zp, int cap) {
    if (cap) t = _mm256_min_ps(t, _mm256_set1_ps(2147483520.0f));
    return _mm256_add_epi32(_mm256_cvtps_epi32(t), zp);
}

/* The fbgemm add body, 8 lanes at a time; returns how many elements it did. */
__attribute__((target("avx2,fma")))
static int64_t qadd_fbgemm_body_avx2(const void *a, const void *b, void *y, int64_t n_vec, float a_scale,
                                     float a_premul, float b_scale, float b_premul, float inv_scale,
                                     int32_t zero_point, int relu, int is_signed, int32_t qmin, int32_t qmax) {
    const __m256 sa = _mm256_set1_ps(a_scale), pa = _mm256_set1_ps(a_premul);
    const __m256 sb = _mm256_set1_ps(b_scale), pb = _mm256_set1_ps(b_premul);
    const __m256 inv = _mm256_set1_ps(inv_scale), zero = _mm256_setzero_ps();
    const __m256i zp = _mm256_set1_epi32(zero_point), lo = _mm256_set1_epi32(qmin), hi = _mm256_set1_epi32(qmax);
    int64_t i = 0;
    for (; i + 8 <= n_vec; i += 8) {
        __m256 da = _mm256_fmadd_ps(sa, _mm256_cvtepi32_ps(load8(a, i, is_signed)), pa);
        __m256 db = _mm256_fmadd_ps(sb, _mm256_cvtepi32_ps(load8(b, i, is_signed)), pb);
        __m256 c = _mm256_add_ps(da, db);
        if (relu) c = _mm256_max_ps(c, zero);
        __m256i r = body_quantize(_mm256_mul_ps(c, inv), zp, 1);
        store8(y, i, _mm256_min_epi32(_mm256_max_epi32(r, lo), hi), is_signed);
    }
    return i;
}

__attribute__((target("avx2")))
static int64_t qmul_body_avx2(const void *a, const void *b, void *y, int64_t n_vec, int32_t a_zero_point,
                              int32_t b_zero_point, float multiplier, int32_t zero_point, int is_signed,
                              int32_t lo_bound, int32_t qmax) {
    const __m256i za = _mm256_set1_epi32(a_zero_point), zb = _mm256_set1_epi32(b_zero_point);
    const __m256i zp = _mm256_set1_epi32(zero_point), lo = _mm256_set1_epi32(lo_bound), hi = _mm256_set1_epi32(qmax);
    const __m256 m = _mm256_set1_ps(multiplier);
    int64_t i = 0;
    for (; i + 8 <= n_vec; i += 8) {
        __m256i c = _mm256_mullo_epi32(_mm256_sub_epi32(load8(a, i, is_signed), za),
                                       _mm256_sub_epi32(load8(b, i, is_signed), zb));
        __m256i r = body_quantize(_mm256_mul_ps(_mm256_cvtepi32_ps(c), m), zp, 0);
        store8(y, i, _mm256_min_epi32(_mm256_max_epi32(r, lo), hi), is_signed);
    }
    return i;
}

__attribute__((target("avx2")))
static int64_t qadd_qnnpack_body_avx2(const uint8_t *a, const uint8_t *b, uint8_t *y, int64_t n_long,
                                      int32_t zero_point_product, uint32_t a_multiplier, uint32_t b_multiplier,
                                      uint32_t shift, int32_t zero_point, int32_t y_min, int32_t y_max) {
    const __m256i zpp = _mm256_set1_epi32(zero_point_product);
    const __m256i am = _mm256_set1_epi32((int32_t)a_multiplier), bm = _mm256_set1_epi32((int32_t)b_multiplier);
    const __m256i mask = _mm256_set1_epi32((int32_t)((UINT32_C(1) << (shift & 31)) - 1u));
    const __m256i thr = _mm256_set1_epi32((int32_t)(((UINT32_C(1) << (shift & 31)) - 1u) >> 1));
    const __m128i sh = _mm_cvtsi32_si128((int)shift);    /* psrad: a count above 31 fills with the sign */
    const __m256i zp = _mm256_set1_epi32(zero_point), lo = _mm256_set1_epi32(y_min), hi = _mm256_set1_epi32(y_max);
    int64_t i = 0;
    for (; i + 8 <= n_long; i += 8) {
        __m256i acc = _mm256_add_epi32(zpp, _mm256_add_epi32(_mm256_mullo_epi32(load8(a, i, 0), am),
                                                             _mm256_mullo_epi32(load8(b, i, 0), bm)));
        __m256i rem = _mm256_sub_epi32(_mm256_and_si256(acc, mask), _mm256_srli_epi32(acc, 31));
        acc = _mm256_sub_epi32(_mm256_sra_epi32(acc, sh), _mm256_cmpgt_epi32(rem, thr));
        __m256i v = _mm256_add_epi32(acc, zp);
        store8(y, i, _mm256_min_epi32(_mm256_max_epi32(v, lo), hi), 0);
    }
    return i;
}

static void qadd_fbgemm_avx2(const void *a, const void *b, void *y, int64_t n, int64_t n_vec,
                             float a_scale, int32_t a_zero_point, float b_scale, int32_t b_zero_point,
                             float inv_scale, int32_t zero_point, int relu, int is_signed) {
    const int32_t qmin = is_signed ? -128 : 0, qmax = is_signed ? 127 : 255;
    if (n_vec > n) n_vec = n;
    int64_t i = qadd_fbgemm_body_avx2(a, b, y, n_vec, a_scale, a_scale * -(float)a_zero_point, b_scale,
                                      b_scale * -(float)b_zero_point, inv_scale, zero_point, relu,
                                      is_signed, qmin, qmax);
    fq_qadd_fbgemm_scalar((const uint8_t *)a + i, (const uint8_t *)b + i, (uint8_t *)y + i, n - i, n_vec - i,
                          a_scale, a_zero_point, b_scale, b_zero_point, inv_scale, zero_point, relu, is_signed);
}

static void qadd_qnnpack_avx2(const uint8_t *a, const uint8_t *b, uint8_t *y, int64_t n,
                              int32_t zero_point_product, uint32_t a_multiplier, uint32_t b_multiplier,
                              uint32_t shift, int32_t zero_point, int32_t y_min, int32_t y_max) {
    const int64_t n_long = fq_qnnpack_long_end(n);     /* the body covers psrad elements only */
    int64_t i = qadd_qnnpack_body_avx2(a, b, y, n_long, zero_point_product, a_multiplier, b_multiplier, shift,
                                       zero_point, y_min, y_max);
    fq_qadd_qnnpack_scalar_split(a + i, b + i, y + i, n - i, n_long - i, zero_point_product, a_multiplier,
                                 b_multiplier, shift, zero_point, y_min, y_max);
}

static void qmul_avx2(const void *a, const void *b, void *y, int64_t n, int64_t n_vec, int32_t a_zero_point,
                      int32_t b_zero_point, float multiplier, int32_t zero_point, int relu, int is_signed) {
    const int32_t qmin = is_signed ? -128 : 0, qmax = is_signed ? 127 : 255;
    const int32_t lo = relu && zero_point > qmin ? zero_point : qmin;
    if (n_vec > n) n_vec = n;
    int64_t i = qmul_body_avx2(a, b, y, n_vec, a_zero_point, b_zero_point, multiplier, zero_point, is_signed,
                               lo, qmax);
    fq_qmul_scalar((const uint8_t *)a + i, (const uint8_t *)b + i, (uint8_t *)y + i, n - i, n_vec - i,
                   a_zero_point, b_zero_point, multiplier, zero_point, relu, is_signed);
}

/* 32 bytes at a time: a byte max and min (unsigned or signed compares), the rest scalar */
__attribute__((target("avx2")))
static void qclamp_avx2(const void *x, void *y, int64_t n, int32_t lo, int32_t hi, int is_signed) {
    const __m256i l = _mm256_set1_epi8((char)lo), h = _mm256_set1_epi8((char)hi);
    const uint8_t *xp = (const uint8_t *)x;
    uint8_t *yp = (uint8_t *)y;
    int64_t i = 0;
    if (is_signed)
        for (; i + 32 <= n; i += 32)
            _mm256_storeu_si256((__m256i *)(yp + i), _mm256_min_epi8(_mm256_max_epi8(
                _mm256_loadu_si256((const __m256i *)(xp + i)), l), h));
    else
        for (; i + 32 <= n; i += 32)
            _mm256_storeu_si256((__m256i *)(yp + i), _mm256_min_epu8(_mm256_max_epu8(
                _mm256_loadu_si256((const __m256i *)(xp + i)), l), h));
    fq_qclamp_scalar(xp + i, yp + i, n - i, lo, hi, is_signed);
}

static const fq_elementwise_kernels avx2_kernels = {
    "avx2", qadd_fbgemm_avx2, qadd_qnnpack_avx2, qmul_avx2, qclamp_avx2,
};

const fq_elementwise_kernels *fq_elementwise_avx2(void) { return &avx2_kernels; }
#else
const fq_elementwise_kernels *fq_elementwise_avx2(void) { return 0; }
#endif
