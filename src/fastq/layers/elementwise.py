"""Layers without weights: Quantize, Dequantize, Identity, ReLU, ReLU6, Hardtanh, Flatten.
Values flow as float32 arrays or as QTensors; each layer says which it takes.

Each op here holds all of itself: the runtime call, infer (shape and qparams), prepare (its
constants for an input quantization: the clamp bounds of ReLU6 / Hardtanh, computed once with
torch's quantize_val and read by the call, the C and the summary alike), emit_c and summary_row."""
from __future__ import annotations

import numpy as np

from .. import _kernels, reference
from ..qtensor import QTensor, _per_tensor_qparams, dequantize, quantize
from ._base import (ANY, FLOAT, QUANT, Layer, Setting, check_dtype_name, check_int, check_kind, check_scale_setting,
                    check_zero_point_in, register)
from ._spec import Spec
from ._fast import ALIAS, MISS

_FLOAT, _QUANT, _ANY = FLOAT, QUANT, ANY
_QRANGE = {"uint8": (0, 255), "int8": (-128, 127)}


def _loop(ctx, x, y, line, formula, quantized, cost="elementwise"):
    """One loop over a sample: y[i] = line(x[i]); the node's constants above it."""
    size = ctx.consts.define("size", x.size)
    code = "\n".join(["/* %s: %s: %s */" % (ctx.node, ctx.op, formula), ctx.consts.text(),
                      ctx.fn("const %s *x, %s *y" % (x.ctype, y.ctype),
                             "    int32_t i;\n    for (i = 0; i < %s; i++)\n%s" % (size, line))])
    return ctx.step((x,), y, code, quantized=quantized, cost=cost)


def _bind_clamp(x, lo, hi, any_scale):
    """A bound clamp (layers/_fast.py) for per-tensor QTensors of x's signature: the C kernel on
    the values in their memory order (a channels-last value stays channels-last, read and
    written as one run: _kernels.qclamp). any_scale: the bounds do not depend on the scale (ReLU's zero point)."""
    v = x._values
    shape, dtype, strides, sx, zx = v.shape, v.dtype, v.strides, x._scale, x._zero_point
    lo, hi, kernel, checked = int(lo), int(hi), _kernels.qclamp, QTensor._checked

    def run(x):
        if type(x) is not QTensor or x._axis is not None or x._zero_point != zx \
                or (not any_scale and x._scale != sx):
            return MISS
        v = x._values
        if v.shape != shape or v.dtype is not dtype or v.strides != strides:
            return MISS
        return checked(kernel(v, lo, hi), x._scale, zx)     # in v's layout where v has no gaps
    return run


def _same_q(x, v):
    """v with x's quantization (x already checked; a per-channel one is rebuilt in full)."""
    if x.axis is None:
        return QTensor._checked(v, x.scale, x.zero_point)
    return QTensor(v, x.scale, x.zero_point)


