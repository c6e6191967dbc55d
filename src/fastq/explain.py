"""Explain: one output element of a quantized layer, every integer and every rounding, as data.

    trace = layer.explain(x, row, col)          # = fastq.explain(layer, x, row, col)
    trace.to_dict()["acc"], trace.to_dict()["output"]
    print(trace)                                # the aligned pen-and-paper walk-through
    print(trace.compare(other_trace))           # where two modes / roundings part
    print(trace.hand())                         # what a float computation by hand gives, and why
    trace = model.explain(x, node, row, col)    # the same for a node of a model
    print(price_tags([1.99, 2.00, 0.59], bits=2))   # quantization with no network at all

A trace is built from the layer's settings and the formulas of fastq.reference (the oracle of
the kernels' tests), never from the kernels; its `checks` hold what fastq.reference and the
compiled kernel give for the same element, so a trace that disagreed with either would say so.
Each step of the requantization is a `Step`: what is computed (formula), its exact value (a
fractions.Fraction: products and quotients of floats are rationals), the value it rounds to,
and in words how this mode does it (what `compare` prints where two traces part).
docs/ARITHMETIC.md states every formula in words.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from . import reference as R

f32 = np.float32
_SHOW_ALL_K = 16          # longer dot products show their first and last terms only

# The stages every trace goes through, in order; compare() aligns two traces on them.
STAGES = ("input", "acc", "bias", "bias_add", "multiplier", "scale", "round", "zero_point", "clamp",
          "relu", "output")


# --------------------------------------------------------------------------- steps
def _fr(v):
    """The exact rational value of an int or a float (float32 / float64)."""
    if isinstance(v, Fraction):
        return v
    if isinstance(v, (int, np.integer)):
        return Fraction(int(v))
    return Fraction(float(v))


def _g(v):
    """A float32 as the shortest decimal that reads back to it."""
    v = f32(v)
    return repr(float(v)) if np.isfinite(v) else str(float(v))


def _exact_text(fr):
    if fr.denominator == 1:
        return str(fr.numerator)
    return "%.17g" % float(fr)


class Step:
    """One operation of a trace.

    stage: one of STAGES; name: a short label ("atws", "y", ...); formula: what is computed;
    exact: its exact value (Fraction) before any rounding, or None; value: the result (a
    float32, a float64 or a Python int); kind: "f32" | "f64" | "int"; how: this mode's way of
    doing this stage, in words (equal words = the same method)."""

    __slots__ = ("stage", "name", "formula", "exact", "value", "kind", "how")

    def __init__(self, stage, name, formula, exact, value, kind, how=""):
        self.stage, self.name, self.formula = stage, name, formula
        self.exact = None if exact is None else _fr(exact)
        self.kind = kind
        if kind == "f32":
            value = f32(value)
        elif kind == "f64":
            value = float(value)
        else:
            value = int(value)
        self.value = value
        self.how = how

    @property
    def rounded(self):
        """True when the result differs from the exact value (this step rounded)."""
        if self.exact is None:
            return False
        if self.kind != "int" and not np.isfinite(self.value):
            return True                       # overflowed to infinity
        return _fr(self.value) != self.exact

    def value_text(self):
        if self.kind == "f32":
            return "f32 " + _g(self.value)
        if self.kind == "f64":
            return "f64 %.17g" % self.value
        return str(self.value)

    def to_dict(self):
        d = {"stage": self.stage, "name": self.name, "formula": self.formula, "kind": self.kind,
             "value": float(self.value) if self.kind != "int" else int(self.value), "how": self.how}
        if self.exact is not None:
            d["exact"] = str(self.exact)          # "p/q", exact
            d["exact_float"] = float(self.exact)
            d["rounded"] = self.rounded
        return d

    def line(self):
        if self.exact is None:
            return "  %-6s = %-34s = %s" % (self.name, self.formula, self.value_text())
        note = "rounded" if self.rounded else "exact"
        return "  %-6s = %-34s = %-24s -> %s   (%s)" % (self.name, self.formula, _exact_text(self.exact),
                                                       self.value_text(), note)

    def __repr__(self):
        return "Step(%s)" % self.line().strip()


def _f32_step(stage, name, formula, exact, how="", value=None):
    """A float32 operation: its exact result and the float32 it gives. value: what the
    reference's numpy expression gives, where that is not one correctly rounded float32
    operation (a double computation cast to float rounds twice); by default the exact value
    rounded once to float32, which is what one IEEE float32 operation gives."""
    ex = _fr(exact)
    if value is None:
        value = _nearest_f32(ex)
    return Step(stage, name, formula, ex, value, "f32", how)


def _nearest_f32(ex):
    """The float32 nearest to the rational ex, ties to even (one IEEE float32 operation)."""
    with np.errstate(over="ignore"):
        guess = f32(float(ex)) if abs(ex) < 2**200 else f32(np.inf if ex > 0 else -np.inf)
    if not np.isfinite(guess):
        return guess
    # float(Fraction) rounds to double first, then to float32: a double rounding that can miss
    # by one float32 ulp. Decide between the guess and its neighbours on the exact value.
    best = guess
    for cand in (np.nextafter(guess, f32(-np.inf)), np.nextafter(guess, f32(np.inf))):
        if not np.isfinite(cand):
            continue
        db, dc = abs(_fr(best) - ex), abs(_fr(cand) - ex)
        if dc < db or (dc == db and int(f32(cand).view(np.uint32)) % 2 == 0):
            best = cand
    return f32(best)


# --------------------------------------------------------------------------- the trace
class Trace:
    """Every number of one output element [row, col] of a quantized layer (see the module doc).

    Attributes: kind ("static" | "dynamic"), layer (its repr), mode, rounding, per_channel,
    row, col, x (dict: the activation row and its quantization), w (the weight row and its
    quantization), dx, dw, products, acc and its four terms, bias (the layer's bias[col]),
    steps (list of Step: the requantization or float epilogue), output (int, or float32 for
    dynamic layers), real (the output as a real number), checks (what fastq.reference and the
    compiled kernel give for this element)."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    # ------------------------------------------------------------------ data
    def step(self, name):
        """The last step called `name` (KeyError if none)."""
        for s in reversed(self.steps):
            if s.name == name:
                return s
        raise KeyError(name)

    def stage(self, stage):
        """The steps of one stage (a list, maybe empty)."""
        return [s for s in self.steps if s.stage == stage]

    @property
    def pre_round(self):
        """The value just before the final rounding to an integer (static layers), as a Fraction."""
        return self._pre_round

    @property
    def equal(self):
        """True when fastq.reference and the kernel give this trace's output."""
        return all(_same_output(v, self.output) for v in self.checks.values())

    def to_dict(self):
        """The numbers as JSON-able Python values (exact rationals as "p/q" strings)."""
        d = {"kind": self.kind, "layer": self.layer, "mode": self.mode, "rounding": self.rounding,
             "per_channel": self.per_channel, "row": self.row, "col": self.col,
             "x": {k: _jsonable(v) for k, v in self.x.items()},
             "w": {k: _jsonable(v) for k, v in self.w.items()},
             "dx": [int(v) for v in self.dx], "dw": [int(v) for v in self.dw],
             "products": [int(v) for v in self.products], "acc": int(self.acc),
             "acc_terms": {k: int(v) for k, v in self.acc_terms.items()},
             "bias": _jsonable(self.bias), "bias_acc": _jsonable(self.bias_acc),
             "multiplier": _jsonable(self.multiplier), "shift": _jsonable(self.shift),
             "pre_round": None if self._pre_round is None else str(self._pre_round),
             "pre_round_float": None if self._pre_round is None else float(self._pre_round),
             "steps": [s.to_dict() for s in self.steps],
             "zero_point": self.zero_point, "qmin": self.qmin, "qmax": self.qmax,
             "clamp_min": self.clamp_min, "relu": self.relu,
             "output": _jsonable(self.output), "real": float(self.real),
             "checks": {k: _jsonable(v) for k, v in self.checks.items()}}
        return d

    # ------------------------------------------------------------------ text
    def __str__(self):
        return _trace_text(self)

    def __repr__(self):
        return "<fastq.explain.Trace %s [%d, %d] acc=%d output=%s>" % (
            self.mode, self.row, self.col, self.acc, _out_text(self.output))

    def compare(self, other, labels=None):
        """Both traces side by side and the first stage where they part (a Comparison)."""
        if not isinstance(other, Trace):
            raise TypeError("other: expected a fastq.explain.Trace, got %s" % type(other).__name__)
        return Comparison(self, other, labels)

    def hand(self):
        """What the dequantize-multiply-and-stop float computation gives for this element, and
        the steps where it parts from the integer path (a HandComputation)."""
        return HandComputation(self)


def _jsonable(v):
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, Fraction):
        return str(v)
    if isinstance(v, (np.floating, float)):
        return float(v)
    if isinstance(v, (np.integer, int)):
        return int(v)
    if isinstance(v, np.ndarray):
        return [_jsonable(e) for e in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_jsonable(e) for e in v]
    return v


