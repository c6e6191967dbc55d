"""The graph's ops against torch's quantized kernels (x86, fbgemm, qnnpack) and against
fastq.reference, with constructed near-ties; graph validation; refusals."""
import warnings

import numpy as np
import pytest

import fastq
from fastq import reference
from fastq.layers import arith as ar, elementwise as fm, shape as sh
from fastq.model import Node

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
import torch.ao.quantization as tq  # noqa: E402

from torch_helpers import engine_fixture  # noqa: E402,F401

warnings.filterwarnings("ignore", message=".*reduce_range.*")
f32 = np.float32
SIZES = (1, 5, 63, 64, 65, 127, 128, 129, 200, 300)


def _tq(v, s, z):
    return torch._make_per_tensor_quantized_tensor(torch.from_numpy(v), s, z)


def _cases(rng, count):
    """Scales related by small ratios (so many sums land on or next to .5 of the output step)
    and random ones; zero points anywhere."""
    for t in range(count):
        sa = float(f32(10 ** rng.uniform(-2, -1)))
        if t % 3:
            sb = float(f32(sa * rng.choice([1, 0.5, 2, 3, 1.5])))
            s = float(f32(sa * rng.choice([1, 2, 0.5, 4, 1.5, 3])))
        else:
            sb, s = float(f32(10 ** rng.uniform(-2, -1))), float(f32(10 ** rng.uniform(-2, -0.5)))
        n = int(SIZES[t % len(SIZES)])
        za, zb, z = (int(v) for v in rng.integers(0, 256, 3))
        yield (rng.integers(0, 256, n).astype(np.uint8), sa, za,
               rng.integers(0, 256, n).astype(np.uint8), sb, zb, s, z)


@pytest.mark.parametrize("relu", [False, True])
def test_quantized_add_matches_torch(engine, relu):
    rng = np.random.default_rng(7)
    arithmetic = "qnnpack" if engine == "qnnpack" else "fbgemm"
    op = torch.ops.quantized.add_relu if relu else torch.ops.quantized.add
    bad = other = total = 0
    for a, sa, za, b, sb, zb, s, z in _cases(rng, 600):
        if relu and z == 255 and engine == "qnnpack":
            with pytest.raises(ValueError, match="255"):
                ar.QuantizedAdd(s, z, relu=True, arithmetic=arithmetic)(fastq.QTensor(a, sa, za), fastq.QTensor(b, sb, zb))
            continue
        expected = op(_tq(a, sa, za), _tq(b, sb, zb), s, z).int_repr().numpy()
        layer = ar.QuantizedAdd(s, z, relu=relu, arithmetic=arithmetic)
        got = layer(fastq.QTensor(a, sa, za), fastq.QTensor(b, sb, zb))
        assert (got.scale, got.zero_point) == (s, z)
        if arithmetic == "qnnpack":
            ref = reference.qadd_qnnpack(a, sa, za, b, sb, zb, s, z, relu)
            alt = reference.qadd_fbgemm(a, sa, za, b, sb, zb, s, z, relu)
        else:
            ref = reference.qadd_fbgemm(a, sa, za, b, sb, zb, s, z, relu, vector_block=64)
            alt = reference.qadd_fbgemm(a, sa, za, b, sb, zb, s, z, relu, vector_block=0)
        bad += int(np.sum(got.values != expected)) + int(np.sum(ref != expected))
        other += int(np.sum(alt != expected))
        total += a.size
    assert total > 50000 and bad == 0
    assert other > 0            # the cases tell the kernels apart: a wrong formula would show


def test_qnnpack_add_refuses_scale_ratios_torch_refuses():
    a = fastq.QTensor(np.zeros(4, np.uint8), 1.0, 0)
    with pytest.raises(ValueError, match=r"2\*\*-14"):
        ar.QuantizedAdd(1e-3, 0, arithmetic="qnnpack")(a, a)


@pytest.mark.parametrize("relu", [False, True])
def test_quantized_mul_matches_torch(engine, relu):
    rng = np.random.default_rng(8)
    op = torch.ops.quantized.mul_relu if relu else torch.ops.quantized.mul
    bad = total = 0
    for a, sa, za, b, sb, zb, s, z in _cases(rng, 300):
        s = float(f32(sa * sb * rng.choice([1, 16, 100, 3, 1 / 3, 255])))
        expected = op(_tq(a, sa, za), _tq(b, sb, zb), s, z).int_repr().numpy()
        got = ar.QuantizedMul(s, z, relu=relu)(fastq.QTensor(a, sa, za), fastq.QTensor(b, sb, zb))
        ref = reference.qmul(a, za, b, zb, reference.qmul_multiplier(sa, sb, s), z, relu)
        bad += int(np.sum(got.values != expected)) + int(np.sum(ref != expected))
        total += a.size
    assert total > 20000 and bad == 0


