"""fastq.from_torch on whole eager-mode torch.ao models (static and dynamic), every engine:
the float32 outputs (dequantized integers) must equal torch's, np.array_equal."""
import warnings

import numpy as np
import pytest

import fastq
from fastq.layers import elementwise as fm

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
import torch.ao.quantization as tq  # noqa: E402

from torch_helpers import engine_fixture  # noqa: E402,F401  (the "engine" fixture)

warnings.filterwarnings("ignore", message=".*reduce_range.*")


class MLP(nn.Module):
    """QuantStub -> (Linear [-> ReLU])* -> Linear -> DeQuantStub; relu: 'fused', 'separate', 'relu6', 'none'."""

    def __init__(self, widths, relu):
        super().__init__()
        self.quant = tq.QuantStub()
        layers = []
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1]))
            last = i == len(widths) - 2
            if not last and relu in ("fused", "separate"):
                layers.append(nn.ReLU())
            if not last and relu == "relu6":
                layers.append(nn.ReLU6())
            if not last and i == 0:
                layers.append(nn.Dropout(0.1))
        self.body = nn.Sequential(*layers)
        self.dequant = tq.DeQuantStub()
        self.relu = relu

    def forward(self, x):
        return self.dequant(self.body(self.quant(x)))


def _static(widths, relu, qconfig, seed):
    torch.manual_seed(seed)
    m = MLP(widths, relu).eval()
    if relu == "fused":
        names = [str(i) for i, mod in enumerate(m.body)]
        pairs = [[names[i], names[i + 1]] for i in range(len(names) - 1)
                 if isinstance(m.body[i], nn.Linear) and isinstance(m.body[i + 1], nn.ReLU)]
        m.body = tq.fuse_modules(m.body, pairs)
    m.qconfig = qconfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = tq.prepare(m)
        gen = torch.Generator().manual_seed(seed)
        p(torch.randn(96, widths[0], generator=gen) * (1 + seed))
        return tq.convert(p)


def _qconfig(engine, kind):
    if kind == "default":
        return tq.get_default_qconfig(engine)
    if kind == "per_channel":     # the engine's activations, per-channel symmetric weights
        return tq.QConfig(activation=tq.get_default_qconfig(engine).activation,
                          weight=tq.default_per_channel_weight_observer)
    if kind == "per_channel_affine":     # per-channel weights with nonzero zero points
        return tq.QConfig(activation=tq.get_default_qconfig(engine).activation,
                          weight=tq.PerChannelMinMaxObserver.with_args(dtype=torch.qint8,
                                                                       qscheme=torch.per_channel_affine))
    return tq.QConfig(activation=tq.MinMaxObserver.with_args(dtype=torch.quint8,   # per tensor, affine weights
                                                              reduce_range=engine != "qnnpack"),
                      weight=tq.MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_affine))


MODELS = [   # (widths, relu, qconfig kind)
    ((16, 8), "none", "default"),
    ((32, 64, 10), "fused", "default"),
    ((20, 48, 48, 5), "separate", "per_channel"),
    ((24, 40, 12), "relu6", "minmax_affine"),
    ((64, 100, 30, 30, 7), "fused", "per_channel"),
    ((10, 70, 3), "separate", "per_channel_affine"),
]


def _inputs(k, seed):
    rng = np.random.default_rng(100 + seed)
    for shape in ((1, k), (64, k), (3, 5, k)):
        yield (rng.standard_normal(shape) * (1.5 + seed)).astype(np.float32)


@pytest.mark.parametrize("spec", MODELS, ids=lambda s: "%s-%s-%s" % ("x".join(map(str, s[0])), s[1], s[2]))
def test_static_mlp_matches_torch(engine, spec):
    widths, relu, kind = spec
    mismatches = total = 0
    for seed in range(2):
        tm = _static(widths, relu, _qconfig(engine, kind), seed)
        model = fastq.from_torch(tm)
        n_linear = sum(isinstance(layer, fastq.QuantizedLinear) for layer in model)
        assert n_linear == len(widths) - 1
        fused = [layer.relu for layer in model if isinstance(layer, fastq.QuantizedLinear)]
        assert fused == [relu == "fused"] * (len(widths) - 2) + [False]
        for x in _inputs(widths[0], seed):
            with torch.no_grad():
                expected = tm(torch.from_numpy(x)).numpy()
            y = model(x)
            assert y.dtype == np.float32 and y.shape == expected.shape
            mismatches += int(np.sum(y != expected))
            total += y.size
    assert total > 0 and mismatches == 0


def test_quantized_output_without_dequant_stub(engine):
    torch.manual_seed(0)
    m = nn.Sequential(tq.QuantStub(), nn.Linear(12, 9), nn.ReLU()).eval()
    m.qconfig = tq.get_default_qconfig(engine)
    p = tq.prepare(m)
    p(torch.randn(50, 12))
    tm = tq.convert(p)
    x = np.random.default_rng(0).standard_normal((7, 12)).astype(np.float32)
    with torch.no_grad():
        expected = tm(torch.from_numpy(x))
    assert expected.is_quantized
    assert np.array_equal(fastq.from_torch(tm)(x), expected.dequantize().numpy())


