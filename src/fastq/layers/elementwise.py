"""Layers without weights: Quantize, Dequantize, Identity, ReLU, ReLU6, Flatten.
Values flow as float32 arrays or as QTensors; each layer says which it takes."""
from __future__ import annotations

import numpy as np

from .. import reference
from .._checks import check_scale, check_zero_point, qrange
from ..qtensor import QTensor, dequantize, quantize

FLOAT, QUANT, ANY = "float", "quantized", "any"
_FLOAT, _QUANT, _ANY = FLOAT, QUANT, ANY


class Quantize:
    """float -> QTensor with a fixed scale and zero point (torch nnq.Quantize, a converted QuantStub)."""
    takes = _FLOAT

    def __init__(self, scale, zero_point, dtype="uint8"):
        qmin, qmax = qrange(dtype)
        self.scale = check_scale(scale, "scale")
        self.zero_point = check_zero_point(zero_point, qmin, qmax, "zero_point")
        self.dtype = np.dtype(dtype).name

    def __call__(self, x):
        return quantize(x, self.scale, self.zero_point, self.dtype)

    def __repr__(self):
        return "Quantize(scale=%.9g, zero_point=%d, dtype=%s)" % (self.scale, self.zero_point, self.dtype)


class Dequantize:
    """QTensor -> float32: (q - zero_point) * scale (torch nnq.DeQuantize)."""
    takes = _QUANT

    def __call__(self, x):
        return dequantize(x)

    def __repr__(self):
        return "Dequantize()"


class Identity:
    """Passes its input on (torch nn.Identity, nn.Dropout in eval mode, an unconverted stub)."""
    takes = _ANY

    def __call__(self, x):
        return x

    def __repr__(self):
        return "Identity()"


class ReLU:
    """Quantized: q = max(q, zero_point), same scale and zero point (torch quantized relu).
    Float: max(x, 0)."""
    takes = _ANY

    def __call__(self, x):
        if isinstance(x, QTensor):
            v = np.maximum(x.values, np.array(x.zero_point, dtype=x.values.dtype))
            return QTensor(v, x.scale, x.zero_point)
        return np.maximum(x, np.float32(0)).astype(np.float32, copy=False)

    def __repr__(self):
        return "ReLU()"


class ReLU6:
    """Quantized: q = min(max(q, zero_point), q6), q6 = quantize(6.0) with the input's scale and
    zero point (torch quantized relu6 / hardtanh(0, 6); q6 rounds as quantize_per_tensor does).
    Float: clamp(x, 0, 6)."""
    takes = _ANY

    def __call__(self, x):
        if isinstance(x, QTensor):
            dt = x.values.dtype
            q6 = reference.quantize_per_tensor(np.float32(6.0), x.scale, x.zero_point, dt)
            v = np.minimum(np.maximum(x.values, np.array(x.zero_point, dtype=dt)), q6)
            return QTensor(v.astype(dt), x.scale, x.zero_point)
        return np.clip(x, np.float32(0), np.float32(6)).astype(np.float32, copy=False)

    def __repr__(self):
        return "ReLU6()"


class Flatten:
    """Merges dimensions start_dim..end_dim (torch nn.Flatten; default start_dim=1)."""
    takes = _ANY

    def __init__(self, start_dim=1, end_dim=-1):
        for name, v in (("start_dim", start_dim), ("end_dim", end_dim)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError("%s: expected an int, got %r" % (name, type(v).__name__))
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

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

    def __repr__(self):
        return "Flatten(start_dim=%d, end_dim=%d)" % (self.start_dim, self.end_dim)


class Hardtanh:
    """Quantized: q = min(max(q, q_lo), q_hi), q_lo / q_hi = quantize(min_val / max_val) with the
    input's scale and zero point (torch quantized hardtanh / clamp). Float: clamp(x, min_val, max_val)."""
    takes = _ANY

    def __init__(self, min_val=-1.0, max_val=1.0):
        for name, v in (("min_val", min_val), ("max_val", max_val)):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v):
                raise TypeError("%s: expected a finite float, got %r" % (name, v))
        if not min_val <= max_val:
            raise ValueError("min_val: %r is greater than max_val %r" % (min_val, max_val))
        self.min_val, self.max_val = float(min_val), float(max_val)

    def __call__(self, x):
        if isinstance(x, QTensor):
            dt = x.values.dtype
            lo = reference.quantize_per_tensor(np.float32(self.min_val), x.scale, x.zero_point, dt)
            hi = reference.quantize_per_tensor(np.float32(self.max_val), x.scale, x.zero_point, dt)
            return QTensor(np.minimum(np.maximum(x.values, lo), hi).astype(dt), x.scale, x.zero_point)
        return np.clip(x, np.float32(self.min_val), np.float32(self.max_val)).astype(np.float32, copy=False)

    def __repr__(self):
        return "Hardtanh(min_val=%r, max_val=%r)" % (self.min_val, self.max_val)
