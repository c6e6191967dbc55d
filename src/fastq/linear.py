"""Quantized layers: pack the weights once, then each call is one kernel call.

QuantizedLinear: uint8 QTensor [..., K] -> uint8 QTensor [..., N] (static quantization).
qgemm: the bare integer core, int32 [M, N] = sum_k (a - za)(w - zw).
"""
from __future__ import annotations

import numpy as np

from . import _kernels, requant as _requant
from ._checks import as_array, check_scale, check_zero_point, check_zero_points
from .qtensor import QTensor

_INT32_MAX = 2**31 - 1


def _acc_bound_ok(packed, a, a_zero_point):
    """True when |sum_k (a - za)(w - zw)| < 2^31 is guaranteed, so int32 cannot wrap.
    Cheap test from the zero points first; the data itself only when that fails."""
    k = packed.k
    dev_w = packed.max_abs_w_dev
    dev_a = max(a_zero_point, 255 - a_zero_point)
    if k * dev_a * dev_w <= _INT32_MAX:
        return True
    if a.size == 0:
        return True
    lo, hi = int(a.min()), int(a.max())
    dev_a = max(abs(lo - a_zero_point), abs(hi - a_zero_point))
    return k * dev_a * dev_w <= _INT32_MAX


def _check_no_overflow(packed, a, a_zero_point, name):
    if not _acc_bound_ok(packed, a, a_zero_point):
        raise ValueError(
            "%s: K = %d is large enough for the int32 accumulator to overflow with these values "
            "(|acc| could reach K*255*255); split K into smaller slices" % (name, packed.k))


def _as_2d_u8(a, name):
    a = as_array(a, name)
    if a.dtype != np.uint8:
        raise TypeError("%s: expected uint8 values, got dtype %s" % (name, a.dtype))
    return a


def qgemm(a, a_zero_point, w, w_zero_point):
    """int32 [M, N] = sum_k (a[m,k] - a_zero_point) * (w[n,k] - w_zero_point[n]).

    a: uint8 [M, K]; w: int8 [N, K] (torch Linear layout); w_zero_point: int or N ints.
    Raises ValueError when K is large enough for the exact result to leave int32."""
    a = _as_2d_u8(a, "a_u8")
    if a.ndim != 2:
        raise ValueError("a_u8: expected a 2-D array [M, K], got %d dimensions" % a.ndim)
    w = as_array(w, "w_s8")
    if w.dtype != np.int8:
        raise TypeError("w_s8: expected int8 values, got dtype %s" % w.dtype)
    if w.ndim != 2:
        raise ValueError("w_s8: expected a 2-D array [N, K], got %d dimensions" % w.ndim)
    if a.shape[1] != w.shape[1]:
        raise ValueError("w_s8: K mismatch: a_u8 has K = %d, w_s8 has K = %d" % (a.shape[1], w.shape[1]))
    # plain ints in range skip the general checks (this path is timed at 1x64x64)
    if type(a_zero_point) is int and 0 <= a_zero_point <= 255:
        za = a_zero_point
    else:
        za = check_zero_point(a_zero_point, 0, 255, "a_zero_point")
    if type(w_zero_point) is int and -128 <= w_zero_point <= 127:
        zw = np.full(1, w_zero_point, np.int32)
    elif np.ndim(w_zero_point) == 0 and not isinstance(w_zero_point, np.ndarray):
        zw = np.array([check_zero_point(w_zero_point, -128, 127, "w_zero_point")], np.int32)
    else:
        zw = check_zero_points(w_zero_point, w.shape[0], -128, 127, "w_zero_point")
    a = np.ascontiguousarray(a)
    w = np.ascontiguousarray(w)
    out = _kernels.qgemm_int32(a, za, w, zw)
    if out is not None:
        return out
    # the zero points alone cannot rule out int32 overflow: look at the data
    packed = _kernels.PackedWeights(w, zw)
    _check_no_overflow(packed, a, za, "a_u8")
    ep = _kernels.Epilogue(packed, _kernels.EPI_INT32, packed.col_offsets(za))
    return _kernels.gemm(packed, ep, a)


