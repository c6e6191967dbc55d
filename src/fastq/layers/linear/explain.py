"""The explain traces of the linear family: QuantizedLinear (every requantization mode) and
DynamicQuantizedLinear, built from the layer's settings and fastq.reference, never from the
kernels (the kernel's value is recorded in trace.checks). Imported by the ops' explain methods
only (the façade: layer.explain builds a fastq.explain.Trace)."""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from ... import reference as R
from ..._checks import as_array, check_index as _check_index
from ...fixedpoint import tflite_params
from ...qtensor import QTensor
from .._trace import Step, Trace, _f32_step, _fr, _g

f32 = np.float32


def _weight_row(layer, col):
    w = layer.weight
    per_channel = w.axis is not None
    sw = float(np.atleast_1d(np.asarray(w.scale, np.float64))[col if per_channel else 0])
    zw = int(np.atleast_1d(np.asarray(w.zero_point))[col if per_channel else 0])
    return w.values[col], sw, zw


def _integer_core(x_row, w_row, zx, zw):
    """acc and its pieces: dx, dw, products, and the four terms the kernels use."""
    x64 = x_row.astype(np.int64)
    w64 = w_row.astype(np.int64)
    dx, dw = x64 - zx, w64 - zw
    products = dx * dw
    acc = int(products.sum())
    k = x64.shape[0]
    terms = {"sum_xw": int(x64 @ w64), "zx_colsum": int(zx * w64.sum()),
             "rowsum_zw": int(x64.sum() * zw), "k_zx_zw": int(k * zx * zw),
             "colsum": int(w64.sum()), "rowsum": int(x64.sum())}
    return dx, dw, products, acc, terms


# --------------------------------------------------------------------------- static layers
def explain_static(layer, x, row, col):
    if not isinstance(x, QTensor):
        raise TypeError("x: expected a fastq.QTensor (per tensor, uint8 or int8), got %s" % type(x).__name__)
    if x.axis is not None:
        raise ValueError("x: expected per-tensor quantized activations, got a per-channel QTensor")
    k = layer.in_features
    if x.values.ndim < 1 or x.values.shape[-1] != k:
        raise ValueError("x: expected shape [..., %d], got %s" % (k, x.values.shape))
    if layer.input_scale is not None and (
            x.scale != layer.input_scale
            or (layer.input_zero_point is not None and x.zero_point != layer.input_zero_point)):
        raise ValueError("x: quantized with scale %r, zero point %d; this layer was built for "
                         "input_scale=%r, input_zero_point=%r"
                         % (x.scale, x.zero_point, layer.input_scale, layer.input_zero_point))
    x2 = x.values.reshape(int(np.prod(x.values.shape[:-1])), k)      # (-1, 0) would be ambiguous
    row = _check_index(row, "row", x2.shape[0])
    col = _check_index(col, "col", layer.out_features)
    sx, zx = float(x.scale), int(x.zero_point)
    w_row, sw, zw = _weight_row(layer, col)
    dx, dw, products, acc, terms = _integer_core(x2[row], w_row, zx, zw)
    qmin, qmax = R._qrange(layer.dtype)
    zy, sy = int(layer.zero_point), float(layer.scale)
    clamp_min = max(qmin, zy) if layer.relu else qmin
    steps = [Step("acc", "acc", "sum_k (x - z_x)(w - z_w)", None, acc, "int",
                  "int32 accumulator of the zero-point-shifted products")]
    build = {"fbgemm": _fbgemm_steps, "qnnpack": _qnnpack_steps, "tflite": _tflite_steps}[layer.requant]
    info = build(layer, steps, acc, sx, col)
    r = info["r"]
    steps.append(Step("zero_point", "r+z_y", "%d + %d" % (r, zy), None, r + zy, "int",
                      "output zero point added to the rounded integer"))
    q = min(max(r + zy, clamp_min), qmax)
    steps.append(Step("clamp", "q", "clamp(%d, %d, %d)" % (r + zy, clamp_min, qmax), None, q, "int",
                      "clamped to [%s, %d] (%s)" % ("z_y" if layer.relu else str(qmin), qmax,
                                                    "fused ReLU: lower bound z_y" if layer.relu
                                                    else layer.dtype.name + " range")))
    real = f32(f32(q - zy) * f32(sy))                     # torch's dequantize
    trace = Trace(kind="static", layer=repr(layer), mode=layer.requant,
                  rounding=layer.rounding if layer.requant == "tflite" else None,
                  per_channel=layer.per_channel, row=row, col=col,
                  x={"values": x2[row].copy(), "dtype": x.values.dtype.name, "scale": sx, "zero_point": zx},
                  w={"values": w_row.copy(), "dtype": "int8", "scale": sw, "zero_point": zw},
                  dx=dx, dw=dw, products=products, acc=acc, acc_terms=terms,
                  bias=info["bias"], bias_acc=info["bias_acc"], multiplier=info["multiplier"],
                  shift=info.get("shift"), steps=steps, zero_point=zy, scale=sy, qmin=qmin, qmax=qmax,
                  clamp_min=clamp_min, relu=layer.relu, output=q, real=real, dtype=layer.dtype.name,
                  _pre_round=info["pre_round"], _layer=layer, _header=info["header"])
    trace.checks = {"reference": _reference_static(layer, x2[row:row + 1], sx, zx, col),
                    "kernel": int(layer(QTensor(np.ascontiguousarray(x2[row:row + 1]), sx, zx)).values[0, col])}
    return trace


