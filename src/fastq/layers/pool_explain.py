"""The explain trace of one pooling / mean output element: its window (the input coordinates and
values it reads), the integer sum, then the rounding step by step in the arithmetic of the path
torch used (reference.avg_pool / adaptive_avg_pool / mean_hw / max_pool). Built from the layer's
settings and fastq.reference, never from the kernels (the kernel's value goes to trace.checks)."""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from .. import reference as R
from ..runtime import get_backend
from ._trace import Step, Trace, _f32_step, _fr, _g
from .linear.explain import _check_index

f32 = np.float32


class PoolTrace(Trace):
    """Trace of a pooling element: index (n, c, *pos), taps [(h, w)], values (the inputs read),
    acc (sum of x - z_x; max pooling: the maximum), size / divisor, steps, output, checks."""

    def __repr__(self):
        return "<fastq.explain.PoolTrace %s %s [%d, %d] output=%d>" % (self.op, self.mode, self.row, self.col,
                                                                       self.output)

    def to_dict(self):
        keep = ("op", "mode", "row", "col", "index", "size", "divisor", "acc", "raw", "output", "zero_point",
                "scale", "qmin", "qmax")
        d = {k: (None if getattr(self, k, None) is None else
                 tuple(int(v) for v in getattr(self, k)) if k == "index" else
                 getattr(self, k) if isinstance(getattr(self, k), str) else float(getattr(self, k))
                 if k == "scale" else int(getattr(self, k))) for k in keep}
        d["taps"] = [list(t) for t in self.taps]
        d["values"] = [int(v) for v in self.values]
        d["steps"] = [s.to_dict() for s in self.steps]
        d["checks"] = {k: int(v) for k, v in self.checks.items()}
        return d

    def __str__(self):
        ix = ", ".join(map(str, self.index))
        lines = ["fastq explain: %s, output element [row=%d, col=%d] = y[%s]" % (self.layer, self.row, self.col, ix),
                 "", "1. Input  %s, s = %.9g, z = %d (the output keeps them)" % (self.dtype, self.scale,
                                                                                self.zero_point)]
        k = len(self.values)
        shown = range(k) if k <= 16 else list(range(6)) + [None] + list(range(k - 2, k))
        lines.append("2. The window of channel %d: %d input(s)%s" % (
            self.index[1], k, "" if self.op == "MaxPool" else "; acc = sum of (x - z) = %d" % self.acc))
        for i in shown:
            if i is None:
                lines.append("   ...   (%d more)" % (k - 8))
                continue
            lines.append("   x[%s] = %4d   x - z = %5d" % (", ".join(map(str, self.taps[i])), self.values[i],
                                                           self.values[i] - self.zero_point))
        if self.op != "MaxPool":
            lines.append("   window size %d, divisor %d" % (self.size, self.divisor))
        lines.append("")
        lines.append("3. %s:" % self.header)
        lines += [s.line() for s in self.steps]
        lines.append("")
        lines.append("4. Check: by hand q = %d; fastq.reference q = %d; kernel (backend %s) q = %d -> %s"
                     % (self.output, self.checks["reference"], get_backend(), self.checks["kernel"],
                        "all equal" if self.equal else "MISMATCH"))
        return "\n".join(lines) + "\n"


def _element(out_shape, row, col):
    row = _check_index(row, "row", int(np.prod(out_shape[:-1])))
    col = _check_index(col, "col", out_shape[-1])
    idx = tuple(int(v) for v in np.unravel_index(row * out_shape[-1] + col, out_shape))
    return row, col, idx


def _as4(layer, x, idx):
    """x as [N, C, H, W] and the element's (n, c, oh, ow) (1-D: H = 1)."""
    v = x.values
    if layer.dims == 1:
        return v[:, :, None, :], (idx[0], idx[1], 0, idx[2])
    return v, idx


