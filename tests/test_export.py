"""fastq.export: the generated C, compiled by real compilers and run on real emulators, equals
fastq's model(x) (and torch's outputs, for the torch-imported models) bit for bit.

One program per target holds every model (compile once, run once). Targets: host gcc
(-std=c99 -Wall -Wextra -Werror -pedantic -ffp-contract=off), Cortex-M4F hard float with the
DSP fast path and without it, Cortex-M3 soft float (QEMU mps2-an386 / an385, semihosting),
aarch64 with and without +dotprod (qemu-aarch64 -cpu max). A missing toolchain skips its
target with the install command, except under CI=1, where it fails."""
import os
import subprocess
import warnings

import numpy as np
import pytest

import fastq
from fastq import export
from fastq.layers.dynamic import DynamicQuantizedLinear
from fastq.layers.elementwise import Dequantize, Flatten, Identity, Quantize, ReLU, ReLU6
from fastq.model import Model
from firmware import harness

f32 = np.float32
SAMPLES = 5


# --------------------------------------------------------------------------- random models
def _weight(rng, n, k, per_channel, zero_points, scale=None):
    v = rng.integers(-128, 128, (n, k)).astype(np.int8)
    if per_channel:
        s = rng.uniform(2e-3, 0.05, n) if scale is None else np.full(n, scale)
        z = rng.integers(-20, 20, n) if zero_points else np.zeros(n, np.int64)
        return fastq.QTensor(v, s, z, axis=0)
    return fastq.QTensor(v, float(rng.uniform(2e-3, 0.05)) if scale is None else scale,
                         int(rng.integers(-20, 20)) if zero_points else 0)


def _out_scale(x_scale, w, k):
    """An output scale that keeps most outputs inside the 8-bit range."""
    return float(x_scale * np.max(np.atleast_1d(w.scale)) * 128 * np.sqrt(k) * 0.15)


def static_model(rng, mode, x_dtype, y_dtype, per_channel, zero_points, bias, relu, ties=False,
                 rounding="double", effective_scale="float32", pinned=False, extra=None):
    """Quantize -> Linear -> [ReLU / ReLU6 / Identity] -> Linear -> Dequantize [-> float op].
    ties: power-of-two scales, so that acc * multiplier lands on exact .5 ties."""
    k1, n1, n2 = int(rng.integers(3, 40)), int(rng.integers(2, 24)), int(rng.integers(1, 12))
    qmin = -128 if x_dtype == "int8" else 0
    sx = 2.0 ** -4 if ties else float(rng.uniform(0.01, 0.05))
    zx = int(rng.integers(qmin + 60, qmin + 200))
    layers = [Quantize(sx, zx, x_dtype)]
    s_in, z_in = sx, zx
    for i, (k, n) in enumerate(((k1, n1), (n1, n2))):
        w = _weight(rng, n, k, per_channel, zero_points, 2.0 ** -6 if ties else None)
        sy = s_in * 2.0 ** -6 * 2 if ties else _out_scale(s_in, w, k)
        ymin = -128 if y_dtype == "int8" else 0
        zy = int(rng.integers(ymin + 40, ymin + 216))
        b = None
        if bias:
            b = rng.standard_normal(n).astype(np.float32) * f32(sy * 20)
            if ties:       # multiples of half an accumulator step keep the ties
                b = (np.round(b / (s_in * 2.0 ** -7)) * (s_in * 2.0 ** -7)).astype(np.float32)
        kw = dict(relu=relu and i == 0, requant=mode, dtype=y_dtype)
        if mode == "tflite":
            kw.update(rounding=rounding, effective_scale=effective_scale)
            if pinned:
                kw.update(input_scale=s_in, input_zero_point=z_in)
        layers.append(fastq.QuantizedLinear(w, b, sy, zy, **kw))
        if i == 0 and extra is not None:
            layers.append(extra)
        s_in, z_in = sy, zy
    layers.append(Dequantize())
    return Model(layers)


def dynamic_model(rng, mode, per_channel, bias, relu, reduce_range):
    k, n1, n2 = int(rng.integers(3, 40)), int(rng.integers(2, 20)), int(rng.integers(1, 10))
    l1 = DynamicQuantizedLinear(_weight(rng, n1, k, per_channel, True),
                                rng.standard_normal(n1).astype(np.float32) if bias else None,
                                relu=relu, mode=mode, reduce_range=reduce_range)
    l2 = DynamicQuantizedLinear(_weight(rng, n2, n1, per_channel, False),
                                rng.standard_normal(n2).astype(np.float32) if bias else None,
                                mode=mode, reduce_range=reduce_range)
    return Model([Flatten(), l1, ReLU6() if relu else Identity(), l2, ReLU()])


