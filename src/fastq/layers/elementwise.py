"""Layers without weights: Quantize, Dequantize, Identity, ReLU, ReLU6, Hardtanh, Flatten.
Values flow as float32 arrays or as QTensors; each layer says which it takes."""
from __future__ import annotations

import numpy as np

from .. import reference
from ..qtensor import QTensor, dequantize, quantize
from ._base import (ANY, FLOAT, QUANT, Layer, Setting, check_dtype_name, check_int, check_scale_setting,
                    check_zero_point_in, register)

_FLOAT, _QUANT, _ANY = FLOAT, QUANT, ANY


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



@register
class Dequantize(Layer):
    """QTensor -> float32: (q - zero_point) * scale (torch nnq.DeQuantize)."""
    takes = _QUANT

    def __call__(self, x):
        return dequantize(x)



@register
class Identity(Layer):
    """Passes its input on (torch nn.Identity, nn.Dropout in eval mode, an unconverted stub)."""
    takes = _ANY

    def __call__(self, x):
        return x



@register
class ReLU(Layer):
    """Quantized: q = max(q, zero_point), same scale and zero point (torch quantized relu).
    Float: max(x, 0)."""
    takes = _ANY

    def __call__(self, x):
        if isinstance(x, QTensor):
            v = np.maximum(x.values, np.array(x.zero_point, dtype=x.values.dtype))
            return QTensor(v, x.scale, x.zero_point)
        return np.maximum(x, np.float32(0)).astype(np.float32, copy=False)



@register
class ReLU6(Layer):
    """Quantized: q = min(max(q, zero_point), q6), q6 = reference.quantize_val(6.0) with the input's
    scale and zero point (torch quantized relu6: zp added in float before rounding, no fma).
    Float: clamp(x, 0, 6)."""
    takes = _ANY

    def __call__(self, x):
        if isinstance(x, QTensor):
            dt = x.values.dtype
            q6 = reference.quantize_val(np.float32(6.0), x.scale, x.zero_point, dt)
            v = np.minimum(np.maximum(x.values, np.array(x.zero_point, dtype=dt)), q6)
            return QTensor(v.astype(dt), x.scale, x.zero_point)
        return np.clip(x, np.float32(0), np.float32(6)).astype(np.float32, copy=False)



@register
class Flatten(Layer):
    """Merges dimensions start_dim..end_dim (torch nn.Flatten; default start_dim=1)."""
    settings = (Setting("start_dim", check_int("start_dim"), 1), Setting("end_dim", check_int("end_dim"), -1))
    takes = _ANY

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
        return tuple(shape[:s]) + (int(np.prod(shape[s:e + 1])),) + tuple(shape[e + 1:])

    def __call__(self, x):
        v = x.values if isinstance(x, QTensor) else x
        v = v.reshape(self._shape(v.shape))
        return QTensor(v, x.scale, x.zero_point) if isinstance(x, QTensor) else v


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
class Hardtanh(Layer):
    """Quantized: q = min(max(q, q_lo), q_hi), q_lo / q_hi = reference.quantize_val(min_val / max_val)
    with the input's scale and zero point (torch quantized hardtanh / clamp). Float: clamp(x, min_val, max_val)."""
    settings = (Setting("min_val", _check_finite_float("min_val"), -1.0),
                Setting("max_val", _check_finite_float("max_val"), 1.0))
    takes = _ANY

    def __init__(self, min_val=-1.0, max_val=1.0):
        self._set_settings(min_val=min_val, max_val=max_val)

    def __call__(self, x):
        if isinstance(x, QTensor):
            dt = x.values.dtype
            lo = reference.quantize_val(np.float32(self.min_val), x.scale, x.zero_point, dt)
            hi = reference.quantize_val(np.float32(self.max_val), x.scale, x.zero_point, dt)
            return QTensor(np.minimum(np.maximum(x.values, lo), hi).astype(dt), x.scale, x.zero_point)
        return np.clip(x, np.float32(self.min_val), np.float32(self.max_val)).astype(np.float32, copy=False)
