"""Explain: one output element of a quantized Linear layer, worked out by pen and paper.

    text = fastq.explain(layer, x_q, m=0, n=0)

Shows x_q, w_q and their zero points, every product (x - z_x)(w - z_w), their sum, the same
accumulator through the four terms the kernels use (column sums are precomputed when the
weights are packed, row sums per call), then the requantization steps of the layer's mode
(fbgemm / qnnpack / tflite) with each float32 rounding shown as exact value -> float32, and
the final q. The result is checked against fastq.reference and against the C kernel.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from . import reference as R
from .layers.linear import QuantizedLinear
from .qtensor import QTensor

f32 = np.float32
_SHOW_ALL_K = 16     # longer dot products show their first and last terms only


def _g(v):
    """A float32 as the shortest decimal that reads back to it."""
    return repr(float(f32(v))) if np.isfinite(v) else str(v)


def _exact(fr):
    """An exact rational (a product / quotient of floats) with 17 significant digits."""
    return "%.17g" % float(fr) if isinstance(fr, Fraction) else "%.17g" % fr


def _rounding(label, formula, exact, rounded):
    """One float32 operation: its exact result and the float32 it rounds to."""
    r = f32(rounded)
    same = isinstance(exact, Fraction) and Fraction(float(r)) == exact
    note = "exact" if same else "rounded"
    return "  %-6s = %-26s = %-24s -> f32 %s   (%s)" % (label, formula, _exact(exact), _g(r), note)


def _weight_params(layer, n):
    w = layer.weight
    sw = float(np.atleast_1d(np.asarray(w.scale, np.float64))[n if layer.per_channel else 0])
    zw = int(np.atleast_1d(np.asarray(w.zero_point))[n if layer.per_channel else 0])
    return sw, zw


def _integer_core(lines, x_row, w_row, zx, zw):
    k = x_row.shape[0]
    dx = x_row.astype(np.int64) - zx
    dw = w_row.astype(np.int64) - zw
    prod = dx * dw
    lines.append("2. Integer core: acc = sum_k (x_q[m,k] - z_x) * (w_q[n,k] - z_w[n])   (exact int32)")
    lines.append("     k   x_q  x-z_x   w_q  w-z_w    product")
    shown = range(k) if k <= _SHOW_ALL_K else list(range(6)) + [None] + list(range(k - 2, k))
    for i in shown:
        if i is None:
            lines.append("   ...   (%d more terms)" % (k - 8))
            continue
        lines.append("  %4d  %4d  %5d  %4d  %5d  %9d" % (i, x_row[i], dx[i], w_row[i], dw[i], prod[i]))
    acc = int(prod.sum())
    lines.append("  sum of the %d products: acc = %d" % (k, acc))
    sxw = int(x_row.astype(np.int64) @ w_row.astype(np.int64))
    colsum = int(w_row.astype(np.int64).sum())
    rowsum = int(x_row.astype(np.int64).sum())
    lines.append("  The kernels compute the same acc from raw products and precomputed sums:")
    lines.append("      sum_k x*w               = %d" % sxw)
    lines.append("    - z_x * colsum[n]         = -%d * %d = %d      (colsum: once, at packing)" % (zx, colsum, -zx * colsum))
    lines.append("    - rowsum[m] * z_w[n]      = -%d * %d = %d      (rowsum: per call, only if z_w != 0)" % (rowsum, zw, -rowsum * zw))
    lines.append("    + K * z_x * z_w[n]        = %d * %d * %d = %d" % (k, zx, zw, k * zx * zw))
    four = sxw - zx * colsum - rowsum * zw + k * zx * zw
    lines.append("    = %d   (%s)" % (four, "equal" if four == acc else "DIFFERENT"))
    return acc


def _fbgemm_steps(lines, layer, acc, sx, sw, bias, relu):
    sy, zy = layer.scale, layer.zero_point
    lines.append("3. Requantization 'fbgemm' (torch engines x86 / fbgemm), float32 throughout:")
    fsx, fsw, fsy = f32(sx), f32(sw), f32(sy)
    lines.append("  s_x = %s, s_w = %s, s_y = %s as float32" % (_g(fsx), _g(fsw), _g(fsy)))
    atws = f32(fsx * fsw)
    lines.append(_rounding("atws", "s_x * s_w", Fraction(float(fsx)) * Fraction(float(fsw)), atws))
    mult = f32(atws / fsy)
    lines.append(_rounding("mult", "atws / s_y", Fraction(float(atws)) / Fraction(float(fsy)), mult))
    f = f32(acc)
    lines.append(_rounding("f", "(float)acc", Fraction(acc), f))
    if bias is not None:
        b = f32(bias)
        if layer.per_channel:
            bt = f32(b / atws)
            lines.append(_rounding("b'", "bias / atws", Fraction(float(b)) / Fraction(float(atws)), bt))
            f_new = f32(f + bt)
            lines.append(_rounding("f", "f + b'", Fraction(float(f)) + Fraction(float(bt)), f_new))
        else:
            inv = f32(1.0 / np.float64(atws))
            lines.append(_rounding("inv", "(float)(1 / (double)atws)", Fraction(1) / Fraction(float(atws)), inv))
            # torch's FBGEMM fuses bias * inv + f into one fma (docs/ARITHMETIC.md section 6)
            f_new = f32(R.fmaf(b, inv, f))
            lines.append(_rounding("f", "fmaf(bias, inv, f)",
                                   Fraction(float(b)) * Fraction(float(inv)) + Fraction(float(f)), f_new))
        f = f_new
    y = f32(f * mult)
    lines.append(_rounding("y", "f * mult", Fraction(float(f)) * Fraction(float(mult)), y))
    r = int(R.round_float_to_int32(y))
    lines.append("  r      = rne(y) = %d   (round half to even; |y| >= 2^31 would give INT32_MIN)" % r)
    lo = zy if relu else 0
    q = min(max(r + zy, lo), 255)
    lines.append("  q      = clamp(r + z_y, %d, 255) = clamp(%d + %d) = %d%s"
                 % (lo, r, zy, q, "   (fused ReLU: lower bound z_y)" if relu else ""))
    return q


def _qnnpack_steps(lines, layer, acc, sx, sw, bias, relu):
    sy, zy = layer.scale, layer.zero_point
    lines.append("3. Requantization 'qnnpack' (torch engine qnnpack): int32 bias, float multiplier:")
    fsx, fsw, fsy = f32(sx), f32(sw), f32(sy)
    p = f32(fsw * fsx)
    lines.append(_rounding("sw*sx", "s_w * s_x", Fraction(float(fsw)) * Fraction(float(fsx)), p))
    inv_sy = f32(f32(1.0) / fsy)
    lines.append(_rounding("1/s_y", "1 / s_y", Fraction(1) / Fraction(float(fsy)), inv_sy))
    req = f32(p * inv_sy)
    lines.append(_rounding("req", "sw*sx * (1/s_y)", Fraction(float(p)) * Fraction(float(inv_sy)), req))
    bq = 0
    if bias is not None:
        bs = f32(np.float64(sw) * np.float64(sx))
        lines.append(_rounding("bs", "(double)s_w * (double)s_x", Fraction(sw) * Fraction(sx), bs))
        inv_bs = f32(f32(1.0) / bs)
        lines.append(_rounding("1/bs", "1 / bs", Fraction(1) / Fraction(float(bs)), inv_bs))
        t = f32(f32(bias) * inv_bs)
        lines.append(_rounding("t", "bias * (1/bs)", Fraction(float(f32(bias))) * Fraction(float(inv_bs)), t))
        bq = int(np.clip(np.rint(np.float64(t)), R.INT32_MIN, R.INT32_MAX))
        lines.append("  bq     = rne(t) = %d   (int32 bias)" % bq)
    a = int(R.wrap_int32(acc + bq))
    lines.append("  acc+bq = %d + %d = %d" % (acc, bq, a))
    f = f32(a)
    lines.append(_rounding("f", "(float)(acc+bq)", Fraction(a), f))
    y = f32(f * req)
    lines.append(_rounding("y", "f * req", Fraction(float(f)) * Fraction(float(req)), y))
    r = int(R.round_float_to_int32(y))
    lines.append("  r      = rne(y) = %d" % r)
    lo = zy if relu else 0
    q = min(max(r + zy, lo), 255)
    lines.append("  q      = clamp(r + z_y, %d, 255) = clamp(%d + %d) = %d" % (lo, r, zy, q))
    return q


def _tflite_steps(lines, layer, acc, sx, sw, relu, n):
    sy, zy = layer.scale, layer.zero_point
    lines.append("3. Requantization 'tflite' (fixed point: Q31 multiplier and shift, int32 bias):")
    if layer.per_channel or layer.effective_scale == "float64":
        d = np.float64(f32(sx)) * np.float64(f32(sw)) / np.float64(f32(sy))
        lines.append("  d      = (double)s_x * s_w / s_y = %.17g" % d)
    else:
        prod = f32(f32(sx) * f32(sw))
        lines.append(_rounding("sx*sw", "s_x * s_w", Fraction(float(f32(sx))) * Fraction(float(f32(sw))), prod))
        d = np.float64(prod) / np.float64(f32(sy))
        lines.append("  d      = (double)(sx*sw) / (double)s_y = %.17g" % d)
    mant, e = np.frexp(d)
    qm, shift = R.quantize_multiplier(float(d), layer.rounding)
    lines.append("  frexp(d) = %.17g * 2^%d  ->  multiplier = round(%.17g * 2^31) = %d, shift = %d"
                 % (mant, e, mant, qm, shift))
    bias_i = 0
    if layer.int_bias is not None:
        bias_i = int(layer.int_bias[n])
        lines.append("  bias   = %d (int32, given)" % bias_i)
    elif layer.bias is not None:
        bias_i = int(R.tflite_bias(np.array([layer.bias[n]]), sx, [sw])[0])
        lines.append("  bias   = round_half_away(%s * f32(1 / f32(s_x * s_w))) = %d (int32)"
                     % (_g(layer.bias[n]), bias_i))
    a = int(R.wrap_int32(acc + bias_i))
    lines.append("  acc    = %d + %d = %d" % (acc, bias_i, a))
    if layer.rounding == "single":
        total = 31 - shift
        v = int(R.multiply_by_quantized_multiplier_single(a, qm, shift))
        lines.append("  y      = (acc * %d + 2^%d) >> %d = %d   (single rounding, ties up)" % (qm, total - 1, total, v))
    else:
        left, right = max(shift, 0), max(-shift, 0)
        xs = int(R.wrap_int32(a << left))
        if left:
            lines.append("  x      = acc << %d = %d" % (left, xs))
        p = xs * qm
        hi = int(R.saturating_rounding_doubling_high_mul(xs, qm))
        lines.append("  SRDHM  = round(%d * %d / 2^31) = round(%d / 2^31) = %d   (ties up)"
                     % (xs, qm, p, hi))
        if layer.rounding == "double_up":
            v = int(R.multiply_by_quantized_multiplier_double_up(a, qm, shift))
            lines.append("  y      = (%d + 2^%d) >> %d = %d   (rounding shift, ties up)" % (hi, right - 1, right, v)
                         if right else "  y      = %d" % v)
        else:
            v = int(R.rounding_divide_by_pot(hi, right))
            lines.append("  y      = RoundingDivideByPOT(%d, %d) = %d   (ties away from zero)" % (hi, right, v))
    lo = zy if relu else 0
    q = min(max(v + zy, lo), 255)
    lines.append("  q      = clamp(y + z_y, %d, 255) = clamp(%d + %d) = %d" % (lo, v, zy, q))
    return q


def _reference_q(layer, x2, m, n, sx, zx):
    w = layer.weight
    if layer.requant in ("fbgemm", "qnnpack"):
        out = R.linear(x2[m:m + 1], sx, zx, w.values, w.scale, w.zero_point,
                       layer.bias, layer.scale, layer.zero_point, relu=layer.relu, requant=layer.requant,
                       per_channel=layer.per_channel)
        return int(out[0, n])
    bias = layer.int_bias if layer.int_bias is not None else layer.bias
    out = R.linear_tflite(x2[m:m + 1], sx, zx, w.values, w.scale, w.zero_point, bias, layer.scale,
                          layer.zero_point, layer.relu, layer.per_channel, layer.rounding, "uint8",
                          layer.effective_scale)
    return int(out[0, n])


def explain(layer, x_q, m=0, n=0):
    """The arithmetic of output element [m, n] of `layer(x_q)`, step by step, as text.

    layer: fastq.QuantizedLinear; x_q: uint8 QTensor [..., K] (rows flattened to [M, K])."""
    if not isinstance(layer, QuantizedLinear):
        raise TypeError("layer: expected a fastq.QuantizedLinear, got %s" % type(layer).__name__)
    if not isinstance(x_q, QTensor) or x_q.axis is not None or x_q.values.dtype != np.uint8:
        raise TypeError("x_q: expected a per-tensor uint8 fastq.QTensor")
    k, n_out = layer.in_features, layer.out_features
    if x_q.values.ndim < 1 or x_q.values.shape[-1] != k:
        raise ValueError("x_q: expected shape [..., %d], got %s" % (k, x_q.values.shape))
    x2 = x_q.values.reshape(-1, k)
    for name, v, hi in (("m", m, x2.shape[0]), ("n", n, n_out)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError("%s: expected an int" % name)
        if not 0 <= v < hi:
            raise ValueError("%s: %d is outside [0, %d)" % (name, v, hi))
    m, n = int(m), int(n)
    sx, zx = x_q.scale, x_q.zero_point
    sw, zw = _weight_params(layer, n)
    bias = None if layer.bias is None else float(layer.bias[n])
    lines = ["fastq explain: %r, output element [m=%d, n=%d]" % (layer, m, n), ""]
    lines.append("1. Inputs  (real value = (q - zero_point) * scale)")
    lines.append("  activations x_q[%d, :]: uint8, s_x = %.9g, z_x = %d" % (m, sx, zx))
    lines.append("  weights     w_q[%d, :]: int8,  s_w[n] = %.9g, z_w[n] = %d (%s)"
                 % (n, sw, zw, "per channel" if layer.per_channel else "per tensor"))
    lines.append("  output      s_y = %.9g, z_y = %d%s" % (layer.scale, layer.zero_point, ", fused ReLU" if layer.relu else ""))
    if layer.int_bias is not None:
        lines.append("  bias[n] = %d (int32)" % layer.int_bias[n])
    else:
        lines.append("  bias[n] = %s" % ("none" if bias is None else "%s (float32)" % _g(bias)))
    lines.append("")
    acc = _integer_core(lines, x2[m], layer.weight.values[n], zx, zw)
    lines.append("")
    if layer.requant == "fbgemm":
        q = _fbgemm_steps(lines, layer, acc, sx, sw, bias, layer.relu)
    elif layer.requant == "qnnpack":
        q = _qnnpack_steps(lines, layer, acc, sx, sw, bias, layer.relu)
    else:
        q = _tflite_steps(lines, layer, acc, sx, sw, layer.relu, n)
    q_ref = _reference_q(layer, x2, m, n, sx, zx)
    q_kernel = int(layer(QTensor(np.ascontiguousarray(x2[m:m + 1]), sx, zx)).values[0, n])
    from .runtime import get_backend
    lines.append("")
    lines.append("4. Check: by hand q = %d; fastq.reference q = %d; C kernel (backend %s) q = %d -> %s"
                 % (q, q_ref, get_backend(), q_kernel,
                    "all equal" if q == q_ref == q_kernel else "MISMATCH"))
    real = (q - layer.zero_point) * layer.scale
    lines.append("  y[%d, %d] = (q - z_y) * s_y = (%d - %d) * %.9g = %.9g" % (m, n, q, layer.zero_point, layer.scale, real))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the CLI
def random_layer(requant="fbgemm", k=8, n=4, m=2, seed=0, per_channel=False, relu=False, bias=True,
                 rounding="double"):
    """A random layer and input, calibrated like an observer would (output range from the data)."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    w_scale = rng.uniform(0.002, 0.02, n) if per_channel else float(rng.uniform(0.002, 0.02))
    weight = QTensor(w, w_scale, np.zeros(n, np.int32) if per_channel else 0, axis=0 if per_channel else None)
    sx, zx = float(f32(rng.uniform(0.01, 0.1))), int(rng.integers(0, 256))
    x_q = QTensor(rng.integers(0, 256, (m, k)).astype(np.uint8), sx, zx)
    b = (rng.standard_normal(n) * 0.5).astype(np.float32) if bias else None
    real = R.qgemm(x_q.values, zx, w, weight.zero_point).astype(np.float64) * sx * np.asarray(w_scale)
    if b is not None:
        real = real + b
    lo, hi = min(real.min(), 0.0), max(real.max(), 0.0)
    sy = float(f32(max((hi - lo) / 255.0, 1e-6)))
    zy = int(np.clip(round(-lo / sy), 0, 255))
    layer = QuantizedLinear(weight, b, sy, zy, relu=relu, requant=requant, rounding=rounding)
    return layer, x_q
