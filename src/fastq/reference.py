"""Pen-and-paper fastq: every kernel's formula in plain numpy, slow and readable.

This module is the oracle of the C kernels' tests and the text behind ``fastq explain``.
docs/ARITHMETIC.md states each formula in words. float32 arithmetic is done on numpy float32
values (IEEE single precision, round half to even, never fused), so each line is one
rounding, exactly as the C code does it.
"""
from __future__ import annotations

import numpy as np

f32 = np.float32
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


# =========================================================================== PART 1
# Formulas the library also uses to build its constants (the layers call these when they are
# created, so a kernel and its oracle share them; the tests check the constants against torch).

def wrap_int32(v):
    """Two's-complement wrap of integers to int32 (what the hardware adds do)."""
    return ((np.asarray(v, dtype=np.int64) + 2**31) % 2**32 - 2**31).astype(np.int64)


def fmaf(x, y, z):
    """float32 fused multiply-add, correctly rounded: x*y is exact in float64, the sum is
    computed with its error (TwoSum) and rounded to odd, so the final float32 rounding is
    the single rounding fmaf makes."""
    x64 = np.asarray(x, dtype=np.float32).astype(np.float64)
    y64 = np.asarray(y, dtype=np.float32).astype(np.float64)
    z64 = np.asarray(z, dtype=np.float32).astype(np.float64)
    p = x64 * y64                                    # 24 + 24 bits: exact
    with np.errstate(invalid="ignore", over="ignore"):
        s = p + z64
        bp = s - z64
        err = (p - bp) + (z64 - (s - bp))            # TwoSum: s + err == p + z exactly
        bits = s.view(np.int64)
        needs_odd = np.isfinite(s) & np.isfinite(err) & (err != 0) & ((bits & 1) == 0)
        toward = np.where(err > 0, np.inf, -np.inf)
        s = np.where(needs_odd, np.nextafter(s, toward), s)
    return s.astype(np.float32)


def _qrange(dtype):
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 0, 255
    if dtype == np.int8:
        return -128, 127
    raise TypeError("dtype: expected uint8 or int8, got %s" % dtype)


def quantize_per_tensor(x, scale, zero_point, dtype="uint8"):
    """q = clamp(rne(min(fmaf(x, 1/scale, zp), 2147483520)), qmin, qmax); NaN -> qmax."""
    qmin, qmax = _qrange(dtype)
    inv = f32(1.0) / f32(scale)
    t = fmaf(np.asarray(x, dtype=np.float32), inv, f32(zero_point))
    t = np.where(np.isnan(t) | (t > f32(2147483520.0)), f32(2147483520.0), t)
    return np.clip(np.rint(t.astype(np.float64)), qmin, qmax).astype(dtype)


def choose_qparams(min_val, max_val, dtype="uint8", symmetric=False, reduce_range=False):
    """torch MinMaxObserver._calculate_qparams in float32: (scale, zero_point)."""
    qmin, qmax = _qrange(dtype)
    if reduce_range:
        qmin, qmax = (0, 127) if np.dtype(dtype) == np.uint8 else (-64, 63)
    mn = min(f32(min_val), f32(0.0))
    mx = max(f32(max_val), f32(0.0))
    eps = f32(2.0**-23)
    if symmetric:
        m = max(-mn, mx)
        scale = max(f32(m / f32(f32(qmax - qmin) / f32(2.0))), eps)
        zp = 0 if np.dtype(dtype) == np.int8 else 128
    else:
        scale = max(f32(f32(mx - mn) / f32(qmax - qmin)), eps)
        zp = int(np.clip(qmin - int(np.rint(f32(mn / scale))), qmin, qmax))
    return float(scale), zp


BIAS_ROUNDINGS = ("fused", "separate", "divide")
"""How an fbgemm per-tensor layer adds its float bias (docs/ARITHMETIC.md §6): "fused" is what
torch 2.13 computes on x86-64 (FBGEMM's requantization, compiled with fma contraction);
"separate" an FBGEMM built without contraction; "divide" FBGEMM's generic (non-x86) path."""


def fbgemm_params(x_scale, w_scales, y_scale, bias=None, per_channel=None, bias_rounding="fused"):
    """Per-column float32 constants of the fbgemm epilogue: (bias_b[n], bias_r, mult[n]),
    the bias term entering as f = fmaf(bias_b[n], bias_r, (float)acc).

    atws[n] = f32(sx * sw[n]); mult[n] = f32(atws[n] / sy)
    per-tensor weights:  bias_b = bias, bias_r = f32(1 / (double)atws): FBGEMM computes
        (float)acc + bias * rcp, which its compiler contracts into one fma (one rounding;
        torch 2.13 on x86: the AVX2 and AVX-512 requantization alike)
    per-channel weights: bias_b = f32(bias / atws[n]), bias_r = 1 (a divide cannot fuse:
        fmaf(b, 1, a) = f32(a + b), two roundings in all)
    bias_rounding (per-tensor weights only; per channel always divides):
        "fused"     bias_b = bias, bias_r = rcp (above; torch 2.13 on x86-64)
        "separate"  bias_b = f32(bias * rcp), bias_r = 1: the term rounded on its own (a build of
                    FBGEMM without fma contraction)
        "divide"    bias_b = f32(bias / atws), bias_r = 1: FBGEMM's generic path (no AVX2)
    bias_b is None without bias."""
    if bias_rounding not in BIAS_ROUNDINGS:
        raise ValueError("bias_rounding: expected one of %s, got %r" % (", ".join(BIAS_ROUNDINGS), bias_rounding))
    w_scales = np.atleast_1d(np.asarray(w_scales, dtype=np.float64))
    if per_channel is None:
        per_channel = w_scales.size > 1
    sx, sy = f32(x_scale), f32(y_scale)
    sw = w_scales.astype(np.float32)
    atws = (sx * sw).astype(np.float32)
    mult = (atws / sy).astype(np.float32)
    bias_r = f32(1.0)
    if bias is None:
        bias_b = None
    else:
        b = np.asarray(bias, dtype=np.float32)
        if per_channel or bias_rounding == "divide":
            bias_b = (b / atws).astype(np.float32)
        elif bias_rounding == "fused":
            bias_b = b.copy()
            bias_r = f32(1.0 / np.float64(atws[0]))
        else:
            bias_b = (b * f32(1.0 / np.float64(atws[0]))).astype(np.float32)
    return bias_b, bias_r, mult


def qnnpack_params(x_scale, w_scales, y_scale, bias=None):
    """Per-column constants of the qnnpack epilogue: (int32 bias bq[n], float32 req[n])."""
    w_scales = np.atleast_1d(np.asarray(w_scales, dtype=np.float64))
    sx, sy = f32(x_scale), f32(y_scale)
    sw = w_scales.astype(np.float32)
    req = ((sw * sx).astype(np.float32) * (f32(1.0) / sy)).astype(np.float32)
    if bias is None:
        bq = np.zeros(w_scales.size, dtype=np.int64)
    else:
        bs = (w_scales * np.float64(x_scale)).astype(np.float32)     # double product, one rounding
        t = (np.asarray(bias, dtype=np.float32) * (f32(1.0) / bs).astype(np.float32)).astype(np.float32)
        bq = np.clip(np.rint(t.astype(np.float64)), INT32_MIN, INT32_MAX).astype(np.int64)
    return bq, req


# Fixed point as in gemmlowp / TensorFlow Lite / CMSIS-NN. Python ints and int64 numpy arrays
# hold every intermediate exactly; where the C++ reference would overflow int32 (a left shift,
# the single-rounding result) the value wraps modulo 2^32, as the compiled reference does.
def _round_half_away(v):
    """std::round on a float: nearest integer, ties away from zero."""
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def quantize_multiplier(real, rounding="double"):
    """TFLite QuantizeMultiplier: real ~= q * 2^(shift - 31), 2^30 <= |q| <= 2^31 (q may be
    INT32_MIN for negative reals). Tiny reals (shift < -31) flush to (0, 0). With
    rounding="single" (TFLITE_SINGLE_ROUNDING) a shift above 30 saturates to (2^31 - 1, 30)."""
    d = float(real)
    if d == 0.0:
        return 0, 0
    m, e = np.frexp(d)                         # d = m * 2^e, 0.5 <= |m| < 1 (exact)
    q = int(_round_half_away(m * 2.0**31))     # m * 2^31 is exact in double
    e = int(e)
    if q == 2**31:                             # m rounded up to 1.0
        q //= 2
        e += 1
    if e < -31:
        return 0, 0
    if rounding == "single" and e > 30:
        return INT32_MAX, 30
    return q, e


def tflite_multipliers(x_scale, w_scales, y_scale, per_channel, rounding="double",
                       effective_scale="float32"):
    """(multiplier[n], shift[n]) of a TFLite fully connected layer. Scales are float32 tensor
    parameters in a .tflite model, so each is first rounded to float32.
      per tensor, effective_scale="float32" (kernel_util.cc GetQuantizedConvolutionMultipler):
          d = (double)(f32(s_in * s_w)) / (double)s_out      -- the product is a float product
      per channel, or effective_scale="float64" (PopulateConvolutionQuantizationParams, which
      LiteRT's reference kernels use for per-tensor layers too):
          d[n] = (double)s_in * (double)s_w[n] / (double)s_out"""
    sx = np.float64(f32(x_scale))
    sy = np.float64(f32(y_scale))
    sw = np.atleast_1d(np.asarray(w_scales, dtype=np.float64)).astype(np.float32).astype(np.float64)
    if per_channel or effective_scale == "float64":
        reals = sx * sw / sy
    else:
        reals = np.array([np.float64(f32(f32(x_scale) * sw.astype(np.float32)[0])) / sy])
    pairs = [quantize_multiplier(r, rounding) for r in reals]
    return (np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64))


def tflite_bias(bias, x_scale, w_scales):
    """A float bias as TFLite's post-training quantizer stores it (tools/optimize,
    SymmetricPerLayerBiasQuantize / SymmetricBiasQuantize): int32 with zero point 0 and
      scale[n] = f32(s_in * s_w[n]) ; inv = f32(1.0 / (double)scale[n])
      q = clamp(round_half_away(f32(bias * inv)), -INT32_MAX, INT32_MAX)"""
    b = np.asarray(bias, dtype=np.float32)
    sw = np.atleast_1d(np.asarray(w_scales, dtype=np.float64)).astype(np.float32)
    scale = (f32(x_scale) * sw).astype(np.float32)
    inv = (1.0 / scale.astype(np.float64)).astype(np.float32)
    with np.errstate(over="ignore"):
        t = (b * inv).astype(np.float32).astype(np.float64)
    return np.clip(_round_half_away(t), -INT32_MAX, INT32_MAX).astype(np.int64)


# docs/ARITHMETIC.md §9; measured against torch 2.13 (quantize_dynamic, engines x86 / fbgemm / qnnpack).
# See fastq/dynamic.py for the whole story.
SMALL_SCALE_THRESHOLD = f32(6.1e-5)     # fp16's smallest normal, torch's cut-off for tiny scales


