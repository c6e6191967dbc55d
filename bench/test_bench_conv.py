"""GOPS per convolution layer (DS-CNN, ResNet-8, MobileNetV1-0.25 at 96x96; depthwise and
pointwise apart) against the measured int8 peak and against torch's quantized conv (engine
x86), one thread, in one run:

    PYTHONPATH=src python -m pytest bench/test_bench_conv.py --benchmark-only -s [--quick]

fastq's times are whole calls with the qnnpack epilogue (any epilogue costs about the same):
"nchw" from NCHW uint8 to NCHW uint8 (layout copies included), "nhwc" channels last in and out
(conv2d(..., layout_in="nhwc", layout_out="nhwc"), what a network keeping its activations
channels last between convolutions pays). torch's is nnq.Conv2d's forward on a quantized NCHW
tensor (its output is channels last). GOPS = 2 * MACs / time, of the nhwc call.

test_model_conv_layers: every convolution of the four models of test_bench_cnn (DS-CNN,
ResNet-8, MobileNetV1-0.25 96x96, resnet18 112x112), converted from torch (engine x86) as
there, with the layer's own epilogue on the activations the model really gives it; the C
call alone (channels last in and out), at batch 1 and 32 (--quick: batch 1, short loops),
GOPS and % of the measured one-core int8 peak per layer. Its GOPS count the products of the
taps inside the input only (the padding's add 0; clipped layers skip them).

test_conv_clip: the padded layers of ResNet-8 and resnet18 with the GEMM over every tap, over
the taps inside the input only, and as the cost model picks (csrc/conv/clip.c)."""
import time

import numpy as np
import pytest

from conftest import is_quick
from fastq import _bench
from fastq import _kernels as K

QUICK_SIZES = True       # --quick: short loops, batch 1 only in the model table

# name, c_in, h, w, c_out, groups, kernel, stride, padding
LAYERS = [
    ("dscnn.conv1 10x4/2", 1, 49, 10, 64, 1, (10, 4), 2, (5, 1)),
    ("dscnn.dw 3x3", 64, 25, 5, 64, 64, 3, 1, 1),
    ("dscnn.pw", 64, 25, 5, 64, 1, 1, 1, 0),
    ("resnet8.conv1", 3, 32, 32, 16, 1, 3, 1, 1),
    ("resnet8.s1 3x3", 16, 32, 32, 16, 1, 3, 1, 1),
    ("resnet8.s2 3x3/2", 16, 32, 32, 32, 1, 3, 2, 1),
    ("resnet8.s2 3x3", 32, 16, 16, 32, 1, 3, 1, 1),
    ("resnet8.s2 1x1/2", 16, 32, 32, 32, 1, 1, 2, 0),
    ("resnet8.s3 3x3/2", 32, 16, 16, 64, 1, 3, 2, 1),
    ("resnet8.s3 3x3", 64, 8, 8, 64, 1, 3, 1, 1),
    ("mbv1.conv1 3x3/2", 3, 96, 96, 8, 1, 3, 2, 1),
    ("mbv1.dw1 8", 8, 48, 48, 8, 8, 3, 1, 1),
    ("mbv1.pw1 8-16", 8, 48, 48, 16, 1, 1, 1, 0),
    ("mbv1.dw2 16/2", 16, 48, 48, 16, 16, 3, 2, 1),
    ("mbv1.pw2 16-32", 16, 24, 24, 32, 1, 1, 1, 0),
    ("mbv1.dw3 32", 32, 24, 24, 32, 32, 3, 1, 1),
    ("mbv1.pw3 32-32", 32, 24, 24, 32, 1, 1, 1, 0),
    ("mbv1.dw5 64", 64, 12, 12, 64, 64, 3, 1, 1),
    ("mbv1.pw5 64-64", 64, 12, 12, 64, 1, 1, 1, 0),
    ("mbv1.dw7 128", 128, 6, 6, 128, 128, 3, 1, 1),
    ("mbv1.pw7 128-128", 128, 6, 6, 128, 1, 1, 1, 0),
    ("mbv1.dw13 256", 256, 3, 3, 256, 256, 3, 1, 1),
    ("mbv1.pw13 256-256", 256, 3, 3, 256, 1, 1, 1, 0),
]