def _layer_bias(layer, col):
    if layer.int_bias is not None:
        return int(layer.int_bias[col])
    if layer.bias is not None:
        return f32(layer.bias[col])
    return None


def _fbgemm_params(layer, sx):
    """(bias_b[N] or None, bias_r, mult[N]) from reference.fbgemm_params: the bias term enters
    as fmaf(bias_b[n], bias_r, (float)acc)."""
    return R.fbgemm_params(sx, layer.weight.scale, layer.scale, layer.bias, layer.per_channel,
                           layer.bias_rounding)


def _fbgemm_steps(layer, steps, acc, sx, col):
    """torch x86 / fbgemm: float32 constants and the bias step from reference.fbgemm_params."""
    n_out = layer.out_features
    bias_b, bias_r, mult = _fbgemm_params(layer, sx)
    n = col if layer.per_channel else 0
    fsx, fsw, fsy = f32(sx), f32(np.atleast_1d(np.asarray(layer.weight.scale, np.float64))[n]), f32(layer.scale)
    atws = f32(fsx * fsw)
    steps.append(_f32_step("multiplier", "atws", "s_x * s_w", _fr(fsx) * _fr(fsw),
                           "float32 product of the input and weight scales"))
    steps.append(_f32_step("multiplier", "mult", "atws / s_y", _fr(atws) / _fr(fsy),
                           "float32 multiplier f32(f32(s_x * s_w) / s_y)"))
    mult_n = f32(np.broadcast_to(mult, (n_out,))[col])
    assert steps[-1].value == mult_n          # the constant the kernel uses (reference.fbgemm_params)
    bias = _layer_bias(layer, col)
    f = f32(acc)
    fstep = _f32_step("bias_add" if bias is not None else "scale", "f", "(float)acc", acc,
                      "int32 accumulator converted to float32")
    bias_acc = None
    if bias is None:
        steps.append(Step("bias", "bias", "none", None, 0, "int", "no bias"))
        steps.append(fstep)
    else:
        bb = f32(np.broadcast_to(bias_b, (n_out,))[col])
        br = f32(np.asarray(bias_r).reshape(-1)[0])
        if br != 1:
            # the bias times inv joins the accumulator in one rounding (fmaf)
            steps.append(_f32_step("bias", "inv", "(float)(1 / (double)atws)", Fraction(1) / _fr(atws),
                                   "bias kept as float32, times inv = f32(1 / (s_x * s_w)) inside one fma",
                                   value=f32(1.0 / np.float64(atws))))
            assert steps[-1].value == br and bb == bias
            steps.append(fstep)
            formula, how = "fmaf(bias, inv, f)", "bias added as float32 after the accumulator, one rounding (fmaf)"
        else:
            if layer.per_channel or layer.bias_rounding == "divide":
                steps.append(_f32_step("bias", "b'", "bias / atws", _fr(bias) / _fr(atws),
                                       "bias kept as float32, divided by s_x * s_w[n]"))
            else:
                inv = f32(1.0 / np.float64(atws))
                steps.append(_f32_step("bias", "inv", "(float)(1 / (double)atws)", Fraction(1) / _fr(atws), value=inv))
                steps.append(_f32_step("bias", "b'", "bias * inv", _fr(bias) * _fr(inv),
                                       "bias kept as float32, times f32(1 / (s_x * s_w)), rounded on its own"))
            assert steps[-1].value == bb
            steps.append(fstep)
            formula, how = "f + b'", "bias added as float32 after the accumulator"
        bias_acc = _fr(bb) * _fr(br)
        steps.append(_f32_step("bias_add", "f", formula, _fr(f) + bias_acc, how, value=R.fmaf(bb, br, f)))
        f = steps[-1].value
    steps.append(_f32_step("scale", "y", "f * mult", _fr(f) * _fr(mult_n),
                           "float32 product with the multiplier"))
    y = steps[-1].value
    r = int(R.round_float_to_int32(y))
    steps.append(Step("round", "r", "rne(y)   (|y| >= 2^31: INT32_MIN)", _fr(y) if np.isfinite(y) else None, r,
                      "int", "round half to even"))
    header = "3. Requantization 'fbgemm' (torch engines x86 / fbgemm): float32 throughout, float bias"
    return dict(r=r, bias=bias, bias_acc=bias_acc, multiplier=mult_n, pre_round=_fr(y) if np.isfinite(y) else None, header=header)