def test_scalar_ops_match_torch(engine):
    rng = np.random.default_rng(9)
    bad = 0
    for t in range(400):
        s, z = float(f32(10 ** rng.uniform(-2, 0))), int(rng.integers(0, 256))
        a = rng.integers(0, 256, int(rng.integers(1, 200))).astype(np.uint8)
        # scalars on exact multiples / half multiples of the scale (ties of c / s), big ones, zero
        c = float(rng.choice([rng.normal() * 3, (rng.integers(-300, 300) + 0.5) * s,
                              rng.integers(-300, 300) * s, 0.0, -rng.uniform(0, 5)]))
        for torch_op, cls in ((torch.ops.quantized.add_scalar, ar.QuantizedAddScalar),
                              (torch.ops.quantized.mul_scalar, ar.QuantizedMulScalar)):
            e = torch_op(_tq(a, s, z), c)
            g = cls(c)(fastq.QTensor(a, s, z))
            bad += int(np.sum(g.values != e.int_repr().numpy()))
            bad += int((g.scale, g.zero_point) != (e.q_scale(), e.q_zero_point()))
    assert bad == 0


def test_quantized_cat_requantizes_like_torch(engine):
    rng = np.random.default_rng(10)
    for t in range(60):
        parts = [(rng.integers(0, 256, (3, int(rng.integers(1, 9)))).astype(np.uint8),
                  float(f32(10 ** rng.uniform(-2, 0))), int(rng.integers(0, 256))) for _ in range(3)]
        if t % 4 == 0:                      # equal qparams: torch still round-trips through float
            parts = [(v, parts[0][1], parts[0][2]) for v, _, _ in parts]
        s, z = (parts[0][1], parts[0][2]) if t % 4 == 0 else (float(f32(10 ** rng.uniform(-2, 0))), int(rng.integers(0, 256)))
        e = torch.ops.quantized.cat([_tq(*p) for p in parts], dim=1, scale=s, zero_point=z).int_repr().numpy()
        g = ar.QuantizedCat(s, z, dim=1)(*[fastq.QTensor(*p) for p in parts])
        assert np.array_equal(g.values, e)
        assert np.array_equal(reference.cat(parts, s, z, axis=1), e)


def test_torch_cat_of_quantized_tensors_takes_the_first_qparams(engine):
    rng = np.random.default_rng(13)
    parts = [(rng.integers(0, 256, (2, 5)).astype(np.uint8), 0.1, 10), (rng.integers(0, 256, (2, 3)).astype(np.uint8), 0.05, 100)]
    e = torch.cat([_tq(*p) for p in parts], 1)
    g = ar.Cat(1)(*[fastq.QTensor(*p) for p in parts])
    assert np.array_equal(g.values, e.int_repr().numpy()) and (g.scale, g.zero_point) == (e.q_scale(), e.q_zero_point())
    with pytest.raises(TypeError, match="floats"):
        ar.Cat(1)(np.zeros((2, 5), np.float32), fastq.QTensor(*parts[1]))


def test_quantized_clamps_match_torch_at_ties(engine):
    """Hardtanh / ReLU6 bounds put on or one float next to a half step: torch quantizes them
    with quantize_val (zp added in float, no fma); quantize_per_tensor's fma would differ."""
    rng = np.random.default_rng(11)
    q = np.arange(256, dtype=np.uint8)
    fma_bad = 0
    for t in range(600):
        scale, zp = float(f32(10 ** rng.uniform(-3, 0))), int(rng.integers(0, 256))
        lo = f32((int(rng.integers(-100, 100)) + 0.5) * f32(scale))
        if t % 3 == 0:
            lo = np.nextafter(lo, f32(rng.choice([-1, 1]) * np.inf))
        lo = float(lo)
        hi = lo + float(f32(scale)) * int(rng.integers(1, 50))
        e = torch.nn.functional.hardtanh(_tq(q, scale, zp), lo, hi).int_repr().numpy()
        assert np.array_equal(fm.Hardtanh(lo, hi)(fastq.QTensor(q, scale, zp)).values, e)
        fma = np.clip(q, reference.quantize_per_tensor(f32(lo), scale, zp), reference.quantize_per_tensor(f32(hi), scale, zp))
        fma_bad += int(np.sum(fma != e))
        s6 = f32(6.0 / (int(rng.integers(1, 300)) + 0.5))
        s6 = float(np.nextafter(s6, f32(rng.choice([-1, 1]) * np.inf)) if t % 2 else s6)
        for torch_op in (torch.ao.nn.quantized.ReLU6(), torch.nn.functional.relu6):
            e6 = torch_op(_tq(q, s6, zp)).int_repr().numpy()
            assert np.array_equal(fm.ReLU6()(fastq.QTensor(q, s6, zp)).values, e6)
    assert fma_bad > 0


