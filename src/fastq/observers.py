"""numpy twins of torch 2.13's observers (torch/ao/quantization/observer.py), bit for bit.

    obs = HistogramObserver(reduce_range=True)        # = torch HistogramObserver.with_args(...)()
    for batch in batches: obs(batch)                   # records, as forward() does
    scale, zero_point = obs.calculate_qparams()        # float (a float32 value), int

MinMaxObserver and HistogramObserver are per tensor: calculate_qparams gives (float, int).
PerChannelMinMaxObserver gives (float32 [C] scales, int64 [C] zero points).

Every step is done in the precision torch does it in (docs/ARITHMETIC.md, "Calibration"):
float32 tensors stay float32 here, Python scalars mixed into float32 tensor arithmetic are
rounded to float32 first (torch's wrapped-number rule), Python-level arithmetic stays double,
cumsum accumulates in double, sum in float32 in torch's cascade order, and linspace is
computed with fused multiply-adds where torch's CPU build contracts them.
"""
from __future__ import annotations

import bisect
import math
import os
import platform
import sys

import numpy as np

from .reference import fmaf

f32 = np.float32
EPS = float(np.finfo(np.float32).eps)          # torch.finfo(torch.float32).eps = 2^-23

_DTYPES = {"uint8": (0, 255), "int8": (-128, 127)}
_PER_TENSOR = ("per_tensor_affine", "per_tensor_symmetric")
_PER_CHANNEL = ("per_channel_affine", "per_channel_symmetric")


# --------------------------------------------------------------------------- CPU build facts
def _cpu_build():
    """(vector width in floats, whether linspace's multiply-adds are fused) of the torch CPU
    kernels this machine runs: torch picks its AVX512 / AVX2 / DEFAULT build at run time."""
    torch = sys.modules.get("torch")
    cap = None
    if torch is not None:
        try:
            cap = torch.backends.cpu.get_cpu_capability()
        except Exception:  # pragma: no cover - an unusual torch build
            cap = None
    if cap is None:
        cap = os.environ.get("ATEN_CPU_CAPABILITY", "").upper() or _detect_capability()
    cap = cap.upper()
    # The sum kernel runs 8-float vectors under every x86 build (measured: its AVX512 build
    # also sums in 8 lanes); only the DEFAULT build leaves linspace's multiply-adds unfused.
    if cap.startswith("AVX512") or cap.startswith("AVX2"):
        return 8, True
    if cap in ("DEFAULT", "NO AVX"):
        return 8, False
    return 8, True                      # aarch64 (NEON / SVE): assumed like AVX2, unmeasured


def _detect_capability():
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64", "i686", "x86"):
        return "NEON"
    try:
        with open("/proc/cpuinfo") as f:
            flags = set()
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:  # pragma: no cover
        return "AVX2"
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return "AVX512"
    if {"avx2", "fma"} <= flags:
        return "AVX2"
    return "DEFAULT"


_BUILD = None


def cpu_build():
    global _BUILD
    if _BUILD is None:
        _BUILD = _cpu_build()
    return _BUILD


# --------------------------------------------------------------------------- torch primitives
def linspace(start, end, steps):
    """torch.linspace(start, end, steps) in float32 (RangeFactoriesKernel.cpp): the first half
    is start + step*i, the second end - step*(steps-1-i), each one fused multiply-add."""
    s, e = f32(start), f32(end)
    if steps == 1:
        return np.array([s], dtype=f32)
    step = f32(f32(e - s) / f32(steps - 1))
    i = np.arange(steps)
    half = steps // 2
    lo, hi = i[:half].astype(f32), (steps - 1 - i[half:]).astype(f32)
    if cpu_build()[1]:
        a = fmaf(np.full(half, step, f32), lo, np.full(half, s, f32))
        b = fmaf(np.full(steps - half, -step, f32), hi, np.full(steps - half, e, f32))
    else:
        a = (s + (step * lo).astype(f32)).astype(f32)
        b = (e - (step * hi).astype(f32)).astype(f32)
    return np.concatenate([a, b]).astype(f32)