def random_models(rng):
    out = []
    combos = [  # mode, x dtype, y dtype, per channel, zero points, bias, relu
        ("fbgemm", "uint8", "uint8", False, False, True, True),
        ("fbgemm", "uint8", "int8", True, True, True, False),
        ("fbgemm", "int8", "uint8", True, False, False, True),
        ("fbgemm", "int8", "int8", False, True, False, False),
        ("qnnpack", "uint8", "uint8", False, True, True, True),
        ("qnnpack", "int8", "int8", True, True, True, False),
        ("qnnpack", "uint8", "int8", False, False, False, False),
        ("tflite", "int8", "int8", True, False, True, True),
        ("tflite", "uint8", "uint8", False, True, True, False),
        ("tflite", "int8", "uint8", False, False, False, True),
    ]
    extras = [ReLU(), ReLU6(), Identity(), None, Flatten()]
    for i, c in enumerate(combos):
        out.append(("%s %s->%s pc=%d zw=%d bias=%d relu=%d" % c,
                    static_model(rng, *c, extra=extras[i % len(extras)])))
    for i, c in enumerate(combos):
        out.append(("ties " + "%s %s->%s pc=%d zw=%d bias=%d relu=%d" % c, static_model(rng, *c, ties=True)))
    for rounding, es in (("single", "float64"), ("double_up", "float32"), ("double", "float64")):
        for pc in (False, True):
            out.append(("tflite %s %s pc=%d" % (rounding, es, pc),
                        static_model(rng, "tflite", "int8", "int8", pc, True, True, pc, rounding=rounding,
                                     effective_scale=es, pinned=True, ties=pc)))
    for mode in ("fbgemm", "qnnpack"):
        for pc, bias, relu, rr in ((False, True, True, mode == "fbgemm"), (True, False, False, False),
                                   (True, True, False, True)):
            out.append(("dynamic %s pc=%d bias=%d relu=%d rr=%d" % (mode, pc, bias, relu, rr),
                        dynamic_model(rng, mode, pc, bias, relu, rr)))
    # fixed point with left shifts that wrap (effective scale 2^20): MBQM results anywhere in
    # int32, so the output step's add must be exact
    for rounding in ("double", "single", "double_up"):
        w = _weight(rng, 12, 20, False, True, 0.01)
        layer = fastq.QuantizedLinear(w, rng.standard_normal(12).astype(np.float32), 0.05 * 0.01 / 2.0 ** 20, 120,
                                      requant="tflite", dtype="int8", rounding=rounding)
        out.append(("tflite wrapping left shift %s" % rounding, Model([Quantize(0.05, 3, "int8"), layer, Dequantize()])))
    # a quantized model whose float tail holds ReLU / ReLU6 on floats
    m = static_model(rng, "fbgemm", "uint8", "uint8", False, False, True, False)
    out.append(("float tail ReLU6", Model(list(m) + [ReLU6()])))
    return out