def test_kernels_equal_reference_for_int8():
    rng = np.random.default_rng(12)
    for n in SIZES:
        a, b = rng.integers(-128, 128, n).astype(np.int8), rng.integers(-128, 128, n).astype(np.int8)
        sa, sb, s = 0.02, 0.03, 0.04
        za, zb, z = -3, 7, 1
        got = ar.QuantizedAdd(s, z)(fastq.QTensor(a, sa, za), fastq.QTensor(b, sb, zb)).values
        assert np.array_equal(got, reference.qadd_fbgemm(a, sa, za, b, sb, zb, s, z, dtype="int8"))
        got = ar.QuantizedMul(s, z, relu=True)(fastq.QTensor(a, sa, za), fastq.QTensor(b, sb, zb)).values
        ref = reference.qmul(a, za, b, zb, reference.qmul_multiplier(sa, sb, s), z, True, dtype="int8")
        assert np.array_equal(got, ref)


def test_binary_ops_refuse_bad_inputs():
    a = fastq.QTensor(np.zeros((2, 3), np.uint8), 0.1, 0)
    with pytest.raises(ValueError, match="broadcasting"):
        ar.QuantizedAdd(0.1, 0)(a, fastq.QTensor(np.zeros((1, 3), np.uint8), 0.1, 0))
    with pytest.raises(TypeError, match="QTensor"):
        ar.QuantizedMul(0.1, 0)(a, np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="arithmetic"):
        ar.QuantizedAdd(0.1, 0, arithmetic="onednn")
    with pytest.raises(ValueError, match="vector_block"):
        ar.QuantizedAdd(0.1, 0, vector_block=-1)
    with pytest.raises(TypeError, match="value"):
        ar.QuantizedAddScalar(float("nan"))


# ------------------------------------------------------------------ hand-built graphs
def _q():
    return fm.Quantize(0.05, 128)


def test_hand_built_graph_two_inputs_two_outputs():
    nodes = [Node("qa", _q(), "a"), Node("qb", _q(), "b"),
             Node("s", ar.QuantizedAdd(0.1, 128), ("qa", "qb")),
             Node("shape", sh.Size(0), "a"), Node("r", sh.Reshape([None, -1]), ("s", "shape")),
             Node("p", ar.QuantizedMul(0.05, 100), ("qa", "qb"))]
    model = fastq.Model(nodes=list(reversed(nodes)), inputs=("a", "b"), outputs=("r", "p"))
    assert [n.name for n in model.nodes][:2] == ["shape", "qa"] or model.nodes[-1].name in ("r", "p")
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 2, 4)).astype(np.float32), rng.standard_normal((3, 2, 4)).astype(np.float32)
    r, p = model(a, b)
    qa, qb = fastq.quantize(a, 0.05, 128), fastq.quantize(b, 0.05, 128)
    want = fastq.dequantize(ar.QuantizedAdd(0.1, 128)(qa, qb)).reshape(3, -1)
    assert r.shape == (3, 8) and np.array_equal(r, want)
    assert np.array_equal(p, fastq.dequantize(ar.QuantizedMul(0.05, 100)(qa, qb)))
    with pytest.raises(TypeError, match="2 input"):
        model(a)


def test_graph_validation_errors():
    relu = fm.ReLU()
    with pytest.raises(ValueError, match="dangling"):
        fastq.Model(nodes=[Node("r", relu, "nowhere")], inputs=("x",))
    with pytest.raises(ValueError, match="cycle"):
        fastq.Model(nodes=[Node("a", relu, "b"), Node("b", relu, "a")], inputs=("x",), outputs=("b",))
    with pytest.raises(ValueError, match="two nodes are named"):
        fastq.Model(nodes=[Node("a", relu, "x"), Node("a", relu, "x", outputs=("c",))], inputs=("x",))
    with pytest.raises(ValueError, match="made twice"):
        fastq.Model(nodes=[Node("a", relu, "x"), Node("b", relu, "x", outputs=("a",))], inputs=("x",))
    with pytest.raises(ValueError, match="made by no node"):
        fastq.Model(nodes=[Node("a", relu, "x")], inputs=("x",), outputs=("zzz",))
    with pytest.raises(TypeError, match="not a fastq layer"):
        Node("a", object(), "x")
    with pytest.raises(TypeError, match="either layers"):
        fastq.Model([relu], nodes=[Node("a", relu, "x")])
    with pytest.raises(ValueError, match="'input'"):
        fastq.Model([relu], names=["input"])