def _qnnpack_steps(layer, steps, acc, sx, col):
    """torch qnnpack: the bias rounded to int32, a float32 multiplier (reference.qnnpack_params)."""
    sw_all = layer.weight.scale
    bq_all, req_all = R.qnnpack_params(sx, sw_all, layer.scale, layer.bias)
    n = col if layer.per_channel else 0
    sw = np.atleast_1d(np.asarray(sw_all, np.float64))[n]
    fsx, fsw, fsy = f32(sx), f32(sw), f32(layer.scale)
    bias = _layer_bias(layer, col)
    bq = 0
    if bias is None:
        steps.append(Step("bias", "bias", "none", None, 0, "int", "no bias"))
    else:
        steps.append(_f32_step("bias", "bs", "(double)s_w * (double)s_x", Fraction(float(sw)) * Fraction(float(sx)),
                               value=f32(np.float64(sw) * np.float64(sx))))
        bs = steps[-1].value
        steps.append(_f32_step("bias", "1/bs", "1 / bs", Fraction(1) / _fr(bs)))
        steps.append(_f32_step("bias", "t", "bias * (1/bs)", _fr(bias) * _fr(steps[-1].value)))
        t = steps[-1].value
        bq = int(np.clip(np.rint(np.float64(t)), R.INT32_MIN, R.INT32_MAX))
        steps.append(Step("bias", "bq", "rne(t)", _fr(t), bq, "int", "bias rounded to int32 first (half to even)"))
        assert bq == int(np.broadcast_to(bq_all, (layer.out_features,))[col])
    a = int(R.wrap_int32(acc + bq))
    if bias is not None:
        steps.append(Step("bias_add", "acc+bq", "%d + %d" % (acc, bq), None, a, "int",
                          "int32 bias added to the int32 accumulator"))
    steps.append(_f32_step("multiplier", "sw*sx", "s_w * s_x", _fr(fsw) * _fr(fsx),
                           "float32 product of the weight and input scales"))
    p = steps[-1].value
    steps.append(_f32_step("multiplier", "1/s_y", "1 / s_y", Fraction(1) / _fr(fsy)))
    steps.append(_f32_step("multiplier", "req", "sw*sx * (1/s_y)", _fr(p) * _fr(steps[-1].value),
                           "float32 multiplier f32(f32(s_w * s_x) * f32(1 / s_y))"))
    req = steps[-1].value
    assert req == f32(np.broadcast_to(req_all, (layer.out_features,))[col])
    steps.append(_f32_step("scale", "f", "(float)(acc+bq)", a))
    f = steps[-1].value
    steps.append(_f32_step("scale", "y", "f * req", _fr(f) * _fr(req), "float32 product with the multiplier"))
    y = steps[-1].value
    r = int(R.round_float_to_int32(y))
    steps.append(Step("round", "r", "rne(y)", _fr(y) if np.isfinite(y) else None, r, "int",
                      "round half to even"))
    header = "3. Requantization 'qnnpack' (torch engine qnnpack): int32 bias, float32 multiplier"
    return dict(r=r, bias=bias, bias_acc=None if bias is None else bq, multiplier=req, pre_round=_fr(y) if np.isfinite(y) else None,
                header=header)