class _Clamp(Layer):
    """q = min(max(q, lo), hi) with bounds from the input's quantization (prepare), or a float
    clip. Subclasses give _float_bounds() (float32 lo, hi) and _q_bounds(scale, zp, dtype)."""
    takes = _ANY

    def infer(self, x):
        return check_kind(x, ("float", "quant"), type(self).__name__)

    def prepare(self, x):
        """(lo, hi): the int bounds for a quantized input, the float32 ones for a float input."""
        if x.kind == "quant":
            return self._bounds(x.scale, x.zero_point, x.dtype)
        return self._float_bounds()

    def _bounds(self, scale, zero_point, dtype):
        return self._op_data((scale, zero_point, dtype), lambda: self._q_bounds(scale, zero_point, dtype))

    def __call__(self, x):
        if isinstance(x, QTensor):
            dt = x.values.dtype
            lo, hi = self._bounds(x.scale, x.zero_point, dt.name)
            v = np.minimum(np.maximum(x.values, np.array(lo, dtype=dt)), np.array(hi, dtype=dt))
            return _same_q(x, v)
        lo, hi = self._float_bounds()
        return self._float_call(x, lo, hi)

    def _bind(self, x):
        """The quantized call for inputs of x's signature (layers/_fast.py): the bounds of x's
        quantization looked up once."""
        if type(x) is not QTensor or x._axis is not None:
            return None
        lo, hi = self._bounds(x._scale, x._zero_point, x._values.dtype.name)
        return _bind_clamp(x, lo, hi, False)

    def _float_call(self, x, lo, hi):
        return np.clip(x, lo, hi).astype(np.float32, copy=False)

    def emit_c(self, ctx, node, inputs, output, op_data):
        x = inputs[0]
        lo, hi = op_data
        if x.kind == "quant":
            a = ctx.consts.define("lo", lo, self._lo_words)
            b = ctx.consts.define("hi", hi, self._hi_words)
            return _loop(ctx, x, output, "        y[i] = (%s)fq_clamp(x[i], %s, %s);" % (x.ctype, a, b),
                         "quantized, q = min(max(q, %d), %d)" % (lo, hi), True)
        return _loop(ctx, x, output, "        y[i] = %s;" % self._float_c(ctx, lo, hi), "float, %s" % self._float_words, False)

    def _float_c(self, ctx, lo, hi):
        return "fq_clip_float(x[i], %s, %s)" % (ctx.float_literal(lo), ctx.float_literal(hi))

    _torch_note = None      # where fastq knowingly differs from torch (ARITHMETIC.md says why)

    def summary_row(self, specs, op_data):
        row = self.settings_row("exact (moves / clamps)")
        if self._torch_note:
            row["arithmetic"] += "; " + self._torch_note
        if op_data is not None and specs and specs[0] is not None and specs[0].kind == "quant":
            row["constants"] = ("%s; " % row["constants"] if row["constants"] != "-" else "") + \
                "q in [%d, %d]" % op_data
        return row


@register
class Quantize(Layer):
    """float -> QTensor with a fixed scale and zero point (torch nnq.Quantize, a converted QuantStub)."""
    settings = (
        Setting("dtype", check_dtype_name("dtype"), "uint8"),
        Setting("scale", check_scale_setting("scale")),
        Setting("zero_point", check_zero_point_in("zero_point", "dtype")),
    )
    takes = _FLOAT

    def __init__(self, scale, zero_point, dtype="uint8"):
        self._set_settings(scale=scale, zero_point=zero_point, dtype=dtype)

    def __call__(self, x):
        return quantize(x, self.scale, self.zero_point, self.dtype)

    def _bind(self, x):
        """The call for float32 arrays of x's shape and strides (layers/_fast.py): the checked
        qparams and f32(1 / scale) taken once."""
        if type(x) is not np.ndarray or x.dtype != np.float32 or not x.ndim:
            return None
        qmin, qmax, scale, zero_point, inv = _per_tensor_qparams(self.scale, self.zero_point, self.dtype)
        shape, strides, f32, zpf, signed = x.shape, x.strides, x.dtype, float(zero_point), qmin < 0
        kernel, checked = _kernels.quantize, QTensor._checked

        def run(x):
            if type(x) is not np.ndarray or x.dtype is not f32 or x.shape != shape or x.strides != strides:
                return MISS
            return checked(kernel(x, inv, zpf, qmin, qmax, signed), scale, zero_point)
        return run

    def infer(self, x):
        check_kind(x, ("float",), "Quantize")
        return Spec("quant", x.shape, self.dtype, float(self.scale), int(self.zero_point))

    def prepare(self, x):
        """f32(1 / scale): what quantize_per_tensor multiplies by (in an fma with the zero point)."""
        return np.float32(np.float32(1.0) / np.float32(self.scale))

    def emit_c(self, ctx, node, inputs, output, op_data):
        x = inputs[0]
        qmin, qmax = _QRANGE[self.dtype]
        inv = ctx.consts.define("inv_scale", op_data, "f32(1 / %.9g)" % self.scale)
        zp = ctx.consts.define("zero_point", self.zero_point)
        return _loop(ctx, x, output, "        y[i] = (%s)fq_quantize(x[i], %s, (float)%s, %d.0f, %d.0f);"
                     % (output.ctype, inv, zp, qmin, qmax),
                     "to %s, scale %.9g, zero point %d\n *   q = clamp(rne(fmaf(x, 1/scale, zero_point)), %d, %d), "
                     "NaN -> %d" % (self.dtype, self.scale, self.zero_point, qmin, qmax, qmax), False, "quantize")

    def summary_row(self, specs, op_data):
        return dict(qparams="%.6g/%d" % (self.scale, self.zero_point), constants=self.dtype,
                    arithmetic="quantize_per_tensor (fmaf)")


