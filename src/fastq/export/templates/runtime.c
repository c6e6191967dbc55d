/* ------------------------------------------------------------------------------------------
 * The arithmetic, one small function per step (fastq/reference.py writes each one down).
 * Every float operation is one IEEE binary32 rounding, round half to even, never fused:
 *   - compile with -ffp-contract=off (GCC's default in -std=c99; the GCC pragma below also
 *     switches it off for this file; clang honours the STDC pragma unless -ffp-contract=fast);
 *   - no -ffast-math (checked below), and float / double expressions evaluated in their own
 *     type: FLT_EVAL_METHOD == 0 (checked below; x87 builds need -msse2 -mfpmath=sse).
 * Soft-float builds (Cortex-M0/M3, -mfloat-abi=soft) are exact too: libgcc's float and double
 * routines round correctly, and nothing here depends on an FPU.
 * ------------------------------------------------------------------------------------------ */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize ("fp-contract=off")
#elif defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif
#if defined(__FAST_MATH__)
#error "this file relies on IEEE float32 rounding: do not compile it with -ffast-math"
#endif
#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "this file needs FLT_EVAL_METHOD == 0 (each float / double operation rounded to its type)"
#endif

/* Fast paths, each the twin of the portable loop next to it (define FASTQ_PORTABLE or
 * @NAME@_PORTABLE to compile the portable loops only). */
#if !defined(FASTQ_PORTABLE) && !defined(@NAME@_PORTABLE)
#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32) && !defined(__aarch64__)
#define FQ_ARM_DSP 1              /* Cortex-M4 / M7 / M33: SMLAD, two 16-bit MACs per cycle */
#include <arm_acle.h>
#endif
#if defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
#define FQ_NEON_DOTPROD 1         /* Armv8.2+ SDOT: sixteen 8-bit MACs per instruction */
#include <arm_neon.h>
#endif
#if defined(__GNUC__) && defined(__FP_FAST_FMAF)
#define FQ_HW_FMAF 1              /* vfma.f32 / fmadd / vfmadd: one instruction, one rounding */
#endif
#endif

/* Two's-complement wrapping add (no signed-overflow UB). */
static inline int32_t fq_wrap_add(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

static inline int32_t fq_clamp(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* fmaf(x, y, z), one rounding, without libm: x*y is exact in double (24 + 24 bits), the sum
 * p + z is rounded to odd (TwoSum gives its error), and a 53-bit round-to-odd value rounds to
 * float exactly as the exact sum would (53 >= 2*24 + 2). Inf and NaN pass through. */
static inline float fq_fmaf(float x, float y, float z)
{
#if defined(FQ_HW_FMAF)
    return __builtin_fmaf(x, y, z);
#else
    double p = (double)x * (double)y;
    double zd = (double)z;
    double s = p + zd;
    double bp = s - p;
    double err = (p - (s - bp)) + (zd - bp);           /* s + err == p + z exactly */
    uint64_t bits;
    memcpy(&bits, &s, sizeof bits);
    if ((err > 0 || err < 0) && !(bits & 1))           /* inexact and even: the odd neighbour */
        bits += ((err > 0) == (s > 0)) ? 1u : (uint64_t)-1;
    memcpy(&s, &bits, sizeof bits);
    return (float)s;
#endif
}

/* rne(t) for |t| <= 2^22 (half to even, no libm): adding 1.5 * 2^23 leaves no fraction bits
 * and subtracting it back is exact. */
static inline int32_t fq_rne_small(float t)
{
    return (int32_t)((t + 12582912.0f) - 12582912.0f);
}

/* clamp(rne(v) + zero_point, lo, hi), where rne gives INT32_MIN for |v| >= 2^31 or NaN (x86's
 * cvtps2dq "integer indefinite", which FBGEMM and torch's x86 kernels return), so that case
 * lands on lo. Otherwise v is clamped to +-1024 first: rne is monotone and lo, hi lie in
 * [-128, 255], so the result is the same and the rounding is exact. */
static inline int32_t fq_round_add_clamp(float v, int32_t zero_point, int32_t lo, int32_t hi)
{
    if (!(v > -2147483648.0f && v < 2147483648.0f)) return lo;
    if (v > 1024.0f) v = 1024.0f;
    if (v < -1024.0f) v = -1024.0f;
    return fq_clamp(fq_rne_small(v) + zero_point, lo, hi);
}

/* fbgemm's bias step: f32((float)acc + f32(bias * rcp)), where (bias, rcp) is
 * (bias[n], f32(1 / (double)f32(s_x * s_w))) for per-tensor weights and
 * (f32(bias[n] / f32(s_x * s_w[n])), 1) for per-channel ones (reference.fbgemm_params). */
static inline float fq_fbgemm_bias(float acc, float bias, float rcp)
{
    return acc + bias * rcp;
}

/* Quantize (torch.quantize_per_tensor): clamp(rne(min(fmaf(x, 1/scale, zp), 2147483520)),
 * qmin, qmax), NaN -> qmax. Clamping t first is exact (rne is monotone, the bounds integers). */
static inline int32_t fq_quantize(float x, float inv_scale, float zero_point, float qmin, float qmax)
{
    float t = fq_fmaf(x, inv_scale, zero_point);
    if (!(t <= qmax)) t = qmax;                        /* NaN, and everything above qmax */
    if (t < qmin) t = qmin;
    return fq_rne_small(t);
}

/* Dequantize: f32((float)(q - zero_point) * scale). */
static inline float fq_dequantize(int32_t q, int32_t zero_point, float scale)
{
    return (float)(q - zero_point) * scale;
}

/* gemmlowp SaturatingRoundingDoublingHighMul: nearest integer to a*b / 2^31, ties toward
 * +infinity; INT32_MIN * INT32_MIN gives INT32_MAX. */
static inline int32_t fq_srdhm(int32_t a, int32_t b)
{
    int64_t ab, nudge;
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    ab = (int64_t)a * (int64_t)b;
    nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));   /* C division truncates toward zero */
}

