"""Price tags: a handful of real numbers on a few integer levels, no network. The observers
are fastq.observers' twins of torch's (MinMaxObserver, HistogramObserver, with quant_min /
quant_max for fewer bits), plus the classic walk-through's tight fit."""
from __future__ import annotations

import numpy as np

from .. import reference as R
from ..observers import HistogramObserver, MinMaxObserver

f32 = np.float32

OBSERVERS = ("minmax", "histogram", "tight")


def observe(values, qmin, qmax, symmetric=False, observer="minmax", dtype="uint8", customized=None):
    """(scale, zero_point) an observer picks for `values` on the integer range [qmin, qmax].

    "minmax" / "histogram": torch's MinMaxObserver / HistogramObserver (fastq.observers, bit
    for bit), per tensor, affine or symmetric; the range [qmin, qmax] is passed to them as
    quant_min / quant_max when customized (default: when it is not the dtype's whole range;
    torch then picks the symmetric uint8 zero point (qmin + qmax) // 2 instead of 128).
    "tight": the classic walk-through's bounded fit: min -> qmin, max -> qmax with no widening
    to 0 (zero may then fall between two levels): scale = (max - min) / (qmax - qmin) in
    float32 (at least 2^-23), zero_point = rne(qmin - min / scale)."""
    v = np.asarray(values, dtype=np.float32).reshape(-1)
    if v.size == 0:
        raise ValueError("values: expected at least one value, got none")
    bad = np.flatnonzero(~np.isfinite(v))
    if bad.size:
        raise ValueError("values: every value must be finite; value %d of %d is %r"
                         % (bad[0], v.size, float(v[bad[0]])))
    if observer not in OBSERVERS:
        raise ValueError("observer: expected one of %s, got %r" % (", ".join(OBSERVERS), observer))
    dtype = np.dtype(dtype).name
    full = R._qrange(dtype)
    if not (full[0] <= qmin < qmax <= full[1]):
        raise ValueError("qmin, qmax: [%d, %d] must be a range inside %s's [%d, %d]"
                         % (qmin, qmax, dtype, full[0], full[1]))
    if observer == "tight":
        mn, mx = f32(v.min()), f32(v.max())
        scale = max(f32(f32(mx - mn) / f32(qmax - qmin)), f32(2.0**-23))
        zp = int(np.rint(np.float64(f32(f32(qmin) - f32(mn / scale)))))
        return float(scale), zp
    if customized is None:
        customized = (qmin, qmax) != full
    kw = dict(dtype=dtype, qscheme="per_tensor_symmetric" if symmetric else "per_tensor_affine")
    if customized:
        kw.update(quant_min=qmin, quant_max=qmax)
    obs = MinMaxObserver(**kw) if observer == "minmax" else HistogramObserver(**kw)
    obs(v)
    return obs.calculate_qparams()


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
        self.scale, self.zero_point = observe(self.values, qmin, qmax, symmetric, observer, dt,
                                              customized=qrange is not None or bits < 8)
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
        obs = ("%s (torch %s%s)" % (self.observer, {"minmax": "MinMaxObserver", "histogram": "HistogramObserver"}
                                      [self.observer], ", symmetric" if self.symmetric else "")
               if self.observer != "tight" else "tight fit (min -> qmin, max -> qmax, zero not kept)")
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