def test_chain_is_the_special_case():
    w = fastq.QTensor(np.ones((2, 3), np.int8), 0.1, 0)
    model = fastq.Model([_q(), fastq.QuantizedLinear(w, None, 0.2, 5), fm.Dequantize()], names=["q", "fc", "dq"])
    assert model.inputs == ("input",) and model.outputs == ("dq",)
    assert [n.inputs for n in model.nodes] == [("input",), ("q",), ("fc",)]
    assert isinstance(model[1], fastq.QuantizedLinear) and len(model) == 3 and model.names == ["q", "fc", "dq"]


# ------------------------------------------------------------------ refusals
def _convert(m, engine, shape):
    m.eval()
    m.qconfig = tq.get_default_qconfig(engine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = tq.prepare(m)
        p(torch.randn(*shape))
        return tq.convert(p)


class _ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.conv, self.dequant = tq.QuantStub(), nn.Conv3d(1, 2, 3), tq.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.conv(self.quant(x)))


class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return x


class _Sigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.fc, self.dequant = tq.QuantStub(), nn.Linear(4, 4), tq.DeQuantStub()

    def forward(self, x):
        return self.dequant(torch.sigmoid(self.fc(self.quant(x))))


class _Slice(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.fc, self.dequant = tq.QuantStub(), nn.Linear(4, 4), tq.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.fc(self.quant(x))[:, :2])


def test_refusals_name_op_node_and_path(engine):
    with pytest.raises(NotImplementedError, match=r"Conv3d.*fx node 'conv', module 'conv'.*fastq reproduces "
                                                  r"quantized Conv1d / Conv2d"):
        fastq.from_torch(_convert(_ConvNet(), engine, (2, 1, 5, 5, 5)))
    with pytest.raises(NotImplementedError, match=r"sigmoid.*fx node 'sigmoid'"):
        fastq.from_torch(_convert(_Sigmoid(), engine, (8, 4)))
    with pytest.raises(NotImplementedError, match=r"slicing.*fx node 'getitem'"):
        fastq.from_torch(_convert(_Slice(), engine, (8, 4)))


def test_control_flow_is_refused_with_a_clear_message():
    m = tq.quantize_dynamic(_Branchy().eval(), {nn.Linear})
    with pytest.raises(NotImplementedError, match="control flow"):
        fastq.from_torch(m)


def test_training_dropout_is_refused():
    m = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    m = tq.quantize_dynamic(m.eval(), {nn.Linear}).train()
    with pytest.raises(ValueError, match="eval"):
        fastq.from_torch(m)


def test_summary_lists_every_node(engine):
    from graph_models import FAMILIES
    tm, xs = FAMILIES["residual_fused"](engine)
    model = fastq.from_torch(tm)
    text = model.summary()
    assert "shapes unknown" in text
    text = model.summary(xs[1])
    lines = text.splitlines()
    assert len(lines) == len(model.nodes) + 4
    add = [ln for ln in lines if ln.startswith("add_relu")][0]
    assert "7x24 7x24" in add and ("qnnpack q8 add" in add if engine == "qnnpack" else "vector block 64" in add)
    total = sum(int(ln.split()[-1]) for ln in lines[2:-2])
    assert "weights %d bytes" % total in lines[-1] and total > 0


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_large_add_follows_torch_thread_chunks(threads):
    """Above 32768 elements torch cuts its add loop into one chunk per thread, each with its own
    vector body and scalar tail; QuantizedAdd(torch_threads=T) reproduces torch at T threads."""
    from torch_helpers import engine as pinned
    rng = np.random.default_rng(14)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with pinned("x86"):
            bad = other = 0
            for t in range(6):
                n = 70000 + int(rng.integers(0, 64))
                sa = float(f32(10 ** rng.uniform(-2, -1)))
                sb, s = float(f32(sa * 1.5)), float(f32(sa * 3))
                za, zb, z = (int(v) for v in rng.integers(0, 256, 3))
                a, b = rng.integers(0, 256, n).astype(np.uint8), rng.integers(0, 256, n).astype(np.uint8)
                e = torch.ops.quantized.add(_tq(a, sa, za), _tq(b, sb, zb), s, z).int_repr().numpy()
                got = ar.QuantizedAdd(s, z, torch_threads=threads)(fastq.QTensor(a, sa, za), fastq.QTensor(b, sb, zb))
                ref = reference.qadd_fbgemm(a, sa, za, b, sb, zb, s, z, torch_threads=threads)
                bad += int(np.sum(got.values != e)) + int(np.sum(ref != e))
                other += int(np.sum(reference.qadd_fbgemm(a, sa, za, b, sb, zb, s, z, torch_threads=1 if threads > 1 else 2) != e))
            assert bad == 0 and other > 0
    finally:
        torch.set_num_threads(previous)