def cascade_sum(x):
    """torch.sum of a contiguous 1-D float32 tensor (SumKernel.cpp cascade_sum): float32
    accumulation, vectors of V lanes, 4 interleaved accumulators, 16-row levels."""
    x = np.ascontiguousarray(x, dtype=f32).reshape(-1)
    V = cpu_build()[0]
    n = x.shape[0]
    if n < V:                                  # not vectorized: 4 interleaved scalars
        return _row_sum_scalar(x)
    nvec = n // V
    rows = x[: nvec * V].reshape(nvec, V)
    size_ilp = nvec // 4
    lanes = rows[: size_ilp * 4].reshape(size_ilp, 4, V)
    level_power = max(4, _ceil_log2(size_ilp) // 4) if size_ilp > 0 else 4
    step = 1 << level_power
    mask0 = step - 1
    acc = [np.zeros((4, V), f32) for _ in range(4)]
    i = 0
    while i + step <= size_ilp:
        for _ in range(step):
            acc[0] = (acc[0] + lanes[i]).astype(f32)
            i += 1
        for j in range(1, 4):
            acc[j] = (acc[j] + acc[j - 1]).astype(f32)
            acc[j - 1] = np.zeros((4, V), f32)
            if i & (mask0 << (j * level_power)):
                break
    while i < size_ilp:
        acc[0] = (acc[0] + lanes[i]).astype(f32)
        i += 1
    for j in range(1, 4):
        acc[0] = (acc[0] + acc[j]).astype(f32)
    partial = acc[0]                           # [4, V]: the 4 interleaved row sums
    p0 = partial[0].copy()
    for k in range(size_ilp * 4, nvec):        # vectors left over after the 4-way split
        p0 = (p0 + rows[k]).astype(f32)
    for k in range(1, 4):
        p0 = (p0 + partial[k]).astype(f32)
    total = f32(0)
    for k in range(nvec * V, n):               # scalar tail first, then the lanes
        total = f32(total + x[k])
    for k in range(V):
        total = f32(total + p0[k])
    return total


def _row_sum_scalar(x):
    """row_sum<float> of scalar_inner_sum, for rows shorter than a vector."""
    n = x.shape[0]
    size_ilp = n // 4
    part = [f32(0)] * 4
    for i in range(size_ilp):                  # (fewer than 4 rows: no level cascade)
        for k in range(4):
            part[k] = f32(part[k] + x[4 * i + k])
    for i in range(size_ilp * 4, n):
        part[0] = f32(part[0] + x[i])
    for k in range(1, 4):
        part[0] = f32(part[0] + part[k])
    return part[0]


def _ceil_log2(n):
    return 0 if n <= 1 else int(n - 1).bit_length()


def histc(x, bins, lo, hi):
    """torch.histc(x, bins, min=lo, max=hi) for float32 x (Histogram.cpp, LINEAR_INTERPOLATION):
    bin = trunc(f32(f32(f32(x - left) * bins) / f32(right - left))), the last bin closed."""
    x = np.asarray(x, dtype=f32).reshape(-1)
    lo, hi = float(lo), float(hi)
    if lo == hi and x.size:
        lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        lo -= 1.0
        hi += 1.0
    if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
        raise ValueError("histc: the range [%r, %r] is not finite and increasing" % (lo, hi))
    left, right = f32(lo), f32(hi)            # linspace's first and last edges, exactly
    if not left < right:
        raise ValueError("histc: the range [%r, %r] collapses in float32 (values too large "
                         "for %d bins)" % (lo, hi, bins))
    inside = x[(x >= left) & (x <= right)]
    with np.errstate(over="ignore"):
        t = ((inside - left).astype(f32) * f32(bins)).astype(f32)
        t = (t / f32(right - left)).astype(f32)
    pos = t.astype(np.int64)
    pos[pos == bins] = bins - 1
    return np.bincount(pos, minlength=bins).astype(f32)


def _floor_divide(a, b):
    """torch.div(a, b, rounding_mode="floor") for float32 a, scalar b (c10 div_floor_floating)."""
    b = f32(b)
    a = np.asarray(a, dtype=f32)
    if b == 0:
        with np.errstate(divide="ignore", invalid="ignore"):
            return (a / b).astype(f32)
    mod = np.fmod(a, b).astype(f32)
    div = ((a - mod).astype(f32) / b).astype(f32)
    div = np.where((mod != 0) & ((b < 0) != (mod < 0)), (div - f32(1)).astype(f32), div)
    fl = np.floor(div).astype(f32)
    fl = np.where((div - fl).astype(f32) > f32(0.5), (fl + f32(1)).astype(f32), fl)
    zero = np.copysign(f32(0), (a / b).astype(f32)).astype(f32)
    return np.where(div == 0, zero, fl).astype(f32)


# --------------------------------------------------------------------------- qparams
def qmin_qmax(dtype, reduce_range, quant_min=None, quant_max=None):
    """torch.ao.quantization.utils.calculate_qmin_qmax for uint8 / int8: (qmin, qmax, customized)."""
    lo, hi = _DTYPES[dtype]
    customized = quant_min is not None and quant_max is not None
    if customized:
        for name, v in (("quant_min", quant_min), ("quant_max", quant_max)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError("%s: expected an int, got %r" % (name, v))
        quant_min, quant_max = int(quant_min), int(quant_max)
        if not quant_min <= 0 <= quant_max:
            raise ValueError("quant_min, quant_max: the range [%d, %d] must include 0"
                             % (quant_min, quant_max))
        if quant_min >= quant_max:
            raise ValueError("quant_min: %d must be less than quant_max %d" % (quant_min, quant_max))
        if quant_min < lo or quant_max > hi:
            raise ValueError("quant_min, quant_max: [%d, %d] does not fit %s [%d, %d]"
                             % (quant_min, quant_max, dtype, lo, hi))
        if reduce_range:
            quant_min, quant_max = quant_min // 2, quant_max // 2
        return quant_min, quant_max, True
    if reduce_range:
        return (0, 127, False) if dtype == "uint8" else (-64, 63, False)
    return lo, hi, False


def calculate_qparams(min_val, max_val, qmin, qmax, symmetric, dtype, customized=False, eps=EPS):
    """torch UniformQuantizationObserverBase._calculate_qparams, float32 throughout, for
    per-tensor (0-d) or per-channel (1-d) min / max: (float32 scales, int64 zero points)."""
    mn = np.asarray(min_val, dtype=f32)
    mx = np.asarray(max_val, dtype=f32)
    if np.any(mn > mx):
        raise ValueError("min_val: greater than max_val")
    zero = f32(0)
    mn_neg = np.minimum(mn, zero).astype(f32)
    mx_pos = np.maximum(mx, zero).astype(f32)
    eps = f32(eps)
    if symmetric:
        mx_pos = np.maximum(-mn_neg, mx_pos).astype(f32)
        scale = (mx_pos / f32(float(qmax - qmin) / 2)).astype(f32)
        scale = np.maximum(scale, eps).astype(f32)
        if dtype == "uint8":
            zp = (qmin + qmax) // 2 if customized else 128
        else:
            zp = 0
        zero_point = np.full(scale.shape, zp, dtype=np.int64)
    else:
        scale = ((mx_pos - mn_neg).astype(f32) / f32(qmax - qmin)).astype(f32)
        scale = np.maximum(scale, eps).astype(f32)
        r = np.rint((mn_neg / scale).astype(f32)).astype(np.int32).astype(np.int64)
        zero_point = np.clip(qmin - r, qmin, qmax).astype(np.int64)
    return scale, zero_point


# --------------------------------------------------------------------------- observers
class _Observer:
    """What the uniform observers share: dtype, qscheme, quantization range, eps."""

    schemes = _PER_TENSOR

    def __init__(self, dtype="uint8", qscheme="per_tensor_affine", reduce_range=False,
                 quant_min=None, quant_max=None, eps=EPS):
        dtype = _dtype_name(dtype)
        if qscheme not in self.schemes:
            raise ValueError("qscheme: %s takes %s, got %r"
                             % (type(self).__name__, " or ".join(self.schemes), qscheme))
        if not isinstance(reduce_range, (bool, np.bool_)):
            raise TypeError("reduce_range: expected a bool, got %r" % (reduce_range,))
        if qscheme.endswith("symmetric") and reduce_range and dtype == "uint8":
            raise ValueError("reduce_range: symmetric uint8 quantization cannot reduce its range "
                             "(torch refuses it too)")
        if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)) \
                or not math.isfinite(eps) or eps <= 0:
            raise ValueError("eps: expected a positive finite float, got %r" % (eps,))
        self.dtype = dtype
        self.qscheme = qscheme
        self.reduce_range = bool(reduce_range)
        self.symmetric = qscheme.endswith("symmetric")
        self.quant_min, self.quant_max, self.customized = qmin_qmax(dtype, reduce_range,
                                                                    quant_min, quant_max)
        self.eps = float(f32(eps))

    def _qparams(self, min_val, max_val):
        return calculate_qparams(min_val, max_val, self.quant_min, self.quant_max,
                                 self.symmetric, self.dtype, self.customized, self.eps)

    def __repr__(self):
        return "%s(dtype=%s, qscheme=%s, reduce_range=%s, quant_min=%d, quant_max=%d)" % (
            type(self).__name__, self.dtype, self.qscheme, self.reduce_range,
            self.quant_min, self.quant_max)