class QuantizedLinear:
    """y = requant(sum_k (x - zx)(w - zw) [+ bias]) with the output's scale and zero point.

    weight: int8 QTensor [N, K], per tensor or per channel (axis 0).
    bias: float [N] or None ("tflite" also takes an int32 array, used as is).
    scale, zero_point: the output quantization. relu: fused ReLU (clamp at zero_point).
    requant: "fbgemm" | "qnnpack" | "tflite" (see fastq.requant)."""

    def __init__(self, weight, bias=None, scale=1.0, zero_point=0, relu=False, requant="fbgemm",
                 rounding="double"):
        if not isinstance(weight, QTensor):
            raise TypeError("weight: expected a fastq.QTensor of int8 values, got %s" % type(weight).__name__)
        if weight.values.dtype != np.int8:
            raise TypeError("weight: expected int8 values, got %s" % weight.values.dtype)
        if weight.values.ndim != 2:
            raise ValueError("weight: expected shape [N, K], got %s" % (weight.values.shape,))
        if weight.axis not in (None, 0):
            raise ValueError("weight: per-channel quantization must be along axis 0 (output channels)")
        self.requant = _requant.check_mode(requant)
        if rounding not in ("double", "single"):
            raise ValueError("rounding: expected 'double' or 'single', got %r" % (rounding,))
        self.rounding = rounding
        self.weight = weight
        self.out_features, self.in_features = weight.values.shape
        self.scale = check_scale(scale, "scale")
        self.zero_point = check_zero_point(zero_point, 0, 255, "zero_point")
        self.relu = bool(relu)
        self.per_channel = weight.axis is not None
        self.int_bias = None
        self.bias = None
        if bias is not None:
            b = as_array(bias, "bias")
            if b.ndim != 1 or b.shape[0] != self.out_features:
                raise ValueError("bias: expected shape (%d,), got %s" % (self.out_features, b.shape))
            if b.dtype.kind in "iu":
                if requant != "tflite":
                    raise TypeError("bias: an integer bias is only taken by requant='tflite'; pass floats")
                if b.size and (b.min() < -(2**31) or b.max() > 2**31 - 1):
                    raise ValueError("bias: integer bias must fit int32")
                self.int_bias = b.astype(np.int32)
            elif b.dtype.kind == "f":
                if not np.all(np.isfinite(b)):
                    raise ValueError("bias: must be finite")
                self.bias = b.astype(np.float32)
            else:
                raise TypeError("bias: expected floats, got dtype %s" % b.dtype)
        zw = np.atleast_1d(np.asarray(weight.zero_point, np.int32))
        self._packed = _kernels.PackedWeights(np.ascontiguousarray(weight.values), zw)
        self._epilogues = {}
        # the call path (validation of x, cached epilogue, the C call) lives in Cython
        packed = self._packed
        self._core = _kernels.LinearCore(self._packed, QTensor, self.scale, self.zero_point,
                                         self._epilogue,
                                         lambda a, zp, name: _check_no_overflow(packed, a, zp, name))

    @classmethod
    def from_torch(cls, module, engine=None):
        """From torch.ao.nn.quantized.Linear / torch.ao.nn.intrinsic.quantized.LinearReLU."""
        from .torch_compat import linear_from_torch
        return linear_from_torch(module, engine=engine)

    def _epilogue(self, x_scale, x_zero_point):
        key = (x_scale, x_zero_point)
        ep = self._epilogues.get(key)
        if ep is None:
            ep, _ = _requant.build_epilogue(
                self._packed, self.requant, x_scale, x_zero_point, self.weight.scale, self.per_channel,
                self.scale, self.zero_point, bias=self.bias, relu=self.relu, int_bias=self.int_bias,
                single_rounding=self.rounding == "single")
            if len(self._epilogues) > 16:
                self._epilogues.clear()
            self._epilogues[key] = ep
        return ep

    # y_q = layer(x_q): x is a uint8 QTensor [..., K] (per tensor), y a uint8 QTensor [..., N].
    # Checks x (TypeError / ValueError naming "x"), refuses K large enough to overflow int32,
    # then one kernel call with the epilogue cached for (x.scale, x.zero_point).
    __call__ = _kernels.linear_call

    def _call_python(self, x):
        """The same call in Python (the reference for LinearCore.call, and its fallback)."""
        if not isinstance(x, QTensor):
            raise TypeError("x: expected a fastq.QTensor, got %s" % type(x).__name__)
        if x.axis is not None:
            raise ValueError("x: expected per-tensor quantized activations")
        v = x.values
        if v.dtype != np.uint8:
            raise TypeError("x: expected uint8 values, got %s" % v.dtype)
        if v.ndim < 1 or v.shape[-1] != self.in_features:
            raise ValueError("x: expected shape [..., %d], got %s" % (self.in_features, v.shape))
        a = np.ascontiguousarray(v.reshape(-1, self.in_features))
        _check_no_overflow(self._packed, a, x.zero_point, "x")
        out = _kernels.gemm(self._packed, self._epilogue(x.scale, x.zero_point), a)
        return QTensor(out.reshape(v.shape[:-1] + (self.out_features,)), self.scale, self.zero_point)

    def __repr__(self):
        return "QuantizedLinear(in_features=%d, out_features=%d, requant=%r%s)" % (
            self.in_features, self.out_features, self.requant, ", relu=True" if self.relu else "")