def test_chain_with_a_layer_used_twice_gets_unique_node_names():
    relu = fm.ReLU()
    model = fastq.Model([_q(), relu, relu, fm.Dequantize()], names=["q", "relu", "relu", "relu_1"])
    assert model.names == ["q", "relu", "relu_2", "relu_1"] and model[1] is model[2]
    x = np.linspace(-2, 2, 9, dtype=np.float32)
    assert np.array_equal(model(x), np.maximum(fastq.dequantize(fastq.quantize(x, 0.05, 128)), 0))


@pytest.mark.parametrize("signed", [False, True])
def test_scalar_c_loops_equal_simd_and_reference(signed):
    """The scalar C loops (CPUs without AVX2 + FMA) give the AVX2 bodies' bytes and the oracle's,
    near-tie scales included."""
    from fastq import _elementwise as ew
    rng = np.random.default_rng(15)
    lo, hi, dt = (-128, 128, np.int8) if signed else (0, 256, np.uint8)
    for a, sa, za, b, sb, zb, s, z in _cases(rng, 120):
        a, b = (a.astype(np.int16) + lo).astype(dt), (b.astype(np.int16) + lo).astype(dt)
        za, zb, z = za + lo, zb + lo, z + lo
        n_vec = a.size // 64 * 64
        args = (n_vec, float(f32(sa)), za, float(f32(sb)), zb, float(f32(1) / f32(s)), z, True)
        fast, slow = ew.qadd_fbgemm(a, b, *args), ew.qadd_fbgemm(a, b, *args, simd=False)
        assert np.array_equal(fast, slow)
        assert np.array_equal(slow, reference.qadd_fbgemm(a, sa, za, b, sb, zb, s, z, True, dtype=dt))
        m = float(reference.qmul_multiplier(sa, sb, s * 64))
        assert np.array_equal(ew.qmul(a, b, za, zb, m, z, False), ew.qmul(a, b, za, zb, m, z, False, simd=False))
        if not signed:
            try:
                zpp, am, bm, shift = reference.qnnpack_add_params(sa, za, sb, zb, s)
            except ValueError:
                continue
            fast = ew.qadd_qnnpack(a, b, zpp, am, bm, shift, z, 0, 255)
            assert np.array_equal(fast, ew.qadd_qnnpack(a, b, zpp, am, bm, shift, z, 0, 255, simd=False))
            assert np.array_equal(fast, reference.qadd_qnnpack(a, sa, za, b, sb, zb, s, z))


@pytest.mark.parametrize("signed", [False, True])
def test_elementwise_c_loops_every_tail(signed):
    """Every length 0..130 (all tails of the vector bodies): the AVX2 and scalar C loops of
    quantized add and mul give the oracle's bytes, on near-tie scales."""
    from fastq import _elementwise as ew
    rng = np.random.default_rng(31)
    lo, dt = (-128, np.int8) if signed else (0, np.uint8)
    for n in range(131):
        sa = float(f32(10 ** rng.uniform(-2, -1)))
        sb, s = float(f32(sa * 0.5)), float(f32(sa * 1.5))
        za, zb, z = (int(v) + lo for v in rng.integers(0, 256, 3))
        a = (rng.integers(0, 256, n).astype(np.int16) + lo).astype(dt)
        b = (rng.integers(0, 256, n).astype(np.int16) + lo).astype(dt)
        n_vec = n // 64 * 64
        args = (n_vec, float(f32(sa)), za, float(f32(sb)), zb, float(f32(1) / f32(s)), z, False)
        expect = reference.qadd_fbgemm(a, sa, za, b, sb, zb, s, z, False, dtype=dt)
        for simd in (True, False):
            assert np.array_equal(ew.qadd_fbgemm(a, b, *args, simd=simd), expect), (n, simd)
        m = reference.qmul_multiplier(sa, sb, s)
        expect = reference.qmul(a, za, b, zb, m, z, False, dtype=dt)
        for simd in (True, False):
            assert np.array_equal(ew.qmul(a, b, za, zb, float(m), z, False, simd=simd), expect), (n, simd)
