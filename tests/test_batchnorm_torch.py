"""Unfused quantized batch norm (nnq.BatchNorm2d / 3d, nniq.BNReLU2d / 3d) against torch 2.13 with
the engine pinned: torch's compute_fused_params and q_batch_norm_kernel (reference.batch_norm),
constructed .5 ties that tell one rounding (fma) from two, the AVX2 and no-AVX builds in child
processes, from_torch of converted models, quantize_model against prepare / convert, the exported
C compiled by host gcc, explain on every element, bad input."""
import copy
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.ao.nn.quantized as nnq  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.ao.quantization as tq  # noqa: E402

import fastq  # noqa: E402
from fastq import reference as R  # noqa: E402
from fastq.layers.batchnorm import QuantizedBatchNorm  # noqa: E402
from fastq.layers.elementwise import Dequantize, Quantize  # noqa: E402
from fastq.model import Model  # noqa: E402
from conv_calib_models import randomize_bn  # noqa: E402
from test_calibrate_conv import batches_for, mismatches, new_inputs, torch_reference  # noqa: E402
from test_calibrate_graph import pinned_engine  # noqa: E402
from test_export_hardening import _expect_c_equals_runtime  # noqa: E402

f32 = np.float32
ENGINES = ("x86", "fbgemm", "qnnpack")
warnings.filterwarnings("ignore", message=".*(deprecat|quantize_per_tensor).*")


def _block():
    cap = torch.backends.cpu.get_cpu_capability()
    return 64 if cap.startswith("AVX512") else 32 if cap.startswith("AVX2") else 0


def _qx(values, scale, zp, channels_last=False):
    t = torch._make_per_tensor_quantized_tensor(torch.from_numpy(values), scale, zp)
    return t.contiguous(memory_format=torch.channels_last) if channels_last and t.dim() == 4 else t


def _torch_bn(x, arrays, eps, sy, zy, relu):
    op = torch.ops.quantized.batch_norm_relu if relu else torch.ops.quantized.batch_norm
    return op(x, *(torch.from_numpy(a) for a in arrays), eps, sy, zy).int_repr().numpy()


def _arrays(rng, c):
    return [rng.normal(1, 0.5, c).astype(f32), rng.normal(0, 1, c).astype(f32), rng.normal(0, 1, c).astype(f32),
            rng.uniform(0.01, 3, c).astype(f32)]


# --------------------------------------------------------------------------- the op against torch
@pytest.mark.parametrize("engine", ENGINES)
def test_op_equals_torch_random(engine):
    """Channel counts around AVX-512's 64 and AVX2's 8, NCHW and channels-last, uint8 and int8,
    2-D to 5-D, with and without ReLU: every output integer equals torch's."""
    rng = np.random.default_rng(11)
    bad = total = 0
    with pinned_engine(engine):
        for trial in range(48):
            c = int(rng.choice([1, 3, 7, 8, 13, 31, 63, 64, 65, 100, 130]))
            dt = "uint8" if trial % 3 else "int8"
            lo, hi = R._qrange(dt)
            shape = [(2, c, 3, 5), (2, c, 2, 2, 3), (3, c), (2, c, 4)][trial % 4]
            arrays = _arrays(rng, c)
            sx, sy = float(rng.uniform(0.01, 0.2)), float(rng.uniform(0.01, 0.2))
            zx, zy = int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))
            x = rng.integers(lo, hi + 1, shape).astype(dt)
            relu = trial % 5 == 0
            want = _torch_bn(_qx(x, sx, zx, trial % 2 == 1), arrays, 1e-5, sy, zy, relu)
            layer = QuantizedBatchNorm(*arrays, sy, zy, relu=relu, vector_block=_block(),
                                       dims={2: 1, 3: 1, 4: 2, 5: 3}[len(shape)])
            got = layer(fastq.QTensor(x, sx, zx)).values
            ref = layer.reference(fastq.QTensor(x, sx, zx)).values
            assert np.array_equal(got, ref)
            bad += int((got != want).sum())
            total += want.size
    assert total > 20000 and bad == 0, "%d of %d differ" % (bad, total)


