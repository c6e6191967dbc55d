"""qgemm: the bare integer core, int32 [M, N] = sum_k (a - za)(w - zw), and the int32
overflow bound every layer checks before it calls a kernel (docs/ARITHMETIC.md §4)."""
from __future__ import annotations

import numpy as np

from . import _kernels
from ._checks import as_array, check_zero_point, check_zero_points

_INT32_MAX = 2**31 - 1


def acc_bound_ok(packed, a, a_zero_point):
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


def check_no_overflow(packed, a, a_zero_point, name):
    if not acc_bound_ok(packed, a, a_zero_point):
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
    a = _as_2d_u8(a, "a")
    if a.ndim != 2:
        raise ValueError("a: expected a 2-D array [M, K], got %d dimensions" % a.ndim)
    w = as_array(w, "w")
    if w.dtype != np.int8:
        raise TypeError("w: expected int8 values, got dtype %s" % w.dtype)
    if w.ndim != 2:
        raise ValueError("w: expected a 2-D array [N, K], got %d dimensions" % w.ndim)
    if a.shape[1] != w.shape[1]:
        raise ValueError("w: K mismatch: a has K = %d, w has K = %d" % (a.shape[1], w.shape[1]))
    # plain ints in range skip the general checks (this path is timed at 1x64x64)
    if type(a_zero_point) is int and 0 <= a_zero_point <= 255:
        za = a_zero_point
    else:
        za = check_zero_point(a_zero_point, 0, 255, "a_zero_point")
    if type(w_zero_point) is int and -128 <= w_zero_point <= 127:
        zw = np.full(1, w_zero_point, np.int32)
    elif np.ndim(w_zero_point) == 0:                  # a scalar, or a 0-d array of one
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
    check_no_overflow(packed, a, za, "a")
    ep = _kernels.Epilogue(packed, _kernels.EPI_INT32, packed.col_offsets(za))
    return _kernels.gemm(packed, ep, a)
