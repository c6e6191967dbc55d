"""`fastq demo`: a quantized Linear layer by hand, and the proof that fastq's integers are PyTorch's.

Part 1 is the classic walk-through: a 2x2 Linear without bias, quantized by PyTorch eager mode
with MinMaxObserver (quint8 activations, qint8 symmetric weights), then the same layer by hand
in fastq: x_q, W_q, zero points, the int32 accumulators, the multiplier, the output. Part 2
calibrates a 784-256-10 MLP on random data with torch's default x86 qconfig and counts how many
of its outputs fastq reproduces exactly. Without torch, part 1 runs on fastq alone.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import fastq
from fastq import reference as R
from ._args import int_at_least

f32 = np.float32
INSTALL = "pip install torch==2.13.0"

# Multiples of 1/8 and 1/4: every float product and sum below is exact in float32, so the
# observers of torch and of this page see the very same min / max.
X = np.array([[1.0, 2.0], [-1.5, 0.5]], dtype=np.float32)       # 2 samples, 2 features
W = np.array([[0.25, -0.5], [0.75, 0.375]], dtype=np.float32)   # Linear(2, 2).weight, no bias


def _mat(a):
    def fmt(v):
        return "%.6g" % v if isinstance(v, float) else str(v)
    return "[" + ", ".join("[" + ", ".join(fmt(v) for v in row) + "]" for row in np.asarray(a).tolist()) + "]"


def _by_hand(out):
    """The 2x2 layer in fastq, every step printed. Returns the integers for the comparison."""
    out("Part 1: a 2x2 Linear layer without bias, quantized by hand")
    out("  x (float32)   = %s" % _mat(X))
    out("  W (float32)   = %s   (y = x W^T)" % _mat(W))
    y = (X.astype(np.float64) @ W.T.astype(np.float64)).astype(np.float32)
    out("  y = x W^T     = %s   (float reference)" % _mat(y))
    out("")
    out("  1. Observers (MinMaxObserver): scale and zero point from the calibration range")
    sx, zx = fastq.choose_qparams(float(X.min()), float(X.max()), "uint8")
    out("     input  quint8 : min %g, max %g -> scale = (max - min) / 255 = %.9g, zero_point = %d"
        % (X.min(), X.max(), sx, zx))
    sw, zw = fastq.choose_qparams(float(W.min()), float(W.max()), "int8", symmetric=True)
    out("     weight qint8  : max |w| = %g -> scale = max|w| / 127.5 = %.9g, zero_point = %d (symmetric)"
        % (np.abs(W).max(), sw, zw))
    sy, zy = fastq.choose_qparams(float(y.min()), float(y.max()), "uint8")
    out("     output quint8 : min %g, max %g -> scale = %.9g, zero_point = %d" % (y.min(), y.max(), sy, zy))
    out("")
    out("  2. Quantize: q = clamp(round(x / scale) + zero_point)")
    x_q = fastq.quantize(X, sx, zx, "uint8")
    w_q = fastq.quantize(W, sw, zw, "int8")
    out("     x_q = %s" % _mat(x_q.values))
    out("     W_q = %s" % _mat(w_q.values))
    out("")
    out("  3. Integer core: acc[m,n] = sum_k (x_q[m,k] - %d) * (W_q[n,k] - %d)   (int32)" % (zx, zw))
    acc = fastq.qgemm(x_q.values, zx, w_q.values, zw)
    for m in range(2):
        for n in range(2):
            terms = " + ".join("(%d - %d)(%d)" % (x_q.values[m, k], zx, w_q.values[n, k]) for k in range(2))
            out("     acc[%d,%d] = %s = %d" % (m, n, terms, acc[m, n]))
    out("")
    out("  4. Requantize (torch x86 / fbgemm): y_q = clamp(rne(acc * M) + %d, 0, 255)" % zy)
    atws = f32(f32(sx) * f32(sw))
    mult = f32(atws / f32(sy))
    out("     M = f32(f32(s_x * s_w) / s_y) = f32(%.9g / %.9g) = %.9g   (real %.12g)"
        % (atws, sy, mult, sx * sw / sy))
    layer = fastq.QuantizedLinear(w_q, None, sy, zy, requant="fbgemm")
    y_q = layer(x_q)
    for m in range(2):
        for n in range(2):
            t = f32(f32(acc[m, n]) * mult)
            out("     y_q[%d,%d] = clamp(rne(%d * %.9g) + %d) = clamp(rne(%.9g) + %d) = %d"
                % (m, n, acc[m, n], mult, zy, t, zy, y_q.values[m, n]))
    ref = R.linear(x_q.values, sx, zx, w_q.values, sw, zw, None, sy, zy, requant="fbgemm")
    assert np.array_equal(ref, y_q.values)
    out("     y_q = %s   -> dequantized (y_q - %d) * %.6g = %s"
        % (_mat(y_q.values), zy, sy, _mat(fastq.dequantize(y_q))))
    return dict(sx=sx, zx=zx, sw=sw, zw=zw, sy=sy, zy=zy, x_q=x_q.values, w_q=w_q.values, y_q=y_q.values)


def _torch_2x2(torch, out, hand):
    """The same layer through PyTorch eager-mode static quantization."""
    import torch.nn as nn
    import torch.ao.quantization as tq
    model = nn.Sequential(tq.QuantStub(), nn.Linear(2, 2, bias=False), tq.DeQuantStub()).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.from_numpy(W))
    model.qconfig = tq.QConfig(
        activation=tq.MinMaxObserver.with_args(dtype=torch.quint8),
        weight=tq.MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric))
    prepared = tq.prepare(model)
    prepared(torch.from_numpy(X))                    # calibration: the observers see X and x W^T
    q = tq.convert(prepared)
    xt = q[0](torch.from_numpy(X))
    yt = q[1](xt)
    wt = q[1].weight()
    checks = [
        ("x scale / zero point", (float(xt.q_scale()), int(xt.q_zero_point())), (hand["sx"], hand["zx"])),
        ("x_q", xt.int_repr().numpy(), hand["x_q"]),
        ("W scale / zero point", (float(wt.q_scale()), int(wt.q_zero_point())), (hand["sw"], hand["zw"])),
        ("W_q", wt.int_repr().numpy(), hand["w_q"]),
        ("y scale / zero point", (float(yt.q_scale()), int(yt.q_zero_point())), (hand["sy"], hand["zy"])),
        ("y_q", yt.int_repr().numpy(), hand["y_q"]),
    ]
    out("")
    out("  PyTorch %s, engine %s, eager mode (QuantStub -> Linear -> DeQuantStub, MinMaxObserver):"
        % (torch.__version__, torch.backends.quantized.engine))
    bad = 0
    for name, t_val, f_val in checks:
        same = np.array_equal(np.asarray(t_val, dtype=np.float64), np.asarray(f_val, dtype=np.float64))
        bad += not same
        shown = _mat(t_val) if isinstance(t_val, np.ndarray) else "%.9g, %d" % t_val
        out("     %-22s torch %-28s fastq %s" % (name, shown, "identical" if same else "DIFFERENT: %s" % (f_val,)))
    out("  => %d mismatches: fastq's integers are PyTorch's" % bad if bad == 0 else
        "  => %d MISMATCHES" % bad)
    return bad


def _torch_mlp(torch, out, batch=256, seed=0):
    """784-256-10 MLP, torch eager static quantization with the default x86 qconfig."""
    import torch.nn as nn
    import torch.ao.quantization as tq
    torch.manual_seed(seed)
    model = nn.Sequential(tq.QuantStub(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10),
                          tq.DeQuantStub()).eval()
    tq.fuse_modules(model, [["1", "2"]], inplace=True)
    model.qconfig = tq.get_default_qconfig("x86")
    old_engine = torch.backends.quantized.engine
    torch.backends.quantized.engine = "x86"
    try:
        prepared = tq.prepare(model)
        gen = torch.Generator().manual_seed(seed)
        prepared(torch.randn(batch, 784, generator=gen))          # calibration on random data
        qmodel = tq.convert(prepared)
        model_fq = fastq.from_torch(qmodel)
        x = torch.randn(batch, 784, generator=gen)
        with torch.no_grad():
            expected = qmodel(x).numpy()
        got = model_fq(x.numpy())
        same = int(np.sum(got == expected))
        # One thread each, interleaved, best of 7 rounds of 10 calls: with threads, right after
        # one library ran, its workers' spin-waits share the cores with the other's, so a timed
        # block would mostly measure that contention.
        xn = x.numpy()
        threads = (torch.get_num_threads(), fastq.get_num_threads())
        torch.set_num_threads(1)
        fastq.set_num_threads(1)

        def per_call(fn):
            t0 = time.perf_counter()
            for _ in range(10):
                fn()
            return (time.perf_counter() - t0) / 10

        t_torch = t_fq = float("inf")
        with torch.no_grad():
            for _ in range(7):
                t_torch = min(t_torch, per_call(lambda: qmodel(x)))
                t_fq = min(t_fq, per_call(lambda: model_fq(xn)))
        torch.set_num_threads(threads[0])
        fastq.set_num_threads(threads[1])
    finally:
        torch.backends.quantized.engine = old_engine
    out("")
    out("Part 2: a 784-256-10 MLP (Linear+ReLU fused, default x86 qconfig: HistogramObserver, per-channel weights)")
    out("  calibrated on %d random inputs, then run on %d fresh ones" % (batch, batch))
    for line in repr(model_fq).splitlines():
        out("    " + line)
    out("  outputs identical to torch: %d of %d (%d mismatches)" % (same, expected.size, expected.size - same))
    out("  time per batch of %d, one thread each: torch %.3f ms, fastq %.3f ms (backend %s; indicative)"
        % (batch, t_torch * 1e3, t_fq * 1e3, fastq.get_backend()))
    return expected.size - same


def run(args=None, out=print):
    """The demo; returns the number of mismatches found (0 expected), or 0 without torch."""
    try:
        import torch
    except ImportError:
        torch = None
    hand = _by_hand(out)
    if torch is None:
        out("")
        out("PyTorch is not installed, so the comparison with torch is skipped.")
        out("Install it (CPU build) to see fastq match PyTorch bit for bit:  %s" % INSTALL)
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # torch.ao.quantization's deprecation notices
        bad = _torch_2x2(torch, out, hand)
        bad += _torch_mlp(torch, out, batch=getattr(args, "batch", 256) if args is not None else 256)
    out("")
    out("total mismatches: %d" % bad)
    return bad


def _main(args):
    return 1 if run(args) else 0


def add_parser(subparsers):
    p = subparsers.add_parser("demo", help="a quantized layer by hand, and fastq == PyTorch",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int_at_least(1, 1 << 16), default=256, help="MLP batch size (default 256)")
    p.set_defaults(run=_main)
    return p