def _tie_case(rng, c, n=48, zx=10, zy=100):
    """alpha = w, beta = b exactly (var 1, eps 0, mean 0, scales 1): b = 0.5 − f32(w · d0) makes
    f32(w·d0) + b an exact .5 (two roundings round it to even) while the exact w·d0 + b lies a
    little off it (one fma rounding goes the other way half the time)."""
    w = rng.uniform(0.3, 1.7, c).astype(f32)
    x = rng.integers(0, 256, (n, c, 1, 1)).astype(np.uint8)
    d0 = x[0, :, 0, 0].astype(np.int64) - zx
    p32 = (w * d0.astype(f32)).astype(f32)
    b = (0.5 - p32.astype(np.float64)).astype(f32)
    arrays = [w, b, np.zeros(c, f32), np.ones(c, f32)]
    exact = w.astype(np.float64) * d0 + b.astype(np.float64)
    two = np.rint((p32 + b).astype(f32)) + zy
    one = np.rint(exact.astype(f32)) + zy
    return x, arrays, (one != two), zx, zy


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("channels", [3, 13, 64, 77, 200])
def test_constructed_ties_round_once(engine, channels):
    """torch rounds a·d + b once (an fma) in the vector body and in the scalar tail alike (the
    compiler contracts the tail's a * d + b); the two-rounding reading misses every tie."""
    rng = np.random.default_rng(channels)
    x, arrays, differs, zx, zy = _tie_case(rng, channels)
    assert differs.sum() >= 1
    with pinned_engine(engine):
        want = _torch_bn(_qx(x, 1.0, zx), arrays, 0.0, 1.0, zy, False)
    layer = QuantizedBatchNorm(*arrays, 1.0, zy, eps=0.0, vector_block=_block())
    got = layer(fastq.QTensor(x, 1.0, zx)).values
    assert np.array_equal(got, want)
    two = QuantizedBatchNorm(*arrays, 1.0, zy, eps=0.0, vector_block=0)(fastq.QTensor(x, 1.0, zx)).values
    assert np.all(two[0, differs] != want[0, differs])     # the other reading is wrong on every tie


def test_saturation_and_tiny_variance_equal_torch():
    """Tiny variances drive alpha past 2^31 output steps: body (cvtps2dq, wrapping zero point) and
    tail (lrintf) saturate differently; both equal torch."""
    rng = np.random.default_rng(5)
    c = 70
    arrays = _arrays(rng, c)
    arrays[3][::3] = f32(1e-30)
    arrays[0][::5] *= f32(1e6)
    x = rng.integers(0, 256, (3, c, 2, 2)).astype(np.uint8)
    for zy in (0, 127, 200):
        want = _torch_bn(_qx(x, 0.5, 100), arrays, 0.0, 1e-4, zy, False)
        layer = QuantizedBatchNorm(*arrays, 1e-4, zy, eps=0.0, vector_block=_block())
        assert np.array_equal(layer(fastq.QTensor(x, 0.5, 100)).values, want)


_CHILD = r"""
import sys, warnings, numpy as np, torch
warnings.filterwarnings("ignore")
sys.path.insert(0, sys.argv[1])
from test_batchnorm_torch import _tie_case, _arrays, _torch_bn, _qx, _block
from fastq.layers.batchnorm import QuantizedBatchNorm
import fastq
bad = 0
for c in (3, 13, 40, 64, 77):
    rng = np.random.default_rng(c)
    x, arrays, differs, zx, zy = _tie_case(rng, c)
    want = _torch_bn(_qx(x, 1.0, zx), arrays, 0.0, 1.0, zy, False)
    got = QuantizedBatchNorm(*arrays, 1.0, zy, eps=0.0, vector_block=_block())(fastq.QTensor(x, 1.0, zx)).values
    bad += int((got != want).sum())
    arrays = _arrays(rng, c)
    x = rng.integers(0, 256, (2, c, 3, 3)).astype(np.uint8)
    want = _torch_bn(_qx(x, 0.03, 7, True), arrays, 1e-5, 0.05, 130, True)
    got = QuantizedBatchNorm(*arrays, 0.05, 130, relu=True, vector_block=_block())(fastq.QTensor(x, 0.03, 7)).values
    bad += int((got != want).sum())
print(torch.backends.cpu.get_cpu_capability(), _block(), bad)
"""