def _out_text(v):
    return _g(v) if isinstance(v, (float, np.floating)) else str(v)


def _same_output(a, b):
    if isinstance(a, (float, np.floating)) or isinstance(b, (float, np.floating)):
        return f32(a).view(np.uint32) == f32(b).view(np.uint32)      # the bits: -0.0 != 0.0
    return int(a) == int(b)


# --------------------------------------------------------------------------- input checks
def _check_index(v, name, hi):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError("%s: expected an int, got %r" % (name, type(v).__name__))
    if not 0 <= v < hi:
        raise ValueError("%s: %d is outside [0, %d)" % (name, v, hi))
    return int(v)


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
def _explain_static(layer, x, row, col):
    from .qtensor import QTensor
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
    as fmaf(bias_b[n], bias_r, (float)acc). (An older reference returned (bias_term, mult),
    the term added on its own: that is bias_r = 1.)"""
    params = R.fbgemm_params(sx, layer.weight.scale, layer.scale, layer.bias, layer.per_channel)
    if len(params) == 2:
        bias_b, mult = params
        return bias_b, f32(1.0), mult
    return params


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
            # the bias times rcp joins the accumulator in one rounding (fmaf)
            steps.append(_f32_step("bias", "rcp", "(float)(1 / (double)atws)", Fraction(1) / _fr(atws),
                                   "bias kept as float32, times rcp = f32(1 / (s_x * s_w)) inside one fma",
                                   value=f32(1.0 / np.float64(atws))))
            assert steps[-1].value == br and bb == bias
            steps.append(fstep)
            formula, how = "fmaf(bias, rcp, f)", "bias added as float32 after the accumulator, one rounding (fmaf)"
        else:
            if layer.per_channel:
                steps.append(_f32_step("bias", "b'", "bias / atws", _fr(bias) / _fr(atws),
                                       "bias kept as float32, divided by s_x * s_w[n]"))
            else:
                inv = f32(1.0 / np.float64(atws))
                steps.append(_f32_step("bias", "rcp", "(float)(1 / (double)atws)", Fraction(1) / _fr(atws), value=inv))
                steps.append(_f32_step("bias", "b'", "bias * rcp", _fr(bias) * _fr(inv),
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
    from .fixedpoint import tflite_params
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
def _explain_dynamic(layer, x, row, col):
    from ._checks import as_array
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


# --------------------------------------------------------------------------- entry points
def explain(layer, x, row=0, col=0):
    """The Trace of output element [row, col] of layer(x) (rows: x flattened to [M, K]).

    layer: fastq.QuantizedLinear (x: a per-tensor uint8 / int8 QTensor) or
    fastq.DynamicQuantizedLinear (x: floats; its quantization depends on the whole of x)."""
    from .layers.dynamic import DynamicQuantizedLinear
    from .layers.linear import QuantizedLinear
    if isinstance(layer, QuantizedLinear):
        return _explain_static(layer, x, row, col)
    if isinstance(layer, DynamicQuantizedLinear):
        return _explain_dynamic(layer, x, row, col)
    raise TypeError("layer: expected a fastq.QuantizedLinear or DynamicQuantizedLinear, got %s"
                    % type(layer).__name__)


def node_input(model, x, node):
    """(layer, the value that flows into it) for `node` of model on input x (a tuple for a
    model of several inputs).

    node: a node name, or an index into the model's nodes. With a graph Model (model.nodes and
    model.run_values) the value comes from run_values; with a chain Model (model.layers,
    model.names) the layers before the node are run in order."""
    if hasattr(model, "nodes") and hasattr(model, "run_values"):
        nodes = list(model.nodes)
        names = [nd.name for nd in nodes]
        i = _node_index(names, node)
        values = model.run_values(*x) if isinstance(x, tuple) else model.run_values(x)
        nd = nodes[i]
        if len(nd.inputs) != 1:
            raise ValueError("node: %r takes %d inputs; explain covers one-input Linear layers"
                             % (nd.name, len(nd.inputs)))
        return nd.layer, values[nd.inputs[0]]
    from .model import Model
    if not isinstance(model, Model):
        raise TypeError("model: expected a fastq.Model, got %s" % type(model).__name__)
    i = _node_index(list(model.names), node)
    prefix = Model(model.layers[:i], model.names[:i])
    return model.layers[i], _run_prefix(prefix, x)


def _run_prefix(prefix, x):
    """What the first layers of a chain give (a QTensor or floats; no final dequantize)."""
    from .qtensor import QTensor
    from ._checks import as_array
    if not isinstance(x, QTensor):
        x = np.asarray(as_array(x, "x"), dtype=np.float32)
    for layer in prefix.layers:
        x = layer(x)
    return x


def _node_index(names, node):
    if isinstance(node, (int, np.integer)) and not isinstance(node, (bool, np.bool_)):
        return _check_index(node, "node", len(names))
    if not isinstance(node, str):
        raise TypeError("node: expected a node name or an index, got %r" % type(node).__name__)
    if node not in names:
        raise ValueError("node: %r is not a node of this model (nodes: %s)" % (node, ", ".join(names)))
    return names.index(node)


def explain_node(model, x, node, row=0, col=0):
    """model.explain: the Trace of output element [row, col] of a node, its input computed by the model."""
    layer, value = node_input(model, x, node)
    try:
        return explain(layer, value, row, col)
    except TypeError as e:
        if str(e).startswith("layer:"):
            raise TypeError("node: %r is a %s; explain covers QuantizedLinear and DynamicQuantizedLinear"
                            % (node, type(layer).__name__)) from None
        raise


def with_mode(layer, requant, rounding="double"):
    """The same layer (every other setting and array kept) requantized by another mode /
    rounding, for comparisons. A dynamic layer takes mode "fbgemm" / "qnnpack", each with its
    own default reduce_range."""
    from .layers.dynamic import DynamicQuantizedLinear
    from .layers.linear import QuantizedLinear
    if not isinstance(layer, (QuantizedLinear, DynamicQuantizedLinear)):
        raise TypeError("layer: expected a fastq.QuantizedLinear or DynamicQuantizedLinear, got %s"
                        % type(layer).__name__)
    settings, arrays = dict(layer.get_settings()), layer.get_arrays()
    if isinstance(layer, DynamicQuantizedLinear):
        settings.update(mode=requant, reduce_range=None)
    else:
        if layer.int_bias is not None and requant != "tflite":
            raise ValueError("requant: this layer's bias is given as int32 (tflite only); cannot run it as %r"
                             % (requant,))
        settings.update(requant=requant, rounding=rounding)
    return type(layer).from_state(settings, arrays)


# --------------------------------------------------------------------------- the text
def _trace_text(t):
    lines = ["fastq explain: %s, output element [row=%d, col=%d]" % (t.layer, t.row, t.col), ""]
    lines.append("1. Inputs  (real value = (q - zero_point) * scale)")
    if t.kind == "dynamic":
        lines.append("  activations x[%d, :] float32; the whole input spans [%s, %s]"
                     % (t.row, _g(t.x["min"]), _g(t.x["max"])))
        lines.append("  quantized on the fly (ChooseQuantizationParams, %s): s_x = %.9g, z_x = %d"
                     % ("[0, 127] reduce_range" if t.x["reduce_range"] else "[0, 255]", t.x["scale"],
                        t.x["zero_point"]))
        lines.append("    q = clamp(rne(fmaf(x, 1/s_x, z_x)), 0, 255)")
    else:
        lines.append("  activations x_q[%d, :]: %s, s_x = %.9g, z_x = %d"
                     % (t.row, t.x["dtype"], t.x["scale"], t.x["zero_point"]))
    lines.append("  weights     w_q[%d, :]: int8,  s_w[n] = %.9g, z_w[n] = %d (%s)"
                 % (t.col, t.w["scale"], t.w["zero_point"], "per channel" if t.per_channel else "per tensor"))
    if t.kind == "static":
        lines.append("  output      %s, s_y = %.9g, z_y = %d%s" % (t.dtype, t.scale, t.zero_point,
                                                                 ", fused ReLU" if t.relu else ""))
    else:
        lines.append("  output      float32%s" % (", fused ReLU" if t.relu else ""))
    if t.bias is None:
        lines.append("  bias[n] = none")
    elif isinstance(t.bias, int):
        lines.append("  bias[n] = %d (int32)" % t.bias)
    else:
        lines.append("  bias[n] = %s (float32)" % _g(t.bias))
    lines.append("")
    zx, zw = t.x["zero_point"], t.w["zero_point"]
    lines.append("2. Integer core: acc = sum_k (x_q[m,k] - z_x) * (w_q[n,k] - z_w[n])   (exact int32)")
    lines.append("     k  %s  x_q  x-z_x   w_q  w-z_w    product" % ("     x float " if t.kind == "dynamic" else ""))
    k = len(t.products)
    shown = range(k) if k <= _SHOW_ALL_K else list(range(6)) + [None] + list(range(k - 2, k))
    xv, wv = t.x["values"], t.w["values"]
    for i in shown:
        if i is None:
            lines.append("   ...   (%d more terms)" % (k - 8))
            continue
        xf = "%12.6g " % t.x["float"][i] if t.kind == "dynamic" else ""
        lines.append("  %4d  %s%4d  %5d  %4d  %5d  %9d" % (i, xf, xv[i], t.dx[i], wv[i], t.dw[i], t.products[i]))
    lines.append("  sum of the %d products: acc = %d" % (k, t.acc))
    a = t.acc_terms
    lines.append("  The kernels compute the same acc from raw products and precomputed sums:")
    lines.append("      sum_k x*w               = %d" % a["sum_xw"])
    lines.append("    - z_x * colsum[n]         = -%d * %d = %d      (colsum: once, at packing)"
                 % (zx, a["colsum"], -a["zx_colsum"]))
    lines.append("    - rowsum[m] * z_w[n]      = -%d * %d = %d      (rowsum: per call, only if z_w != 0)"
                 % (a["rowsum"], zw, -a["rowsum_zw"]))
    lines.append("    + K * z_x * z_w[n]        = %d * %d * %d = %d" % (k, zx, zw, a["k_zx_zw"]))
    four = a["sum_xw"] - a["zx_colsum"] - a["rowsum_zw"] + a["k_zx_zw"]
    lines.append("    = %d   (%s)" % (four, "equal" if four == t.acc else "DIFFERENT"))
    if t.kind == "static" and t.x["dtype"] == "int8":
        lines.append("  (int8 x runs in the kernels as uint8 x + 128 with z_x + 128: the same acc)")
    lines.append("")
    lines.append(t._header + ":")
    for s in t.steps:
        if s.stage in ("acc", "input"):
            continue
        lines.append(s.line())
    lines.append("")
    from .runtime import get_backend
    ok = "all equal" if t.equal else "MISMATCH"
    lines.append("4. Check: by hand %s = %s; fastq.reference %s = %s; C kernel (backend %s) %s = %s -> %s"
                 % (_q(t), _out_text(t.output), _q(t), _out_text(t.checks["reference"]), get_backend(), _q(t),
                    _out_text(t.checks["kernel"]), ok))
    if t.kind == "static":
        lines.append("  y[%d, %d] = (q - z_y) * s_y = (%d - %d) * %.9g = %s"
                     % (t.row, t.col, t.output, t.zero_point, t.scale, _g(t.real)))
    return "\n".join(lines) + "\n"


def _q(t):
    return "q" if t.kind == "static" else "y"


# --------------------------------------------------------------------------- compare
class Comparison:
    """Two traces of the same element side by side, aligned on STAGES.

    parts_at: the first stage whose method (the steps' `how`) differs, or None;
    values_part_at: the first stage whose values differ (None: they never do);
    a_how / b_how: the two methods at parts_at, in words."""

    def __init__(self, a, b, labels=None):
        self.a, self.b = a, b
        self.labels = tuple(labels) if labels else (_label(a), _label(b))
        self.rows = []
        self.parts_at = self.values_part_at = None
        self.a_how = self.b_how = None
        for stage in STAGES:
            sa, sb = a.stage(stage), b.stage(stage)
            if stage == "output":
                sa = [Step("output", "out", "", None, a.output, "f32" if a.kind == "dynamic" else "int", "")]
                sb = [Step("output", "out", "", None, b.output, "f32" if b.kind == "dynamic" else "int", "")]
            if not sa and not sb:
                continue
            how_a = "; ".join(dict.fromkeys(s.how for s in sa if s.how)) or "-"
            how_b = "; ".join(dict.fromkeys(s.how for s in sb if s.how)) or "-"
            # a stage's result is its last step's value (the constant or number it hands on)
            same_values = bool(sa) and bool(sb) and _same_output(sa[-1].value, sb[-1].value)
            if stage == "input" and a.kind == b.kind == "static":
                same_values = (a.x["scale"] == b.x["scale"] and a.x["zero_point"] == b.x["zero_point"]
                               and np.array_equal(a.x["values"], b.x["values"]))
            self.rows.append((stage, sa, sb, how_a, how_b, same_values))
            if self.parts_at is None and how_a != how_b:
                self.parts_at, self.a_how, self.b_how = stage, how_a, how_b
                if stage == "bias":         # how each bias then meets the accumulator
                    self.a_how += "".join("; " + s.how for s in a.stage("bias_add")
                                          if s.how and s.formula != "(float)acc")
                    self.b_how += "".join("; " + s.how for s in b.stage("bias_add")
                                          if s.how and s.formula != "(float)acc")
            if self.values_part_at is None and not same_values:
                self.values_part_at = stage

    @property
    def same_output(self):
        return _same_output(self.a.output, self.b.output)

    def to_dict(self):
        return {"labels": list(self.labels), "parts_at": self.parts_at, "a_how": self.a_how,
                "b_how": self.b_how, "values_part_at": self.values_part_at,
                "outputs": [_jsonable(self.a.output), _jsonable(self.b.output)],
                "same_output": bool(self.same_output)}

    def __str__(self):
        la, lb = self.labels
        w = 46
        lines = ["fastq explain --compare: %s vs %s, element [row=%d, col=%d]" % (la, lb, self.a.row, self.a.col),
                 "  acc = %d%s" % (self.a.acc, "" if self.a.acc == self.b.acc else " vs %d" % self.b.acc), ""]
        lines.append("  %-10s | %-*s | %-*s" % ("stage", w, la, w, lb))
        lines.append("  " + "-" * (10 + 2 * w + 6))
        for stage, sa, sb, how_a, how_b, same in self.rows:
            ta = ["%s = %s" % (s.name, s.value_text()) for s in sa] or ["-"]
            tb = ["%s = %s" % (s.name, s.value_text()) for s in sb] or ["-"]
            mark = "" if same and how_a == how_b else "   <- differs" if not same else "   <- other method"
            for i in range(max(len(ta), len(tb))):
                lines.append("  %-10s | %-*s | %-*s%s" % (stage if i == 0 else "", w, ta[i] if i < len(ta) else "",
                                                          w, tb[i] if i < len(tb) else "", mark if i == 0 else ""))
        lines.append("")
        if self.parts_at is None:
            lines.append("  The two traces do the same arithmetic at every stage.")
        else:
            lines.append("  They part at the %s stage:" % self.parts_at)
            lines.append("    %s: %s" % (la, self.a_how))
            lines.append("    %s: %s" % (lb, self.b_how))
        if self.values_part_at is None:
            lines.append("  Every value is the same: output %s in both." % _out_text(self.a.output))
        else:
            lines.append("  The values first differ at the %s stage; outputs %s vs %s%s."
                         % (self.values_part_at, _out_text(self.a.output), _out_text(self.b.output),
                            " (the same output)" if self.same_output else ""))
        return "\n".join(lines) + "\n"


def _label(t):
    if t.kind == "dynamic":
        return "dynamic %s" % t.mode
    return t.mode if t.mode != "tflite" else "tflite/%s" % t.rounding


# --------------------------------------------------------------------------- the hand computation
class HandComputation:
    """The classic float computation by hand for one element, and where it parts from the
    integer path.

    hand = s_x * s_w * acc + bias, in float64, stopped there (no output quantization): the
    method of the classic 2x2 walk-through. For static layers `partings` lists, in order, the
    steps that move the integer path's result away from it, each (what, value after it, its
    contribution, words): bias handling, float32 arithmetic / fixed-point multiplier, the
    rounding to the output grid s_y, the clamp. Their contributions add up to real - hand."""

    def __init__(self, t):
        self.trace = t
        sx, sw = t.x["scale"], t.w["scale"]
        bias = 0.0 if t.bias is None else (float(t.bias) * sx * sw if isinstance(t.bias, int) else float(t.bias))
        self.bias = bias
        self.hand = float(t.acc) * sx * sw + bias            # float64, the seed's method
        self.partings = []
        if t.kind == "dynamic":
            self._dynamic(t, sx, sw, bias)
        else:
            self._static(t, sx, sw, bias)
        self.real = float(t.real)
        self.difference = self.real - self.hand

    def _add(self, what, value, words):
        prev = self.partings[-1][1] if self.partings else self.hand
        self.partings.append((what, float(value), float(value) - prev, words))

    def _static(self, t, sx, sw, bias):
        sy, zy = t.scale, t.zero_point
        if t.bias is not None and t.mode in ("qnnpack", "tflite") and not isinstance(t.bias, int):
            bq = t.bias_acc
            self._add("bias", float(t.acc) * sx * sw + bq * sx * sw,
                      "bias rounded to int32 first: %d steps of s_x * s_w"
                      % bq)
        where = {"fbgemm": "float32 scales and multiplier" + (", float32 bias term" if t.bias is not None else ""),
                 "qnnpack": "float32 scales and multiplier",
                 "tflite": "the Q31 multiplier"}[t.mode]
        steps_y = float(t.pre_round) if t.pre_round is not None else float(t.step("y").value)   # inf, NaN
        self._add("multiplier", steps_y * sy, "%s, not float64 s_x*s_w/s_y: y = %.9g output steps"
                  % (where, steps_y))
        r = t.step("r+z_y").value - zy
        self._add("requantize", r * sy, "rounded to the output grid (multiples of s_y = %.9g): %.9g -> %d (%s)"
                  % (sy, steps_y, r, _round_words(t)))
        q = t.output
        if q != r + zy:
            self._add("clamp", (q - zy) * sy, "clamped to [%d, %d]%s: q = %d, not %d"
                      % (t.clamp_min, t.qmax, " (fused ReLU)" if t.relu and q == t.clamp_min else "", q, r + zy))
        self._add("dequantize", float(t.real), "(q - z_y) * s_y in float32, as torch's dequantize")

    def _dynamic(self, t, sx, sw, bias):
        s = t.multiplier
        self._add("multiplier", float(t.acc) * float(s) + bias,
                  "s_x * s_w rounded to float32 (%s)" % _g(s))
        self._add("float32", float(t.output),
                  "float32 epilogue: %s" %
                  ("fmaf(f, s, bias): one rounding" if t.mode == "fbgemm" and t.bias is not None
                   else "f32(f32(f * s) + bias): two roundings" if t.bias is not None else "f32(f * s)"))
        xf = t.x["float"].astype(np.float64)
        wf = (t.w["values"].astype(np.float64) - t.w["zero_point"]) * sw
        self.unquantized = float(xf @ wf + bias)

    def to_dict(self):
        return {"hand": self.hand, "real": self.real, "difference": self.difference,
                "partings": [{"what": w, "value": v, "contribution": c, "words": s}
                             for w, v, c, s in self.partings]}

    def __str__(self):
        t = self.trace
        sx, sw = t.x["scale"], t.w["scale"]
        lines = ["The hand computation (dequantize, multiply, stop) for element [%d, %d]:" % (t.row, t.col)]
        btxt = "" if t.bias is None else " + bias"
        lines.append("  hand = s_x * s_w * acc%s = %.9g * %.9g * %d%s = %.6f (%.4f)   (float64)"
                     % (btxt, sx, sw, t.acc, "" if t.bias is None else " + %.9g" % self.bias, self.hand, self.hand))
        lines.append("  %s = %.6f (%.4f)   (%s)" % ("integer path" if t.kind == "static" else "float32 path",
                                             self.real, self.real, "the integer path, dequantized" if t.kind == "static"
                                             else "the float32 output"))
        lines.append("  difference %+.6f; where the two part:" % self.difference)
        for what, value, contrib, words in self.partings:
            lines.append("    %-10s %+.6f -> %.6f  %s" % (what, contrib, value, words))
        if t.kind == "dynamic":
            lines.append("  (with the float input and weights, unquantized: %.6f)" % self.unquantized)
        return "\n".join(lines) + "\n"


def _round_words(t):
    s = t.stage("round")
    return s[-1].how if s else "rounded"


# --------------------------------------------------------------------------- price tags
OBSERVERS = ("minmax", "tight")


def observe(values, qmin, qmax, symmetric=False, observer="minmax", dtype="uint8"):
    """(scale, zero_point) an observer picks for `values` on the integer range [qmin, qmax].

    "minmax": torch's MinMaxObserver (_calculate_qparams) in float32: the range is widened to
    contain 0; affine: scale = (max - min) / (qmax - qmin), zero_point = qmin - rne(min / scale)
    clamped; symmetric: scale = max(|min|, max) / ((qmax - qmin) / 2), zero point 0 for int8,
    128 for uint8 on the full range, (qmin + qmax) // 2 on a custom one. scale >= 2^-23.
    "tight": the classic walk-through's bounded fit: min -> qmin, max -> qmax with no widening
    to 0 (zero may then fall between two levels), zero_point = rne(qmin - min / scale)."""
    v = np.asarray(values, dtype=np.float32).reshape(-1)
    if v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError("values: expected at least one finite value")
    if observer not in OBSERVERS:
        raise ValueError("observer: expected one of %s, got %r" % (", ".join(OBSERVERS), observer))
    full = R._qrange(dtype)
    if not (full[0] <= qmin < qmax <= full[1]):
        raise ValueError("qmin, qmax: [%d, %d] must be a range inside %s's [%d, %d]"
                         % (qmin, qmax, np.dtype(dtype).name, full[0], full[1]))
    eps = f32(2.0**-23)
    mn, mx = f32(v.min()), f32(v.max())
    if observer == "tight":
        scale = max(f32(f32(mx - mn) / f32(qmax - qmin)), eps)
        zp = int(np.rint(np.float64(f32(f32(qmin) - f32(mn / scale)))))
        return float(scale), zp
    if not (qmin <= 0 <= qmax):
        raise ValueError("qmin, qmax: a MinMax observer's range [%d, %d] must include 0" % (qmin, qmax))
    mn, mx = min(mn, f32(0)), max(mx, f32(0))
    if symmetric:
        m = max(-mn, mx)
        scale = max(f32(m / f32(f32(qmax - qmin) / f32(2.0))), eps)
        if np.dtype(dtype) == np.uint8:
            zp = 128 if (qmin, qmax) == full else (qmin + qmax) // 2
        else:
            zp = 0
        return float(scale), int(zp)
    scale = max(f32(f32(mx - mn) / f32(qmax - qmin)), eps)
    zp = int(np.clip(qmin - int(np.rint(f32(mn / scale))), qmin, qmax))
    return float(scale), zp


class PriceTags:
    """A handful of real numbers on a few integer levels: scale, zero point, and per value its
    level q, its dequantized value and the loss (dequantized - value)."""

    def __init__(self, values, bits=8, dtype="uint8", symmetric=False, observer="minmax", qrange=None):
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8:
            raise ValueError("bits: expected an int in [1, 8], got %r" % (bits,))
        dt = np.dtype(dtype)
        R._qrange(dt)
        if qrange is None:
            qmin, qmax = (0, 2**bits - 1) if dt == np.uint8 else (-(2**(bits - 1)), 2**(bits - 1) - 1)
        else:
            qmin, qmax = (int(v) for v in qrange)
        self.values = np.asarray(values, dtype=np.float32).reshape(-1)
        self.bits, self.dtype, self.symmetric, self.observer = int(bits), dt.name, bool(symmetric), observer
        self.qmin, self.qmax = qmin, qmax
        self.scale, self.zero_point = observe(self.values, qmin, qmax, symmetric, observer, dt)
        # torch.quantize_per_tensor's rounding, clamped to the narrower range (clamping twice
        # to nested ranges is clamping once to the inner one)
        t = R.fmaf(self.values, f32(1.0) / f32(self.scale), f32(self.zero_point))
        self.q = np.clip(np.rint(t.astype(np.float64)), qmin, qmax).astype(np.int64)
        diff = (self.q.astype(np.float32) - f32(self.zero_point)).astype(np.float32)
        self.dequantized = (diff * f32(self.scale)).astype(np.float32)        # torch's dequantize
        self.loss = (self.dequantized.astype(np.float64) - self.values.astype(np.float64))

    @property
    def levels_used(self):
        return int(np.unique(self.q).size)

    def to_dict(self):
        return {"bits": self.bits, "dtype": self.dtype, "symmetric": self.symmetric, "observer": self.observer,
                "qmin": self.qmin, "qmax": self.qmax, "scale": self.scale, "zero_point": self.zero_point,
                "values": self.values.tolist(), "q": self.q.tolist(), "dequantized": self.dequantized.tolist(),
                "loss": self.loss.tolist(), "levels_used": self.levels_used,
                "total_abs_loss": float(np.abs(self.loss).sum())}

    def __str__(self):
        obs = ("MinMax (torch MinMaxObserver%s)" % (", symmetric" if self.symmetric else "")
               if self.observer == "minmax" else "tight fit (min -> qmin, max -> qmax, zero not kept)")
        lines = ["Price tags: %d values on %d levels [%d, %d] (%d bits, %s), observer %s"
                 % (self.values.size, self.qmax - self.qmin + 1, self.qmin, self.qmax, self.bits, self.dtype, obs),
                 "  scale = %.9g, zero_point = %d   (q = clamp(rne(x / scale + zero_point)), "
                 "x' = (q - zero_point) * scale)" % (self.scale, self.zero_point), "",
                 "  | %9s | %5s | %11s | %9s |" % ("value", "q", "dequantized", "loss"),
                 "  |%s|%s|%s|%s|" % ("-" * 11, "-" * 7, "-" * 13, "-" * 11)]
        for v, q, d, l in zip(self.values, self.q, self.dequantized, self.loss):
            lines.append("  | %9.4g | %5d | %11.4f | %+9.4f |" % (v, q, d, l))
        lines.append("  | %9s | %5s | %11s | %9.4f |" % ("total", "%d" % self.levels_used, "", np.abs(self.loss).sum()))
        lines.append("  (q column of the total row: levels used; loss: sum of |loss|)")
        return "\n".join(lines) + "\n"


def price_tags(values, bits=8, dtype="uint8", symmetric=False, observer="minmax", qrange=None):
    """A PriceTags table (see PriceTags): quantization explained with no network at all."""
    return PriceTags(values, bits, dtype, symmetric, observer, qrange)
