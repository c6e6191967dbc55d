"""QTensor and the conversions between float and quantized values (docs/ARITHMETIC.md §10)."""
from __future__ import annotations

from operator import attrgetter

import numpy as np

from . import _kernels, reference
from ._checks import as_array, check_bool, check_scale, check_scales, check_zero_point, check_zero_points, qrange


_UNSET = object()


class QTensor:
    """Quantized values with their quantization: real = (values - zero_point) * scale.

    values: uint8 or int8 ndarray. Per tensor: scale float, zero_point int, axis None.
    Per channel: scale and zero_point 1-D arrays along `axis`.
    Immutable: the fields cannot be reassigned, values is a view of the array passed in (its
    bytes may be written, any byte is a valid value; its shape is the QTensor's own) and the
    per-channel scale / zero_point are read-only copies, so the checks made here hold for the
    QTensor's lifetime."""

    __slots__ = ("_values", "_scale", "_zero_point", "_axis")

    def __new__(cls, *args, **kwargs):
        self = object.__new__(cls)
        self._axis = _UNSET                    # fields not yet set (see _field)
        return self

    def __init__(self, values, scale, zero_point, axis=None):
        values = as_array(values, "values")
        if not isinstance(values, np.ndarray) or values.dtype not in (np.uint8, np.int8):
            raise TypeError("values: expected a uint8 or int8 array, got dtype %s" % getattr(values, "dtype", type(values)))
        lo, hi = qrange(values.dtype)
        if axis is None:
            scale = check_scale(scale, "scale")
            zero_point = check_zero_point(zero_point, lo, hi, "zero_point")
        else:
            if not isinstance(axis, (int, np.integer)) or isinstance(axis, (bool, np.bool_)):
                raise TypeError("axis: expected an int or None, got %r" % (axis,))
            if not -values.ndim <= axis < values.ndim:
                raise ValueError("axis: %d is out of range for %d dimensions" % (axis, values.ndim))
            axis = int(axis) % values.ndim
            n = values.shape[axis]
            scale = check_scales(scale, n, "scale")
            zero_point = check_zero_points(zero_point, n, lo, hi, "zero_point")
        # a view: the caller's array reshaped in place later does not reshape this QTensor
        self._values, self._scale, self._zero_point, self._axis = values.view(), scale, zero_point, axis

    @classmethod
    def _checked(cls, values, scale, zero_point):
        """A per-tensor QTensor from a fresh values array and qparams the caller has checked."""
        q = object.__new__(cls)
        q._values, q._scale, q._zero_point, q._axis = values, scale, zero_point, None
        return q

    @property
    def shape(self):
        return self.values.shape

    @property
    def dtype(self):
        return self.values.dtype

    def dequantize(self):
        return dequantize(self)

    def __repr__(self):
        if self.axis is None:
            q = "scale=%.9g, zero_point=%d" % (self.scale, self.zero_point)
        else:
            q = "per-channel axis=%d, %d scales" % (self.axis, len(self.scale))
        return "QTensor(%s %s, %s)" % (self.values.dtype, tuple(self.values.shape), q)

    @classmethod
    def from_torch(cls, t):
        """A torch quantized tensor (quint8 / qint8, per tensor or per channel) as a QTensor."""
        from .importers.torch_quantized import qtensor_from_torch
        return qtensor_from_torch(t)


def _field(name, doc):
    """A read-only QTensor field: the first assignment stores it, any later one is refused, so
    a checked QTensor stays checked. (The compiled call path fills the private slots directly.)"""
    slot = "_" + name
    store = getattr(QTensor, slot).__set__

    def fset(self, value):
        if self._axis is not _UNSET:          # axis is the last field set (LinearCore's order too)
            raise AttributeError("QTensor.%s cannot be reassigned (a QTensor is immutable; build a new one: "
                                 "fastq.QTensor(values, scale, zero_point, axis))" % name)
        store(self, value)
    return property(attrgetter(slot), fset, doc=doc)


QTensor.values = _field("values", "uint8 / int8 ndarray")
QTensor.scale = _field("scale", "float, or float64 [C] (read-only) per channel")
QTensor.zero_point = _field("zero_point", "int, or int32 [C] (read-only) per channel")
QTensor.axis = _field("axis", "None, or the channel axis")


_F32 = np.dtype(np.float32)