def pair(v):
    return v if isinstance(v, tuple) else (v, v)


def best_time(fn, budget):
    fn()
    n, t = 1, 0.0
    while True:                       # calls per sample so one sample takes >= 2 ms
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t = time.perf_counter() - t0
        if t >= 2e-3:
            break
        n *= 2
    best = t / n
    end = time.perf_counter() + budget
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def fastq_layer(rng, c, h, w, o, g, k, s, p):
    kh, kw = pair(k)
    wq = rng.integers(-127, 128, (o, c // g, kh, kw)).astype(np.int8)
    cw = K.ConvWeights(wq, 0, g)
    ep = cw.epilogue(128, np.uint8, kind=K.EPI_QNNPACK, int_bias=rng.integers(-1000, 1000, o),
                     scale=np.full(o, 1e-3, np.float32), out_zero_point=128)
    x = rng.integers(0, 256, (1, c, h, w)).astype(np.uint8)
    xn = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    nchw = lambda: K.conv2d(x, ep, pair(s), pair(p), 1, num_threads=1)
    nhwc = lambda: K.conv2d(xn, ep, pair(s), pair(p), 1, num_threads=1, layout_in="nhwc", layout_out="nhwc")
    try:
        nhwc()
    except TypeError:            # a build before the channels-last path
        nhwc = None
    return nchw, nhwc, wq


def torch_layer(wq, c, h, w, o, g, k, s, p):
    import torch
    import torch.ao.nn.quantized as nnq
    torch.backends.quantized.engine = "x86"
    kh, kw = pair(k)
    m = nnq.Conv2d(c, o, (kh, kw), pair(s), pair(p), groups=g, bias=True)
    wt = torch._make_per_channel_quantized_tensor(torch.from_numpy(wq), torch.full((o,), 1e-2, dtype=torch.float64),
                                                  torch.zeros(o, dtype=torch.long), 0)
    m.set_weight_bias(wt, torch.zeros(o))
    m.scale, m.zero_point = 0.5, 128
    x = torch.quantize_per_tensor(torch.rand(1, c, h, w), 1 / 255, 0, torch.quint8)
    return lambda: m(x)


def test_conv_layers(benchmark, request):
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        torch = None
    quick = is_quick(request.config)
    budget = 0.05 if quick else 0.4
    rng = np.random.default_rng(0)
    peak = _bench.peak_int8_gops()
    rows = []
    for name, c, h, w, o, g, k, s, p in LAYERS:
        f, fn, wq = fastq_layer(rng, c, h, w, o, g, k, s, p)
        kh, kw = pair(k)
        oh = K.pool_output_size(h, kh, pair(s)[0], pair(p)[0], 1, False)
        ow = K.pool_output_size(w, kw, pair(s)[1], pair(p)[1], 1, False)
        ops = 2.0 * oh * ow * o * kh * kw * (c // g)
        tc = best_time(f, budget)
        tf = best_time(fn, budget) if fn is not None else tc
        tt = best_time(torch_layer(wq, c, h, w, o, g, k, s, p), budget) if torch is not None else float("nan")
        rows.append((name, ops, tf, tt, tc))
    benchmark.pedantic(fastq_layer(rng, *LAYERS[1][1:])[0], rounds=20, iterations=10)
    import platform
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor()) if platform.system() == "Linux" else platform.processor()
    print("\nCPU: %s" % cpu)
    print("\nbackend %s, one thread, int8 peak %s GOPS" % (K.backend_names()[K.get_backend()],
                                                        "%.0f" % peak if peak else "n/a"))
    print("%-20s %7s %8s %8s %8s %7s %6s %8s %8s" % ("layer", "MOPs", "nchw us", "nhwc us", "torch us", "GOPS",
                                                    "%peak", "torch/nchw", "torch/nhwc"))
    for name, ops, tf, tt, tc in rows:
        gops = ops / tf / 1e9
        print("%-20s %7.3f %8.1f %8.1f %8.1f %7.1f %5.1f%% %8.2f %8.2f" % (
            name, ops / 1e6, tc * 1e6, tf * 1e6, tt * 1e6, gops, 100 * gops / peak if peak else float("nan"),
            tt / tc, tt / tf))
        benchmark.extra_info[name] = {"gops": gops, "fastq_s": tf, "fastq_nchw_s": tc, "torch_s": tt}
    for kind in ("dw", "pw", ""):
        sel = [r for r in rows if ("." + kind) in r[0]]
        tf = sum(r[2] for r in sel)
        tt = sum(r[3] for r in sel)
        tc = sum(r[4] for r in sel)
        print("%s layers: fastq nchw %.1f us, nhwc %.1f us, torch %.1f us, torch/nchw %.2f, torch/nhwc %.2f"
              % (kind or "all", tc * 1e6, tf * 1e6, tt * 1e6, tt / tc, tt / tf))
    assert all(r[2] > 0 for r in rows)


def model_conv_calls(name, batch):
    """(node, layer, input shape, ops, call) per 2-D convolution of one model: the C call of the
    converted layer on the activations the model gives it (NHWC in and out)."""
    import fastq
    import test_bench_cnn as CNN
    _, tm = CNN.build(name)
    m = fastq.from_torch(tm, engine="x86")
    shape = CNN.MODELS[name][1]
    x = np.random.default_rng(0).standard_normal((batch,) + shape).astype(np.float32)
    vals = m.run_values(x)
    slot_of = {v: k for k, v in m._slots.items()}
    calls = []
    for layer, ins, outs, _frees, _want_q, i in m._plan:
        if type(layer).__name__ != "QuantizedConv" or len(getattr(layer, "kernel_size", ())) != 2:
            continue
        xq = vals[slot_of[ins[0]]]
        key = (float(xq.scale), int(xq.zero_point), xq.values.dtype.name)
        ep = layer._op_data(key, lambda: layer._build_op_data(*key))["epilogue"]
        xn = np.ascontiguousarray(xq.values.transpose(0, 2, 3, 1))
        call = (lambda xn=xn, ep=ep, layer=layer: K.conv2d(xn, ep, layer.stride, layer.padding, layer.dilation,
                                                            num_threads=1, layout_in="nhwc", layout_out="nhwc"))
        calls.append((m.nodes[i].name, layer, xq.values.shape, 2.0 * input_macs(layer, xq.values.shape), call))
    return calls


def kept_taps(layer, shape):
    """(taps read inside the input summed over the output pixels of one image, all taps)."""
    kh, kw = layer.kernel_size
    (sh, sw), (ph, pw), (dh, dw) = layer.stride, layer.padding, layer.dilation
    h, w = shape[2:]
    oh = K.pool_output_size(h, kh, sh, ph, dh, False)
    ow = K.pool_output_size(w, kw, sw, pw, dw, False)
    rows = sum(len([i for i in range(kh) if 0 <= y * sh - ph + i * dh < h]) for y in range(oh))
    cols = sum(len([j for j in range(kw) if 0 <= q * sw - pw + j * dw < w]) for q in range(ow))
    return rows * cols, oh * ow * kh * kw


def input_macs(layer, shape):
    """Products of the taps inside the input (those in the padding add 0 and are not work):
    what GOPS here count, so a layer that skips the padding's products is not credited
    with them."""
    kept, _ = kept_taps(layer, shape)
    return shape[0] * kept * (layer.in_channels // layer.groups) * layer.out_channels


def model_conv_rows(name, batch, budget):
    """(node, groups, kernel, input shape, ops, seconds) per convolution of one model."""
    return [(node, layer.groups, tuple(layer.kernel_size), shape, ops, best_time(call, budget))
            for node, layer, shape, ops, call in model_conv_calls(name, batch)]


def test_conv_clip(benchmark, request):
    """The padded 3x3 convolutions of ResNet-8 and resnet18 at 112x112 with their GEMM over
    every tap (padding included: clip "never") and over the taps inside the input only
    (csrc/conv/clip.c: "always"; "auto" is what the cost model picks), batch 1 and 32: the
    figures behind clip.c's CLIP_MIN_SAVED and CLIP_STREAMED_WEIGHTS."""
    import test_bench_cnn as CNN
    quick = is_quick(request.config)
    budget = 0.02 if quick else 0.15
    batches = (1,) if quick else (1, 32)
    print("\nbackend %s, one thread (conv C call, NHWC in and out)" % K.backend_names()[K.get_backend()])
    print("%-18s %-22s %5s %-18s %9s %9s %9s %9s %6s %s" % ("model", "node", "batch", "input", "saved/px", "never us",
                                                           "always us", "auto us", "gain", "auto takes"))
    old = K.conv_set_clip("auto")
    try:
        for name in [n for n in ("ResNet-8", "resnet18 112x112") if n in CNN.available_models()]:
            for b in batches:
                for node, layer, shape, ops, call in model_conv_calls(name, b):
                    if max(layer.padding) == 0 or layer.groups != 1:
                        continue
                    runs = K.conv_clip_runs()
                    call()
                    takes = K.conv_clip_runs() > runs
                    t = {}
                    for mode in ("never", "always", "auto"):
                        K.conv_set_clip(mode)
                        t[mode] = best_time(call, budget)
                    K.conv_set_clip("auto")
                    kept, every = kept_taps(layer, shape)
                    kh, kw = layer.kernel_size
                    saved = (1 - kept / every) * kh * kw * shape[1] * layer.out_channels
                    print("%-18s %-22s %5d %-18s %9.0f %9.1f %9.1f %9.1f %6.3f %s" % (
                        name[:18], node[:22], b, "x".join(map(str, shape)), saved, t["never"] * 1e6,
                        t["always"] * 1e6, t["auto"] * 1e6, t["never"] / t["auto"], "clipped" if takes else "padded"))
                    benchmark.extra_info["%s b%d %s" % (name, b, node)] = {k: v for k, v in t.items()}
    finally:
        K.conv_set_clip(old)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


def test_model_conv_layers(benchmark, request):
    import test_bench_cnn as CNN
    quick = is_quick(request.config)
    budget = 0.02 if quick else 0.15
    batches = (1,) if quick else (1, 32)
    peak = _bench.peak_int8_gops()
    print("\nbackend %s, one thread, int8 peak %s GOPS (conv C call, NHWC in and out)"
          % (K.backend_names()[K.get_backend()], "%.0f" % peak if peak else "n/a"))
    print("%-24s %-22s %4s %-7s %-20s %8s %10s %7s %6s" % ("model", "node", "g", "kernel", "input", "MOPs", "us",
                                                          "GOPS", "%peak"))
    for name in CNN.available_models():
        for b in batches:
            for node, g, k, shape, ops, t in model_conv_rows(name, b, budget):
                gops = ops / t / 1e9
                print("%-24s %-22s %4d %-7s %-20s %8.2f %10.1f %7.1f %5.1f%%" % (
                    name, node[:22], g, "%dx%d" % k, "x".join(map(str, shape)), ops / 1e6, t * 1e6, gops,
                    100 * gops / peak if peak else float("nan")))
                benchmark.extra_info["%s b%d %s" % (name, b, node)] = {"gops": gops, "seconds": t}
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