/* gemmlowp RoundingDivideByPOT: round(x / 2^e), ties away from zero, 0 <= e <= 31. */
static inline int32_t fq_rounding_divide_by_pot(int32_t x, int e)
{
    const int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (remainder > threshold ? 1 : 0);
}

/* TFLite MultiplyByQuantizedMultiplier, double rounding (TFLite reference, TFLite Micro,
 * CMSIS-NN arm_nn_requantize): SRDHM(x * 2^max(shift, 0), q), then RoundingDivideByPOT by
 * max(-shift, 0). The left shift wraps in int32 as the compiled reference does. */
static inline int32_t fq_mbqm_double(int32_t x, int32_t q, int32_t shift)
{
    int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    return fq_rounding_divide_by_pot(fq_srdhm((int32_t)((uint32_t)x << left), q), right);
}

/* "double_up": SRDHM, then a rounding right shift with ties toward +infinity (SQRDMULH +
 * SRSHL, ruy and LiteRT's optimized kernels). */
static inline int32_t fq_mbqm_double_up(int32_t x, int32_t q, int32_t shift)
{
    int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    int64_t h = fq_srdhm((int32_t)((uint32_t)x << left), q);
    return (int32_t)((h + (((int64_t)1 << right) >> 1)) >> right);
}

/* TFLITE_SINGLE_ROUNDING: (x*q + 2^(30 - shift)) >> (31 - shift), one rounding, ties toward
 * +infinity, truncated to int32 as TFLite's release builds do. */
static inline int32_t fq_mbqm_single(int32_t x, int32_t q, int32_t shift)
{
    int total = 31 - shift;
    int64_t r = ((int64_t)x * (int64_t)q + ((int64_t)1 << (total - 1))) >> total;
    return (int32_t)(uint32_t)(uint64_t)r;
}

/* ---- the integer core: acc = sum_k (x[k] - zx)(w[k] - zw) -------------------------------
 * Exact in int32: the exporter checked K * max|x - zx| * max|w - zw| < 2^31 for every layer. */
#if defined(FQ_ARM_DSP)
/* 4 k per step: (x - zx) and (w - zw) as two pairs of 16-bit lanes each (UXTAB16 / SXTAB16 add
 * the zero-extended / sign-extended bytes 0, 2 or, rotated by 8, 1, 3 to the -z pair), then
 * SMLAD adds both lane products to acc, as CMSIS-NN's arm_nn_mat_mult kernels do. */
static inline uint32_t fq_ror8(uint32_t v) { return (v >> 8) | (v << 24); }
static inline uint32_t fq_pair(int32_t z) { return ((uint32_t)(-z) & 0xffffu) * 0x10001u; }
#define FQ_DOT_DSP(EXTEND_X)                                                      \
    const uint32_t nzx = fq_pair(zx), nzw = fq_pair(zw);                          \
    int32_t acc = 0, i = 0;                                                       \
    for (; i + 4 <= k; i += 4) {                                                  \
        uint32_t xv, wv;                                                          \
        memcpy(&xv, x + i, 4);                                                    \
        memcpy(&wv, w + i, 4);                                                    \
        acc = __smlad(EXTEND_X(nzx, xv), __sxtab16(nzw, wv), acc);                \
        acc = __smlad(EXTEND_X(nzx, fq_ror8(xv)), __sxtab16(nzw, fq_ror8(wv)), acc); \
    }                                                                             \
    for (; i < k; i++) acc += (x[i] - zx) * (w[i] - zw);                          \
    return acc;
#endif

#if defined(FQ_NEON_DOTPROD)
/* 16 k per step with SDOT on int8 x' (uint8 x is x' + 128: the top bit flipped, zx' = zx - 128):
 * sum (x' - zx')(w - zw) = sum x'w - zx' sum w - zw sum x' + K zx' zw, in wrapping int32 (the
 * exact result fits, so the wrapped one is exact). */
