"""Constructed near-tie cases for every requantization step of every mode, and their runs
against real torch (engine pinned) and fastq.reference. Shared by tests/test_near_ties.py and
scripts/near_tie_sweep.py.

A case is one output value whose input was built so that the exact result lies next to a
rounding boundary (k + 0.5 for a rounding to integer, the float32 rounding of a sum that nearly
cancels, an exact tie of a fixed-point shift): one rounding more or less, or a different tie
rule, changes the result. Each generator returns a list of Batch, one batch = one torch call.

Each batch also reports `decisive`: how many of its cases the nearest wrong formula (two
roundings instead of one, ties away instead of even, ...) gets wrong, so a sweep with 0
mismatches shows it was able to see the difference."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

import fastq
from fastq import reference

f32 = np.float32
warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")


@dataclass
class Batch:
    mode: str            # "fbgemm" / "qnnpack" / "tflite" / "quantize" / "dequantize" / "dynamic-fbgemm" ...
    step: str            # which rounding the cases sit next to
    fastq: np.ndarray    # what fastq gives
    torch: np.ndarray    # what the oracle gives (torch, or fastq.reference for the fixed-point steps)
    reference: np.ndarray  # what fastq.reference gives
    decisive: int = 0    # cases the nearest wrong formula gets wrong
    oracle: str = "torch"
    info: dict = field(default_factory=dict)

    @property
    def cases(self):
        return int(self.torch.size)

    def mismatches(self, which="fastq"):
        got = self.fastq if which == "fastq" else self.reference
        return int(np.sum(~_same(got, self.torch)))


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind == "f":
        return (a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))
    return a == b


def _ulps(x, k):
    """x moved by k float32 ulps (k may be negative), elementwise."""
    x = np.asarray(x, np.float32).copy()
    k = np.asarray(np.broadcast_to(k, x.shape))
    for step in range(int(np.max(np.abs(k))) if k.size else 0):
        sel = np.abs(k) > step
        x[sel] = np.nextafter(x[sel], np.where(k[sel] > 0, f32(np.inf), f32(-np.inf)).astype(np.float32))
    return x


def _torch():
    import torch
    return torch


class _engine:
    def __init__(self, name):
        self.name = name

    def __enter__(self):
        torch = _torch()
        self.previous = torch.backends.quantized.engine
        torch.backends.quantized.engine = self.name

    def __exit__(self, *exc):
        _torch().backends.quantized.engine = self.previous


def _torch_linear(w, sw, zw, per_channel, bias, sy, zy, relu):
    torch = _torch()
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq
    wt = torch.from_numpy(np.ascontiguousarray(w))
    if per_channel:
        wq = torch._make_per_channel_quantized_tensor(wt, torch.from_numpy(np.asarray(sw, np.float64)),
                                                      torch.from_numpy(np.asarray(zw, np.int64)), 0)
    else:
        wq = torch._make_per_tensor_quantized_tensor(wt, float(sw), int(zw))
    n, k = w.shape
    m = (nniq.LinearReLU if relu else nnq.Linear)(k, n)
    m.set_weight_bias(wq, None if bias is None else torch.from_numpy(np.asarray(bias, np.float32)))
    m.scale, m.zero_point = float(sy), int(zy)
    return m


def _fastq_linear(w, sw, zw, per_channel, bias, sy, zy, relu, requant):
    wq = fastq.QTensor(w, sw, zw, axis=0) if per_channel else fastq.QTensor(w, sw, zw)
    return fastq.QuantizedLinear(wq, bias, sy, zy, relu=relu, requant=requant)


def _run_linear(eng, requant, x, sx, zx, w, sw, zw, per_channel, bias, sy, zy, relu):
    torch = _torch()
    with _engine(eng):
        mod = _torch_linear(w, sw, zw, per_channel, bias, sy, zy, relu)
        xt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), float(sx), int(zx))
        expect = mod(xt).int_repr().numpy()
    got = _fastq_linear(w, sw, zw, per_channel, bias, sy, zy, relu, requant)(fastq.QTensor(x, sx, zx)).values
    ref = reference.linear(x, sx, zx, w, sw, zw, bias, sy, zy, relu=relu, requant=requant,
                           per_channel=per_channel)
    return got, expect, ref


# ------------------------------------------------------------------ fbgemm (x86 / fbgemm)
def fbgemm_fused_ref(acc, sx, sw, sy, zy, bias, relu, per_channel):
    """What torch 2.13's compiled requantizeOutputProcessingAvx2 computes (float bias):
    per tensor  y = rne(f32(fmaf(bias, f32(1/(double)atws), (float)acc) * mult))
    per channel y = rne(f32(f32((float)acc + f32(bias / atws[n])) * mult[n]))"""
    sw = np.atleast_1d(np.asarray(sw, np.float64)).astype(np.float32)
    atws = (f32(sx) * sw).astype(np.float32)
    mult = (atws / f32(sy)).astype(np.float32)
    f = np.asarray(acc, np.int64).astype(np.float32)
    b = np.asarray(bias, np.float32)
    if per_channel:
        s = (f + (b / atws).astype(np.float32)).astype(np.float32)
    else:
        s = reference.fmaf(b, f32(1.0 / np.float64(atws[0])), f)
    y = (s * mult).astype(np.float32)
    r = reference.round_float_to_int32(y)
    return np.clip(r + int(zy), int(zy) if relu else 0, 255).astype(np.uint8)


def _fbgemm_rcp_fused(acc, atws, mult, zy, bias, relu):
    rcp = (1.0 / atws.astype(np.float64)).astype(np.float32)
    s = reference.fmaf(np.asarray(bias, np.float32), rcp, np.asarray(acc, np.int64).astype(np.float32))
    r = reference.round_float_to_int32((s * mult).astype(np.float32))
    return np.clip(r + int(zy), int(zy) if relu else 0, 255).astype(np.uint8)


def _mbqm_ties_away(x, q, s, rounding):
    """MBQM with SRDHM's ties rounded away from zero instead of toward +infinity (the nearest
    wrong rounding of an SRDHM tie)."""
    x, q, s = (np.asarray(v, np.int64) for v in np.broadcast_arrays(x, q, s))
    left, right = np.maximum(s, 0), np.maximum(-s, 0)
    ab = reference.wrap_int32(x << left) * q
    h = np.sign(ab) * ((np.abs(ab) + 2**30) >> 31)
    if rounding == "double":
        return reference.rounding_divide_by_pot(h, right)
    return (h + ((np.int64(1) << right) >> 1)) >> right


def fbgemm_cases(rng, eng, per_channel, relu, n=256, m=1, layers=4):
    """The bias nearly cancels acc and the result lies next to k + 0.5."""
    out = []
    for _ in range(layers):
        k = int(rng.integers(1, 5))
        w = rng.integers(-128, 128, (n, k)).astype(np.int8)
        x = rng.integers(0, 256, (m, k)).astype(np.uint8)
        sx = float(rng.uniform(0.005, 0.1))
        zx = int(rng.choice([0, int(rng.integers(0, 256))]))
        if per_channel:
            sw = rng.uniform(1e-3, 0.05, n)
            zw = np.zeros(n, np.int64)
        else:
            sw = float(rng.uniform(1e-3, 0.05))
            zw = int(rng.choice([0, int(rng.integers(-20, 20))]))
        sy = float(rng.uniform(1e-4, 0.01))
        zy = int(rng.integers(0, 256))
        acc = reference.qgemm(x[:1], zx, w, zw)[0]
        swa = np.broadcast_to(np.atleast_1d(np.asarray(sw, np.float64)).astype(np.float32), (n,))
        atws = (f32(sx) * swa).astype(np.float32)
        mult = (atws / f32(sy)).astype(np.float32)
        u = rng.integers(-zy, 256 - zy, n) + 0.5           # the tie the result sits next to
        v = u / mult.astype(np.float64)                      # the float value before * mult
        bias = ((v - acc) * atws.astype(np.float64)).astype(np.float32)
        bias = _ulps(bias, rng.integers(-3, 4, n))
        got, expect, ref = _run_linear(eng, "fbgemm", x, sx, zx, w, sw, zw, per_channel, bias, sy, zy, relu)
        acc_all = reference.qgemm(x, zx, w, zw)
        fused = fbgemm_fused_ref(acc_all, sx, sw, sy, zy, bias, relu, per_channel)
        if per_channel:     # the nearest wrong formula: the per-tensor one, fmaf(bias, f32(1 / atws[n]), acc)
            two = _fbgemm_rcp_fused(acc_all, atws, mult, zy, bias, relu)
        else:               # two roundings: f32(acc + f32(bias * rcp))
            two = reference.requant_fbgemm(acc_all, sx, sw, sy, zy, bias, relu, per_channel, bias_rounding="separate")
        out.append(Batch("fbgemm/%s" % eng, "float bias %s%s" % ("per-channel" if per_channel else "per-tensor",
                                                                 ", relu" if relu else ""),
                         got, expect, ref, decisive=int(np.sum(two != fused)),
                         info={"formula_mismatches": int(np.sum(fused != expect))}))
    return out


K_FOR_ACC = 20
ACC_MAX = 127 * 127 * (K_FOR_ACC - 1)
X_FOR_ACC = np.array([[255] * (K_FOR_ACC - 1) + [129]], np.uint8)   # x - 128 = (127, ..., 127, 1)


def _mult(requant, sx, sw, sy):
    """The float32 requantization multiplier of fbgemm (f32(f32(sx sw) / sy)) or qnnpack
    (f32(f32(sw sx) * f32(1 / sy)))."""
    sw = np.asarray(sw, np.float64).astype(np.float32)
    if requant == "fbgemm":
        return ((f32(sx) * sw).astype(np.float32) / f32(sy)).astype(np.float32)
    return ((sw * f32(sx)).astype(np.float32) * (f32(1.0) / f32(sy))).astype(np.float32)


def _rounded_onto_ties(rng, sx, sy, requant, n, sw_range, tries=64):
    """Weight scales sw[i] and accs[i] whose exact product acc * mult(sw) is not a tie but
    rounds to one in float32 (f32(acc * mult) == k + 0.5): rne of the float32 product and
    rounding the exact product once disagree on about half of them. Up to n, from `tries`
    random scales in sw_range (one scale: a per-tensor layer)."""
    sws, accs = [], []
    for _ in range(tries):
        sw = float(rng.uniform(*sw_range))
        mult = _mult(requant, sx, sw, sy)
        lim = int(min(ACC_MAX, 120 / float(mult)))
        acc = np.arange(-lim, lim + 1, dtype=np.int64)
        p = acc.astype(np.float64) * np.float64(mult)          # exact: 19 x 24 bits
        y = p.astype(np.float32).astype(np.float64)
        hit = acc[(y - np.floor(y) == 0.5) & (p != y)]
        sws += [sw] * hit.size
        accs += hit.tolist()
        if len(accs) >= n:
            break
    return np.array(sws[:n]), np.array(accs[:n], np.int64)


def _weights_for_acc(acc):
    """int8 weights [n, K_FOR_ACC] with acc = 127 * sum(w[:-1]) + w[-1], for inputs X_FOR_ACC."""
    acc = np.asarray(acc, np.int64)
    hi = np.round(acc / 127.0).astype(np.int64)
    parts = K_FOR_ACC - 1
    w = np.zeros((acc.size, K_FOR_ACC), np.int64)
    base, rem = np.divmod(hi, parts)
    w[:, :parts] = base[:, None]
    w[:, :parts] += (np.arange(parts)[None, :] < rem[:, None])
    w[:, -1] = acc - 127 * hi
    assert np.all((w >= -128) & (w <= 127))
    return w.astype(np.int8)


def fbgemm_nobias_cases(rng, eng, per_channel, n=256, layers=2):
    """No bias: (float)acc * mult next to k + 0.5: exact ties (power-of-two scales) and the
    accs closest to a tie for a random multiplier."""
    return _product_cases(rng, eng, "fbgemm", per_channel, False, n, layers)


def _product_cases(rng, eng, requant, per_channel, relu, n, layers):
    out = []
    for i in range(layers):
        exact = i % 2 == 0
        zy = int(rng.integers(100, 156))
        if exact:       # power-of-two scales: mult = 2^-j, odd multiples of 1 / (2 mult) are ties
            sx = 2.0 ** -int(rng.integers(3, 7))
            sw1 = 2.0 ** -int(rng.integers(3, 7))
            sy = sx * sw1 * 2.0 ** int(rng.integers(1, 6))
            mult = _mult(requant, sx, sw1, sy)
            acc = ((rng.integers(-60, 60, n) * 2 + 1) / (2 * np.float64(mult))).astype(np.int64)
            sw = np.full(n, sw1) if per_channel else sw1
        else:           # the float32 product rounds onto k + 0.5
            sx = float(rng.uniform(0.005, 0.1))
            sy = sx * 0.015 / float(rng.uniform(3e-4, 6e-4))
            sws, acc = _rounded_onto_ties(rng, sx, sy, requant, n if per_channel else n // 8,
                                          (0.01, 0.02), tries=256 if per_channel else 1)
            if acc.size == 0:
                continue
            sw = sws if per_channel else float(sws[0])
        w = _weights_for_acc(acc)
        nn = w.shape[0]
        zw = np.zeros(nn, np.int64) if per_channel else 0
        got, expect, ref = _run_linear(eng, requant, X_FOR_ACC, sx, 128, w, sw, zw, per_channel, None, sy, zy, relu)
        acc = reference.qgemm(X_FOR_ACC, 128, w, zw)
        mult = _mult(requant, sx, sw, sy)
        label = "%s%s%s" % ("per-channel" if per_channel else "per-tensor", ", relu" if relu else "",
                            ", exact ties" if exact else ", f32 product rounds onto .5")
        step = ("no bias, acc*mult " if requant == "fbgemm" else "requant (acc+bq)*req ") + label
        out.append(Batch("fbgemm/%s" % eng if requant == "fbgemm" else "qnnpack", step, got, expect, ref,
                         decisive=_decisive_product(acc, mult, zy, relu, expect, exact)))
    return out


def _decisive_product(acc, mult, zy, relu, expect, exact):
    """Cases a wrong rounding of rne(f32((float)acc * mult)) gets wrong: ties away from zero
    (exact ties), or the exact product rounded once (no float32 rounding first)."""
    if exact:
        y = (acc.astype(np.float32) * mult).astype(np.float64)
        r = np.sign(y) * np.floor(np.abs(y) + 0.5)
    else:
        r = np.rint(acc.astype(np.float64) * np.asarray(mult, np.float64))
    return int(np.sum(np.clip(r + zy, zy if relu else 0, 255) != expect))


# ------------------------------------------------------------------ qnnpack
def qnnpack_bias_cases(rng, per_channel, n=256, layers=3):
    """The int32 bias: bias / (sx * sw) next to k + 0.5 (and exactly on it)."""
    out = []
    for i in range(layers):
        k = 1
        w = rng.integers(-128, 128, (n, k)).astype(np.int8)
        exact = i % 2 == 0
        sx = 2.0 ** -int(rng.integers(2, 6)) if exact else float(rng.uniform(0.005, 0.1))
        sw = (2.0 ** -rng.integers(2, 6, n) if exact else rng.uniform(1e-3, 0.05, n)) if per_channel else \
            (2.0 ** -int(rng.integers(2, 6)) if exact else float(rng.uniform(1e-3, 0.05)))
        swa = np.broadcast_to(np.atleast_1d(np.asarray(sw, np.float64)), (n,))
        bs = (swa * sx).astype(np.float32)
        t = rng.integers(-120, 120, n) + 0.5
        bias = (t * bs.astype(np.float64)).astype(np.float32)
        if not exact:
            bias = _ulps(bias, rng.integers(-2, 3, n))
        # output scale equal to sx * sw: y = acc + bq, so the bias rounding shows directly
        sy = float(f32(sx) * f32(np.asarray(sw).reshape(-1)[0])) if not per_channel else float(f32(sx) * f32(swa[0]))
        x = np.full((1, k), 100, np.uint8)
        zx = 100                                  # acc = 0: the output is clamp(bq * req + zy)
        zy = 128
        zw = np.zeros(n, np.int64) if per_channel else 0
        got, expect, ref = _run_linear("qnnpack", "qnnpack", x, sx, zx, w, sw, zw, per_channel, bias, sy, zy, False)
        inv = (f32(1.0) / bs).astype(np.float32)
        tt = (bias * inv).astype(np.float64)
        away = np.sign(tt) * np.floor(np.abs(tt) + 0.5)
        bq_ref, req = reference.qnnpack_params(sx, sw, sy, bias)
        y_away = np.clip(reference.round_float_to_int32((away.astype(np.float32) * req).astype(np.float32)) + zy, 0, 255)
        out.append(Batch("qnnpack", "int32 bias rounding %s%s" % ("per-channel" if per_channel else "per-tensor",
                                                                  ", exact ties" if exact else ""),
                         got, expect, ref, decisive=int(np.sum(y_away != expect))))
    return out


def qnnpack_requant_cases(rng, per_channel, relu, n=256, layers=3):
    """(acc + bq) * req next to k + 0.5 (and exact ties with power-of-two scales)."""
    return _product_cases(rng, "qnnpack", "qnnpack", per_channel, relu, n, layers)


# ------------------------------------------------------------------ quantize / dequantize
def quantize_cases(rng, dtype, n=4096, batches=3):
    """x / scale + zp next to k + 0.5: torch fuses the multiply-add (fmaf(x, 1/scale, zp))."""
    torch = _torch()
    out = []
    qmin, qmax = (0, 255) if dtype == "uint8" else (-128, 127)
    for _ in range(batches):
        scale = float(rng.uniform(1e-3, 1.0))
        zp = int(rng.integers(qmin, qmax + 1))
        inv = f32(1.0) / f32(scale)
        kk = rng.integers(qmin - 2, qmax + 2, n) + 0.5
        x = ((kk - zp) / np.float64(inv)).astype(np.float32)
        x = _ulps(x, rng.integers(-3, 4, n))
        got = fastq.quantize(x, scale, zp, dtype).values
        tdt = torch.quint8 if dtype == "uint8" else torch.qint8
        expect = torch.quantize_per_tensor(torch.from_numpy(x), scale, zp, tdt).int_repr().numpy()
        ref = reference.quantize_per_tensor(x, scale, zp, dtype)
        t2 = ((x * inv).astype(np.float32) + f32(zp)).astype(np.float32)
        two = np.clip(np.rint(t2.astype(np.float64)), qmin, qmax)
        out.append(Batch("quantize", "per-tensor %s fmaf(x, 1/scale, zp)" % dtype, got, expect, ref,
                         decisive=int(np.sum(two != expect))))
    return out


def quantize_per_channel_cases(rng, dtype, c=16, n=256, batches=2):
    """x * inv[c] + zp[c] next to k + 0.5 (torch's per-channel quantize rounds twice)."""
    torch = _torch()
    out = []
    qmin, qmax = (0, 255) if dtype == "uint8" else (-128, 127)
    for _ in range(batches):
        scales = rng.uniform(1e-3, 1.0, c)
        zps = rng.integers(qmin, qmax + 1, c)
        inv = (f32(1.0) / scales.astype(np.float32)).astype(np.float32)
        kk = rng.integers(qmin - 2, qmax + 2, (c, n)) + 0.5
        x = ((kk - zps[:, None]) / inv.astype(np.float64)[:, None]).astype(np.float32)
        x = _ulps(x, rng.integers(-3, 4, (c, n)))
        got = fastq.quantize_per_channel(x, scales, zps, 0, dtype).values
        tdt = torch.quint8 if dtype == "uint8" else torch.qint8
        expect = torch.quantize_per_channel(torch.from_numpy(x), torch.from_numpy(scales),
                                            torch.from_numpy(zps.astype(np.int64)), 0, tdt).int_repr().numpy()
        ref = reference.quantize_per_channel(x, scales, zps, 0, dtype)
        fused = np.clip(np.rint(reference.fmaf(x, inv[:, None], zps[:, None].astype(np.float32)).astype(np.float64)),
                        qmin, qmax)
        out.append(Batch("quantize", "per-channel %s x*inv + zp" % dtype, got, expect, ref,
                         decisive=int(np.sum(fused != expect))))
    return out


def dequantize_cases(rng, per_channel, n=4096, batches=2):
    """Scales that are not float32 values, so (q - zp) * scale in double and in float32 (after
    rounding the scale) differ by one rounding."""
    torch = _torch()
    out = []
    for _ in range(batches):
        if per_channel:
            c = 16
            scales = rng.uniform(1e-3, 1.0, c) * (1 + 2.0 ** -30)
            zps = rng.integers(-20, 20, c)
            q = rng.integers(-128, 128, (c, n // c)).astype(np.int8)
            qt = torch._make_per_channel_quantized_tensor(torch.from_numpy(q), torch.from_numpy(scales),
                                                          torch.from_numpy(zps.astype(np.int64)), 0)
            got = fastq.QTensor(q, scales, zps, axis=0).dequantize()
            ref = reference.dequantize(q, scales, zps, 0)
            alt = reference.dequantize(q, scales.astype(np.float32).astype(np.float64), zps, 0)
        else:
            scale = float(rng.uniform(1e-3, 1.0)) * (1 + 2.0 ** -30)
            zp = int(rng.integers(0, 256))
            q = rng.integers(0, 256, n).astype(np.uint8)
            qt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(q), scale, zp)
            got = fastq.QTensor(q, scale, zp).dequantize()
            ref = reference.dequantize(q, scale, zp)
            alt = ((q.astype(np.float64) - zp) * scale).astype(np.float32)
        expect = qt.dequantize().numpy()
        out.append(Batch("dequantize", "%s scale not a float32" % ("per-channel" if per_channel else "per-tensor"),
                         got, expect, ref, decisive=int(np.sum(~_same(alt, expect)))))
    return out


# ------------------------------------------------------------------ dynamic
def dynamic_cases(rng, eng, per_channel, relu, n=256, m=1, layers=3):
    """The float output f * s + bias with the bias nearly cancelling f * s."""
    torch = _torch()
    import torch.ao.nn.intrinsic.quantized.dynamic as nniqd
    import torch.ao.nn.quantized.dynamic as nnqd
    mode = "qnnpack" if eng == "qnnpack" else "fbgemm"
    out = []
    for _ in range(layers):
        k = int(rng.integers(2, 17))
        w = rng.integers(-128, 128, (n, k)).astype(np.int8)
        sw = rng.uniform(1e-3, 0.05, n) if per_channel else float(rng.uniform(1e-3, 0.05))
        zw = np.zeros(n, np.int64) if per_channel else 0
        x = rng.normal(0, 1, (m, k)).astype(np.float32)
        wq = fastq.QTensor(w, sw, zw, axis=0) if per_channel else fastq.QTensor(w, sw, zw)
        probe = fastq.DynamicQuantizedLinear(wq, None, mode=mode)
        sx, zx = probe.input_qparams(x)
        xq = reference.quantize_per_tensor(x, sx, zx, "uint8")
        acc = reference.qgemm(xq[:1], zx, w, zw)[0]
        swa = np.broadcast_to(np.atleast_1d(np.asarray(sw, np.float64)).astype(np.float32), (n,))
        s = (f32(sx) * swa).astype(np.float32)
        fs = (acc.astype(np.float32) * s).astype(np.float32)
        bias = _ulps(-fs, rng.integers(-3, 4, n))
        bias = np.where(rng.random(n) < 0.5, bias, (bias * f32(1.0 + rng.uniform(-1e-3, 1e-3))).astype(np.float32))
        bias = bias.astype(np.float32)
        with _engine(eng):
            mod = (nniqd.LinearReLU if relu else nnqd.Linear)(k, n, dtype=torch.qint8)
            wt = torch.from_numpy(w)
            if per_channel:
                wqt = torch._make_per_channel_quantized_tensor(wt, torch.from_numpy(np.asarray(sw, np.float64)),
                                                               torch.from_numpy(zw), 0)
            else:
                wqt = torch._make_per_tensor_quantized_tensor(wt, float(sw), int(zw))
            mod.set_weight_bias(wqt, torch.from_numpy(bias))
            expect = mod(torch.from_numpy(x)).detach().numpy()
        got = fastq.DynamicQuantizedLinear(wq, bias, relu=relu, mode=mode)(x)
        ref = reference.linear_dynamic(x, w, sw, zw, bias, relu, mode)
        other = reference.linear_dynamic(x, w, sw, zw, bias, relu, "qnnpack" if mode == "fbgemm" else "fbgemm",
                                         reduce_range=mode == "fbgemm")
        out.append(Batch("dynamic/%s" % eng, "float out f*s+bias %s%s" % (
            "per-channel" if per_channel else "per-tensor", ", relu" if relu else ""),
            got, expect, ref, decisive=int(np.sum(~_same(other, expect)))))
    return out


# ------------------------------------------------------------------ fixed point (TFLite / gemmlowp)
def _solve(q, residue, bits):
    """x with x * q == residue (mod 2^bits), q = q_odd * 2^t (residue divisible by 2^t)."""
    t = (q & -q).bit_length() - 1
    q_odd, mod = q >> t, 1 << (bits - t)
    return ((residue >> t) * pow(q_odd, -1, mod)) % mod, mod


def _spread(rng, x0, mod, n):
    """n int32 values == x0 (mod mod), spread over the int32 range, with their +-1 neighbours."""
    lo, hi = -(2**31) // mod + 1, (2**31 - 1) // mod - 1
    ks = rng.integers(lo, hi + 1, n) if hi > lo else np.zeros(n, np.int64)
    xs = ks.astype(object) * mod + x0
    xs = np.array([int(v) for v in xs], np.int64)
    xs = np.concatenate([xs, xs - 1, xs + 1])
    return xs[(xs >= -(2**31)) & (xs <= 2**31 - 1)]


def _multiplier(rng, t):
    """A Q31 multiplier q = q_odd * 2^t in [2^30, 2^31)."""
    lo, hi = 1 << max(30 - t, 0), 1 << (31 - t)
    return int(rng.integers(lo, hi)) | 1 if t < 30 else 1 << 30


def fixedpoint_cases(rng, rounding, n=2000):
    """Exact ties and their +-1 neighbours of SRDHM (a*q = (2j+1) 2^30), of RoundingDivideByPOT
    (a*q = 2^31 h, h = (2j+1) 2^(e-1)) and of the single rounding (x*q = (2j+1) 2^(30+e)),
    through fastq.multiply_by_quantized_multiplier (compiled), against fastq.reference."""
    out = []
    steps = ("single",) if rounding == "single" else ("srdhm", "pot")
    for step in steps:
        xs, qs, ss = [], [], []
        while sum(v.size for v in xs) < n:
            # an SRDHM tie shows through a short right shift only (one unit of h / 2^e)
            e = int(rng.choice([0, 0, 1, 2])) if step == "srdhm" else int(rng.integers(1 if step == "pot" else 0, 25))
            t = int(rng.integers(e if step != "srdhm" else 0, 31))
            q = _multiplier(rng, t) << t if t < 30 else 1 << 30
            if step == "srdhm":
                x0, mod = _solve(q, 1 << 30, 31)
            else:
                x0, mod = _solve(q, 1 << (30 + e), 31 + e)
            v = _spread(rng, x0, mod, 10)
            v = np.concatenate([v, -v])
            v = v[(v >= -(2**31)) & (v <= 2**31 - 1)]
            xs.append(v)
            qs.append(np.full(v.size, q))
            ss.append(np.full(v.size, -e))
        x, q, s = np.concatenate(xs), np.concatenate(qs), np.concatenate(ss)
        ref = reference.MBQM[rounding](x, q, s)
        got = np.empty_like(ref)
        for key in set(zip(q.tolist(), s.tolist())):        # per-call params: one call per (q, shift)
            sel = (q == key[0]) & (s == key[1])
            got[sel] = fastq.multiply_by_quantized_multiplier(x[sel], key[0], key[1], rounding)
        wrong = {"double": "double_up", "double_up": "double", "single": "double"}[rounding]
        other = _mbqm_ties_away(x, q, s, rounding) if step == "srdhm" else reference.MBQM[wrong](x, q, s)
        out.append(Batch("tflite/%s" % rounding, "%s ties (MBQM kernel)" % step, got, ref, ref,
                         decisive=int(np.sum(other != ref)), oracle="reference"))
    return out


def tflite_layer_cases(rng, rounding, per_channel, n=256, layers=2):
    """The same ties through a QuantizedLinear(requant='tflite') epilogue: K = 1 and x = zx, so
    acc = int_bias[n], a constructed tie of the final rounding; the multiplier is exact
    (input / output scales 1, weight scale q 2^(-31-e)) and q = q_odd 2^t with a small q_odd,
    so the ties lie at small outputs."""
    out = []
    for _ in range(layers):
        q_odd = int(rng.integers(0, 32)) * 2 + 1
        t = 30 - (q_odd.bit_length() - 1)
        q = q_odd << t
        e = int(rng.integers(1, 12))
        real = q * 2.0 ** (-31 - e)
        x0, mod = _solve(q, 1 << (30 + e), 31 + e)
        span = max(1, 100 // q_odd)
        j = rng.integers(-span, span + 1, n)
        ib = j.astype(np.int64) * mod + x0 + rng.integers(-1, 2, n)
        w = rng.integers(-128, 128, (n, 1)).astype(np.int8)
        sw = np.full(n, real) if per_channel else real
        wq = fastq.QTensor(w, sw, np.zeros(n, np.int64), axis=0) if per_channel else fastq.QTensor(w, sw, 0)
        layer = fastq.QuantizedLinear(wq, ib.astype(np.int32), 1.0, 128, requant="tflite", rounding=rounding,
                                      effective_scale="float64")
        x = np.full((1, 1), 7, np.uint8)
        got = layer(fastq.QTensor(x, 1.0, 7)).values
        ref = reference.linear_tflite(x, 1.0, 7, w, sw, 0, ib, 1.0, 128, per_channel=per_channel,
                                      rounding=rounding, effective_scale="float64")
        wrong = {"double": "double_up", "double_up": "double", "single": "double"}[rounding]
        other = reference.linear_tflite(x, 1.0, 7, w, sw, 0, ib, 1.0, 128, per_channel=per_channel,
                                        rounding=wrong, effective_scale="float64")
        out.append(Batch("tflite/%s" % rounding, "layer epilogue ties %s" % (
            "per-channel" if per_channel else "per-tensor"), got, ref, ref,
            decisive=int(np.sum(other != ref)), oracle="reference"))
    return out


ENGINES_FBGEMM = ("x86", "fbgemm")


def all_batches(rng, scale=1):
    """Every generator once (scale > 1: more layers per generator)."""
    b = []
    for eng in ENGINES_FBGEMM:
        for pc in (False, True):
            for relu in (False, True):
                b += fbgemm_cases(rng, eng, pc, relu, layers=2 * scale)
            b += fbgemm_nobias_cases(rng, eng, pc, layers=(2 if pc else 16) * scale)
        b += fbgemm_cases(rng, eng, False, False, m=4, layers=scale)
    for pc in (False, True):
        b += qnnpack_bias_cases(rng, pc, layers=2 * scale)
        for relu in (False, True):
            b += qnnpack_requant_cases(rng, pc, relu, layers=(2 if pc else 16) * scale)
    for dt in ("uint8", "int8"):
        b += quantize_cases(rng, dt, batches=2 * scale)
        b += quantize_per_channel_cases(rng, dt, batches=scale)
    for pc in (False, True):
        b += dequantize_cases(rng, pc, batches=scale)
    for eng in ("x86", "fbgemm", "qnnpack"):
        for pc in (False, True):
            b += dynamic_cases(rng, eng, pc, relu=False, layers=scale)
        b += dynamic_cases(rng, eng, False, relu=True, layers=scale)
    for r in ("double", "single", "double_up"):
        b += fixedpoint_cases(rng, r, n=400 * scale)
        for pc in (False, True):
            b += tflite_layer_cases(rng, r, pc, layers=scale)
    return b


def table(batches):
    """Rows (mode, step, cases, decisive, fastq mismatches, reference mismatches, oracle)."""
    rows = {}
    for bt in batches:
        r = rows.setdefault((bt.mode, bt.step), [0, 0, 0, 0, bt.oracle])
        r[0] += bt.cases
        r[1] += bt.decisive
        r[2] += bt.mismatches("fastq")
        r[3] += bt.mismatches("reference")
    return [(m, s) + tuple(v) for (m, s), v in rows.items()]