def samples(rng, model, size, count=SAMPLES):
    """Random rows, plus edge rows: exact quantization ties of the first Quantize, zeros,
    tiny values, +-inf and NaN for static models (fastq maps them), large values."""
    x = rng.standard_normal((count, size)).astype(np.float32) * f32(rng.uniform(0.5, 3))
    first = model[0] if not isinstance(model[0], Flatten) else None
    rows = [x]
    if isinstance(first, Quantize):
        q = rng.integers(-140, 300, size)
        rows.append(((q - first.zero_point + 0.5) * first.scale).astype(np.float32)[None])   # ties
        special = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0, -0.0], np.float32)
        rows.append(np.resize(special, size)[None])
    else:
        rows.append(np.where(np.arange(size) == size // 2, np.nan, x[0])[None].astype(np.float32))  # rc 2
        rows.append(np.zeros((1, size), np.float32))                  # the scale-0.1 case
        rows.append((rng.standard_normal((1, size)) * 1e-7).astype(np.float32))   # tiny scales
        rows.append(np.abs(rng.standard_normal((1, size))).astype(np.float32) * f32(50))
    return np.concatenate(rows)


def cancellation_model(rng, k=24, n=16):
    """fbgemm, per-tensor weights, with each bias nearly cancelling the accumulator of the first
    sample: the exact sum acc + bias * rcp lies 2^-13 above or below k + 1/2 (mult = 1), so one
    rounding (fmaf) and two (bias * rcp rounded first, ulp 2^-11 here) give different outputs;
    the C must make whichever rounding fastq's kernels make."""
    sx, zx, sw = 0.05, 128, 0.01
    w = fastq.QTensor(rng.integers(-128, 128, (n, k)).astype(np.int8), sw, 0)
    xq = rng.integers(0, 256, (1, k))
    acc = (xq - zx) @ w.values.astype(np.int64).T
    atws = np.float64(f32(f32(sx) * f32(sw)))
    offs = np.where(np.arange(n) % 2, 2.0 ** -13, -(2.0 ** -13)) + rng.integers(-3, 4, n)
    bias = ((-acc[0] + 0.5 + offs) * atws).astype(np.float32)
    layer = fastq.QuantizedLinear(w, bias, float(f32(atws)), 100, requant="fbgemm")
    x = ((xq - zx) * f32(sx)).astype(np.float32)
    model = Model([Quantize(sx, zx), layer, Dequantize()])
    assert np.array_equal(model[0](x).values, xq)
    return model, np.concatenate([x, rng.standard_normal((2, k)).astype(np.float32)])


def fastq_outputs(model, x):
    """Per sample (one row each, as net_run sees it): float32 outputs and return codes."""
    ys, rcs = [], []
    for row in x:
        try:
            ys.append(model(row[None])[0])
            rcs.append(0)
        except ValueError:              # a dynamic layer refuses NaN / inf
            ys.append(None)
            rcs.append(2)
    return ys, rcs


def quantized_io(model, x):
    """The integers net_run_quantized takes and returns: after the first Quantize, and before
    the last Dequantize (fastq's layers run one by one)."""
    layers = list(model)
    first = next(i for i, l in enumerate(layers) if isinstance(l, Quantize))
    last = max(i for i, l in enumerate(layers) if isinstance(l, Dequantize))
    qin, qout = [], []
    for row in x:
        v = row[None]
        for l in layers[:first + 1]:
            v = l(v)
        qin.append(v.values[0])
        for l in layers[first + 1:last]:
            v = l(v)
        qout.append(v.values[0].astype(np.int64))
    return np.array(qin), np.array(qout)


# --------------------------------------------------------------------------- torch models
def torch_models(rng):
    """(label, fastq model, inputs, torch's outputs): the README's 2x2 layer, a 784-256-10
    x86-default MLP, a qnnpack MLP, a dynamic MLP (x86 and qnnpack)."""
    torch = pytest.importorskip("torch")
    import torch.nn as nn
    import torch.ao.quantization as tq
    from fastq.tools.demo import W, X
    out = []

    def convert(model, engine, qconfig, calib):
        old = torch.backends.quantized.engine
        torch.backends.quantized.engine = engine
        try:
            model.qconfig = qconfig
            p = tq.prepare(model)
            p(calib)
            return tq.convert(p)
        finally:
            torch.backends.quantized.engine = old

    def run(engine, tm, x):
        old = torch.backends.quantized.engine
        torch.backends.quantized.engine = engine
        try:
            with torch.no_grad():
                return np.stack([tm(torch.from_numpy(r[None])).numpy()[0] for r in x])
        finally:
            torch.backends.quantized.engine = old

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = nn.Sequential(tq.QuantStub(), nn.Linear(2, 2, bias=False), tq.DeQuantStub()).eval()
        with torch.no_grad():
            m[1].weight.copy_(torch.from_numpy(W))
        qc = tq.QConfig(activation=tq.MinMaxObserver.with_args(dtype=torch.quint8),
                        weight=tq.MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric))
        tm = convert(m, "x86", qc, torch.from_numpy(X))
        x = np.concatenate([X, rng.standard_normal((3, 2)).astype(np.float32)])
        out.append(("torch 2x2 (README)", fastq.from_torch(tm, engine="x86"), x, run("x86", tm, x)))

        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(0)
        for engine, dims in (("x86", (784, 256, 10)), ("qnnpack", (64, 48, 10))):
            m = nn.Sequential(tq.QuantStub(), nn.Linear(dims[0], dims[1]), nn.ReLU(), nn.Linear(dims[1], dims[2]),
                              tq.DeQuantStub()).eval()
            tq.fuse_modules(m, [["1", "2"]], inplace=True)
            tm = convert(m, engine, tq.get_default_qconfig(engine), torch.randn(256, dims[0], generator=gen))
            x = torch.randn(4, dims[0], generator=gen).numpy()
            out.append(("torch %s MLP %s" % (engine, "-".join(map(str, dims))),
                        fastq.from_torch(tm, engine=engine), x, run(engine, tm, x)))
        for engine in ("x86", "qnnpack"):
            m = nn.Sequential(nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 8)).eval()
            old = torch.backends.quantized.engine
            torch.backends.quantized.engine = engine
            try:
                tm = tq.quantize_dynamic(m, {nn.Linear})
            finally:
                torch.backends.quantized.engine = old
            x = (torch.randn(4, 32, generator=gen) * 3).numpy()
            out.append(("torch dynamic %s MLP 32-24-8" % engine, fastq.from_torch(tm, engine=engine), x,
                        run(engine, tm, x)))
    return out