static inline int32_t fq_dot_sdot(const int8_t *x, const int8_t *w, int32_t k, int32_t zx, int32_t zw,
                                  const uint8x16_t flip)
{
    const int8x16_t ones = vdupq_n_s8(1);
    int32x4_t dot = vdupq_n_s32(0), xsum = vdupq_n_s32(0), wsum = vdupq_n_s32(0);
    uint32_t d, sx, sw;
    int32_t i = 0;
    for (; i + 16 <= k; i += 16) {
        int8x16_t xv = vreinterpretq_s8_u8(veorq_u8(vld1q_u8((const uint8_t *)x + i), flip));
        int8x16_t wv = vld1q_s8(w + i);
        dot = vdotq_s32(dot, xv, wv);
        xsum = vdotq_s32(xsum, xv, ones);
        wsum = vdotq_s32(wsum, wv, ones);
    }
    d = (uint32_t)vaddvq_s32(dot);
    sx = (uint32_t)vaddvq_s32(xsum);
    sw = (uint32_t)vaddvq_s32(wsum);
    for (; i < k; i++) {
        int32_t xi = (int8_t)(((const uint8_t *)x)[i] ^ vgetq_lane_u8(flip, 0));
        d += (uint32_t)(xi * w[i]);
        sx += (uint32_t)xi;
        sw += (uint32_t)w[i];
    }
    return (int32_t)(d - (uint32_t)zx * sw - (uint32_t)zw * sx + (uint32_t)k * (uint32_t)zx * (uint32_t)zw);
}
#endif

/* uint8 activations */
static inline int32_t fq_dot_u8(const uint8_t *x, const int8_t *w, int32_t k, int32_t zx, int32_t zw)
{
#if defined(FQ_ARM_DSP)
    FQ_DOT_DSP(__uxtab16)
#elif defined(FQ_NEON_DOTPROD)
    return fq_dot_sdot((const int8_t *)x, w, k, zx - 128, zw, vdupq_n_u8(0x80));
#else
    int32_t acc = 0, i;
    for (i = 0; i < k; i++) acc += (x[i] - zx) * (w[i] - zw);
    return acc;
#endif
}

/* int8 activations */
static inline int32_t fq_dot_s8(const int8_t *x, const int8_t *w, int32_t k, int32_t zx, int32_t zw)
{
#if defined(FQ_ARM_DSP)
    FQ_DOT_DSP(__sxtab16)
#elif defined(FQ_NEON_DOTPROD)
    return fq_dot_sdot(x, w, k, zx, zw, vdupq_n_u8(0));
#else
    int32_t acc = 0, i;
    for (i = 0; i < k; i++) acc += (x[i] - zx) * (w[i] - zw);
    return acc;
#endif
}

/* ---- dynamic quantization (torch quant_utils::ChooseQuantizationParams, uint8) ------------
 * Returns 0, or 1 when some x is NaN or inf (fastq refuses those too). The scale is computed
 * in double and returned as the float32 every later step uses; see fastq/layers/dynamic.py. */
static inline double fq_abs(double v) { return v < 0 ? -v : v; }

/* rne in double for |v| < 2^51 (half to even): 1.5 * 2^52 leaves no fraction bits. */
static inline double fq_rne_double(double v)
{
    return (v + 6755399441055744.0) - 6755399441055744.0;
}

static inline int fq_choose_qparams_dynamic(const float *x, int32_t k, int32_t qmax,
                                            float *scale_out, int32_t *zero_point_out)
{
    const float small = 6.1e-5f;                    /* fp16's smallest normal: torch's floor */
    const int32_t qmin = 0;
    float mn = 0.0f, mx = 0.0f, org;
    double scale, zp_min, zp_max, err_min, err_max, zp;
    int32_t i;
    for (i = 0; i < k; i++) {
        if (!(x[i] >= -FLT_MAX && x[i] <= FLT_MAX)) return 1;     /* NaN or inf */
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
    }
    scale = ((double)mx - (double)mn) / (double)(qmax - qmin);
    if ((float)scale == 0.0f || 1.0f / (float)scale > FLT_MAX) scale = 0.1;
    if (scale < (double)small) {
        org = (float)scale;
        scale = (double)small;
        if (mn == 0.0f) mx = small * (float)(qmax - qmin);
        else if (mx == 0.0f) mn = -small * (float)(qmax - qmin);
        else {
            float amplifier = small / org;
            mn = mn * amplifier;
            mx = mx * amplifier;
        }
    }
    zp_min = (double)qmin - (double)mn / scale;
    zp_max = (double)qmax - (double)mx / scale;
    err_min = fq_abs((double)qmin) - fq_abs((double)mn / scale);
    err_max = fq_abs((double)qmax) - fq_abs((double)mx / scale);
    zp = err_min < err_max ? zp_min : zp_max;
    if (zp < qmin) *zero_point_out = qmin;
    else if (zp > qmax) *zero_point_out = qmax;
    else *zero_point_out = (int32_t)fq_rne_double(zp);
    *scale_out = (float)scale;
    return 0;
}

/* float ReLU as numpy's maximum(x, 0) (NaN kept, -0 -> +0) and ReLU6 as clip(x, 0, 6). */
static inline float fq_relu_float(float x)
{
    return (x > 0.0f || x != x) ? x : 0.0f;
}

static inline float fq_relu6_float(float x)
{
    if (!(x >= 0.0f || x != x)) x = 0.0f;
    if (!(x <= 6.0f || x != x)) x = 6.0f;
    return x;
}