def _finish(steps, t, zp, qmin, qmax, add_zp, how_round):
    """rne(t) [+ z], clamp: the common end of every rounding chain."""
    r = int(np.rint(np.float64(t)))
    steps.append(Step("round", "r", "rne(t)", _fr(t), r, "int", how_round))
    v = r
    if add_zp:
        v = r + zp
        steps.append(Step("zero_point", "r+z", "%d + %d" % (r, zp), None, v, "int", "zero point added after rounding"))
    q = min(max(v, qmin), qmax)
    steps.append(Step("clamp", "q", "clamp(%d, %d, %d)" % (v, qmin, qmax), None, q, "int", "clamped to the dtype"))
    return q


def _round_chain(path, acc, m_how, m, zp, qmin, qmax, body=True):
    """The rounding of a window mean acc * m on one of torch's paths (steps, q)."""
    steps = [Step("multiplier", "m", m_how, None, m, "f32", "the window's multiplier")]
    a = f32(acc)
    if path in ("qnnpack", "nhwc") and body:
        steps.append(_f32_step("scale", "t", "(float)acc * m", _fr(a) * _fr(m), "one float32 product"))
        return steps, _finish(steps, steps[-1].value, zp, qmin, qmax, True, "round half to even, zero point after")
    if path == "nhwc":          # the channel tail: m inverted twice, the zero point in float
        steps.append(_f32_step("multiplier", "inv", "1 / (1 / m)", Fraction(1) / _fr(f32(f32(1) / m)),
                               "the scalar tail's multiplier f32(1 / f32(1 / m))"))
        m = steps[-1].value
    steps.append(_f32_step("scale", "t", "(float)acc * m", _fr(a) * _fr(m), "float32 product"))
    steps.append(_f32_step("zero_point", "t", "t + z", _fr(steps[-1].value) + zp, "zero point added in float"))
    return steps, _finish(steps, steps[-1].value, zp, qmin, qmax, False, "round half to even")


def _trace(layer, x, row, col, idx, op, mode, taps, values, acc, size, divisor, steps, q, header, ref, raw=None):
    qmin, qmax = R._qrange(x.values.dtype.name)
    t = PoolTrace(op=op, mode=mode, layer=repr(layer), row=row, col=col, index=idx, taps=taps,
                  values=np.asarray(values, np.int64), acc=int(acc), raw=raw, size=size, divisor=divisor,
                  steps=steps, output=int(q), zero_point=int(x.zero_point), scale=float(x.scale),
                  dtype=x.values.dtype.name, qmin=qmin, qmax=qmax, header=header, kind="pool",
                  _pre_round=None)
    ref = np.asarray(ref)
    t.checks = {"reference": int(ref[idx]), "kernel": int(layer(x).values.reshape(ref.shape)[idx])}
    return t


def _window(x4, n, c, hs, he, ws, we):
    taps, values = [], []
    for h in range(max(hs, 0), min(he, x4.shape[2])):
        for w in range(max(ws, 0), min(we, x4.shape[3])):
            taps.append((h, w))
            values.append(int(x4[n, c, h, w]))
    return taps, values


def explain_max_pool(layer, x, row=0, col=0):
    out = layer.reference(x).values
    row, col, idx = _element(out.shape, row, col)
    x4, (n, c, oh, ow) = _as4(layer, x, idx)
    k, s, p, d = [((e,) + tuple(v)) if layer.dims == 1 else tuple(v) for e, v in
                  ((1, layer.kernel_size), (1, layer.stride), (0, layer.padding), (1, layer.dilation))]
    taps, values = [], []
    for i in range(k[0]):
        for j in range(k[1]):
            h, w = oh * s[0] - p[0] + i * d[0], ow * s[1] - p[1] + j * d[1]
            if 0 <= h < x4.shape[2] and 0 <= w < x4.shape[3]:
                taps.append((h, w))
                values.append(int(x4[n, c, h, w]))
    q = max(values)
    steps = [Step("output", "q", "max of the window", None, q, "int", "padding never wins")]
    return _trace(layer, x, row, col, idx, "MaxPool", "max", taps, values, q, len(values), 1, steps, q,
                  "The largest input of the window", out)