def _tflite_steps(layer, steps, acc, sx, col):
    """TFLite / gemmlowp / CMSIS-NN: int32 bias, Q31 multiplier and shift, integer roundings."""
    mult, shift, int_bias = tflite_params(sx, layer.weight.scale, layer.per_channel, layer.scale,
                                          layer.out_features, layer.bias, layer.int_bias, layer.rounding,
                                          layer.effective_scale)
    qm, sh = int(mult[col]), int(shift[col])
    n = col if layer.per_channel else 0
    sw = np.atleast_1d(np.asarray(layer.weight.scale, np.float64))[n]
    fsx, fsw, fsy = f32(sx), f32(sw), f32(layer.scale)
    bias = _layer_bias(layer, col)
    bi = 0
    if bias is None:
        steps.append(Step("bias", "bias", "none", None, 0, "int", "no bias"))
    elif layer.int_bias is not None:
        bi = int(int_bias[col])
        steps.append(Step("bias", "bias", "given int32", None, bi, "int", "bias given as int32"))
    else:
        steps.append(_f32_step("bias", "bs", "s_x * s_w", _fr(fsx) * _fr(fsw)))
        bs = steps[-1].value
        steps.append(_f32_step("bias", "1/bs", "(float)(1 / (double)bs)", Fraction(1) / _fr(bs),
                               value=f32(1.0 / np.float64(bs))))
        steps.append(_f32_step("bias", "t", "bias * (1/bs)", _fr(bias) * _fr(steps[-1].value)))
        t = steps[-1].value
        bi = int(int_bias[col])
        steps.append(Step("bias", "bq", "round_half_away(t)", _fr(t), bi, "int",
                          "bias rounded to int32 first (ties away from zero)"))
    a = int(R.wrap_int32(acc + bi))
    if bias is not None:
        steps.append(Step("bias_add", "acc+bq", "%d + %d" % (acc, bi), None, a, "int",
                          "int32 bias added to the int32 accumulator"))
    if layer.per_channel or layer.effective_scale == "float64":
        d = np.float64(fsx) * np.float64(fsw) / np.float64(fsy)
        steps.append(Step("multiplier", "d", "(double)s_x * s_w / s_y", None, d, "f64",
                          "effective scale in double"))
    else:
        steps.append(_f32_step("multiplier", "sx*sw", "s_x * s_w", _fr(fsx) * _fr(fsw)))
        d = np.float64(steps[-1].value) / np.float64(fsy)
        steps.append(Step("multiplier", "d", "(double)(sx*sw) / (double)s_y", None, d, "f64",
                          "effective scale from a float32 product, divided in double"))
    mant, e = np.frexp(d)
    steps.append(Step("multiplier", "q31", "round_half_away(%.17g * 2^31)" % mant, Fraction(float(mant)) * 2**31,
                      qm, "int", "Q31 multiplier from frexp(d)"))
    steps.append(Step("multiplier", "shift", "frexp exponent%s" % (" (saturated)" if sh != e else ""),
                      None, sh, "int", "shift from frexp(d)" + (", saturated at 30" if sh != e else "")))
    pre = Fraction(a * qm, 2**31) * (Fraction(2)**sh)
    left, right = max(sh, 0), max(-sh, 0)
    if layer.rounding == "single":
        steps.append(Step("scale", "acc*q", "%d * %d" % (a, qm), None, a * qm, "int",
                          "exact 64-bit product acc * q31, no rounding yet"))
        v = int(R.multiply_by_quantized_multiplier_single(a, qm, sh))
        steps.append(Step("round", "y", "(acc*q + 2^%d) >> %d" % (30 - sh, 31 - sh), pre, v, "int",
                          "one rounding of acc * q / 2^(31 - shift), ties toward +infinity"))
    else:
        xs = int(R.wrap_int32(a << left))
        if left:
            steps.append(Step("scale", "x", "acc << %d" % left, Fraction(a) * 2**left, xs, "int",
                              "left shift before the high multiply"))
        hi = int(R.saturating_rounding_doubling_high_mul(xs, qm))
        steps.append(Step("scale", "SRDHM", "round(%d * %d / 2^31)" % (xs, qm), Fraction(xs * qm, 2**31), hi, "int",
                          "SaturatingRoundingDoublingHighMul, ties toward +infinity"))
        if layer.rounding == "double_up":
            v = int(R.multiply_by_quantized_multiplier_double_up(a, qm, sh))
            steps.append(Step("round", "y", "(SRDHM + 2^%d) >> %d" % (right - 1, right) if right else "SRDHM",
                              Fraction(hi, 2**right), v, "int", "rounding right shift, ties toward +infinity"))
        else:
            v = int(R.rounding_divide_by_pot(hi, right))
            steps.append(Step("round", "y", "RoundingDivideByPOT(SRDHM, %d)" % right, Fraction(hi, 2**right), v,
                              "int", "RoundingDivideByPOT, ties away from zero"))
        assert v == int(R.MBQM[layer.rounding](a, qm, sh))
    header = ("3. Requantization 'tflite' (fixed point, rounding %r): int32 bias, Q31 multiplier and shift"
              % layer.rounding)
    return dict(r=v, bias=bias, bias_acc=None if bias is None else bi, multiplier=qm, shift=sh,
                pre_round=pre, header=header)


