/* float32 <-> uint8 / int8 conversions with torch's arithmetic (docs/ARITHMETIC.md §10): the scalar
 * kernels (the twins of quantize_avx2.c / quantize_avx512.c) and the calls through the backend
 * table.
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
#include "convert/convert.h"
#include "gemm/requant.h"

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
        float t = fq_fmaf(x[i], inv_scale, zero_point);
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
    for (int64_t i = 0; i < n; i++) out[i] = fq_fmaf(x[i], y[i], z[i]);
}

static const fq_convert_kernels scalar_kernels = {
    "scalar", quantize_scalar, dequantize_u8_scalar, dequantize_s8_scalar, minmax_scalar,
};

const fq_convert_kernels *fq_convert_scalar(void) { return &scalar_kernels; }

int fq_convert_supported(int isa) { return fq_family_supported(isa, FQ_FAMILY_CONVERT); }

/* isa < 0: the current backend's kernels; else isa's where they run here, scalar's otherwise */
static const fq_convert_kernels *kernels(int isa) {
    return fq_kernels_run(FQ_FAMILY_CONVERT, isa)->convert;
}

void fq_quantize_u8_isa(int isa, const float *x, int64_t n, float inv_scale, float zero_point,
                        int32_t qmin, int32_t qmax, uint8_t *q) {
    if (n > 0) kernels(isa)->quantize(x, n, inv_scale, zero_point, qmin, qmax, q);
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