# --------------------------------------------------------------------------- the suite
class Suite:
    def __init__(self, tmp):
        rng = np.random.default_rng(2026)
        self.tmp = tmp
        self.cases, self.expected, self.labels = [], {}, {}
        entries = [(label, m, None, None) for label, m in random_models(rng)]
        entries.append(("fbgemm near-cancellation",) + cancellation_model(rng) + (None,))
        if hasattr(fastq, "quantize_model"):       # calibrated by fastq alone, from numpy weights
            for qconfig in ("x86", "qnnpack"):
                w1, w2 = rng.standard_normal((20, 30)) * 0.2, rng.standard_normal((6, 20)) * 0.2
                layers = [{"weight": w1.astype(np.float32), "bias": np.zeros(20, np.float32), "relu": True},
                          {"weight": w2.astype(np.float32), "bias": rng.standard_normal(6).astype(np.float32)}]
                batches = [rng.standard_normal((32, 30)).astype(np.float32) for _ in range(2)]
                entries.append(("quantize_model %s (numpy weights)" % qconfig,
                                fastq.quantize_model(layers, batches, qconfig=qconfig), None, None))
        try:
            entries += torch_models(rng)
        except pytest.skip.Exception:
            pass
        for i, (label, model, x, torch_y) in enumerate(entries):
            name = "m%d" % i
            gen = export.generate(model, name=name)
            if x is None:
                x = samples(rng, model, gen.input_size)
            ys, rcs = fastq_outputs(model, x)
            if torch_y is not None:      # the torch-imported models: fastq must equal torch first
                assert all(np.array_equal(np.asarray(a).view(np.uint32), np.asarray(b, np.float32).view(np.uint32))
                           for a, b in zip(ys, torch_y)), label
            q = qy = None
            if gen.has_quantized:
                q, qy = quantized_io(model, x)
            self.cases.append(harness.Case(name, gen, x, q))
            self.expected[name] = (ys, rcs, qy)
            self.labels[name] = label

    def compare(self, results):
        """(values compared, mismatching values, details) over every case."""
        total, bad, details = 0, 0, []
        for c in self.cases:
            ys, rcs, qy = self.expected[c.name]
            r = results[c.name]
            for s, (y, rc) in enumerate(zip(ys, rcs)):
                if r.rc[s] != rc:
                    bad += 1
                    details.append("%s (%s) sample %d: rc %d, expected %d" % (c.name, self.labels[c.name], s, r.rc[s], rc))
                    continue
                if y is None:
                    continue
                got, exp = r.y[s], np.asarray(y, np.float32).view(np.uint32)
                total += exp.size
                nb = int(np.sum(got != exp))
                if nb:
                    bad += nb
                    details.append("%s (%s) sample %d: %d of %d floats differ, got %s expected %s" % (
                        c.name, self.labels[c.name], s, nb, exp.size, got[:6], exp[:6]))
            if qy is not None:
                total += qy.size
                nb = int(np.sum(r.qy != qy)) + int(np.sum(r.qrc != 0))
                if nb:
                    bad += nb
                    details.append("%s (%s) net_run_quantized: %d differ" % (c.name, self.labels[c.name], nb))
        return total, bad, details


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return Suite(tmp_path_factory.mktemp("export"))