def _reference_static(layer, x_row, sx, zx, col):
    """The element by fastq.reference's whole-layer oracles. Those work in uint8 terms: an int8
    x with zero point z is uint8 x + 128 with zero point z + 128; an int8 output is the uint8
    result of zero point z_y + 128, minus 128 (both exact, ARITHMETIC.md "int8")."""
    w = layer.weight
    a = x_row.astype(np.int64)
    if x_row.dtype == np.int8:
        a, zx = a + 128, zx + 128
    signed = layer.dtype == np.int8
    zy = layer.zero_point + (128 if signed else 0)
    if layer.requant == "tflite":
        bias = layer.int_bias if layer.int_bias is not None else layer.bias
        out = R.linear_tflite(a, sx, zx, w.values, w.scale, w.zero_point, bias, layer.scale, zy,
                              layer.relu, layer.per_channel, layer.rounding, "uint8", layer.effective_scale)
    else:
        out = R.linear(a, sx, zx, w.values, w.scale, w.zero_point, layer.bias, layer.scale, zy,
                       relu=layer.relu, requant=layer.requant, per_channel=layer.per_channel)
    return int(out[0, col]) - (128 if signed else 0)


# --------------------------------------------------------------------------- dynamic layers
def explain_dynamic(layer, x, row, col):
    if isinstance(x, QTensor):
        raise TypeError("x: DynamicQuantizedLinear takes a float array and quantizes it itself; got a "
                        "fastq.QTensor (pass fastq.dequantize(x) or the float input)")
    xa = as_array(x, "x")
    if xa.dtype.kind not in "fiu" or xa.dtype == np.bool_:
        raise TypeError("x: expected a float array, got dtype %s" % xa.dtype)
    k = layer.in_features
    if xa.ndim < 1 or xa.shape[-1] != k:
        raise ValueError("x: expected shape [..., %d], got %s" % (k, xa.shape))
    x2 = np.asarray(xa, np.float32).reshape(int(np.prod(xa.shape[:-1])), k)
    if not np.all(np.isfinite(x2)):
        raise ValueError("x: dynamic quantization needs finite values (got NaN or inf)")
    row = _check_index(row, "row", x2.shape[0])
    col = _check_index(col, "col", layer.out_features)
    lo, hi = (f32(x2.min()), f32(x2.max())) if x2.size else (f32(0), f32(0))     # as the layer does
    sx, zx = R.choose_qparams_dynamic(lo, hi, layer.reduce_range)
    xq = R.quantize_per_tensor(x2[row], sx, zx, "uint8")
    w_row, sw, zw = _weight_row(layer, col)
    dx, dw, products, acc, terms = _integer_core(xq, w_row, zx, zw)
    qrange_txt = "[0, 127] (reduce_range)" if layer.reduce_range else "[0, 255]"
    steps = [Step("input", "s_x", "ChooseQuantizationParams(%s, %s)" % (_g(lo), _g(hi)), None, sx, "f32",
                  "activation qparams from the whole input, range %s" % qrange_txt),
             Step("input", "z_x", "zero point from the end with the smaller error", None, zx, "int",
                  "activation qparams from the whole input, range %s" % qrange_txt),
             Step("acc", "acc", "sum_k (x_q - z_x)(w - z_w)", None, acc, "int",
                  "int32 accumulator of the zero-point-shifted products")]
    steps.append(_f32_step("multiplier", "s", "s_x * s_w", _fr(f32(sx)) * _fr(f32(sw)),
                           "float32 product of the input and weight scales"))
    s = steps[-1].value
    steps.append(_f32_step("scale", "f", "(float)acc", acc, "int32 accumulator converted to float32"))
    f = steps[-1].value
    bias = None if layer.bias is None else f32(layer.bias[col])
    if bias is None:
        steps.append(Step("bias", "bias", "none", None, 0, "int", "no bias"))
        steps.append(_f32_step("scale", "y", "f * s", _fr(f) * _fr(s), "float32 product f * s"))
    elif layer.mode == "fbgemm":
        steps.append(Step("bias", "bias", "bias[n] (float32)", None, bias, "f32", "bias kept as float32"))
        steps.append(_f32_step("bias_add", "y", "fmaf(f, s, bias)", _fr(f) * _fr(s) + _fr(bias),
                               "bias added in one rounding with the product (fmaf)"))
    else:
        steps.append(Step("bias", "bias", "bias[n] (float32)", None, bias, "f32", "bias kept as float32"))
        steps.append(_f32_step("scale", "f*s", "f * s", _fr(f) * _fr(s), "float32 product f * s"))
        steps.append(_f32_step("bias_add", "y", "f*s + bias", _fr(steps[-1].value) + _fr(bias),
                               "bias added after the rounded product (two roundings)"))
    y = steps[-1].value
    if layer.relu:
        y = f32(0) if y < 0 else y
        steps.append(Step("relu", "y", "max(y, 0)", None, y, "f32", "fused ReLU on the float output"))
    trace = Trace(kind="dynamic", layer=repr(layer), mode=layer.mode, rounding=None,
                  per_channel=layer.per_channel, row=row, col=col,
                  x={"float": x2[row].copy(), "min": float(lo), "max": float(hi), "values": xq,
                     "dtype": "uint8", "scale": sx, "zero_point": zx, "reduce_range": layer.reduce_range},
                  w={"values": w_row.copy(), "dtype": "int8", "scale": sw, "zero_point": zw},
                  dx=dx, dw=dw, products=products, acc=acc, acc_terms=terms, bias=bias,
                  bias_acc=None, multiplier=s, shift=None, steps=steps, zero_point=None, scale=None,
                  qmin=None, qmax=None, clamp_min=None, relu=layer.relu, output=y, real=y, dtype="float32",
                  _pre_round=None, _layer=layer, _header="3. Float output '%s' (torch %s dynamic Linear)"
                  % (layer.mode, "x86 / fbgemm" if layer.mode == "fbgemm" else "qnnpack"))
    ref = R.linear_dynamic(x2, layer.weight.values, layer.weight.scale, layer.weight.zero_point, layer.bias,
                           layer.relu, layer.mode, layer.reduce_range)
    trace.checks = {"reference": f32(ref[row, col]), "kernel": f32(layer(x2)[row, col])}
    return trace