def explain_avg_pool(layer, x, row=0, col=0):
    out = layer.reference(x).values
    row, col, idx = _element(out.shape, row, col)
    x4, (n, c, oh, ow) = _as4(layer, x, idx)
    k, s, p = [((e,) + tuple(v)) if layer.dims == 1 else tuple(v) for e, v in
               ((1, layer.kernel_size), (1, layer.stride), (0, layer.padding))]
    H, W = x4.shape[2:]
    hs, ws = oh * s[0] - p[0], ow * s[1] - p[1]
    he, we = min(hs + k[0], H + p[0]), min(ws + k[1], W + p[1])
    taps, values = _window(x4, n, c, hs, he, ws, we)
    zp, path = int(x.zero_point), layer.path
    acc = sum(values) - len(values) * zp
    qmin, qmax = R._qrange(x.values.dtype.name)
    if path == "qnnpack":
        div = k[0] * k[1]
        m, how = R.qnnpack_pool_multiplier(x.scale, div), "f32(s / f32(s * (KH*KW)))  (QNNPACK: padding and " \
                                                          "divisor_override ignored)"
    else:
        div = layer.divisor_override or ((he - hs) * (we - ws) if layer.count_include_pad else len(values))
        m, how = f32(f32(1) / f32(div)), "f32(1 / divisor)"
    body = path != "nhwc" or c < (x4.shape[1] // layer.vector_channels * layer.vector_channels
                                  if layer.vector_channels else 0)
    steps, q = _round_chain(path, acc, how, m, zp, qmin, qmax, body)
    header = {"nchw": "torch's NCHW kernel", "qnnpack": "QNNPACK's average pooling",
              "nhwc": "torch's channels-last kernel, %s" % ("vector body" if body else "channel tail")}[path]
    return _trace(layer, x, row, col, idx, "AvgPool", path, taps, values, acc, len(values), div, steps, q,
                  header, out)


def explain_adaptive_avg_pool(layer, x, row=0, col=0):
    zp, path = int(x.zero_point), layer.path
    out = R.adaptive_avg_pool(x.values, zp, layer.output_size, path, layer.vector_channels, x.values.dtype.name,
                              x.scale)
    row, col, idx = _element(out.shape, row, col)
    x4, (n, c, oh, ow) = _as4(layer, x, idx)
    osz = (1,) + tuple(layer.output_size) if layer.dims == 1 else tuple(layer.output_size)
    (h0, h1), (w0, w1) = R.adaptive_windows(x4.shape[2], osz[0])[oh], R.adaptive_windows(x4.shape[3], osz[1])[ow]
    taps, values = _window(x4, n, c, h0, h1, w0, w1)
    size, raw = len(values), sum(values)
    acc = raw - size * zp
    qmin, qmax = R._qrange(x.values.dtype.name)
    if path == "nchw":
        r1 = _f32_step("multiplier", "1/KH", "1 / KH", Fraction(1, h1 - h0), "torch's NCHW kernel: per window")
        r = _f32_step("multiplier", "r", "(1/KH) / KW", _fr(r1.value) / (w1 - w0), "the window's multiplier")
        steps = [r1, r, _f32_step("scale", "t", "(float)raw * r", _fr(f32(raw)) * _fr(r.value),
                                  "the raw sum (z not subtracted: it averages to itself)")]
        q = _finish(steps, steps[-1].value, zp, qmin, qmax, False, "round half to even")
        header = "torch's NCHW kernel"
    elif path == "qnnpack":
        steps, q = _round_chain(path, acc, "f32(s / f32(s * size))", R.qnnpack_pool_multiplier(x.scale, size),
                                zp, qmin, qmax)
        header = "QNNPACK's average pooling (kernel = stride = input / output size)"
    else:
        nb = x4.shape[1] // layer.vector_channels * layer.vector_channels if layer.vector_channels else 0
        m = f32(f32(1) / f32(size))
        inv = f32(f32(1) / f32(f32(1) / m))
        steps = [_f32_step("multiplier", "m", "1 / size", Fraction(1, size), "f32(1 / size)"),
                 _f32_step("multiplier", "inv", "1 / (1 / m)", Fraction(1) / _fr(f32(f32(1) / m)),
                           "torch's channels-last multiplier f32(1 / f32(1 / m))")]
        if c < nb:
            steps.append(_f32_step("scale", "t", "fmaf((float)acc, inv, z)", _fr(f32(acc)) * _fr(inv) + zp,
                                   "vector body: one fma, one rounding"))
        else:
            steps.append(_f32_step("scale", "t", "(float)acc * inv", _fr(f32(acc)) * _fr(inv), "channel tail"))
            steps.append(_f32_step("zero_point", "t", "t + z", _fr(steps[-1].value) + zp, "zero point added in float"))
        q = _finish(steps, steps[-1].value, zp, qmin, qmax, False, "round half to even")
        header = "torch's channels-last kernel, %s" % ("vector body" if c < nb else "channel tail")
    return _trace(layer, x, row, col, idx, "AdaptiveAvgPool", path, taps, values, acc, size, size, steps, q,
                  header, out, raw)