def _need(target):
    missing = target.missing()
    if missing:
        msg = "%s: %s not found; install with: %s" % (target.name, ", ".join(missing), harness.INSTALL)
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.mark.parametrize("target", list(harness.TARGETS))
def test_exported_models_bit_exact(suite, target):
    t = harness.TARGETS[target]
    _need(t)
    exe = harness.build(t, suite.cases, str(suite.tmp / target))
    rc, out, err = harness.run(t, exe, timeout=240)
    assert rc == 0, "%s exited with %d: %s" % (target, rc, err[-2000:])
    total, bad, details = suite.compare(harness.parse(out, suite.cases))
    assert total > 1000
    assert bad == 0, "%d of %d values differ on %s:\n%s" % (bad, total, target, "\n".join(details[:20]))


# --------------------------------------------------------------------------- fast paths
@pytest.mark.parametrize("target, instruction", [("cortex-m4f", "smlad"), ("aarch64-dotprod", "sdot")])
def test_fast_path_is_compiled_in(suite, target, instruction):
    """The DSP / dot-product builds above really run SMLAD / SDOT, the portable ones do not."""
    t = harness.TARGETS[target]
    _need(t)
    objdump = t.cc.replace("gcc", "objdump")
    portable = {"cortex-m4f": "cortex-m4f-portable", "aarch64-dotprod": "aarch64"}[target]
    for name, expected in ((target, True), (portable, False)):
        exe = suite.tmp / name / ("prog_%s.elf" % name)
        if not exe.exists():
            pytest.skip("run test_exported_models_bit_exact[%s] first" % name)
        asm = subprocess.run([objdump, "-d", str(exe)], capture_output=True, text=True).stdout
        assert (("\t%s" % instruction) in asm) == expected, name