@pytest.mark.parametrize("relu", [False, True])
def test_dynamic_mlp_matches_torch(engine, relu):
    torch.manual_seed(1)
    layers = [nn.Linear(30, 50), nn.ReLU(), nn.Linear(50, 20), nn.ReLU6(), nn.Flatten(), nn.Linear(20, 4)]
    m = nn.Sequential(*layers).eval()
    if relu:
        tq.fuse_modules(m, [["0", "1"]], inplace=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tm = tq.quantize_dynamic(m, {nn.Linear, torch.ao.nn.intrinsic.LinearReLU})
    model = fastq.from_torch(tm)
    assert sum(isinstance(layer, fastq.DynamicQuantizedLinear) for layer in model) == 3
    for x in _inputs(30, 0):
        if x.ndim == 3:
            continue      # nn.Flatten would merge T into K
        with torch.no_grad():
            expected = tm(torch.from_numpy(x)).numpy()
        assert np.array_equal(model(x), expected)


def test_flatten_quantwrapper_and_3d_input(engine):
    torch.manual_seed(2)
    inner = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6, 16), nn.ReLU(), nn.Identity(), nn.Linear(16, 3))
    m = tq.QuantWrapper(inner).eval()
    m.qconfig = tq.get_default_qconfig(engine)
    p = tq.prepare(m)
    p(torch.randn(40, 4, 6))
    tm = tq.convert(p)
    model = fastq.from_torch(tm)
    assert isinstance(model[0], fm.Quantize) and isinstance(model[-1], fm.Dequantize)
    x = np.random.default_rng(3).standard_normal((9, 4, 6)).astype(np.float32)
    with torch.no_grad():
        expected = tm(torch.from_numpy(x)).numpy()
    assert np.array_equal(model(x), expected)
    assert np.array_equal(model(torch.from_numpy(x)), expected)


def test_quantized_relu6_matches_torch(engine):
    rng = np.random.default_rng(0)
    q = torch.arange(256, dtype=torch.uint8)
    for t in range(300):
        # scales where 6 / scale falls on or next to a .5 tie, and random ones
        scale = float(np.float32(6.0 / (rng.integers(1, 300) + 0.5))) if t % 2 else float(
            np.float32(10 ** rng.uniform(-3, 0.5)))
        zp = int(rng.integers(0, 256))
        tq_in = torch._make_per_tensor_quantized_tensor(q, scale, zp)
        for mod, layer in ((torch.ao.nn.quantized.ReLU6(), fm.ReLU6()), (nn.ReLU(), fm.ReLU())):
            expected = mod(tq_in).int_repr().numpy()
            got = layer(fastq.QTensor(q.numpy(), scale, zp))
            assert np.array_equal(got.values, expected)
            assert (got.scale, got.zero_point) == (scale, zp)


def test_save_load_round_trip(tmp_path, engine):
    tm = _static((20, 32, 6), "fused", _qconfig(engine, "per_channel"), 0)
    model = fastq.from_torch(tm)
    path = tmp_path / "model.npz"
    model.save(str(path))
    loaded = fastq.load(str(path))
    assert repr(loaded) == repr(model)
    x = np.random.default_rng(5).standard_normal((10, 20)).astype(np.float32)
    assert np.array_equal(loaded(x), model(x))
    assert path.read_bytes()[:8] == b"\x89FASTQ\r\n"      # model file format 2 (test_model_file.py)
    # dynamic layers and the elementwise ones round-trip too
    w = fastq.QTensor(np.arange(12, dtype=np.int8).reshape(3, 4), 0.05, 0)
    m2 = fastq.Model([fm.Flatten(), fastq.DynamicQuantizedLinear(w, np.ones(3, np.float32), relu=True),
                      fm.ReLU6(), fm.Quantize(0.1, 3), fm.ReLU(), fm.Dequantize()])
    m2.save(str(tmp_path / "m2.npz"))
    x2 = np.random.default_rng(6).standard_normal((5, 4)).astype(np.float32)
    assert np.array_equal(fastq.load(str(tmp_path / "m2.npz"))(x2), m2(x2))
    # a tflite layer with an int32 bias and single rounding, per-channel weights
    wc = fastq.QTensor(np.arange(-6, 6, dtype=np.int8).reshape(3, 4), [0.01, 0.02, 0.03], [0, 0, 0], axis=0)
    m3 = fastq.Model([fm.Quantize(0.05, 128), fastq.QuantizedLinear(wc, np.array([5, -7, 100], np.int32), 0.02, 10,
                                                                   requant="tflite", rounding="single"),
                      fm.Dequantize()])
    m3.save(str(tmp_path / "m3.npz"))
    loaded3 = fastq.load(str(tmp_path / "m3.npz"))
    assert loaded3[1].rounding == "single" and loaded3[1].int_bias.dtype == np.int32
    assert np.array_equal(loaded3(x2), m3(x2))


def test_unsupported_module_raises_not_implemented(engine):
    torch.manual_seed(0)
    m = nn.Sequential(tq.QuantStub(), nn.Linear(8, 4), tq.DeQuantStub(), nn.Sigmoid()).eval()
    m.qconfig = tq.get_default_qconfig(engine)
    p = tq.prepare(m)
    p(torch.randn(20, 8))
    tm = tq.convert(p)
    with pytest.raises(NotImplementedError, match=r"Sigmoid.*fx node '\w+', module '3'"):
        fastq.from_torch(tm)
    with pytest.raises(TypeError, match="float Linear"):
        fastq.from_torch(nn.Sequential(nn.Linear(3, 3)))
    with pytest.raises(TypeError, match="module"):
        fastq.from_torch("not a module")


def test_model_checks_value_kinds():
    w = fastq.QTensor(np.ones((2, 3), np.int8), 0.1, 0)
    model = fastq.Model([fastq.QuantizedLinear(w, None, 0.2, 5)])
    with pytest.raises(TypeError, match="Quantize"):
        model(np.zeros((1, 3), np.float32))
    with pytest.raises(TypeError, match="layers"):
        fastq.Model([object()])
