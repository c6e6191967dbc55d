/* float32 <-> uint8 / int8 conversions with torch's arithmetic (docs/ARITHMETIC.md §10): the scalar
 * kernels (the twins of quantize_avx2.c / quantize_avx512.c) and the dispatch on the current
 * backend.
 *
 * quantize: t = fmaf(x, inv_scale, zero_point) (one rounding), then
 *           q = clamp(rne(min(t, 2147483520)), qmin, qmax), NaN -> qmax.
 * Every kernel clamps t in float first, min(t, qmax) with NaN -> qmax, then max(., qmin), and
 * rounds afterwards: rne is monotone and qmin, qmax are integers, so clamp(rne(t)) equals
 * rne(clamp(t)), and NaN / anything above 2147483520 lands on qmax exactly as torch's cap does.
 * The clamped t lies in [-128, 255], so the rounding is exact and cheap. */
#include <float.h>
#include <math.h>
#include <string.h>
#include "convert.h"

/* The exact shortcuts below need each float / double operation rounded to its own type; with
 * excess precision (x87, FLT_EVAL_METHOD != 0) the libm calls take over. */
#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#define FQ_EXCESS_PRECISION 1
#endif

/* fmaf(x, y, z) without a libm call where the compiler has no fused multiply-add instruction:
 * x*y is exact in double (24 + 24 bits), the sum is rounded to odd (TwoSum gives its error),
 * and a 53-bit round-to-odd value rounds to float exactly as the real sum would
 * (53 >= 2*24 + 2). Inf / NaN pass through (their error is NaN, and no bit is touched). */
static inline float fma_f32(float x, float y, float z) {
#if defined(FP_FAST_FMAF) || defined(FQ_EXCESS_PRECISION)
    return fmaf(x, y, z);                              /* one instruction (or needed) here */
#else
    double p = (double)x * (double)y;
    double zd = (double)z;
    double s = p + zd;
    double bp = s - p;
    double err = (p - (s - bp)) + (zd - bp);           /* s + err == p + z exactly */
    uint64_t bits;
    memcpy(&bits, &s, sizeof bits);
    if ((err > 0 || err < 0) && !(bits & 1))           /* inexact, even: step to the odd neighbour */
        bits += ((err > 0) == (s > 0)) ? 1 : (uint64_t)-1;
    memcpy(&s, &bits, sizeof bits);
    return (float)s;
#endif
}

/* rne for |t| <= 2^22 in the current rounding mode (default: half to even), no libm call:
 * adding 1.5 * 2^23 leaves no fraction bits, subtracting it back is exact. */
static inline float round_small(float t) {
#if defined(FQ_EXCESS_PRECISION)
    return nearbyintf(t);
#else
    const float magic = 12582912.0f;     /* IEEE semantics (no -ffast-math): never folded */
    return (t + magic) - magic;
#endif
}

static void quantize_scalar(const float *x, int64_t n, float inv_scale, float zero_point,
                            int32_t qmin, int32_t qmax, uint8_t *q) {
    const float lo = (float)qmin, hi = (float)qmax;
    for (int64_t i = 0; i < n; i++) {
        float t = fma_f32(x[i], inv_scale, zero_point);
        if (!(t <= hi)) t = hi;                        /* NaN, and everything above qmax */
        if (t < lo) t = lo;
        q[i] = (uint8_t)(int32_t)round_small(t);
    }
}

static void dequantize_u8_scalar(const uint8_t *q, int64_t n, int32_t zero_point, float scale, float *x) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)((int32_t)q[i] - zero_point) * scale;
}

static void dequantize_s8_scalar(const int8_t *q, int64_t n, int32_t zero_point, float scale, float *x) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)((int32_t)q[i] - zero_point) * scale;
}

static int minmax_scalar(const float *x, int64_t n, float *min_out, float *max_out) {
    float mn = x[0], mx = x[0];
    int finite = 1;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        finite &= fabsf(v) <= 3.40282347e38f;          /* false for inf and NaN */
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
    }
    *min_out = mn;
    *max_out = mx;
    return finite;
}

/* The scalar kernels' fused multiply-add, elementwise (tests hold it against exact rationals). */
void fq_fmaf_portable(const float *x, const float *y, const float *z, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) out[i] = fma_f32(x[i], y[i], z[i]);
}

static const fq_convert_kernels scalar_kernels = {
    "scalar", quantize_scalar, dequantize_u8_scalar, dequantize_s8_scalar, minmax_scalar,
};

const fq_convert_kernels *fq_convert_scalar(void) { return &scalar_kernels; }

/* The CPU check for the explicit-ISA entry (tests); the backend switch already checks its own. */
static int cpu_runs(int isa) {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    __builtin_cpu_init();
    if (isa == FQ_BACKEND_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == FQ_BACKEND_AVX512VNNI)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl");
#endif
    return isa == FQ_BACKEND_SCALAR;
}

static const fq_convert_kernels *compiled(int isa) {
    switch (isa) {
    case FQ_BACKEND_SCALAR: return &scalar_kernels;
    case FQ_BACKEND_AVX2: return fq_convert_avx2();
    case FQ_BACKEND_AVX512VNNI: return fq_convert_avx512();
    default: return NULL;
    }
}

int fq_convert_supported(int isa) {
    return compiled(isa) != NULL && cpu_runs(isa);
}

/* isa < 0: the current backend's kernels (scalar where that backend has none compiled in). */
static const fq_convert_kernels *kernels(int isa) {
    const fq_convert_kernels *k;
    if (isa >= 0)
        k = fq_convert_supported(isa) ? compiled(isa) : NULL;
    else
        k = compiled(fq_get_backend());       /* a selected backend always runs on this CPU */
    return k ? k : &scalar_kernels;
}

void fq_quantize_u8_isa(int isa, const float *x, int64_t n, float inv_scale, float zero_point,
                        int32_t qmin, int32_t qmax, uint8_t *q) {
    if (n > 0) kernels(isa)->quantize(x, n, inv_scale, zero_point, qmin, qmax, q);
}

void fq_quantize_u8(const float *x, int64_t n, float inv_scale, float zero_point,
                    int32_t qmin, int32_t qmax, uint8_t *q) {
    fq_quantize_u8_isa(-1, x, n, inv_scale, zero_point, qmin, qmax, q);
}

void fq_quantize_s8(const float *x, int64_t n, float inv_scale, float zero_point,
                    int32_t qmin, int32_t qmax, int8_t *q) {
    fq_quantize_u8_isa(-1, x, n, inv_scale, zero_point, qmin, qmax, (uint8_t *)q);
}

void fq_dequantize_u8(int isa, const uint8_t *q, int64_t n, int32_t zero_point, float scale, float *x) {
    if (n > 0) kernels(isa)->dequantize_u8(q, n, zero_point, scale, x);
}

void fq_dequantize_s8(int isa, const int8_t *q, int64_t n, int32_t zero_point, float scale, float *x) {
    if (n > 0) kernels(isa)->dequantize_s8(q, n, zero_point, scale, x);
}

int fq_minmax_f32(int isa, const float *x, int64_t n, float *min_out, float *max_out) {
    if (n <= 0) {
        *min_out = *max_out = 0.0f;
        return 1;
    }
    return kernels(isa)->minmax(x, n, min_out, max_out);
}