def choose_qparams_dynamic(x_min, x_max, reduce_range=False):
    """torch quant_utils::ChooseQuantizationParams for uint8 activations: (scale, zero_point).

    Unlike MinMaxObserver the scale is computed in double, the zero point from whichever end
    of the range gives the smaller error, and tiny scales are lifted to 6.1e-5. The scale is
    returned as the float32 value every later step uses."""
    qmin, qmax = (0, 127) if reduce_range else (0, 255)
    mn = min(f32(x_min), f32(0.0))
    mx = max(f32(x_max), f32(0.0))
    scale = (np.float64(mx) - np.float64(mn)) / (qmax - qmin)            # double
    if f32(scale) == 0 or np.isinf(f32(1.0) / f32(scale)):
        scale = np.float64(0.1)
    if scale < np.float64(SMALL_SCALE_THRESHOLD):
        org_scale = f32(scale)
        scale = np.float64(SMALL_SCALE_THRESHOLD)
        if mn == 0:
            mx = f32(SMALL_SCALE_THRESHOLD * f32(qmax - qmin))
        elif mx == 0:
            mn = f32(-SMALL_SCALE_THRESHOLD * f32(qmax - qmin))
        else:
            amplifier = f32(SMALL_SCALE_THRESHOLD / org_scale)
            mn = f32(mn * amplifier)
            mx = f32(mx * amplifier)
    zp_from_min = qmin - np.float64(mn) / scale
    zp_from_max = qmax - np.float64(mx) / scale
    err_min = abs(qmin) - abs(np.float64(mn) / scale)
    err_max = abs(qmax) - abs(np.float64(mx) / scale)
    zp = zp_from_min if err_min < err_max else zp_from_max
    if zp < qmin:
        zp = qmin
    elif zp > qmax:
        zp = qmax
    else:
        zp = int(np.rint(zp))                                              # half to even
    return float(f32(scale)), int(zp)


def quantize_val(x, scale, zero_point, dtype="uint8"):
    """torch's scalar at::native::quantize_val (fbgemm::Quantize, LEGACY): the clamp bounds of
    quantized relu6 / hardtanh / clamp and the tail of qadd:
    q = clamp(rne((float)zp + x * (1.0f / (float)scale)), qmin, qmax): the zero point is added in
    float before rounding, with no fused multiply-add (unlike quantize_per_tensor)."""
    qmin, qmax = _qrange(dtype)
    t = (f32(zero_point) + (np.asarray(x, dtype=np.float32) * f32(f32(1.0) / f32(scale))).astype(np.float32))
    return np.clip(np.rint(np.asarray(t, np.float64)), qmin, qmax).astype(dtype)


# --------------------------------------------------------------------------- elementwise ops
# Measured against torch 2.13 (torch.ops.quantized.add / add_relu / mul / add_scalar /
# mul_scalar, engines x86 / fbgemm / qnnpack, uint8); docs/ARITHMETIC.md §11 states the formulas.
def qnnpack_add_params(a_scale, a_zero_point, b_scale, b_zero_point, y_scale):
    """QNNPACK q8 add constants (pytorch_qnnp_compute_add_quantization_params): the float32
    ratios a_scale / y_scale, b_scale / y_scale must lie in [2^-14, 2^8) (torch refuses others);
    shift = 21 - exponent(max ratio); multipliers = lrintf(ratio * 2^shift) (< 2^22);
    zero_point_product = -(am * za + bm * zb) wrapped to int32.
    Returns (zero_point_product, a_multiplier, b_multiplier, shift)."""
    ra = f32(f32(a_scale) / f32(y_scale))
    rb = f32(f32(b_scale) / f32(y_scale))
    for r in (ra, rb):
        if not (f32(2.0**-14) <= r < f32(2.0**8)):
            raise ValueError("scale: QNNPACK add needs input scale / output scale in [2**-14, 2**8), got %r"
                             % float(r))
    exponent = int(np.array(max(ra, rb), dtype=np.float32).view(np.uint32)) >> 23
    shift = 21 - (exponent - 127)
    scale_multiplier = f32(2.0**shift)
    am = int(np.rint(f32(ra * scale_multiplier)))
    bm = int(np.rint(f32(rb * scale_multiplier)))
    zpp = int(wrap_int32(-(am * int(a_zero_point) + bm * int(b_zero_point))))
    return zpp, am, bm, shift


def qmul_multiplier(a_scale, b_scale, y_scale):
    """torch qmul_kernel: multiplier = (float)a_scale * (float)b_scale * (1.0f / (float)y_scale), in float32."""
    return f32(f32(f32(a_scale) * f32(b_scale)) * f32(f32(1.0) / f32(y_scale)))


def add_scalar_qparams(scale, zero_point, value, dtype="uint8"):
    """torch quantized add_scalar: c_q = nearbyint(value / scale) (double). When zp - c_q fits
    [qmin, qmax] the integers are kept and the result is (scale, zp - c_q); otherwise the output
    gets zp' = qmin (or qmax) and scale' = (qmax - (zp - c_q)) / (qmax - qmin) * scale (or
    (zp - c_q - qmin) / (qmax - qmin) * scale), in double, and the integers are requantized
    (reference.add_scalar). Returns (c_q, scale', zero_point', requantize?).
    torch converts c_q to int32 and refuses the op ("cannot be converted to type int without
    overflow") when it does not fit: so does this (ValueError naming the value and the scale)."""
    qmin, qmax = _qrange(dtype)
    steps = np.rint(float(value) / float(scale))
    if not INT32_MIN <= steps <= INT32_MAX:           # False for NaN too
        raise ValueError("value: add_scalar of %r to values of scale %r is %r steps of that scale; torch "
                         "needs round(value / scale) within int32 [-2**31, 2**31 - 1] and refuses it"
                         % (float(value), float(scale), float(steps)))
    c_q = int(steps)
    z = int(zero_point) - c_q
    if qmin > z:
        return c_q, (float(qmax) - z) / (float(qmax) - qmin) * float(scale), qmin, True
    if qmax < z:
        return c_q, (float(z) - qmin) / (float(qmax) - qmin) * float(scale), qmax, True
    return c_q, float(scale), z, False


def mul_scalar_qparams(scale, zero_point, value, dtype="uint8"):
    """torch quantized mul_scalar: value > 0: same integers, scale' = value * scale (double);
    value == 0: all zero, (1.0, 0); value < 0: q' = qmax + qmin - q, scale' = |value| * scale,
    zp' = qmax - (zp - qmin). Returns (scale', zero_point', mode) with mode "keep" | "zero" | "flip"."""
    qmin, qmax = _qrange(dtype)
    v = float(value)
    if v > 0.0:
        return v * float(scale), int(zero_point), "keep"
    if v == 0.0:
        return 1.0, 0, "zero"
    return abs(v) * float(scale), qmax - (int(zero_point) - qmin), "flip"


# ---- zero-point folding, the overflow bound, dynamic scales (docs/ARITHMETIC.md §3, §4, §9).
# The constants a layer builds once per input quantization; the C kernels add them per column.
def column_offsets(k, a_zero_point, col_sums, w_zero_point, int_bias=None):
    """col_offset[n] = K*za*zw[n] - za*colsum[n] (+ int_bias[n]), wrapping int32: the per-column
    part of acc = sum x*w + col_offset[n] - rowsum[m]*zw[n] (what fq_col_offsets computes)."""
    col_sums = np.asarray(col_sums, dtype=np.int64)
    zw = np.broadcast_to(np.asarray(w_zero_point, dtype=np.int64).reshape(-1), col_sums.shape)
    za = int(a_zero_point)
    v = int(k) * za * zw - za * col_sums
    if int_bias is not None:
        v = v + np.asarray(int_bias, dtype=np.int64)
    return wrap_int32(v)


def folded_bias(bias, x_zero_point, w, w_zero_point):
    """The int32 bias with the input zero point folded in, as a firmware holds it:
    folded[n] = bias[n] - zx * sum_k (w[n,k] - zw[n])   (wrapping int32), so that
    acc[m,n] = folded[n] + sum_k x[m,k] * (w[n,k] - zw[n])."""
    w64 = np.asarray(w, dtype=np.int64)
    zw = np.broadcast_to(np.asarray(w_zero_point, dtype=np.int64).reshape(-1), (w64.shape[0],))
    dev_sums = w64.sum(axis=1) - w64.shape[1] * zw
    b = np.zeros(w64.shape[0], np.int64) if bias is None else np.asarray(bias, dtype=np.int64)
    return wrap_int32(b - int(x_zero_point) * dev_sums)


def max_abs_w_dev(w, w_zero_point):
    """max over n, k of |w[n,k] - zw[n]| (0 for an empty matrix); computed when packing."""
    w64 = np.asarray(w, dtype=np.int64)
    if w64.size == 0:
        return 0
    zw = np.broadcast_to(np.asarray(w_zero_point, dtype=np.int64).reshape(-1), (w64.shape[0],))
    return int(np.abs(w64 - zw[:, None]).max())


def acc_bound(k, a_dev, w_dev):
    """|acc| <= K * max|a - za| * max|w - zw|: each of the K products is at most a_dev * w_dev."""
    return int(k) * int(a_dev) * int(w_dev)


def acc_bound_ok(a, a_zero_point, w, w_zero_point):
    """True when the bound guarantees |acc| <= 2^31 - 1 for these activations and weights, so
    int32 accumulation cannot wrap. a_dev is max|a - za| over the data (0 when a is empty)."""
    a64 = np.asarray(a, dtype=np.int64)
    a_dev = int(np.abs(a64 - int(a_zero_point)).max()) if a64.size else 0
    k = np.shape(w)[1]
    return acc_bound(k, a_dev, max_abs_w_dev(w, w_zero_point)) <= INT32_MAX


def dynamic_scales(x_scale, w_scales):
    """s[n] = f32((float)sx * (float)sw[n]): the one multiplier of a dynamic layer's float output."""
    sw = np.atleast_1d(np.asarray(w_scales, dtype=np.float64)).astype(np.float32)
    return (f32(x_scale) * sw).astype(np.float32)


# =========================================================================== PART 2
# Oracle only: the integer and float paths of every kernel, computed the slow way. The library
# never calls these; the tests hold the C kernels equal to them.

def qgemm(a, a_zero_point, w, w_zero_point):
    """acc[m, n] = sum_k (a[m,k] - za) * (w[n,k] - zw[n]), exact (int64).

    a: uint8 [M, K]; w: int8 [N, K] (torch Linear layout); w_zero_point: int or [N]."""
    a64 = np.asarray(a, dtype=np.int64) - int(a_zero_point)
    zw = np.broadcast_to(np.asarray(w_zero_point, dtype=np.int64).reshape(-1), (np.shape(w)[0],))
    w64 = np.asarray(w, dtype=np.int64) - zw[:, None]
    return a64 @ w64.T


def qgemm_by_sums(a, a_zero_point, w, w_zero_point):
    """The same acc through the four-term expansion the kernels use:
    sum x*w - za*colsum[n] - rowsum[m]*zw[n] + K*za*zw[n]."""
    a64 = np.asarray(a, dtype=np.int64)
    w64 = np.asarray(w, dtype=np.int64)
    k = a64.shape[1]
    za = int(a_zero_point)
    zw = np.broadcast_to(np.asarray(w_zero_point, dtype=np.int64).reshape(-1), (w64.shape[0],))
    col_sums = w64.sum(axis=1)          # computed once, when the weights are packed
    row_sums = a64.sum(axis=1)          # per call, only needed when some zw != 0
    return a64 @ w64.T - za * col_sums[None, :] - row_sums[:, None] * zw[None, :] + k * za * zw[None, :]