# --------------------------------------------------------------------------- integer only
def test_tflite_quantized_path_is_integer_only(tmp_path):
    """A tflite model's net_run_quantized compiles with NET_INTEGER_ONLY for an FPU-less
    Cortex-M3 without one float or double helper call, and with -mgeneral-regs-only on the
    host (any float operation is then a compile error)."""
    rng = np.random.default_rng(5)
    model = static_model(rng, "tflite", "int8", "int8", True, True, True, True, extra=ReLU6())
    gen = export.export_c(model, str(tmp_path), name="net")
    assert gen.integer_only and gen.has_quantized
    src = str(tmp_path / "net.c")
    p = subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Werror", "-mgeneral-regs-only", "-DNET_INTEGER_ONLY",
                        "-c", src, "-o", str(tmp_path / "host.o")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    p = subprocess.run(["gcc", "-std=c99", "-O2", "-mgeneral-regs-only", "-c", src, "-o", str(tmp_path / "f.o")],
                       capture_output=True, text=True)
    assert p.returncode != 0          # net_run (Quantize, Dequantize) does need floats
    t = harness.TARGETS["cortex-m3"]
    _need(t)
    obj = str(tmp_path / "m3.o")
    p = subprocess.run([t.cc] + t.flags + ["-DNET_INTEGER_ONLY", "-c", src, "-o", obj], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    undefined = subprocess.run(["arm-none-eabi-nm", "-u", obj], capture_output=True, text=True).stdout.split()
    floaty = [s for s in undefined if s.startswith(("__aeabi_f", "__aeabi_d", "__aeabi_i2f", "__aeabi_ui2f",
                                                    "__aeabi_l2f", "__aeabi_i2d"))]
    assert floaty == [], floaty
    assert "net_run_quantized" in subprocess.run(["arm-none-eabi-nm", obj], capture_output=True, text=True).stdout


# --------------------------------------------------------------------------- footprint
def test_footprint_exact_parts_and_estimates(tmp_path):
    """weights = the bytes of every static const array; arena = the planned offsets; the code
    and stack estimates are upper bounds of arm-none-eabi-size / -fstack-usage on Cortex-M4."""
    rng = np.random.default_rng(7)
    model = static_model(rng, "fbgemm", "uint8", "uint8", True, True, True, True, extra=ReLU())
    gen = export.export_c(model, str(tmp_path), name="net")
    lin = [l for l in model if isinstance(l, fastq.QuantizedLinear)]
    n1, k1 = lin[0].weight.values.shape
    n2, k2 = lin[1].weight.values.shape
    # weights + per-channel zero points, mult, bias, (rcp is 1: one #define) of each layer; the
    # weights are the larger of the portable int8 [N][K] and the ARM DSP path's int16 [N4][K4]
    # (only one of them is compiled)
    r4 = lambda v: (v + 3) // 4 * 4  # noqa: E731
    assert gen.footprint.weights == sum(max(n * k + 4 * n, 2 * r4(n) * r4(k)) + 2 * 4 * n
                                        for n, k in ((n1, k1), (n2, k2)))
    # the largest pair of live values: input bytes (k1) next to the first output (n1), etc.
    assert gen.footprint.arena >= max(k1, n1) and gen.footprint.arena <= 4 * (k1 + n1 + n2 + n2)
    assert "#define NET_ARENA_BYTES %d" % gen.footprint.arena in gen.header
    assert "weights and constants %d (exact)" % gen.footprint.weights in gen.header
    t = harness.TARGETS["cortex-m4f"]
    _need(t)
    obj = str(tmp_path / "net.o")
    flags = [f for f in t.flags if f != "-O2"] + ["-Os", "-fstack-usage", "-ffunction-sections"]
    p = subprocess.run([t.cc] + flags + ["-c", str(tmp_path / "net.c"), "-o", obj], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    size = subprocess.run(["arm-none-eabi-size", "-A", obj], capture_output=True, text=True).stdout
    text = sum(int(line.split()[1]) for line in size.splitlines() if line.startswith(".text"))
    rodata = sum(int(line.split()[1]) for line in size.splitlines() if line.startswith(".rodata"))
    arrays = gen.source.count("static const ")
    assert 0 <= rodata - gen.footprint.weights < 4 * arrays       # only alignment padding on top
    assert text <= gen.footprint.code, (text, gen.footprint.code)
    assert stack_chain(str(tmp_path / "net.su")) <= gen.footprint.stack


def stack_chain(su_path):
    """An upper bound of the deepest call chain from -fstack-usage: net_run -> one layer ->
    at most two nested fq_ helpers (the largest of each kind)."""
    frames = {"run": [0], "layer": [0], "helper": [0]}
    for line in open(su_path).read().splitlines():
        fn, size = line.split("\t")[0].rsplit(":", 1)[-1].split(".")[0], int(line.split("\t")[1])
        kind = "helper" if fn.startswith("fq_") else ("run" if fn.endswith(("_run_quantized",)) or fn.count("_") == 1
                                                      else "layer")
        frames[kind].append(size)
    return max(frames["run"]) + max(frames["layer"]) + sum(sorted(frames["helper"])[-2:])


# --------------------------------------------------------------------------- API, CLI, errors
def test_model_export_c_and_cli(tmp_path, capsys):
    from fastq.tools.cli import main
    rng = np.random.default_rng(3)
    model = static_model(rng, "qnnpack", "uint8", "uint8", False, False, True, True)
    gen = model.export_c(str(tmp_path / "a"), name="tiny")
    assert (tmp_path / "a" / "tiny.h").exists() and (tmp_path / "a" / "tiny.c").exists()
    path = str(tmp_path / "m.npz")
    model.save(path)
    assert main(["export-c", path, "--out", str(tmp_path / "b"), "--name", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "flash: %d bytes" % gen.footprint.flash in out and "arena %d exact" % gen.footprint.arena in out
    assert (tmp_path / "b" / "tiny.c").read_text() == (tmp_path / "a" / "tiny.c").read_text()
    p = subprocess.run(["gcc"] + harness.WARN + ["-c", str(tmp_path / "b" / "tiny.c"), "-o", str(tmp_path / "t.o")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


class _Unknown:
    takes = "any"

    def __call__(self, x):
        return x


def test_errors_name_the_node(tmp_path):
    rng = np.random.default_rng(1)
    model = static_model(rng, "fbgemm", "uint8", "uint8", False, False, True, False)
    bad = Model(list(model)[:2] + [_Unknown()] + list(model)[2:], names=["q", "fc1", "mystery", "fc2", "dq"])
    with pytest.raises(NotImplementedError, match="mystery.*_Unknown"):
        export.generate(bad)
    with pytest.raises(ValueError, match="name"):
        export.generate(model, name="1net")
    with pytest.raises(TypeError, match="directory"):
        export.export_c(model, 3)
    # a Linear fed floats
    with pytest.raises(NotImplementedError, match="fc1.*Quantize"):
        export.generate(Model(list(model)[1:], names=["fc1", "fc2", "dq"]))
    # an accumulator that could overflow int32
    k = 70000
    w = fastq.QTensor(np.full((2, k), -128, np.int8), 0.01, 0)
    big = Model([Quantize(0.1, 0), fastq.QuantizedLinear(w, None, 1.0, 0), Dequantize()], names=["q", "huge", "dq"])
    with pytest.raises(ValueError, match="huge.*overflow"):
        export.generate(big)
    # a tflite layer pinned to another input quantization
    w = fastq.QTensor(rng.integers(-128, 128, (3, 4)).astype(np.int8), 0.01, 0)
    pinned = fastq.QuantizedLinear(w, None, 0.5, 0, requant="tflite", input_scale=0.25, input_zero_point=3)
    with pytest.raises(ValueError, match="fc.*input_scale"):
        export.generate(Model([Quantize(0.1, 3), pinned], names=["q", "fc"]))
    # no Linear: the sample size must be given
    with pytest.raises(ValueError, match="input_size"):
        export.generate(Model([Quantize(0.1, 3), Dequantize()]))
    g = export.generate(Model([Quantize(0.1, 3), ReLU(), Dequantize()]), input_size=7)
    assert g.input_size == 7 and g.has_quantized


def test_identity_only_model_copies(tmp_path):
    """Nothing computes the output: net_run copies its input (and still compiles cleanly)."""
    gen = export.export_c(Model([Identity()]), str(tmp_path), input_size=3)
    assert "output[i] = input[i]" in gen.source and not gen.has_quantized
    p = subprocess.run(["gcc"] + harness.WARN + ["-c", str(tmp_path / "net.c"), "-o", str(tmp_path / "n.o")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


# --------------------------------------------------------------------------- graph models
GRAPH_TARGETS = ["host", "cortex-m4f", "cortex-m3", "aarch64-dotprod"]


@pytest.fixture(scope="module")
def graph_suite(tmp_path_factory):
    """The graph helper's torch model families (tests/graph_models.py) under x86 and qnnpack:
    those the C export takes, with fastq's outputs per sample; and the refusals."""
    torch = pytest.importorskip("torch")
    try:
        import graph_models
        from fastq.layers import arith  # noqa: F401
    except ImportError:
        pytest.skip("the graph ops (layers/arith.py, tests/graph_models.py) are not merged in")
    cases, expected, labels, refused = [], {}, {}, {}
    for fam, build in sorted(graph_models.FAMILIES.items()):
        for engine in ("x86", "qnnpack"):
            old = torch.backends.quantized.engine
            torch.backends.quantized.engine = engine
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    tm, xs = build(engine)
                model = fastq.from_torch(tm, engine=engine)
            finally:
                torch.backends.quantized.engine = old
            name = "g%d" % len(cases)
            try:
                gen = export.generate(model, name=name)
            except NotImplementedError as e:
                refused["%s/%s" % (fam, engine)] = str(e)
                continue
            x = np.concatenate([xs[1], xs[3]])[:6]
            ys, rcs = fastq_outputs(model, x)
            cases.append(harness.Case(name, gen, x.reshape(len(x), -1)))
            expected[name] = (ys, rcs, None)
            labels[name] = "%s/%s" % (fam, engine)
    s = object.__new__(Suite)
    s.tmp, s.cases, s.expected, s.labels = tmp_path_factory.mktemp("graph"), cases, expected, labels
    s.refused = refused
    return s


def test_graph_refusals_name_the_node(graph_suite):
    """Transposes inside a sample and several outputs are refused, each naming its node."""
    assert len(graph_suite.cases) >= 8, graph_suite.refused
    for fam, msg in graph_suite.refused.items():
        assert "node" in msg or "outputs" in msg, (fam, msg)


@pytest.mark.parametrize("target", GRAPH_TARGETS)
def test_graph_models_bit_exact(graph_suite, target):
    t = harness.TARGETS[target]
    _need(t)
    exe = harness.build(t, graph_suite.cases, str(graph_suite.tmp / target))
    rc, out, err = harness.run(t, exe, timeout=240)
    assert rc == 0, "%s exited with %d: %s" % (target, rc, err[-2000:])
    total, bad, details = graph_suite.compare(harness.parse(out, graph_suite.cases))
    assert total > 100
    assert bad == 0, "%d of %d values differ on %s:\n%s" % (bad, total, target, "\n".join(details[:20]))