def _float32_input(x, name="x"):
    x = as_array(x, name)
    if x.dtype.kind not in "fiu" or x.dtype == np.bool_:
        raise TypeError("%s: expected a float array, got dtype %s" % (name, x.dtype))
    x = np.asarray(x, dtype=np.float32)       # (np.ascontiguousarray would make 0-d arrays 1-d)
    return x if x.flags.c_contiguous else x.copy(order="C")


# (scale, zero_point, dtype) -> checked (qmin, qmax, scale, zero_point, 1/scale): a model
# quantizes every batch with the same qparams, and checking them costs more than a small batch.
_QPARAMS = {}


def _per_tensor_qparams(scale, zero_point, dtype):
    cacheable = type(scale) is float and type(zero_point) is int and type(dtype) is str
    if cacheable:
        hit = _QPARAMS.get((scale, zero_point, dtype))
        if hit is not None:
            return hit
    qmin, qmax = qrange(dtype)
    scale = check_scale(scale, "scale")
    zero_point = check_zero_point(zero_point, qmin, qmax, "zero_point")
    checked = (qmin, qmax, scale, zero_point, float(np.float32(1.0) / np.float32(scale)))
    if cacheable:
        if len(_QPARAMS) >= 64:
            _QPARAMS.clear()
        _QPARAMS[(scale, zero_point, dtype)] = checked
    return checked


def quantize(x, scale, zero_point, dtype="uint8"):
    """= torch.quantize_per_tensor: q = clamp(rne(fmaf(x, 1/scale, zp)), qmin, qmax)."""
    qmin, qmax, scale, zero_point, inv = _per_tensor_qparams(scale, zero_point, dtype)
    if not (type(x) is np.ndarray and x.dtype is _F32 and x.ndim):   # float32 arrays: as they are
        x = _float32_input(x)
    q = _kernels.quantize(x, inv, float(zero_point), qmin, qmax, qmin < 0)
    return QTensor._checked(q, scale, zero_point)


def quantize_per_channel(x, scales, zero_points, axis=0, dtype="int8"):
    """= torch.quantize_per_channel (no fused multiply-add on this path)."""
    qmin, qmax = qrange(dtype)
    x = _float32_input(x)
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, (bool, np.bool_)):
        raise TypeError("axis: expected an int, got %r" % (axis,))
    if not -x.ndim <= axis < x.ndim:
        raise ValueError("axis: %d is out of range for %d dimensions" % (axis, x.ndim))
    axis = int(axis) % x.ndim
    scales = check_scales(scales, x.shape[axis], "scales")
    zero_points = check_zero_points(zero_points, x.shape[axis], qmin, qmax, "zero_points")
    q = reference.quantize_per_channel(x, scales, zero_points, axis, np.dtype(dtype))
    return QTensor(q, scales, zero_points, axis=axis)


def dequantize(q):
    """= torch dequantize: x = f32(f32(q - zp) * scale)."""
    if not isinstance(q, QTensor):
        raise TypeError("q: expected a fastq.QTensor, got %s" % type(q).__name__)
    if q.axis is None and q.values.ndim:          # a 0-d QTensor dequantizes to a numpy scalar
        return _kernels.dequantize(q.values, q.zero_point, np.float32(q.scale))
    return reference.dequantize(q.values, q.scale, q.zero_point, q.axis)


def choose_qparams(min_val, max_val, dtype="uint8", symmetric=False, reduce_range=False):
    """= torch MinMaxObserver qparams for an observed [min_val, max_val]: (scale, zero_point)."""
    qrange(dtype)
    symmetric = check_bool(symmetric, "symmetric")
    reduce_range = check_bool(reduce_range, "reduce_range")
    for name, v in (("min_val", min_val), ("max_val", max_val)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError("%s: expected a float, got %r" % (name, type(v).__name__))
        if not np.isfinite(v):
            raise ValueError("%s: expected a finite float, got %r" % (name, v))
    if symmetric and reduce_range and np.dtype(dtype) == np.uint8:
        raise ValueError("reduce_range: symmetric uint8 quantization cannot reduce its range (torch refuses it too)")
    if min_val > max_val:
        raise ValueError("min_val: %r is greater than max_val %r" % (min_val, max_val))
    return reference.choose_qparams(min_val, max_val, dtype, symmetric, reduce_range)
