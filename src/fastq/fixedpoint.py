"""TFLite / gemmlowp / CMSIS-NN fixed point: QuantizeMultiplier, MultiplyByQuantizedMultiplier
(compiled, elementwise) and the per-channel constants of a fixed-point layer.
The formulas live in reference.py; docs/ARITHMETIC.md §8 states them."""
from __future__ import annotations

import numpy as np

from . import _kernels, reference
from ._checks import as_array

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

ROUNDINGS = ("double", "single", "double_up")
ROUNDING_CODES = {"double": 0, "single": 1, "double_up": 2}     # fq_rounding in fastq.h


def check_rounding(rounding):
    if not isinstance(rounding, str):
        raise TypeError("rounding: expected one of %s, got %r" % (", ".join(ROUNDINGS), type(rounding).__name__))
    if rounding not in ROUNDINGS:
        raise ValueError("rounding: expected one of %s, got %r" % (", ".join(ROUNDINGS), rounding))
    return rounding


def quantize_multiplier(real, rounding="double"):
    """TFLite QuantizeMultiplier: (multiplier, shift) with real ~= multiplier * 2^(shift - 31).

    multiplier is an int32 with 2^30 <= |multiplier| <= 2^31 - 1 (or INT32_MIN for a negative
    real just above -2^k), shift > 0 means a left shift; tiny reals (below about 2^-32) give
    (0, 0). rounding="single" (TFLITE_SINGLE_ROUNDING) saturates a shift above 30 to
    (2^31 - 1, 30), as TFLite does in that build."""
    if isinstance(real, (bool, np.bool_)) or not isinstance(real, (int, float, np.integer, np.floating)):
        raise TypeError("real: expected a float, got %r" % type(real).__name__)
    if not np.isfinite(real):
        raise ValueError("real: expected a finite float, got %r" % (real,))
    check_rounding(rounding)
    return reference.quantize_multiplier(float(real), rounding)


def _int32_values(v, name):
    """An integer array whose values fit int32, as int32 (bool and float dtypes refused)."""
    if isinstance(v, (bool, np.bool_)):
        raise TypeError("%s: expected integers, got bool" % name)
    arr = as_array(v, name)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "O" and arr.size and all(isinstance(e, int) for e in arr.reshape(-1)):
            arr = arr.astype(object)
        else:
            raise TypeError("%s: expected an integer array, got dtype %s" % (name, arr.dtype))
    if arr.dtype != np.int32 and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < INT32_MIN or hi > INT32_MAX:
            raise ValueError("%s: values must fit int32 [%d, %d], got range [%d, %d]"
                             % (name, INT32_MIN, INT32_MAX, lo, hi))
    return arr.astype(np.int32)


def _channel_param(v, name, n_last):
    arr = _int32_values(v, name)
    if arr.ndim > 1:
        raise ValueError("%s: expected a scalar or a 1-D array along the last axis of acc, got shape %s"
                         % (name, arr.shape))
    arr = arr.reshape(-1)
    if arr.shape[0] not in (1, n_last):
        raise ValueError("%s: expected 1 or %s values (the last axis of acc), got %d"
                         % (name, n_last, arr.shape[0]))
    return arr


def multiply_by_quantized_multiplier(acc, multiplier, shift, rounding="double"):
    """TFLite MultiplyByQuantizedMultiplier, elementwise over an int32 array (compiled kernel).

    acc: integers in int32 range, any shape. multiplier, shift: ints, or 1-D arrays of
    acc.shape[-1] values (per channel, broadcast along the last axis); shift in [-31, 30],
    > 0 = left shift. rounding: "double" (gemmlowp, TFLite's reference without
    TFLITE_SINGLE_ROUNDING, CMSIS-NN's default), "single" (TFLITE_SINGLE_ROUNDING) or
    "double_up" (double, but the final shift rounds ties up: NEON srshl, ruy, LiteRT's
    optimized kernels). Returns int32 of acc's shape. docs/ARITHMETIC.md §8."""
    check_rounding(rounding)
    x = _int32_values(acc, "acc")
    n_last = x.shape[-1] if x.ndim else 1
    q = _channel_param(multiplier, "multiplier", n_last)
    e = _channel_param(shift, "shift", n_last)
    if e.size and (e.min() < -31 or e.max() > 30):
        raise ValueError("shift: values must lie in [-31, 30], got range [%d, %d]" % (e.min(), e.max()))
    if q.shape[0] != e.shape[0]:
        q, e = np.broadcast_arrays(q, e)
    if x.size == 0:                       # an empty axis, last or not: nothing to multiply
        return np.zeros(x.shape, np.int32)
    out = _kernels.multiply_by_quantized_multiplier(
        np.ascontiguousarray(x.reshape(-1, n_last)), np.ascontiguousarray(q), np.ascontiguousarray(e),
        ROUNDING_CODES[rounding])
    return out.reshape(x.shape) if x.ndim else out.reshape(())[()]


EFFECTIVE_SCALES = ("float32", "float64")


def check_effective_scale(effective_scale):
    if not isinstance(effective_scale, str) or effective_scale not in EFFECTIVE_SCALES:
        raise ValueError("effective_scale: expected 'float32' or 'float64', got %r" % (effective_scale,))
    return effective_scale


def tflite_params(x_scale, w_scales, per_channel, y_scale, n, bias=None, int_bias=None,
                  rounding="double", effective_scale="float32"):
    """(multiplier[n], shift[n], int32 bias[n] or None) of a TFLite fully connected layer.

    Raises ValueError when the effective scale s_in*s_w/s_out needs a shift above 30 (a
    multiplier >= 2^30, which TFLite's double rounding cannot apply)."""
    mult, shift = reference.tflite_multipliers(x_scale, w_scales, y_scale, per_channel, rounding,
                                               effective_scale)
    if shift.size and shift.max() > 30:
        raise ValueError("scale: the effective scale s_in * s_w / s_out is %.6g, too large for a "
                         "fixed-point multiplier (shift %d > 30)"
                         % (np.float64(x_scale) * np.max(w_scales) / np.float64(y_scale), shift.max()))
    mult = np.broadcast_to(mult, (n,)).astype(np.int32)
    shift = np.broadcast_to(shift, (n,)).astype(np.int32)
    if int_bias is None and bias is not None:
        int_bias = np.broadcast_to(reference.tflite_bias(bias, x_scale, w_scales), (n,))
    if int_bias is not None:
        int_bias = np.asarray(int_bias).astype(np.int32)
    return mult, shift, int_bias