def round_float_to_int32(y):
    """rne(y) for float32 y; |y| >= 2^31 or NaN gives INT32_MIN (what cvtps2dq does)."""
    y = np.asarray(y, dtype=np.float32)
    ok = (y > f32(-2147483648.0)) & (y < f32(2147483648.0))
    r = np.rint(np.where(ok, y, f32(0))).astype(np.int64)    # rint: half to even
    return np.where(ok, r, INT32_MIN)


def requant_fbgemm(acc, x_scale, w_scales, y_scale, y_zero_point, bias=None, relu=False,
                   per_channel=None, bias_rounding="fused"):
    """docs/ARITHMETIC.md §6: int32 acc [M, N] -> uint8, torch engines x86 / fbgemm."""
    bias_b, bias_r, mult = fbgemm_params(x_scale, w_scales, y_scale, bias, per_channel, bias_rounding)
    f = np.asarray(acc, dtype=np.int64).astype(np.float32)        # int32 -> float, rne
    if bias_b is not None:
        f = fmaf(bias_b, bias_r, f)                                 # one rounding
    y = (f * mult).astype(np.float32)
    r = round_float_to_int32(y)
    lo = int(y_zero_point) if relu else 0
    return np.clip(r + int(y_zero_point), lo, 255).astype(np.uint8)   # saturating int16 adds


def requant_qnnpack(acc, x_scale, w_scales, y_scale, y_zero_point, bias=None, relu=False):
    """docs/ARITHMETIC.md §7: int32 acc [M, N] -> uint8, torch engine qnnpack (int32 bias)."""
    bq, req = qnnpack_params(x_scale, w_scales, y_scale, bias)
    acc_b = wrap_int32(np.asarray(acc, dtype=np.int64) + bq)
    y = (acc_b.astype(np.float32) * req).astype(np.float32)
    r = round_float_to_int32(y)
    lo = int(y_zero_point) if relu else 0
    return np.clip(r + int(y_zero_point), lo, 255).astype(np.uint8)   # saturating adds