def explain_mean_hw(layer, x, row=0, col=0):
    zp, path, s = int(x.zero_point), R.mean_path(layer.path, *x.values.shape[1:]), float(x.scale)
    out = R.mean_hw(x.values, s, zp, path, x.values.dtype.name, layer.float_lanes)
    row, col, idx = _element(out.shape, row, col)
    n, c = idx
    H, W = x.values.shape[2:]
    taps, values = _window(x.values, n, c, 0, H, 0, W)
    hw, raw = H * W, sum(values)
    acc = raw - hw * zp
    qmin, qmax = R._qrange(x.values.dtype.name)
    if path == "nchw":
        steps = [_f32_step("scale", "t", "(float)raw / (float)(H*W)", _fr(f32(raw)) / hw,
                           "the raw sum (z not subtracted: it averages to itself) divided in float")]
        q = _finish(steps, steps[-1].value, zp, qmin, qmax, False, "round half to even")
        header = "torch's qmean_inner_dim (contiguous input)"
    elif path == "qnnpack":
        steps, q = _round_chain(path, acc, "f32(s / f32(s * H*W))", R.qnnpack_pool_multiplier(s, hw), zp, qmin, qmax)
        header = "QNNPACK's global average pool"
    else:
        f = R.dequantize(x.values[n:n + 1], s, zp)
        rows = f.transpose(2, 3, 0, 1).reshape(hw, 1, -1)
        total = R.outer_sum(rows, layer.float_lanes)[0, c]
        inv = f32(f32(1) / f32(s))
        steps = [Step("scale", "sum", "sum of f32((x - z) * s) in ATen's order (reference.outer_sum)", None, total,
                      "f32", "dequantized, then the float cascade / partial sums of torch's sum kernel"),
                 _f32_step("scale", "mean", "sum / (float)(H*W)", _fr(total) / hw, "float division"),
                 Step("multiplier", "1/s", "1 / s", None, inv, "f32", "torch's quantize multiplies by f32(1 / s)")]
        steps.append(_f32_step("scale", "t", "fmaf(mean, 1/s, z)", _fr(steps[1].value) * _fr(inv) + zp,
                               "torch's quantize: one fma"))
        q = _finish(steps, steps[-1].value, zp, qmin, qmax, False, "round half to even")
        header = "torch's channels-last mean: dequantize, float sum, quantize"
    return _trace(layer, x, row, col, idx, "MeanHW", path, taps, values, acc, hw, hw, steps, q, header,
                  out, raw)