@register
class Dequantize(Layer):
    """QTensor -> float32: (q - zero_point) * scale (torch nnq.DeQuantize)."""
    takes = _QUANT

    def __call__(self, x):
        return dequantize(x)

    def _bind(self, x):
        """The call for per-tensor QTensors of x's signature (layers/_fast.py)."""
        if type(x) is not QTensor or x._axis is not None or not x._values.ndim:
            return None
        v = x._values
        shape, dtype, strides, zx, sx = v.shape, v.dtype, v.strides, x._zero_point, x._scale
        scale, kernel = np.float32(sx), _kernels.dequantize

        def run(x):
            if type(x) is not QTensor or x._axis is not None or x._scale != sx or x._zero_point != zx:
                return MISS
            v = x._values
            if v.shape != shape or v.dtype is not dtype or v.strides != strides:
                return MISS
            return kernel(v, zx, scale)
        return run

    def infer(self, x):
        check_kind(x, ("quant",), "Dequantize")
        return Spec("float", x.shape)

    def prepare(self, x):
        """(f32(scale), zero_point) of the input."""
        return np.float32(x.scale), int(x.zero_point)

    def emit_c(self, ctx, node, inputs, output, op_data):
        x = inputs[0]
        scale, zero_point = op_data
        s = ctx.consts.define("scale", scale)
        zp = ctx.consts.define("zero_point", zero_point)
        return _loop(ctx, x, output, "        y[i] = fq_dequantize(x[i], %s, %s);" % (zp, s),
                     "x = f32((float)(q - %d) * %.9g)%s" % (zero_point, scale, "" if ctx.note is None else
                                                           " (%s)" % ctx.note), False, "dequantize")

    def summary_row(self, specs, op_data):
        return self.settings_row("exact (moves / clamps)")


class _View(Layer):
    """An op that moves nothing in a C-order sample: its C output is its input's buffer (refused
    where it moves the batch dimension: ctx.view)."""
    takes = _ANY

    def emit_c(self, ctx, node, inputs, output, op_data):
        return ctx.view(output, inputs[0])

    def summary_row(self, specs, op_data):
        return self.settings_row("exact (moves / clamps)")


@register
class Identity(_View):
    """Passes its input on (torch nn.Identity, nn.Dropout in eval mode, an unconverted stub)."""

    def __call__(self, x):
        return x

    def _bind(self, x):
        return ALIAS            # the model's compiled run reads the input's value in its place

    def infer(self, x):
        return x


@register
class ReLU(_Clamp):
    """Quantized: q = max(q, zero_point), same scale and zero point (torch quantized relu).
    Float: max(x, 0)."""
    _lo_words, _hi_words, _float_words = "the zero point", "the dtype's top", "x = max(x, 0)"

    def _q_bounds(self, scale, zero_point, dtype):
        return int(zero_point), _QRANGE[dtype][1]

    def __call__(self, x):                  # one maximum: the upper bound is the dtype's own
        if isinstance(x, QTensor):
            return _same_q(x, np.maximum(x.values, np.array(x.zero_point, dtype=x.values.dtype)))
        return np.maximum(x, np.float32(0)).astype(np.float32, copy=False)

    def _bind(self, x):
        """The quantized call for inputs of x's signature (layers/_fast.py)."""
        if type(x) is not QTensor or x._axis is not None:
            return None
        return _bind_clamp(x, x._zero_point, _QRANGE[x._values.dtype.name][1], True)

    def _float_bounds(self):
        return np.float32(0), None

    def _float_c(self, ctx, lo, hi):
        return "fq_relu_float(x[i])"


@register
class ReLU6(_Clamp):
    """Quantized: q = min(max(q, zero_point), q6), q6 = reference.quantize_val(6.0) with the input's
    scale and zero point (torch quantized relu6: zp added in float before rounding, no fma).
    Float: clamp(x, 0, 6)."""
    _lo_words, _hi_words, _float_words = "the zero point", "quantize_val(6.0): torch's scalar quantize, no fma", \
        "x = clip(x, 0, 6)"
    _torch_note = ("the intended clamp where torch 2.13 under qnnpack scrambles a channels-last input "
                   "(its NHWC bytes returned labelled NCHW)")

    def _q_bounds(self, scale, zero_point, dtype):
        return int(zero_point), int(reference.quantize_val(np.float32(6.0), scale, zero_point, dtype))

    def _float_bounds(self):
        return np.float32(0), np.float32(6)