def _dtype_name(dtype):
    names = {"uint8": "uint8", "quint8": "uint8", "int8": "int8", "qint8": "int8"}
    key = dtype if isinstance(dtype, str) else getattr(dtype, "name", None) or str(dtype)
    key = str(key).replace("torch.", "")
    if key not in names:
        raise ValueError("dtype: expected 'uint8' (quint8) or 'int8' (qint8), got %r" % (dtype,))
    return names[key]


def _observed(x, name="x"):
    x = np.asarray(x)
    if x.dtype.kind not in "fiu" or x.dtype == np.bool_:
        raise TypeError("%s: expected a float array, got dtype %s" % (name, x.dtype))
    x = np.asarray(x, dtype=f32)
    if np.isnan(x).any():
        raise ValueError("%s: contains NaN; an observer cannot record it" % name)
    return x


class MinMaxObserver(_Observer):
    """= torch MinMaxObserver: running min and max; qparams from them."""

    def __init__(self, dtype="uint8", qscheme="per_tensor_affine", reduce_range=False,
                 quant_min=None, quant_max=None, eps=EPS):
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, eps)
        self.min_val = f32(np.inf)
        self.max_val = f32(-np.inf)

    def __call__(self, x):
        x = _observed(x)
        if x.size == 0:
            return x
        if np.isinf(x).any():
            raise ValueError("x: contains inf; MinMaxObserver would make an infinite scale")
        self.min_val = f32(min(x.min(), self.min_val))
        self.max_val = f32(max(x.max(), self.max_val))
        return x

    forward = __call__

    def calculate_qparams(self):
        if self.min_val == np.inf and self.max_val == -np.inf:
            return 1.0, 0                                   # torch: "must run observer first"
        scale, zp = self._qparams(self.min_val, self.max_val)
        return float(scale), int(zp)