@pytest.mark.parametrize("capability, block", [("avx2", 32), ("default", 0)])
def test_other_torch_builds(capability, block):
    """ATEN_CPU_CAPABILITY picks torch's AVX2 kernels (blocks of 8 channels after 32, still fma) or
    its build without AVX (a * d + b rounded twice): vector_block 32 / 0 reproduce each."""
    if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        pytest.skip("this torch runs without AVX already")
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability)
    env["PYTHONPATH"] = os.pathsep.join([here, env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", _CHILD, here], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    cap, got_block, bad = out.stdout.split()
    assert cap == capability.upper() and int(got_block) == block and int(bad) == 0, out.stdout


# --------------------------------------------------------------------------- converted models
class _BnModel(nn.Module):
    """Unfused batch norms where torch users leave them: after the input, after an add (a residual),
    after a pool, and a BN + ReLU pair (fused to BNReLU2d); channel counts 13 and 70."""

    def __init__(self, c=13, c2=70):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(3)
        self.conv, self.bn, self.relu = nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()
        self.conv2 = nn.Conv2d(c, c, 1)
        self.add = nnq.FloatFunctional()
        self.bn2 = nn.BatchNorm2d(c)
        self.pool = nn.AvgPool2d(2)
        self.bn3, self.relu3 = nn.BatchNorm2d(c), nn.ReLU()
        self.conv3 = nn.Conv2d(c, c2, 1)
        self.add2 = nnq.FloatFunctional()
        self.bn4 = nn.BatchNorm2d(c2)

    def forward(self, x):
        x = self.bn0(x)
        y = self.relu(self.bn(self.conv(x)))
        z = self.bn2(self.add.add(y, self.conv2(y)))
        z = self.relu3(self.bn3(self.pool(z)))
        w = self.conv3(z)
        return self.bn4(self.add2.add(w, w))

    fuse = [["conv", "bn", "relu"], ["bn3", "relu3"]]


def _converted(engine, seed=0):
    torch.manual_seed(seed)
    model = randomize_bn(_BnModel(), seed).eval()
    rng = np.random.default_rng(seed)
    batches = batches_for(rng, (3, 8, 8))
    with pinned_engine(engine):
        tm = torch_reference(model, batches, engine)
    return model, batches, tm, rng


@pytest.mark.parametrize("engine", ENGINES)
def test_from_torch_every_intermediate(engine):
    """from_torch of the converted model: every node's integers equal torch's module outputs."""
    model, batches, tm, rng = _converted(engine)
    kinds = {type(m).__name__ for m in tm.modules()}
    assert {"BatchNorm2d", "BNReLU2d"} <= kinds
    x = new_inputs(rng, (3, 8, 8))
    with pinned_engine(engine):
        fm = fastq.from_torch(tm)
        seen = {}
        hooks = [m.register_forward_hook(lambda mod, i, o, p=p: seen.__setitem__(p, o.int_repr().numpy()))
                 for p, m in tm.module.named_modules() if hasattr(m, "scale") and p]
        with torch.no_grad():
            ty = tm(torch.from_numpy(x)).numpy()
        for h in hooks:
            h.remove()
    values = fm.run_values(x)
    bad = 0
    for path, want in seen.items():
        name = next(n.name for n in fm.nodes if n.name == "module_" + path.replace(".", "_"))
        bad += int((values[name].values != want).sum())
    assert bad == 0 and len(seen) == 7      # 4 batch norms (one BNReLU2d), 3 convolutions
    assert np.array_equal(fm(x).view(np.uint32), ty.view(np.uint32))
    bn = [n.layer for n in fm.nodes if isinstance(n.layer, QuantizedBatchNorm)]
    assert len(bn) == 4 and sum(b.relu for b in bn) == 1


@pytest.mark.parametrize("engine", ENGINES)
def test_quantize_model_equals_prepare_convert(engine):
    """quantize_model leaves exactly the batch norms torch leaves unfused (after the input, an
    add, a pool; BN + ReLU fused) and equals prepare / convert bitwise."""
    model, batches, tm, rng = _converted(engine, seed=3)
    with pinned_engine(engine):
        fq = fastq.quantize_model(model, batches, qconfig=engine, engine=engine)
    counts = mismatches(fq, tm, new_inputs(rng, (3, 8, 8)), engine)
    assert set(counts.values()) == {0}, counts
    assert sum(isinstance(n.layer, QuantizedBatchNorm) for n in fq.nodes) == 4


def test_batchnorm1d_stays_refused():
    """torch 2.13's eager convert has no quantized BatchNorm1d: an unfused one stays float and the
    converted model fails on it; quantize_model refuses it by name."""
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.relu, self.bn = nn.Linear(4, 4), nn.ReLU(), nn.BatchNorm1d(4)

        def forward(self, x):
            return self.bn(self.relu(self.fc(x)))
    assert nn.BatchNorm1d not in tq.quantization_mappings.get_default_static_quant_module_mappings()
    with pytest.raises(NotImplementedError, match="unfused BatchNorm1d"):
        fastq.quantize_model(M().eval(), [np.ones((2, 4), f32)], qconfig="x86")


# --------------------------------------------------------------------------- export, explain, state
@pytest.mark.parametrize("dt", ["uint8", "int8"])
@pytest.mark.parametrize("after_conv", [False, True])
def test_export_equals_runtime(tmp_path, dt, after_conv):
    rng = np.random.default_rng(7)
    from test_conv_export import _conv
    c = 13
    zp = 128 if dt == "uint8" else 3
    layers = [Quantize(0.031, zp, dt)]
    if after_conv:                      # channels-last buffer in the C
        layers.append(_conv(rng, c, c, 3, "fbgemm", padding=1, dtype=dt))
    layers += [QuantizedBatchNorm(*_arrays(rng, c), 0.05, zp, relu=True),
               QuantizedBatchNorm(*_arrays(rng, c), 0.02, zp - 3, vector_block=32), Dequantize()]
    m = Model(layers)
    x = rng.uniform(-4.5, 4.5, (3, c, 5, 4)).astype(f32)
    _expect_c_equals_runtime(m, x, tmp_path, input_shape=(c, 5, 4))


def test_explain_every_element():
    rng = np.random.default_rng(2)
    c = 70
    layer = QuantizedBatchNorm(*_arrays(rng, c), 0.04, 120, relu=True)
    x = fastq.QTensor(rng.integers(0, 256, (1, c, 2, 3)).astype(np.uint8), 0.05, 100)
    y = layer(x).values
    rows, cols = int(np.prod(y.shape[:-1])), y.shape[-1]
    for r in range(rows):
        for col in range(cols):
            t = layer.explain(x, row=r, col=col)
            assert t.equal and t.output == y.reshape(rows, cols)[r, col]
    assert "vector body" in str(layer.explain(x, row=0)) and "scalar tail" in str(layer.explain(x, row=64 * 2))
    assert layer.explain(x).to_dict()["checks"]["kernel"] == y.reshape(-1)[0]


def test_model_file_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    layer = QuantizedBatchNorm(*_arrays(rng, 9), 0.04, 7, eps=1e-3, relu=True, vector_block=32)
    m = Model([Quantize(0.05, 100), layer, Dequantize()])
    m.save(tmp_path / "m.fastq")
    back = fastq.load(tmp_path / "m.fastq")
    x = rng.normal(0, 3, (2, 9, 4, 4)).astype(f32)
    assert np.array_equal(m(x), back(x))
    assert "fma(alpha" in str(m.summary())


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(running_var=np.full(4, -1.0, f32)), ValueError, "running_var.*<= 0"),
    (dict(weight=np.ones(3, f32)), ValueError, r"bias: expected shape \(3,\) like weight"),
    (dict(bias=np.array([1, np.nan, 0, 0], f32)), ValueError, "bias: values must be finite"),
    (dict(eps=-1.0), ValueError, "eps"),
    (dict(vector_block=16), ValueError, "vector_block"),
    (dict(weight=["a"] * 4), TypeError, "weight"),
    (dict(scale=0.0), ValueError, "scale"),
])
def test_bad_construction(kwargs, exc, match):
    args = dict(weight=np.ones(4, f32), bias=np.zeros(4, f32), running_mean=np.zeros(4, f32),
                running_var=np.ones(4, f32), scale=0.1, zero_point=0)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        QuantizedBatchNorm(**args)


def test_bad_input():
    layer = QuantizedBatchNorm(np.ones(4), np.zeros(4), np.zeros(4), np.ones(4), 0.1, 200)
    with pytest.raises(ValueError, match="4 channels, got 5"):
        layer(fastq.QTensor(np.zeros((1, 5, 2, 2), np.uint8), 0.1, 0))
    with pytest.raises(ValueError, match=r"expects shape \[N, C, H, W\]"):
        layer(fastq.QTensor(np.zeros((1, 4, 2), np.uint8), 0.1, 0))
    with pytest.raises(ValueError, match="zero_point: 200 is outside the int8 range"):
        layer(fastq.QTensor(np.zeros((1, 4, 2, 2), np.int8), 0.1, 0))
    with pytest.raises(TypeError, match="per-tensor fastq.QTensor"):
        layer(np.zeros((1, 4, 2, 2), np.uint8))