def saturating_rounding_doubling_high_mul(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul: the nearest integer to a*b / 2^31, ties
    toward +infinity (the nudge 1 - 2^30 for negative products with C's truncating division
    rounds -k.5 up); the one overflowing case INT32_MIN * INT32_MIN gives INT32_MAX."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b                                                   # |ab| <= 2^62
    nudge = np.where(ab >= 0, 2**30, 1 - 2**30)
    num = ab + nudge
    q = np.where(num >= 0, num // 2**31, -((-num) // 2**31))     # C division: toward zero
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, q)


def rounding_divide_by_pot(x, exponent):
    """gemmlowp RoundingDivideByPOT: round(x / 2^exponent), ties away from zero, 0 <= exponent <= 31."""
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


def multiply_by_quantized_multiplier(x, multiplier, shift):
    """TFLite MultiplyByQuantizedMultiplier, double rounding (the reference default):
    RoundingDivideByPOT(SRDHM(x * 2^max(shift, 0), q), max(-shift, 0)); -31 <= shift <= 30.
    The left shift wraps in int32, as the reference's x * (1 << shift) does when compiled."""
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    xs = wrap_int32(np.asarray(x, dtype=np.int64) << left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(xs, multiplier), right)


def multiply_by_quantized_multiplier_single(x, multiplier, shift):
    """TFLITE_SINGLE_ROUNDING: floor((x*q + 2^(30 - shift)) / 2^(31 - shift)), one rounding,
    ties toward +infinity; -31 <= shift <= 30. x*q plus the rounding term stays below 2^63.
    TFLite only DCHECKs that the result fits int32; a release build truncates it to int32
    (static_cast), so the result wraps here too."""
    x, q, s = np.broadcast_arrays(np.asarray(x, dtype=np.int64), np.asarray(multiplier, dtype=np.int64),
                                  np.asarray(shift, dtype=np.int64))
    total = 31 - s
    r = (x * q + (np.int64(1) << (total - 1))) >> total
    return wrap_int32(r)


def multiply_by_quantized_multiplier_double_up(x, multiplier, shift):
    """"double_up": SRDHM as in double rounding, then a rounding right shift with ties toward
    +infinity, floor(h / 2^r + 1/2) (ARM SQRDMULH + SRSHL; ruy, LiteRT's optimized kernels)."""
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    xs = wrap_int32(np.asarray(x, dtype=np.int64) << left)
    h = saturating_rounding_doubling_high_mul(xs, multiplier)
    return (h + ((np.int64(1) << right) >> 1)) >> right


MBQM = {"double": multiply_by_quantized_multiplier, "single": multiply_by_quantized_multiplier_single,
        "double_up": multiply_by_quantized_multiplier_double_up}


def requant_tflite(acc, multiplier, shift, y_zero_point, act_min, act_max, rounding="double"):
    """acc (already holding the int32 bias) -> clamp(MBQM(acc, q[n], shift[n]) + z_out, act_min, act_max).
    The zero point is added exactly (TFLite's int32 add could only overflow, undefined in C++,
    when |MBQM| > 2^31 - 129)."""
    y = MBQM[rounding](wrap_int32(acc), multiplier, shift)
    return np.clip(y + int(y_zero_point), act_min, act_max)


def linear_tflite(x_q, x_scale, x_zero_point, w_q, w_scales, w_zero_points, bias, y_scale,
                  y_zero_point, relu=False, per_channel=None, rounding="double", dtype="uint8",
                  effective_scale="float32"):
    """TFLite FULLY_CONNECTED, quantized (reference/integer_ops/fully_connected.h), computed
    directly in the activation dtype (uint8 or int8, no +128 trick):
      acc = bias[n] + sum_k (x - z_in)(w - z_w)   (int32, wrapping)
      y = clamp(MBQM(acc) + z_out, act_min, act_max), ReLU: act_min = max(qmin, z_out).
    bias: None, float (quantized by tflite_bias) or an integer array (used as is)."""
    qmin, qmax = _qrange(dtype)
    w_scales = np.atleast_1d(np.asarray(w_scales, dtype=np.float64))
    if per_channel is None:
        per_channel = w_scales.size > 1
    n = np.shape(w_q)[0]
    acc = qgemm(np.asarray(x_q, np.int64), x_zero_point, w_q, w_zero_points)
    if bias is not None:
        b = np.asarray(bias)
        ib = b.astype(np.int64) if b.dtype.kind in "iu" else tflite_bias(b, x_scale, w_scales)
        acc = acc + np.broadcast_to(ib, (n,))
    mult, shift = tflite_multipliers(x_scale, w_scales, y_scale, per_channel, rounding, effective_scale)
    lo = max(qmin, int(y_zero_point)) if relu else qmin
    return requant_tflite(acc, np.broadcast_to(mult, (n,)), np.broadcast_to(shift, (n,)),
                          y_zero_point, lo, qmax, rounding).astype(dtype)


def quantize_per_channel(x, scales, zero_points, axis=0, dtype="int8"):
    """q = clamp(rne(f32(f32(x * inv[c]) + zp[c])), qmin, qmax), no fma; NaN -> 0 (clamped)."""
    qmin, qmax = _qrange(dtype)
    x = np.asarray(x, dtype=np.float32)
    shape = [1] * x.ndim
    shape[axis] = -1
    inv = (f32(1.0) / np.asarray(scales, dtype=np.float64).astype(np.float32)).reshape(shape)
    zp = np.asarray(zero_points, dtype=np.float32).reshape(shape)
    t = ((x * inv).astype(np.float32) + zp).astype(np.float32)
    with np.errstate(invalid="ignore"):
        r = np.where(np.isnan(t), 0.0, np.rint(np.clip(t.astype(np.float64), -2**62, 2**62)))
    return np.clip(r, qmin, qmax).astype(dtype)


def dequantize(values, scale, zero_point, axis=None):
    """Per tensor: x = f32(f32(q - zp) * (float)scale).
    Per channel (torch computes in double there): x = (float)((double)(q - zp[c]) * scale[c])."""
    v = np.asarray(values)
    if axis is None:
        s = np.float32(scale)
        return ((v.astype(np.float32) - np.float32(zero_point)).astype(np.float32) * s).astype(np.float32)
    shape = [1] * v.ndim
    shape[axis] = -1
    s = np.asarray(scale, dtype=np.float64).reshape(shape)
    z = np.asarray(zero_point, dtype=np.float64).reshape(shape)
    return ((v.astype(np.float64) - z) * s).astype(np.float32)


def linear(x_q, x_scale, x_zero_point, w_q, w_scales, w_zero_points, bias, y_scale,
           y_zero_point, relu=False, requant="fbgemm", per_channel=None):
    """One quantized Linear layer, uint8 in, uint8 out: integer core, then requantization."""
    acc = qgemm(x_q, x_zero_point, w_q, w_zero_points)
    if requant == "fbgemm":
        return requant_fbgemm(acc, x_scale, w_scales, y_scale, y_zero_point, bias, relu, per_channel)
    if requant == "qnnpack":
        return requant_qnnpack(acc, x_scale, w_scales, y_scale, y_zero_point, bias, relu)
    if requant == "tflite":
        return linear_tflite(x_q, x_scale, x_zero_point, w_q, w_scales, w_zero_points, bias, y_scale,
                             y_zero_point, relu, per_channel)
    raise ValueError("requant: expected 'fbgemm', 'qnnpack' or 'tflite', got %r" % (requant,))


def linear_dynamic(x, w_q, w_scales, w_zero_points, bias=None, relu=False, mode="fbgemm",
                   reduce_range=None):
    """Dynamic quantized Linear, float32 [..., K] -> float32 [..., N] (torch nnqd.Linear).

    mode "fbgemm" (torch x86 / fbgemm): reduce_range by default, y = fmaf(f, s, bias);
    mode "qnnpack": full range, y = f32(f32(f * s) + bias)."""
    x = np.asarray(x, dtype=np.float32)
    if reduce_range is None:
        reduce_range = mode == "fbgemm"
    k = x.shape[-1]
    x2 = x.reshape(int(np.prod(x.shape[:-1], dtype=np.int64)), k)     # (-1 cannot be inferred when K = 0)
    lo, hi = (x2.min(), x2.max()) if x2.size else (f32(0), f32(0))
    sx, zx = choose_qparams_dynamic(lo, hi, reduce_range)
    x_q = quantize_per_tensor(x2, sx, zx, "uint8")
    acc = wrap_int32(qgemm(x_q, zx, w_q, w_zero_points))
    n = np.shape(w_q)[0]
    y = requant_dynamic(acc, sx, w_scales, bias, relu, mode)
    return y.reshape(x.shape[:-1] + (n,))


# ---- int8 = uint8 XOR 0x80, the dynamic float epilogue (docs/ARITHMETIC.md §5, §9).
def int8_as_uint8(values, zero_point):
    """int8 q with zero point z is the uint8 q ^ 0x80 = q + 128 with zero point z + 128:
    the same real values (q - z unchanged), the same bits with the top one flipped."""
    v = np.asarray(values)
    if v.dtype != np.int8:
        raise TypeError("values: expected int8, got %s" % v.dtype)
    return v.view(np.uint8) ^ np.uint8(0x80), int(zero_point) + 128


def uint8_as_int8(values, zero_point):
    """The inverse: uint8 q with zero point z is the int8 q ^ 0x80 = q - 128 with zero point z - 128."""
    v = np.asarray(values)
    if v.dtype != np.uint8:
        raise TypeError("values: expected uint8, got %s" % v.dtype)
    return (v ^ np.uint8(0x80)).view(np.int8), int(zero_point) - 128


def linear_int8(x_q, x_zero_point, w_q, w_scales, w_zero_points, bias, x_scale, y_scale,
                y_zero_point, relu=False, requant="fbgemm", dtype="int8", per_channel=None):
    """A quantized Linear whose input and / or output is int8 (fbgemm / qnnpack modes).

    The integer core runs on the signed values directly (acc = sum_k (x - zx)(w - zw), x int8 or
    uint8, zx in x's range); the float steps do not see the dtype. Only the last step does:
      int8 y = clamp(r + z, -128, 127) = clamp(r + (z + 128), 0, 255) - 128,
    so the uint8 epilogue with zero point z + 128 gives y + 128."""
    acc = qgemm(np.asarray(x_q, np.int64), x_zero_point, w_q, w_zero_points)
    offset = 128 if np.dtype(dtype) == np.int8 else 0
    if requant == "fbgemm":
        y = requant_fbgemm(acc, x_scale, w_scales, y_scale, int(y_zero_point) + offset, bias, relu, per_channel)
    elif requant == "qnnpack":
        y = requant_qnnpack(acc, x_scale, w_scales, y_scale, int(y_zero_point) + offset, bias, relu)
    else:
        raise ValueError("requant: expected 'fbgemm' or 'qnnpack' (linear_tflite computes int8 directly), "
                         "got %r" % (requant,))
    return y if offset == 0 else uint8_as_int8(y, 0)[0]


def requant_dynamic(acc, x_scale, w_scales, bias=None, relu=False, mode="fbgemm"):
    """The float epilogue of a dynamic layer: int32 acc [M, N] -> float32 [M, N].
      s[n] = f32(sx * sw[n]) ; f = (float)acc
      "fbgemm" (torch x86 / fbgemm): y = fmaf(f, s[n], bias[n])        one rounding
      "qnnpack":                     y = f32(f32(f * s[n]) + bias[n])  two roundings
      no bias: y = f32(f * s[n]) ; fused ReLU: y = max(y, 0)"""
    if mode not in ("fbgemm", "qnnpack"):
        raise ValueError("mode: expected 'fbgemm' or 'qnnpack', got %r" % (mode,))
    acc = np.asarray(acc, dtype=np.int64)
    s = np.broadcast_to(dynamic_scales(x_scale, w_scales), (acc.shape[-1],))
    f = acc.astype(np.float32)                                    # int32 -> float, rne
    if bias is None:
        y = (f * s).astype(np.float32)
    elif mode == "fbgemm":
        y = fmaf(f, s, np.asarray(bias, dtype=np.float32))
    else:
        y = ((f * s).astype(np.float32) + np.asarray(bias, dtype=np.float32)).astype(np.float32)
    if relu:
        y = np.where(y < 0, f32(0), y).astype(np.float32)
    return y


# --------------------------------------------------------------------------- elementwise ops
# float -> int32 conversions of torch's elementwise kernels when the float lies outside int32
# (an output scale far below the inputs'): they decide the result there, not the clamp.
FLOAT_BELOW_INT32_MAX = 2147483520.0     # 2^31 - 128: the largest float32 below 2^31


def _cvtps_epi32(t):
    """x86 cvtps2dq of float32 t (round half to even): out of int32 range or NaN gives
    INT32_MIN (the "integer indefinite" value)."""
    t = np.asarray(t, dtype=np.float32).astype(np.float64)
    ok = (t >= -2.0**31) & (t < 2.0**31)                        # False for NaN
    return np.where(ok, np.rint(np.where(ok, t, 0.0)), INT32_MIN).astype(np.int64)


def _lrintf(t):
    """lrintf of float32 t into a 64-bit long (x86-64 cvtss2si): beyond int64 or NaN gives INT64_MIN."""
    t = np.asarray(t, dtype=np.float32).astype(np.float64)
    ok = (t >= -2.0**63) & (t < 2.0**63)
    return [int(v) if k else -2**63 for v, k in zip(np.rint(np.where(ok, t, 0.0)).reshape(-1), ok.reshape(-1))]


def _quantize_body(t, zero_point, qmin, qmax, clip_top):
    """torch's vectorized requantize of float32 t = value / scale (QuantizeAvx2/512 for add,
    RequantizeAvx2/512 for mul): clip_top: t = min(t, 2^31 - 128) first (NaN becomes that too,
    minps returns its second operand); then cvtps2dq, the zero point added in wrapping int32,
    saturated to 16 then 8 bits (= clamp to [qmin, qmax]). So a value beyond 2^31 output steps
    becomes INT32_MIN + zp (qmin; qmax for a negative int8 zero point, the add wraps) in mul,
    and 2^31 - 128 + zp in add (wraps to a negative number, qmin, when zp >= 128)."""
    t = np.asarray(t, dtype=np.float32)
    if clip_top:
        t = np.where(np.isnan(t) | (t > f32(FLOAT_BELOW_INT32_MAX)), f32(FLOAT_BELOW_INT32_MAX), t)
    return np.clip(wrap_int32(_cvtps_epi32(t) + int(zero_point)), qmin, qmax)


def _torch_chunks(n, torch_threads):
    if n < 32768 or torch_threads <= 1:
        return [(0, n)]
    t = min(torch_threads, -(-n // 32768))
    c = -(-n // t)
    return [(i, min(n, i + c)) for i in range(0, n, c)]


def qadd_fbgemm(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point,
                relu=False, vector_block=64, dtype="uint8", torch_threads=1):
    """torch qadd_kernel (x86 / fbgemm engines; also qnnpack when the shapes differ or the values
    are int8), on flat arrays of equal size n. The first floor(n / vector_block) * vector_block
    elements follow the vectorized body, the rest its scalar tail (vector_block 0: all tail):
      body: d = fmaf(s, (float)q, s * -(float)zp) per input; c = da + db [relu: max(c, 0)];
            y = clamp(wrap32(cvt(min(c * (1/s_y), 2^31 - 128)) + zp_y))   (_quantize_body)
      tail: d = (float)(q - zp) * s per input;      c = da + db [relu: max(c, 0)];
            y = clamp(rne((float)zp_y + c * (1/s_y)))   (clamped in double: saturates)
    Scales are rounded to float32 first; every float operation is one float32 rounding.
    n >= 32768 with torch_threads T > 1: torch's parallel_for cuts the loop into
    t = min(T, ceil(n / 32768)) chunks of ceil(n / t) elements, each with its own body and tail."""
    a = np.asarray(a).reshape(-1).astype(np.int64)
    b = np.asarray(b).reshape(-1).astype(np.int64)
    n = a.size
    chunks = _torch_chunks(n, torch_threads)
    if len(chunks) > 1:
        return np.concatenate([qadd_fbgemm(a[lo:hi], a_scale, a_zero_point, b[lo:hi], b_scale, b_zero_point,
                                           y_scale, y_zero_point, relu, vector_block, dtype)
                               for lo, hi in chunks])
    qmin, qmax = _qrange(dtype)
    n_vec = (n // vector_block) * vector_block if vector_block else 0
    sa, sb, inv = f32(a_scale), f32(b_scale), f32(f32(1.0) / f32(y_scale))
    pa, pb = f32(sa * -f32(a_zero_point)), f32(sb * -f32(b_zero_point))
    c = np.empty(n, np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        c[:n_vec] = fmaf(sa, a[:n_vec].astype(np.float32), pa) + fmaf(sb, b[:n_vec].astype(np.float32), pb)
        c[n_vec:] = ((a[n_vec:] - a_zero_point).astype(np.float32) * sa
                     + (b[n_vec:] - b_zero_point).astype(np.float32) * sb)
        if relu:
            c = np.maximum(c, f32(0.0))
        t = (c * inv).astype(np.float32)
        y = np.empty(n, np.int64)
        y[:n_vec] = _quantize_body(t[:n_vec], y_zero_point, qmin, qmax, clip_top=True)
        y[n_vec:] = np.clip(np.rint((f32(y_zero_point) + t[n_vec:]).astype(np.float64)), qmin, qmax)
    return y.astype(dtype)


QNNPACK_ADD_BLOCK = 4096   # pytorch_qnnp_run_operator hands the add kernel 4096-byte tiles


def qadd_qnnpack(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point, relu=False):
    """QNNPACK q8 add (qnnpack engine, uint8, equal shapes), integers only:
      acc = zpp + a * am + b * bm  (wrapping int32; constants from qnnpack_add_params)
      acc = (acc >> shift) + (rem > threshold), rem = (acc & mask) - (acc < 0), mask = 2^shift - 1,
            threshold = mask >> 1  (a right shift rounding half away from zero)
      y = clamp(acc + zp_y, relu ? zp_y : 0, 255).
    A ratio s_a / s_y or s_b / s_y below 2^-10 gives shift 32..35, which QNNPACK does not guard
    (only a debug assert): its constants then come from x86 shifts that take the count mod 32
    (mask = 2^(shift mod 32) - 1), and the kernel shifts acc by psrad in tiles of >= 8 elements
    (a count above 31 fills with the sign bit) but by a scalar sar (count mod 32) in a tile of
    fewer than 8, i.e. the last of the 4096-element tiles when n mod 4096 is 1..7."""
    zpp, am, bm, shift = qnnpack_add_params(a_scale, a_zero_point, b_scale, b_zero_point, y_scale)
    shape = np.shape(a)
    acc = wrap_int32(zpp + np.asarray(a, np.int64).reshape(-1) * am + np.asarray(b, np.int64).reshape(-1) * bm)
    mask = (1 << (shift % 32)) - 1
    rem = (acc & mask) - (acc < 0)
    n = acc.size
    n_long = n - n % QNNPACK_ADD_BLOCK if 0 < n % QNNPACK_ADD_BLOCK < 8 else n
    q = np.concatenate([acc[:n_long] >> min(shift, 31), acc[n_long:] >> (shift % 32)])
    q = q + (rem > (mask >> 1))
    return np.clip(q + y_zero_point, y_zero_point if relu else 0, 255).astype(np.uint8).reshape(shape)


def qmul(a, a_zero_point, b, b_zero_point, y_scale_multiplier, y_zero_point, relu=False, dtype="uint8",
         vector_block=64, torch_threads=1):
    """torch qmul_kernel (every engine for uint8), on flat arrays: t = f32((float)((a - za) * (b - zb)) * m),
    m = qmul_multiplier(...). Body and tail (split as in qadd_fbgemm) agree while |t| < 2^31:
      body: y = clamp(wrap32(cvt(t) + zp_y))        cvt(t) = INT32_MIN beyond int32 (_quantize_body)
      tail: y = clamp(lrintf(t) + zp_y)             lrintf into int64: INT64_MIN beyond int64
    relu: max(y, zp_y). The result has a's shape."""
    shape = np.shape(a)
    a = np.asarray(a).reshape(-1).astype(np.int64)
    b = np.asarray(b).reshape(-1).astype(np.int64)
    chunks = _torch_chunks(a.size, torch_threads)
    if len(chunks) > 1:
        return np.concatenate([qmul(a[lo:hi], a_zero_point, b[lo:hi], b_zero_point, y_scale_multiplier,
                                    y_zero_point, relu, dtype, vector_block) for lo, hi in chunks]).reshape(shape)
    qmin, qmax = _qrange(dtype)
    n = a.size
    n_vec = (n // vector_block) * vector_block if vector_block else 0
    c = (a - a_zero_point) * (b - b_zero_point)
    with np.errstate(over="ignore", invalid="ignore"):
        t = (c.astype(np.float32) * f32(y_scale_multiplier)).astype(np.float32)
    y = np.empty(n, np.int64)
    y[:n_vec] = _quantize_body(t[:n_vec], y_zero_point, qmin, qmax, clip_top=False)
    tail = [r + int(y_zero_point) for r in _lrintf(t[n_vec:])]
    tail = [(r + 2**63) % 2**64 - 2**63 for r in tail]            # the int64 add wraps too
    y[n_vec:] = np.clip(np.array(tail, dtype=object), qmin, qmax).astype(np.int64) if tail else []
    if relu:
        y = np.maximum(y, y_zero_point)
    return y.astype(dtype).reshape(shape)


def add_scalar(q, scale, zero_point, value, dtype="uint8"):
    """torch quantized add_scalar: (values, scale', zero_point'), see add_scalar_qparams; when
    requantizing: q' = clamp(zp' + rne((float)(q - zp + c_q) * ((float)scale * (1.0f / (float)scale'))))."""
    qmin, qmax = _qrange(dtype)
    c_q, s2, z2, requantize = add_scalar_qparams(scale, zero_point, value, dtype)
    q = np.asarray(q)
    if not requantize:
        return q.copy(), s2, z2
    m = f32(f32(scale) * f32(f32(1.0) / f32(s2)))
    t = ((q.astype(np.int64) - zero_point + c_q).astype(np.float32) * m).astype(np.float32)
    return np.clip(np.rint(t.astype(np.float64)) + z2, qmin, qmax).astype(dtype), s2, z2


def mul_scalar(q, scale, zero_point, value, dtype="uint8"):
    """torch quantized mul_scalar: (values, scale', zero_point'), see mul_scalar_qparams."""
    qmin, qmax = _qrange(dtype)
    s2, z2, mode = mul_scalar_qparams(scale, zero_point, value, dtype)
    q = np.asarray(q)
    if mode == "keep":
        return q.copy(), s2, z2
    if mode == "zero":
        return np.zeros_like(q), s2, z2
    return (qmax + qmin - q.astype(np.int64)).astype(dtype), s2, z2


def cat(qs, y_scale, y_zero_point, axis=0, dtype="uint8"):
    """torch quantized cat: every input dequantized (reference.dequantize), concatenated in float,
    quantized once with the output's scale and zero point (quantize_per_tensor), even when an
    input already has those qparams. qs: list of (values, scale, zero_point)."""
    xs = [dequantize(v, s, z) for v, s, z in qs]
    return quantize_per_tensor(np.concatenate(xs, axis=axis), y_scale, y_zero_point, dtype)

# ---- the panel layout of packed weights (docs/ARITHMETIC.md §14, csrc/fastq.h).
PANEL_COLUMNS = 64      # FQ_NR: output columns per panel (one zmm of int32 per 16 of them)
PANEL_STEP = 16          # the last panel's width is a multiple of 16 (csrc/fastq.h)
K_GROUP = 4             # FQ_KG: consecutive k per column in one 32-bit lane (one vpdpbusd lane)


def panel_width(n_size, p):
    """Width of panel p of an N-column matrix: 64, the last one N's remainder rounded up to 16."""
    left = np.asarray(n_size, dtype=np.int64) - np.asarray(p, dtype=np.int64) * PANEL_COLUMNS
    return np.minimum(left + (-left) % PANEL_STEP, PANEL_COLUMNS)


def packed_offset(n, k, k_size, n_size):
    """Byte offset of w[n, k] in the packed panels of a [N, K] matrix: panel p = n // 64 starts
    at column n0 = 64p and byte n0 * 4 * k_groups; inside it, (g * nr + c) * 4 + j with nr its
    width (panel_width), c = n - n0, g = k // 4, j = k % 4."""
    k_groups = -(-int(k_size) // K_GROUP)
    p, c = np.divmod(np.asarray(n, dtype=np.int64), PANEL_COLUMNS)
    g, j = np.divmod(np.asarray(k, dtype=np.int64), K_GROUP)
    nr = panel_width(n_size, p)
    return p * PANEL_COLUMNS * K_GROUP * k_groups + (g * nr + c) * K_GROUP + j


def padded_columns(n_size):
    """Columns of the packed matrix: the 64-wide panels and the last panel's width."""
    n_panels = -(-int(n_size) // PANEL_COLUMNS)
    return 0 if n_panels == 0 else (n_panels - 1) * PANEL_COLUMNS + int(panel_width(n_size, n_panels - 1))


def pack_panels(w):
    """The packed bytes of int8 w [N, K]: panels of 64 columns (the last one 16, 32, 48 or 64
    wide), each a run of k groups of its columns x 4 bytes; columns >= N and k >= K are zero."""
    w = np.asarray(w, dtype=np.int8)
    n, k = w.shape
    k_groups = -(-k // K_GROUP)
    out = np.zeros(padded_columns(n) * k_groups * K_GROUP, np.int8)
    nn, kk = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    out[packed_offset(nn, kk, k, n)] = w
    return out


# =========================================================================== convolution and pooling
# docs/ARITHMETIC.md §18. Measured against torch 2.13 with the engine pinned (tests/test_conv_torch.py,
# tests/test_pool_torch.py). Spatial tensors are NCHW (1-D: NCL) int arrays, as at fastq's API.

CONV_ARITHMETICS = ("onednn", "fbgemm", "qnnpack", "tflite")


def _as_2d(x):
    """NCL -> NC1L (a 1-D convolution or pooling is the 2-D one with height 1, as torch runs it)."""
    x = np.asarray(x)
    return x[:, :, None, :] if x.ndim == 3 else x


def conv_out_size(size, kernel, stride, padding, dilation):
    """floor((size + 2 p - d (k - 1) - 1) / s) + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_patches(x, fill, kernel, stride, padding, dilation):
    """The receptive fields of a convolution: x NCHW ints -> int64 [N, C, OH, OW, KH*KW], taps in
    (kh, kw) order, positions outside the input filled with `fill` (the input zero point: what
    (x - zx) makes 0)."""
    x = np.asarray(x, np.int64)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    oh, ow = conv_out_size(h, kh, sh, ph, dh), conv_out_size(w, kw, sw, pw, dw)
    xp = np.full((n, c, h + 2 * ph, w + 2 * pw), fill, np.int64)
    xp[:, :, ph:ph + h, pw:pw + w] = x
    out = np.empty((n, c, max(oh, 0), max(ow, 0), kh * kw), np.int64)
    for i in range(kh):
        for j in range(kw):
            out[..., i * kw + j] = xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                                      j * dw: j * dw + sw * (ow - 1) + 1: sw]
    return out


def conv_acc(x, x_zero_point, w, w_zero_points, stride, padding, dilation, groups):
    """The exact int32 accumulator of a convolution (int64 here):
      acc[n, o, y, x] = sum_{c in group(o), kh, kw} (x[n, c, y*s - p + kh*d, ...] - zx) * (w[o, c, kh, kw] - zw[o])
    x NCHW (or NCL), w [O, C/groups, KH, KW] (or [O, C/groups, K]) -> [N, O, OH, OW] (or [N, O, L])."""
    one_d = np.ndim(x) == 3
    x4, w4 = _as_2d(x), _as_2d(w)
    if one_d:
        stride, padding, dilation = (1,) + tuple(stride), (0,) + tuple(padding), (1,) + tuple(dilation)
    o, cpg, kh, kw = w4.shape
    p = conv_patches(x4, int(x_zero_point), (kh, kw), stride, padding, dilation) - int(x_zero_point)
    n, c, oh, ow, k = p.shape
    g = int(groups)
    zw = np.broadcast_to(np.asarray(w_zero_points, np.int64).reshape(-1), (o,))
    wd = (w4.reshape(o, cpg * kh * kw).astype(np.int64) - zw[:, None]).reshape(g, o // g, cpg * k)
    pg = p.reshape(n, g, cpg, oh, ow, k).transpose(0, 1, 3, 4, 2, 5).reshape(n, g, oh, ow, cpg * k)
    acc = np.einsum("ngyxk,gok->ngoyx", pg, wd).reshape(n, o, oh, ow)
    return acc[:, :, 0, :] if one_d else acc


def fbgemm_depthwise_fast_path(in_channels, out_channels, groups, kernel, stride, padding, dilation):
    """FBGEMM's takeDepthWiseFastPath (torch 2.13) for a 2-D convolution: the cases its int16-pair
    depthwise kernel runs (else im2col, exact)."""
    kh, kw = kernel
    return (groups == in_channels and out_channels in (groups, 2 * groups) and groups % 8 == 0
            and kh == kw and kh in (3, 5) and all(s in (1, 2) for s in stride)
            and all(d == 1 for d in dilation) and all(p == (kh - 1) // 2 for p in padding))


def fbgemm_depthwise_acc(x, x_zero_point, w, w_zero_points, stride, padding):
    """FBGEMM's depthwise accumulator (vpmaddubsw): the RAW uint8 inputs (padding = zx) times the
    RAW int8 weights, summed in pairs of consecutive taps (0,1), (2,3), ... with int16 saturation
    (an odd last tap alone), the pair sums added exactly, then the zero points corrected exactly:
      S   = sum_i sat16(x[2i] w[2i] + x[2i+1] w[2i+1])
      acc = S - zx (sum_t w[t] - zw K) - zw sum_t x[t]"""
    x4, w4 = _as_2d(x), np.asarray(w)
    o, _, kh, kw = w4.shape
    zx = int(x_zero_point)
    p = conv_patches(x4, zx, (kh, kw), stride, padding, (1, 1))
    p = p[:, np.arange(o) // (o // p.shape[1])]                    # input channel of each output
    wr = w4.reshape(o, kh * kw).astype(np.int64)
    prod = p * wr[None, :, None, None, :]
    k = kh * kw
    s = np.zeros(prod.shape[:4], np.int64)
    for i in range(0, k, 2):
        pair = prod[..., i] + (prod[..., i + 1] if i + 1 < k else 0)
        s += np.clip(pair, -32768, 32767)
    zw = np.broadcast_to(np.asarray(w_zero_points, np.int64).reshape(-1), (o,)).reshape(1, o, 1, 1)
    colsum = wr.sum(1).reshape(1, o, 1, 1)
    return s - zx * (colsum - zw * k) - zw * p.sum(-1)


def onednn_params(x_scale, w_scales, y_scale):
    """The float32 constants of oneDNN's int8 convolution as torch 2.13 calls it:
    s_src = f32(1 / f32(1 / (double)sx))  (torch passes 1/sx as a float; oneDNN inverts it in float),
    sw[n] = f32(w_scale[n]),
    inv_y = f32(1 / d), d = f32(1 / f32(1 / (double)sy))  (the output side likewise: torch passes
    f32(1/sy) as the dst scale, oneDNN inverts it to d and multiplies by the reciprocal of d;
    CONV_FINDINGS F2b: f32(1 / sy) alone misses where f32(1/sy) does not survive the round trip)."""
    s_src = f32(f32(1.0) / f32(1.0 / np.float64(x_scale)))
    sw = np.atleast_1d(np.asarray(w_scales, np.float64)).astype(np.float32)
    inv_y = f32(f32(1.0) / f32(f32(1.0) / f32(1.0 / np.float64(y_scale))))
    return s_src, sw, inv_y


def requant_onednn(acc, x_scale, w_scales, y_scale, y_zero_point, bias=None, relu=False):
    """oneDNN's requantization (torch engine x86, convolutions packed for oneDNN), acc [..., N]:
      y = f32(f32((float)acc * s_src) * sw[n])      (src scale, then weight scale: two roundings)
      y = f32(y + bias[n]);  relu: y = max(y, 0)
      t = f32(f32(y * inv_y) + (float)zy);  q = clamp(rne(t), 0, 255)
    Returns int64 before the dtype clamp's cast (callers clamp to their range)."""
    s_src, sw, inv_y = onednn_params(x_scale, w_scales, y_scale)
    y = (np.asarray(acc, np.int64).astype(np.float32) * s_src).astype(np.float32)
    y = (y * sw).astype(np.float32)
    if bias is not None:
        y = (y + np.asarray(bias, np.float32)).astype(np.float32)
    if relu:
        y = np.maximum(y, f32(0))
    t = ((y * inv_y).astype(np.float32) + f32(y_zero_point)).astype(np.float32)
    return round_float_to_int32(t)


def conv_requant(acc, arithmetic, x_scale, w_scales, y_scale, y_zero_point, bias=None, relu=False,
                 per_channel=None, dtype="uint8", x_zero_point=0, rounding="double"):
    """acc [N, O, ...] (channels on axis 1) -> the output integers in `dtype` for one arithmetic:
    onednn (above), fbgemm (§6: requant_fbgemm's formula), qnnpack (§7), tflite (§8: int32 bias
    by tflite_bias, MBQM). ReLU clamps at the output zero point (torch's fused ReLU)."""
    qmin, qmax = _qrange(dtype)
    a = np.moveaxis(np.asarray(acc, np.int64), 1, -1)
    zy = int(y_zero_point)
    w_scales = np.atleast_1d(np.asarray(w_scales, np.float64))
    if per_channel is None:
        per_channel = w_scales.size > 1
    n = a.shape[-1]
    if arithmetic == "onednn":
        r = requant_onednn(a, x_scale, w_scales, y_scale, zy, bias, relu)
        lo = qmin
    elif arithmetic == "fbgemm":
        bias_b, bias_r, mult = fbgemm_params(x_scale, w_scales, y_scale, bias, per_channel)
        f = a.astype(np.float32)
        if bias_b is not None:
            f = fmaf(np.broadcast_to(bias_b, f.shape), bias_r, f)
        r = round_float_to_int32((f * mult).astype(np.float32)) + zy
        lo = max(qmin, zy) if relu else qmin
    elif arithmetic == "qnnpack":
        bq, req = qnnpack_params(x_scale, w_scales, y_scale, bias)
        acc_b = wrap_int32(a + bq)
        r = round_float_to_int32((acc_b.astype(np.float32) * req).astype(np.float32)) + zy
        lo = max(qmin, zy) if relu else qmin
    elif arithmetic == "tflite":
        if bias is not None:
            b = np.asarray(bias)
            a = a + (b.astype(np.int64) if b.dtype.kind in "iu" else tflite_bias(b, x_scale, w_scales))
        mult, shift = tflite_multipliers(x_scale, w_scales, y_scale, per_channel, rounding)
        r = MBQM[rounding](wrap_int32(a), np.broadcast_to(mult, (n,)), np.broadcast_to(shift, (n,))) + zy
        lo = max(qmin, zy) if relu else qmin
    else:
        raise ValueError("arithmetic: expected one of %s, got %r" % (", ".join(CONV_ARITHMETICS), arithmetic))
    out = np.clip(r, lo, qmax).astype(dtype)
    return np.moveaxis(out, -1, 1)


def conv(x_q, x_scale, x_zero_point, w_q, w_scales, w_zero_points, bias, y_scale, y_zero_point,
         stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, relu=False, arithmetic="fbgemm",
         per_channel=None, dtype="uint8", depthwise_saturation=None, rounding="double"):
    """One quantized convolution (1-D: NCL, weights [O, C/g, K]; 2-D: NCHW, [O, C/g, KH, KW]).
    The accumulator is exact, except under fbgemm where FBGEMM's depthwise kernel runs
    (fbgemm_depthwise_fast_path), whose int16 pairs saturate (depthwise_saturation=None: decide
    by that rule; True / False force it). int8 inputs enter as uint8 through the +128 flip."""
    x = np.asarray(x_q)
    zx = int(x_zero_point)
    if x.dtype == np.int8:
        x, zx = x.astype(np.int64) + 128, zx + 128
    one_d = x.ndim == 3
    w = np.asarray(w_q)
    k2 = (1,) + tuple(w.shape[2:]) if one_d else tuple(w.shape[2:])
    st, pd, dl = ((1,) + tuple(stride), (0,) + tuple(padding), (1,) + tuple(dilation)) if one_d else \
        (tuple(stride), tuple(padding), tuple(dilation))
    sat = depthwise_saturation
    if sat is None:
        sat = arithmetic == "fbgemm" and not one_d and fbgemm_depthwise_fast_path(
            x.shape[1], w.shape[0], groups, k2, st, pd, dl)
    if sat:
        acc = fbgemm_depthwise_acc(_as_2d(x), zx, _as_2d(w), w_zero_points, st, pd)
        acc = acc[:, :, 0, :] if one_d else acc
    else:
        acc = conv_acc(x, zx, w, w_zero_points, stride, padding, dilation, groups)
    return conv_requant(acc, arithmetic, x_scale, w_scales, y_scale, y_zero_point, bias, relu,
                        per_channel, dtype, rounding=rounding)


def onednn_packs_conv(engine, w_zero_points, groups, output_padding=(0,), has_vnni=True):
    """Whether torch 2.13 packs a quantized convolution for oneDNN (should_use_onednn_quant):
    engine x86, Linux, AVX512-VNNI, groups <= 100, all weight zero points 0, output_padding 0."""
    return (engine == "x86" and bool(has_vnni) and int(groups) <= 100
            and bool(np.all(np.asarray(w_zero_points) == 0)) and all(int(p) == 0 for p in output_padding))


def pool_out_size(size, kernel, stride, padding, ceil_mode, dilation=1):
    """torch's pooling_output_shape: floor or ceil of (size + 2p - d(k-1) - 1)/s + 1, and with
    ceil_mode a last window must start inside the input or its left padding."""
    num = size + 2 * padding - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = num // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def max_pool(x, kernel, stride, padding, dilation=(1, 1), ceil_mode=False):
    """Max pooling of integers (NCHW or NCL): the largest value in each window, padding never wins."""
    one_d = np.ndim(x) == 3
    x4 = _as_2d(x)
    k, s, p, d = [((z,) + tuple(v)) if one_d else tuple(v)
                  for z, v in ((1, kernel), (1, stride), (0, padding), (1, dilation))]
    n, c, h, w = x4.shape
    oh = pool_out_size(h, k[0], s[0], p[0], ceil_mode, d[0])
    ow = pool_out_size(w, k[1], s[1], p[1], ceil_mode, d[1])
    lo = np.iinfo(np.asarray(x).dtype).min
    xp = np.full((n, c, h + 2 * p[0] + k[0] * d[0] + s[0], w + 2 * p[1] + k[1] * d[1] + s[1]), lo, x4.dtype)
    xp[:, :, p[0]:p[0] + h, p[1]:p[1] + w] = x4
    out = np.full((n, c, oh, ow), lo, x4.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            out = np.maximum(out, xp[:, :, i * d[0]: i * d[0] + s[0] * (oh - 1) + 1: s[0],
                                     j * d[1]: j * d[1] + s[1] * (ow - 1) + 1: s[1]])
    return out[:, :, 0, :] if one_d else out


def qnnpack_pool_multiplier(scale, count):
    """QNNPACK's average-pooling multiplier for `count` inputs per window when, as torch calls it,
    the output scale is the input's: f32(s / f32(s * (float)count)). It is not always f32(1 / count)
    (s = 0.05, count 6 differ): the product s * count is rounded to float before the division."""
    s = f32(_need_scale(scale))
    c = np.asarray(count).astype(np.float32)
    return (s / (s * c).astype(np.float32)).astype(np.float32)


def _need_scale(scale):
    if scale is None:
        raise ValueError("scale: path 'qnnpack' needs the input scale (its multiplier is "
                         "f32(scale / f32(scale * count))), got None")
    return scale


def avg_pool_round(acc, div, zero_point, kernel, path="nchw", vector_channels=16, dtype="uint8", scale=None):
    """The rounding half of avg_pool: window sums acc [N, C, OH, OW] and divisors div [OH, OW]
    (kernel: (KH, KW), the qnnpack path's fixed divisor; scale: the input scale, which only the
    qnnpack path reads) -> the output integers of the path."""
    k, zx = kernel, int(zero_point)
    if path == "qnnpack":
        m = np.full(np.shape(div), qnnpack_pool_multiplier(scale, k[0] * k[1]), np.float32)
    else:
        m = (f32(1.0) / div.astype(np.float32)).astype(np.float32)
    a = acc.astype(np.float32)
    if path == "nchw":
        r = np.rint(((a * m).astype(np.float32) + f32(zx)).astype(np.float32)).astype(np.int64)
    elif path == "qnnpack":
        r = np.rint((a * m).astype(np.float32)).astype(np.int64) + zx
    elif path == "nhwc":
        body = np.rint((a * m).astype(np.float32)).astype(np.int64) + zx
        inv = (f32(1.0) / (f32(1.0) / m).astype(np.float32)).astype(np.float32)
        tail = np.rint(((a * inv).astype(np.float32) + f32(zx)).astype(np.float32)).astype(np.int64)
        c = a.shape[1]
        nb = c // vector_channels * vector_channels if vector_channels else 0
        r = np.concatenate([body[:, :nb], tail[:, nb:]], axis=1)
    else:
        raise ValueError("path: expected one of %s, got %r" % (", ".join(AVG_POOL_PATHS), path))
    qmin, qmax = _qrange(dtype)
    out = np.clip(r, qmin, qmax).astype(dtype)
    return out


AVG_POOL_PATHS = ("nchw", "nhwc", "qnnpack")


def avg_pool_sums(x, zero_point, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    """Per window: acc = sum of (x - zx) over the window's inputs inside the image, and its divisor
    (divisor_override, else the window clipped to the padded image with count_include_pad, else to
    the image)."""
    x4 = np.asarray(x, np.int64)
    n, c, h, w = x4.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh = pool_out_size(h, kh, sh, ph, ceil_mode)
    ow = pool_out_size(w, kw, sw, pw, ceil_mode)
    acc = np.zeros((n, c, oh, ow), np.int64)
    div = np.zeros((oh, ow), np.int64)
    zx = int(zero_point)
    for i in range(oh):
        hs = i * sh - ph
        he = min(hs + kh, h + ph)
        for j in range(ow):
            ws = j * sw - pw
            we = min(ws + kw, w + pw)
            pool = (he - hs) * (we - ws)
            h0, w0, h1, w1 = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            size = max(h1 - h0, 0) * max(w1 - w0, 0)
            div[i, j] = divisor_override if divisor_override else (pool if count_include_pad else size)
            acc[:, :, i, j] = x4[:, :, h0:h1, w0:w1].sum((2, 3)) - size * zx
    return acc, div


def avg_pool(x, zero_point, kernel, stride, padding, ceil_mode=False, count_include_pad=True,
             divisor_override=None, path="nchw", vector_channels=16, dtype="uint8", scale=None):
    """Quantized average pooling as torch 2.13 computes it; the output keeps the input's scale and
    zero point. With m = f32(1 / divisor):
      path "nchw" (a contiguous NCHW input, engines x86 / fbgemm):
          q = rne(f32(f32((float)acc * m) + zp))
      path "nhwc" (a channels-last input, e.g. a convolution's output): channels below
          floor(C / vector_channels) * vector_channels (16 with torch's AVX-512 kernels, 8 with AVX2)
          q = rne(f32((float)acc * m)) + zp     (the zero point added after rounding)
          the remaining channels: q = rne(f32(f32((float)acc * f32(1 / f32(1 / m))) + zp))
      path "qnnpack" (engine qnnpack, uint8): count_include_pad and divisor_override are ignored:
          the divisor is always KH*KW, q = rne(f32((float)acc * mq)) + zp with QNNPACK's multiplier
          mq = f32(s / f32(s * (float)(KH*KW))) (s = scale, the input's, which torch passes as both
          input and output scale: qnnpack_pool_multiplier)
    then clamped to the dtype."""
    one_d = np.ndim(x) == 3
    x4 = _as_2d(x)
    k, s, p = [((z,) + tuple(v)) if one_d else tuple(v) for z, v in ((1, kernel), (1, stride), (0, padding))]
    zx = int(zero_point)
    if path == "qnnpack":
        count_include_pad, divisor_override = True, None
    acc, div = avg_pool_sums(x4, zx, k, s, p, ceil_mode, count_include_pad, divisor_override)
    out = avg_pool_round(acc, div, zx, k, path, vector_channels, dtype, scale)
    return out[:, :, 0, :] if one_d else out


# --------------------------------------------------------------- adaptive average pooling
ADAPTIVE_POOL_PATHS = ("nchw", "nhwc", "qnnpack")


def adaptive_windows(size, out):
    """[(start, end)] of torch's adaptive pooling windows: start = floor(o*size/out),
    end = ceil((o+1)*size/out)."""
    return [((o * size) // out, -((-(o + 1) * size) // out)) for o in range(out)]


def adaptive_avg_pool(x, zero_point, output_size, path="nchw", vector_channels=16, dtype="uint8", scale=None):
    """Quantized adaptive average pooling as torch 2.13 computes it (output qparams = input's).
    Per output window of `size` inputs, acc = sum(x - zx), raw = sum(x):
      path "nchw" (a contiguous input): q = rne(f32((float)raw * r)), r = f32(f32(1/KH)/KW)
          (the zero point is never subtracted: it averages to itself)
      path "nhwc" (channels-last input; torch's vector kernel covers the first
          floor(C / vector_channels) * vector_channels channels), with inv = f32(1/f32(1/f32(1/size))):
          vector channels:  q = rne(fmaf((float)acc, inv, zp))
          the tail:         q = rne(f32(f32((float)acc * inv) + zp))
      path "qnnpack" (engine qnnpack, uint8, every input size a multiple of the output size and not
          equal to it): QNNPACK's average pooling with kernel = stride = in / out:
          q = rne(f32((float)acc * f32(s / f32(s * (float)size)))) + zp (s = scale, the input's)
    then clamped to the dtype."""
    one_d = np.ndim(x) == 3
    x4 = np.asarray(_as_2d(x), np.int64)
    out = (1,) + tuple(output_size) if one_d else tuple(output_size)
    n, c, h, w = x4.shape
    zx = int(zero_point)
    if path == "qnnpack" and (h % out[0] or w % out[1]):
        raise ValueError("path: 'qnnpack' needs input sizes %s multiples of output_size %s" % ((h, w), out))
    wh, ww = adaptive_windows(h, out[0]), adaptive_windows(w, out[1])
    raw = np.zeros((n, c) + out, np.int64)
    size = np.zeros(out, np.int64)
    kh = np.zeros(out, np.int64)
    kw = np.zeros(out, np.int64)
    for i, (h0, h1) in enumerate(wh):
        for j, (w0, w1) in enumerate(ww):
            raw[:, :, i, j] = x4[:, :, h0:h1, w0:w1].sum((2, 3))
            size[i, j], kh[i, j], kw[i, j] = (h1 - h0) * (w1 - w0), h1 - h0, w1 - w0
    acc = raw - size * zx
    a = acc.astype(np.float32)
    m = (f32(1.0) / size.astype(np.float32)).astype(np.float32)
    if path == "nchw":
        r = ((f32(1.0) / kh.astype(np.float32)).astype(np.float32) / kw.astype(np.float32)).astype(np.float32)
        q = np.rint((raw.astype(np.float32) * r).astype(np.float32)).astype(np.int64)
    elif path == "qnnpack":
        q = np.rint((a * qnnpack_pool_multiplier(scale, size)).astype(np.float32)).astype(np.int64) + zx
    elif path == "nhwc":
        inv = (f32(1.0) / (f32(1.0) / m).astype(np.float32)).astype(np.float32)
        # fmaf: the exact product plus zp, rounded once (exact in double: 24-bit by 24-bit, |zp| < 2^8)
        body = np.rint((a.astype(np.float64) * inv.astype(np.float64) + zx).astype(np.float32)).astype(np.int64)
        tail = np.rint(((a * inv).astype(np.float32) + f32(zx)).astype(np.float32)).astype(np.int64)
        nb = c // vector_channels * vector_channels if vector_channels else 0
        q = np.concatenate([body[:, :nb], tail[:, nb:]], axis=1)
    else:
        raise ValueError("path: expected one of %s, got %r" % (", ".join(ADAPTIVE_POOL_PATHS), path))
    qmin, qmax = _qrange(dtype)
    y = np.clip(q, qmin, qmax).astype(dtype)
    return y[:, :, 0, :] if one_d else y


# ------------------------------------------------------------------------------ hardswish
HARDSWISH_PATHS = ("vector", "qnnpack")


def hardswish_float(x):
    """torch's float hardswish step by step in float32: x * min(max(x + 3, 0), 6) / 6."""
    x = np.asarray(x, np.float32)
    t = np.minimum(np.maximum((x + f32(3)).astype(np.float32), f32(0)), f32(6))
    return ((x * t).astype(np.float32) / f32(6)).astype(np.float32)


def hardsigmoid_float(x):
    """torch's float hardsigmoid step by step in float32: min(max(x + 3, 0), 6) / 6."""
    x = np.asarray(x, np.float32)
    t = np.minimum(np.maximum((x + f32(3)).astype(np.float32), f32(0)), f32(6))
    return (t / f32(6)).astype(np.float32)


HARDSIGMOID_SCALE = 1.0 / 256       # torch fixes the output quantization: 2^-8, zero point 0 (uint8) / -128 (int8)


def hardsigmoid_zero_point(dtype):
    return -128 if np.dtype(dtype) == np.int8 else 0


def hardsigmoid(q, x_scale, x_zero_point, path="vector", vector_mask=None, dtype="uint8"):
    """Quantized hardsigmoid as torch 2.13 computes it: hardswish's dequantize / quantize steps
    (see hardswish, same paths and the same vector-body / scalar-tail split) around
    hardsigmoid_float, into scale 1/256 and zero point hardsigmoid_zero_point(dtype). The output
    scale is a power of two, so the two quantize roundings agree; the dequantize (fma in the
    vector body, sx * (q - zx) elsewhere) still tells body from tail."""
    return _float_activation(hardsigmoid_float, q, x_scale, x_zero_point, HARDSIGMOID_SCALE,
                             hardsigmoid_zero_point(dtype), path, vector_mask, dtype)


def hardswish(q, x_scale, x_zero_point, y_scale, y_zero_point, path="vector", vector_mask=None, dtype="uint8"):
    """Quantized hardswish as torch 2.13 computes it. sx, sy as float32.
      path "vector" (engines x86 / fbgemm: torch's vectorized kernel): elements of its vector body
          (vector_mask True; None: all): x = fmaf(sx, q, f32(sx * -zx)), y = hardswish_float(x),
          out = rne(f32(y * f32(1/sy))) + zy (zero point after rounding);
          its scalar tail: x = f32(sx * f32(q - zx)), out = rne(f32(f32(y * f32(1/sy)) + zy))
      path "qnnpack" (QNNPACK's 256-entry table): x = f32(sx * f32(q - zx)),
          out = rne(f32(f32(hardswish_float(x) * f32(1/sy)) + zy))
    then clamped to the dtype."""
    return _float_activation(hardswish_float, q, x_scale, x_zero_point, y_scale, y_zero_point, path, vector_mask,
                             dtype)


def _float_activation(fn, q, x_scale, x_zero_point, y_scale, y_zero_point, path, vector_mask, dtype):
    q = np.asarray(q)
    sx, sy, zx, zy = f32(x_scale), f32(y_scale), int(x_zero_point), int(y_zero_point)
    qf = q.astype(np.float32)
    plain = (sx * (qf - f32(zx)).astype(np.float32)).astype(np.float32)
    inv = (f32(1.0) / sy).astype(np.float32)
    if path == "qnnpack":
        y = fn(plain)
        r = np.rint(((y * inv).astype(np.float32) + f32(zy)).astype(np.float32)).astype(np.int64)
    elif path == "vector":
        pre = (sx * f32(-zx)).astype(np.float32)
        fused = (np.float64(sx) * qf.astype(np.float64) + np.float64(pre)).astype(np.float32)
        body = np.rint((fn(fused) * inv).astype(np.float32)).astype(np.int64) + zy
        tail = np.rint(((fn(plain) * inv).astype(np.float32) + f32(zy)).astype(np.float32))
        r = body if vector_mask is None else np.where(vector_mask, body, tail.astype(np.int64))
    else:
        raise ValueError("path: expected one of %s, got %r" % (", ".join(HARDSWISH_PATHS), path))
    qmin, qmax = _qrange(dtype)
    return np.clip(r, qmin, qmax).astype(dtype)


# ------------------------------------------------------------------------------ mean over H, W
MEAN_PATHS = ("nchw", "nhwc", "qnnpack")


def cascade_sum_rows(rows):
    """torch's float32 cascade over the leading axis of `rows` [R, ...] (ATen SumKernel's
    multi_row_sum, one accumulator set per trailing element): four levels, level_power =
    max(4, ceil(log2 R) // 4), step = 2^level_power; level 0 sums `step` rows, then carries into
    level 1 (and on up while the row count is a multiple of the next level's span); leftover rows
    go to level 0; the levels are then added into level 0 in order 1, 2, 3."""
    rows = np.asarray(rows, np.float32)
    size = rows.shape[0]
    power = max(4, (int(size - 1).bit_length() if size > 1 else 0) // 4)
    step, mask = 1 << power, (1 << power) - 1
    acc = [np.zeros(rows.shape[1:], np.float32) for _ in range(4)]
    i = 0
    while i + step <= size:
        for _ in range(step):
            acc[0] = (acc[0] + rows[i]).astype(np.float32)
            i += 1
        for j in range(1, 4):
            acc[j] = (acc[j] + acc[j - 1]).astype(np.float32)
            acc[j - 1] = np.zeros_like(acc[0])
            if i & (mask << (j * power)):
                break
    while i < size:
        acc[0] = (acc[0] + rows[i]).astype(np.float32)
        i += 1
    for j in range(1, 4):
        acc[0] = (acc[0] + acc[j]).astype(np.float32)
    return acc[0]


def ilp_sum_rows(rows, ilp=4):
    """torch's row_sum: the rows read as [R // ilp, ilp] summed by cascade_sum_rows (ilp partial
    sums), the R % ilp leftover rows added to partial 0 in order, then partials 1.. ilp-1 added in."""
    rows = np.asarray(rows, np.float32)
    size = rows.shape[0]
    k = size // ilp
    if k:
        part = cascade_sum_rows(rows[:k * ilp].reshape((k, ilp) + rows.shape[1:]))
    else:
        part = np.zeros((ilp,) + rows.shape[1:], np.float32)
    p0 = part[0]
    for r in rows[k * ilp:]:
        p0 = (p0 + r).astype(np.float32)
    for j in range(1, ilp):
        p0 = (p0 + part[j]).astype(np.float32)
    return p0


def outer_sum(rows, float_lanes=8):
    """torch's float32 sum over the leading axis of rows [R, ..., C] when C is contiguous and
    not reduced (vectorized_outer_sum): columns in whole groups of 4 * float_lanes sum each
    column by cascade_sum_rows; the remaining columns by ilp_sum_rows. With fewer columns than
    float_lanes (scalar_outer_sum) the groups are of 4 columns."""
    rows = np.asarray(rows, np.float32)
    c = rows.shape[-1]
    if c == 1:                  # one column: the reduced axis is the contiguous one
        return _inner_sum(rows[..., 0], float_lanes)[..., None]
    group = 4 * float_lanes if float_lanes and c >= float_lanes else 4     # fewer columns than a vector: scalar_outer_sum
    cut = c // group * group
    out = np.empty(rows.shape[1:], np.float32)
    out[..., :cut] = cascade_sum_rows(rows[..., :cut])
    out[..., cut:] = ilp_sum_rows(rows[..., cut:])
    return out


def _inner_sum(rows, lanes):
    """vectorized_inner_sum over the leading axis (contiguous): whole vectors of `lanes` rows summed
    by ilp_sum_rows into lane partials; the leftover rows added to a zero in order, then the lane
    partials in lane order. Fewer rows than a vector: ilp_sum_rows."""
    size = rows.shape[0]
    if not lanes or size < lanes:
        return ilp_sum_rows(rows)
    k = size // lanes
    part = ilp_sum_rows(rows[:k * lanes].reshape((k, lanes) + rows.shape[1:]))
    acc = np.zeros(rows.shape[1:], np.float32)
    for r in rows[k * lanes:]:
        acc = (acc + r).astype(np.float32)
    for j in range(lanes):
        acc = (acc + part[j]).astype(np.float32)
    return acc


def mean_path(path, channels, height, width):
    """The path torch takes for a mean over H, W: ATen's qmean_inner_dim runs whenever the tensor is
    contiguous in the default format, and a channels-last tensor with one channel or one pixel
    (C == 1 or H * W == 1) is that too: "nhwc" becomes "nchw" there."""
    if path == "nhwc" and (channels == 1 or height * width == 1):
        return "nchw"
    return path


def mean_hw(x, scale, zero_point, path="nchw", dtype="uint8", float_lanes=8):
    """Tensor.mean over dims (2, 3) of a quantized [N, C, H, W] tensor as torch 2.13 computes it
    (keepdim gives [N, C, 1, 1], else [N, C]; output qparams = input's):
      path "nchw" (engines x86 / fbgemm, a contiguous input: qmean_inner_dim), raw = sum(x) with
          the zero point not subtracted: q = rne(f32((float)raw / (float)(H*W)))
      path "nhwc" (x86 / fbgemm, channels-last input: dequantize, float mean, quantize):
          f = dequantize(x); s = outer_sum over the H*W positions (per n, c; float_lanes: floats
          per vector of torch's sum kernel: 8 on this AVX-512 build too);
          q = quantize_per_tensor(f32(s / (float)(H*W)))
      path "qnnpack" (engine qnnpack, uint8: QNNPACK's global average pooling), acc = sum(x - zx):
          q = rne(f32((float)acc * m)) + zx, m = f32(sx / f32(sx * (float)(H*W))) (input scale over
          output scale times the count, the two scales being equal).
    Returns [N, C]."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError("x: mean over H, W takes [N, C, H, W] values, got shape %s" % (x.shape,))
    n, c, h, w = x.shape
    hw = f32(h * w)
    path = mean_path(path, c, h, w)
    if path == "nchw":
        raw = x.reshape(n, c, h * w).astype(np.int64).sum(axis=2)
        q = np.rint((raw.astype(np.float32) / hw).astype(np.float32))
        qmin, qmax = _qrange(dtype)
        return np.clip(q, qmin, qmax).astype(dtype)
    if path == "nhwc":
        f = dequantize(x, scale, zero_point)
        rows = f.transpose(2, 3, 0, 1).reshape(h * w, n, c)
        m = (outer_sum(rows, float_lanes) / hw).astype(np.float32)
        return quantize_per_tensor(m, scale, zero_point, dtype)
    if path == "qnnpack":
        acc = x.reshape(n, c, h * w).astype(np.int64).sum(axis=2) - int(zero_point) * h * w
        m = qnnpack_pool_multiplier(scale, h * w)
        q = np.rint((acc.astype(np.float32) * m).astype(np.float32)).astype(np.int64) + int(zero_point)
        qmin, qmax = _qrange(dtype)
        return np.clip(q, qmin, qmax).astype(dtype)
    raise ValueError("path: expected one of %s, got %r" % (", ".join(MEAN_PATHS), path))


# --------------------------------------------------------------------------- batch norm
BATCH_NORM_BLOCKS = (64, 32, 0)     # torch's channels per vector body: AVX-512, AVX2, no AVX (default build)


def batch_norm_params(weight, bias, mean, var, eps, x_scale, y_scale):
    """torch 2.13's compute_fused_params (qbatch_norm.cpp), per channel (float32 [C] each):
        inv   = f32(1.0 / (double) sqrtf(f32(var + f32(eps))))
        alpha = f32((double) f32(inv · w) · ((double) s_x / (double) s_y))
        beta  = f32((double) f32(b − f32(f32(mean · inv) · w)) / (double) s_y)
    (float32 products and sum, the scale ratio and the divisions in double, rounded to float once)."""
    w, b, m, v = (np.asarray(a, dtype=np.float32) for a in (weight, bias, mean, var))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        inv = (1.0 / np.sqrt((v + f32(eps)).astype(np.float32)).astype(np.float64)).astype(np.float32)
        ratio = np.float64(x_scale) / np.float64(y_scale)
        alpha = ((inv * w).astype(np.float32).astype(np.float64) * ratio).astype(np.float32)
        shifted = (b - ((m * inv).astype(np.float32) * w).astype(np.float32)).astype(np.float32)
        beta = (shifted.astype(np.float64) / np.float64(y_scale)).astype(np.float32)
    return alpha, beta


def batch_norm_body_channels(channels, vector_block):
    """How many leading channels of each pixel torch's q_batch_norm_kernel runs in its vector body:
    whole blocks of 64 (AVX-512); with AVX2 blocks of 32, then the rest in steps of 8 through the
    same vector code; none in a build without AVX (vector_block 0)."""
    if vector_block == 64:
        return channels // 64 * 64
    if vector_block == 32:
        return channels // 8 * 8
    return 0


def batch_norm(x, alpha, beta, x_zero_point, y_zero_point, relu=False, vector_block=64, dtype="uint8"):
    """Quantized batch norm (torch.ops.quantized.batch_norm*d, nnq.BatchNorm2d / 3d, nniq.BNReLU2d
    / 3d) on [N, C, ...] values, alpha / beta from batch_norm_params, d = x − z_x (exact):
      vector body (channel c < batch_norm_body_channels(C, vector_block)):
          t = fmaf(alpha[c], d, beta[c]);  q = _quantize_body(t, z_y)  (cvtps2dq: ties to even,
          min(t, 2^31 − 128) first, the zero point added in wrapping int32, clamped)
      scalar tail (the other channels): t = fmaf(alpha[c], d, beta[c]) (the compiler contracts
          a·d + b into one fma in torch's AVX2 / AVX-512 builds), or f32(f32(alpha·d) + beta) with
          vector_block 0 (no fma); q = clamp(z_y + lrintf(t))
      ReLU (BNReLU): q = max(q, z_y).
    The output keeps x's dtype; its scale / zero point are the module's."""
    x = np.asarray(x)
    qmin, qmax = _qrange(dtype)
    c = x.shape[1]
    shape = (1, c) + (1,) * (x.ndim - 2)
    a = np.asarray(alpha, np.float32).reshape(shape)
    b = np.asarray(beta, np.float32).reshape(shape)
    d = (x.astype(np.int64) - int(x_zero_point)).astype(np.float32)
    if vector_block:
        t = fmaf(a, d, b)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            t = ((a * d).astype(np.float32) + b).astype(np.float32)
    t = np.broadcast_to(t, x.shape)
    nb = batch_norm_body_channels(c, vector_block)
    q = np.empty(x.shape, np.int64)
    q[:, :nb] = _quantize_body(t[:, :nb], y_zero_point, qmin, qmax, clip_top=True)
    tail = t[:, nb:].astype(np.float64)
    ok = (tail >= -2.0**63) & (tail < 2.0**63)          # else lrintf gives INT64_MIN: qmin
    with np.errstate(invalid="ignore"):
        q[:, nb:] = np.where(ok, np.clip(np.rint(np.where(ok, tail, 0.0)) + int(y_zero_point), qmin, qmax), qmin)
    if relu:
        q = np.maximum(q, int(y_zero_point))
    return q.astype(dtype)