class PerChannelMinMaxObserver(_Observer):
    """= torch PerChannelMinMaxObserver: running min and max per slice along ch_axis."""

    schemes = _PER_CHANNEL

    def __init__(self, ch_axis=0, dtype="uint8", qscheme="per_channel_affine", reduce_range=False,
                 quant_min=None, quant_max=None, eps=EPS):
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, eps)
        if isinstance(ch_axis, bool) or not isinstance(ch_axis, (int, np.integer)):
            raise TypeError("ch_axis: expected an int, got %r" % (ch_axis,))
        self.ch_axis = int(ch_axis)
        self.min_val = np.zeros(0, f32)
        self.max_val = np.zeros(0, f32)

    def __call__(self, x):
        x = _observed(x)
        if x.size == 0:
            return x
        if not -x.ndim <= self.ch_axis < x.ndim:
            raise ValueError("x: ch_axis %d is out of range for shape %s" % (self.ch_axis, x.shape))
        if np.isinf(x).any():
            raise ValueError("x: contains inf; PerChannelMinMaxObserver would make an infinite scale")
        y = np.moveaxis(x, self.ch_axis, 0).reshape(x.shape[self.ch_axis], -1)
        mn, mx = y.min(axis=1), y.max(axis=1)
        if self.min_val.size:
            if self.min_val.shape != mn.shape:
                raise ValueError("x: %d channels, the observer has seen %d"
                                 % (mn.shape[0], self.min_val.shape[0]))
            mn, mx = np.minimum(mn, self.min_val), np.maximum(mx, self.max_val)
        self.min_val, self.max_val = mn.astype(f32), mx.astype(f32)
        return x

    forward = __call__

    def calculate_qparams(self):
        if self.min_val.size == 0:
            return np.ones(1, f32), np.zeros(1, np.int64)
        return self._qparams(self.min_val, self.max_val)


