"""Input validation shared by the public API: clear TypeError / ValueError naming the argument."""
from __future__ import annotations

import math
import numbers

import numpy as np


def as_array(x, name):
    """numpy array from an ndarray, a CPU torch tensor or a nested sequence (torch not imported)."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach") and hasattr(x, "numpy"):      # a torch.Tensor
        if getattr(x, "is_quantized", False):
            raise TypeError("%s: a quantized torch tensor; pass fastq.QTensor.from_torch(t)" % name)
        if getattr(x, "device", None) is not None and str(x.device) != "cpu":
            raise TypeError("%s: expected a CPU tensor, got one on %s" % (name, x.device))
        return x.detach().numpy()
    try:
        return np.asarray(x)
    except Exception as e:  # pragma: no cover - numpy's own message is clearer
        raise TypeError("%s: cannot convert %r to an array" % (name, type(x).__name__)) from e


def check_bool(value, name):
    """A bool (or numpy bool): "no", 0 or None are refused, not read as truth values."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError("%s: expected True or False, got %r" % (name, value))
    return bool(value)


def check_int(value, name, lo, hi, what=""):
    """An int (Python or numpy integer, not bool) in [lo, hi]."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iu":
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError("%s: expected an int in [%d, %d]%s, got %r" % (name, lo, hi, what, value))
    v = int(value)
    if not lo <= v <= hi:
        raise ValueError("%s: expected an int in [%d, %d]%s, got %d" % (name, lo, hi, what, v))
    return v


def check_index(value, name, hi):
    """An int (not bool) in [0, hi): an output row, column or node index."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError("%s: expected an int, got %r" % (name, type(value).__name__))
    if not 0 <= value < hi:
        raise ValueError("%s: %d is outside [0, %d)" % (name, value, hi))
    return int(value)


def check_scale(scale, name="scale"):
    """A positive finite float."""
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, (numbers.Real, np.floating, np.integer)):
        raise TypeError("%s: expected a positive float, got %s %.60r" % (name, type(scale).__name__, scale))
    s = float(scale)
    if not (s > 0.0 and math.isfinite(s)):
        raise ValueError("%s: expected a positive finite float, got %r" % (name, s))
    with np.errstate(over="ignore"):
        s32 = np.float32(s)
    if not (s32 > 0 and np.isfinite(s32)):
        raise ValueError("%s: %r does not fit a positive float32" % (name, s))
    return s


def check_scales(scales, n, name="scales"):
    """A 1-D array of n positive finite floats (float64)."""
    arr = as_array(scales, name)
    if arr.dtype.kind not in "fiu":
        raise TypeError("%s: expected float values, got dtype %s" % (name, arr.dtype))
    arr = np.asarray(arr, dtype=np.float64).reshape(-1)
    if arr.shape[0] != n:
        raise ValueError("%s: expected %d values, got %d" % (name, n, arr.shape[0]))
    with np.errstate(over="ignore"):
        f = arr.astype(np.float32)
    ok = (arr > 0) & np.isfinite(arr) & (f > 0) & np.isfinite(f)
    if not np.all(ok):
        raise ValueError("%s: every scale must be a positive finite float32, got %r at index %d"
                         % (name, float(arr[~ok][0]), int(np.argmin(ok))))
    return read_only(arr.copy())


def read_only(arr):
    """arr with writes refused (arr itself when it is the caller's own fresh array)."""
    arr.flags.writeable = False
    return arr


def check_zero_point(zp, lo, hi, name="zero_point"):
    """An integer in [lo, hi] (a Python / numpy integer, an integral float, or a 0-d array of one)."""
    if isinstance(zp, np.ndarray) and zp.ndim == 0:
        zp = zp[()]
    if isinstance(zp, (bool, np.bool_)):
        raise TypeError("%s: expected an int in [%d, %d], got %r" % (name, lo, hi, zp))
    if isinstance(zp, (float, np.floating)):
        if not float(zp).is_integer():
            raise ValueError("%s: expected an integer, got %r" % (name, zp))
        zp = int(zp)
    if not isinstance(zp, (numbers.Integral, np.integer)):
        raise TypeError("%s: expected an int in [%d, %d], got %r" % (name, lo, hi, zp))
    zp = int(zp)
    if not lo <= zp <= hi:
        raise ValueError("%s: %d is outside [%d, %d]" % (name, zp, lo, hi))
    return zp


def check_zero_points(zps, n, lo, hi, name="zero_points"):
    """n integers in [lo, hi] as int32."""
    arr = as_array(zps, name)
    if arr.dtype.kind not in "iuf":
        raise TypeError("%s: expected integers, got dtype %s" % (name, arr.dtype))
    arr = arr.reshape(-1)
    if arr.dtype.kind == "f" and not np.all(np.mod(arr, 1) == 0):
        raise ValueError("%s: expected integers, got %r" % (name, float(arr[np.mod(arr, 1) != 0][0])))
    if arr.shape[0] != n:
        raise ValueError("%s: expected %d values, got %d" % (name, n, arr.shape[0]))
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise ValueError("%s: values must lie in [%d, %d], got range [%d, %d]"
                         % (name, lo, hi, arr.min(), arr.max()))
    return read_only(arr.astype(np.int32))


def qrange(dtype, name="dtype"):
    """(qmin, qmax) of uint8 / int8."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError("%s: expected 'uint8' or 'int8', got %r" % (name, dtype)) from None
    if dt == np.uint8:
        return 0, 255
    if dt == np.int8:
        return -128, 127
    raise TypeError("%s: expected 'uint8' or 'int8', got %s" % (name, dt))