@register
class Flatten(_View):
    """Merges dimensions start_dim..end_dim (torch nn.Flatten; default start_dim=1)."""
    settings = (Setting("start_dim", check_int("start_dim"), 1), Setting("end_dim", check_int("end_dim"), -1))

    def __init__(self, start_dim=1, end_dim=-1):
        self._set_settings(start_dim=start_dim, end_dim=end_dim)

    def _shape(self, shape):
        nd = max(len(shape), 1)
        s, e = self.start_dim, self.end_dim
        if not (-nd <= s < nd and -nd <= e < nd):
            raise ValueError("x: Flatten(%d, %d) does not fit an input of shape %s" % (s, e, tuple(shape)))
        s, e = s % nd, e % nd
        if s > e:
            raise ValueError("x: Flatten start_dim %d comes after end_dim %d" % (self.start_dim, self.end_dim))
        if len(shape) == 0:
            return (1,)
        merged = shape[s:e + 1]
        n = None if any(d is None for d in merged) else int(np.prod(merged))
        return tuple(shape[:s]) + (n,) + tuple(shape[e + 1:])

    def __call__(self, x):
        if type(x) is QTensor and x._axis is None:
            v = x._values
            return QTensor._checked(v.reshape(self._out_shape(v.shape)), x._scale, x._zero_point)
        v = x.values if isinstance(x, QTensor) else x
        v = v.reshape(self._shape(v.shape))
        return QTensor(v, x.scale, x.zero_point) if isinstance(x, QTensor) else v

    def _out_shape(self, shape):
        """_shape of a concrete input shape, remembered (the last one)."""
        last = self.__dict__.get("_last_shape")
        if last is not None and last[0] == shape:
            return last[1]
        out = self._shape(shape)
        self.__dict__["_last_shape"] = (shape, out)
        return out

    def _bind(self, x):
        checked = QTensor._checked
        if type(x) is QTensor and x._axis is None:
            shape = x._values.shape
            out = self._shape(shape)

            def run(x):
                if type(x) is not QTensor or x._axis is not None or x._values.shape != shape:
                    return MISS
                return checked(x._values.reshape(out), x._scale, x._zero_point)
            return run
        if type(x) is np.ndarray:
            shape = x.shape
            out = self._shape(shape)

            def run_float(x):
                if type(x) is not np.ndarray or x.shape != shape:
                    return MISS
                return x.reshape(out)
            return run_float
        return None

    def infer(self, x):
        check_kind(x, ("float", "quant"), "Flatten")
        return x.like(shape=self._shape(x.shape))


def _check_finite_float(name):
    def check(value, prior):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not np.isfinite(value):
            raise TypeError("%s: expected a finite float, got %r" % (name, value))
        if name == "max_val" and not prior["min_val"] <= float(value):
            raise ValueError("max_val: %r is less than min_val %r" % (value, prior["min_val"]))
        return float(value)
    return check


@register
class Hardtanh(_Clamp):
    """Quantized: q = min(max(q, q_lo), q_hi), q_lo / q_hi = reference.quantize_val(min_val / max_val)
    with the input's scale and zero point (torch quantized hardtanh / clamp). Float: clamp(x, min_val, max_val)."""
    _torch_note = ("the intended clamp where torch 2.13 under qnnpack scrambles a channels-last input "
                   "(its NHWC bytes returned labelled NCHW)")

    settings = (Setting("min_val", _check_finite_float("min_val"), -1.0),
                Setting("max_val", _check_finite_float("max_val"), 1.0))
    _lo_words, _hi_words = "quantize_val(min_val), no fma", "quantize_val(max_val), no fma"

    def __init__(self, min_val=-1.0, max_val=1.0):
        self._set_settings(min_val=min_val, max_val=max_val)

    @property
    def _float_words(self):
        return "x = clip(x, %r, %r)" % (self.min_val, self.max_val)

    def _q_bounds(self, scale, zero_point, dtype):
        return (int(reference.quantize_val(np.float32(self.min_val), scale, zero_point, dtype)),
                int(reference.quantize_val(np.float32(self.max_val), scale, zero_point, dtype)))

    def _float_bounds(self):
        return np.float32(self.min_val), np.float32(self.max_val)