class HistogramObserver(_Observer):
    """= torch HistogramObserver: a running histogram of `bins` bins whose range grows with the
    data; qparams from the range that minimises the L2 quantization error."""

    def __init__(self, bins=2048, dtype="uint8", qscheme="per_tensor_affine", reduce_range=False,
                 quant_min=None, quant_max=None, eps=EPS, upsample_rate=16):
        super().__init__(dtype, qscheme, reduce_range, quant_min, quant_max, eps)
        for name, v in (("bins", bins), ("upsample_rate", upsample_rate)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError("%s: expected a positive int, got %r" % (name, v))
        if bins > 32768:
            raise ValueError("bins: at most 32768 (torch sums longer histograms in parallel "
                             "chunks whose order fastq does not reproduce), got %d" % bins)
        self.bins = int(bins)
        self.upsample_rate = int(upsample_rate)
        self.dst_nbins = 256                        # 2 ** torch.iinfo(dtype).bits
        self.histogram = np.zeros(self.bins, f32)
        self.min_val = f32(np.inf)
        self.max_val = f32(-np.inf)

    # ------------------------------------------------------------ recording
    def __call__(self, x):
        x = _observed(x)
        if x.size == 0:
            return x
        x_min, x_max = f32(x.min()), f32(x.max())
        if np.isinf(x_min) or np.isinf(x_max):     # torch ignores infinite values (it warns)
            x = x[np.abs(x) != np.inf]
            if x.size == 0:
                return x
            x_min, x_max = f32(x.min()), f32(x.max())
        if self.min_val == np.inf or self.max_val == -np.inf:
            self.min_val, self.max_val = x_min, x_max
            self.histogram = histc(x, self.bins, x_min, x_max)
            return x
        cur_min, cur_max = self.min_val, self.max_val
        new_min, new_max = min(cur_min, x_min), max(cur_max, x_max)
        update = histc(x, self.bins, new_min, new_max)
        if new_min == cur_min and new_max == cur_max:
            self.histogram = (self.histogram + update).astype(f32)
        else:
            self.histogram = self._combine(self.histogram, cur_min, cur_max, update,
                                           new_min, new_max)
            self.min_val, self.max_val = f32(new_min), f32(new_max)
        return x

    forward = __call__

    def _combine(self, orig_hist, orig_min, orig_max, update_hist, update_min, update_max):
        if orig_min == orig_max:                    # one value: all its mass lands in one bin
            mass = cascade_sum(orig_hist)
            moved = (histc(np.array([orig_min], f32), self.bins, update_min, update_max)
                     * mass).astype(f32)
            return (moved + update_hist).astype(f32)
        return (update_hist + self._upscale(orig_hist, orig_min, orig_max,
                                            update_min, update_max)).astype(f32)

    def _upscale(self, hist, orig_min, orig_max, update_min, update_max):
        """Spreads each old bin over `upsample_rate` sub-bins and drops their mid-points into
        the new bins (torch _upscale_histogram)."""
        rate = self.upsample_rate
        n = self.bins * rate
        weights = (np.repeat(hist, rate) / f32(rate)).astype(f32)
        bin_size = f32(f32(f32(orig_max) - f32(orig_min)) / f32(n))
        mids = (linspace(orig_min, orig_max, n + 1)[:-1] + f32(f32(0.5) * bin_size)).astype(f32)
        edges = linspace(update_min, update_max, self.bins + 1)
        bucket = np.searchsorted(edges, mids, side="right") - 1
        bucket = np.clip(bucket, 0, self.bins - 1)
        out = np.zeros(self.bins, f32)
        np.add.at(out, bucket, weights)             # torch.bincount: in order, float32
        return out

    # ------------------------------------------------------------ the search
    def _quantization_error(self, start, end):
        bins, dst = self.bins, self.dst_nbins
        bin_width = (float(self.max_val) - float(self.min_val)) / bins       # Python double
        dst_bin_width = bin_width * (end - start + 1) / dst
        if dst_bin_width == 0.0:
            return 0.0
        bw, dbw, half = f32(bin_width), f32(dst_bin_width), f32(dst_bin_width / 2)
        three = f32(3)
        begin = (np.arange(bins, dtype=np.int64) - start).astype(f32) * bw
        begin = begin.astype(f32)
        end_ = (begin + bw).astype(f32)
        dst_begin = np.clip(_floor_divide(begin, dbw), f32(0), f32(dst - 1)).astype(f32)
        dst_begin_center = ((dst_begin + f32(0.5)).astype(f32) * dbw).astype(f32)
        dst_end = np.clip(_floor_divide(end_, dbw), f32(0), f32(dst - 1)).astype(f32)
        density = (self.histogram / bw).astype(f32)

        def l2(d_begin, d_end):
            cube_e = ((d_end * d_end).astype(f32) * d_end).astype(f32)
            cube_b = ((d_begin * d_begin).astype(f32) * d_begin).astype(f32)
            return ((cube_e - cube_b).astype(f32) / three).astype(f32)

        norm = (density * l2((begin - dst_begin_center).astype(f32), half)).astype(f32)
        inner = (density * l2(-half, half)).astype(f32)
        count = ((dst_end - dst_begin).astype(f32) - f32(1)).astype(f32)
        norm = (norm + (count * inner).astype(f32)).astype(f32)
        dst_end_center = ((dst_end * dbw).astype(f32) + half).astype(f32)
        last = (density * l2(-half, (end_ - dst_end_center).astype(f32))).astype(f32)
        norm = (norm + last).astype(f32)
        return float(cascade_sum(norm))

    def _non_linear_param_search(self):
        bins = self.bins
        bin_width = f32(f32(self.max_val - self.min_val) / f32(bins))
        total = float(cascade_sum(self.histogram))
        csum = np.cumsum(self.histogram.astype(np.float64)).astype(f32).astype(np.float64).tolist()
        stepsize = 1e-5
        alpha, beta = 0.0, 1.0
        start_bin, end_bin = 0, bins - 1
        norm_min = float("inf")
        while alpha < beta:
            next_alpha = alpha + stepsize
            next_beta = beta - stepsize
            # torch compares a float32 cumsum element with a Python float: in float32
            lo_thr = float(f32(next_alpha * total))
            hi_thr = float(f32(next_beta * total))
            l = bisect.bisect_left(csum, lo_thr, start_bin, end_bin)
            r = max(bisect.bisect_right(csum, hi_thr, start_bin, end_bin + 1) - 1, start_bin)
            next_start, next_end = start_bin, end_bin
            if (l - start_bin) > (end_bin - r):
                next_start = l
                alpha = next_alpha
            else:
                next_end = r
                beta = next_beta
            if next_start == start_bin and next_end == end_bin:
                continue
            norm = self._quantization_error(next_start, next_end)
            if norm > norm_min:
                break
            norm_min = norm
            start_bin, end_bin = next_start, next_end
        new_min = f32(self.min_val + f32(bin_width * f32(start_bin)))
        new_max = f32(self.min_val + f32(bin_width * f32(end_bin + 1)))
        return new_min, new_max

    def calculate_qparams(self):
        if self.min_val == np.inf and self.max_val == -np.inf:
            return 1.0, 0                                   # torch: "must run observer first"
        new_min, new_max = self._non_linear_param_search()
        scale, zp = self._qparams(new_min, new_max)
        return float(scale), int(zp)
