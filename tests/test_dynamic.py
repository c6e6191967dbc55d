"""DynamicQuantizedLinear against torch's quantize_dynamic (nnqd.Linear / nniqd.LinearReLU),
engines x86, fbgemm and qnnpack, and against fastq.reference (float32 outputs, np.array_equal)."""
import warnings

import numpy as np
import pytest

import fastq
from fastq import reference

torch = pytest.importorskip("torch")
import torch.ao.quantization as tq  # noqa: E402

from torch_helpers import engine_fixture  # noqa: E402,F401  (the "engine" fixture)

warnings.filterwarnings("ignore", message=".*reduce_range.*")


def _dynamic_torch(k, n, seed, per_channel, bias, relu):
    torch.manual_seed(seed)
    lin = torch.nn.Linear(k, n, bias=bias)
    m = torch.nn.Sequential(lin, torch.nn.ReLU()) if relu else torch.nn.Sequential(lin)
    if relu:
        tq.fuse_modules(m, [["0", "1"]], inplace=True)
    qc = tq.per_channel_dynamic_qconfig if per_channel else tq.default_dynamic_qconfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tq.quantize_dynamic(m, {torch.nn.Linear: qc, torch.ao.nn.intrinsic.LinearReLU: qc})


# (K, N, input shape prefix, input magnitude, per_channel, bias, relu)
CASES = [
    (1, 1, (1,), 1.0, False, True, False),
    (7, 3, (5,), 0.01, True, True, False),
    (64, 64, (1,), 1.0, False, False, False),
    (100, 37, (64,), 3.0, True, True, True),
    (33, 70, (4, 9), 100.0, False, True, False),      # 3-D input [B, T, K]
    (256, 10, (16,), 1e-6, True, True, False),        # scale below 6.1e-5: torch lifts it
    (17, 130, (2, 3), 0.5, True, False, True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "K%d-N%d-%s" % (c[0], c[1], "x".join(map(str, c[2]))))
def test_matches_torch(engine, case):
    k, n, prefix, magnitude, per_channel, bias, relu = case
    mismatches = 0
    for seed in range(3):
        qm = _dynamic_torch(k, n, seed, per_channel, bias, relu)
        layer = fastq.DynamicQuantizedLinear.from_torch(qm[0])
        assert layer.relu == relu and layer.per_channel == per_channel
        rng = np.random.default_rng(seed)
        x = (rng.standard_normal(prefix + (k,)) * magnitude + rng.standard_normal() * magnitude * (seed == 1))
        x = x.astype(np.float32)
        with torch.no_grad():
            expected = qm(torch.from_numpy(x)).numpy()
        y = layer(x)
        assert y.dtype == np.float32 and y.shape == expected.shape
        mismatches += int(np.sum(y != expected))
        w = layer.weight
        ref = reference.linear_dynamic(x, w.values, w.scale, w.zero_point, layer.bias, layer.relu,
                                       layer.mode, layer.reduce_range)
        assert np.array_equal(ref, expected)
        assert np.array_equal(layer(torch.from_numpy(x)), expected)     # CPU torch tensors too
    assert mismatches == 0


@pytest.mark.parametrize("inputs", ["zeros", "constant", "positive", "negative", "ties"])
def test_edge_ranges_match_torch(engine, inputs):
    qm = _dynamic_torch(24, 16, 5, False, True, False)
    layer = fastq.DynamicQuantizedLinear.from_torch(qm[0])
    rng = np.random.default_rng(7)
    x = {
        "zeros": np.zeros((3, 24)),
        "constant": np.full((3, 24), 0.375),
        "positive": np.abs(rng.standard_normal((8, 24))),
        "negative": -np.abs(rng.standard_normal((8, 24))),
        # multiples of a quarter of the range: many exact .5 ties in x / scale
        "ties": rng.integers(-8, 9, (8, 24)) / 8.0,
    }[inputs].astype(np.float32)
    with torch.no_grad():
        expected = qm(torch.from_numpy(x)).numpy()
    assert np.array_equal(layer(x), expected)


def test_input_qparams_match_torch_choose_qparams():
    rng = np.random.default_rng(3)
    for t in range(400):
        x = (rng.standard_normal(9) * 10 ** rng.uniform(-9, 3)).astype(np.float32)
        if t % 4 == 1:
            x = np.abs(x)
        if t % 4 == 2:
            x = -np.abs(x)
        for reduce_range in (False, True):
            s, z = torch._choose_qparams_per_tensor(torch.from_numpy(x), reduce_range)
            s2, z2 = reference.choose_qparams_dynamic(x.min(), x.max(), reduce_range)
            assert (np.float32(s), z) == (np.float32(s2), z2)


def test_kernel_equals_reference_without_torch_layer():
    rng = np.random.default_rng(11)
    w = fastq.QTensor(rng.integers(-127, 128, (40, 50)).astype(np.int8), rng.uniform(0.001, 0.01, 40),
                      np.zeros(40, np.int32), axis=0)
    bias = rng.standard_normal(40).astype(np.float32)
    x = rng.standard_normal((6, 50)).astype(np.float32)
    for mode in ("fbgemm", "qnnpack"):
        layer = fastq.DynamicQuantizedLinear(w, bias, mode=mode)
        ref = reference.linear_dynamic(x, w.values, w.scale, w.zero_point, bias, False, mode)
        assert np.array_equal(layer(x), ref)


def test_empty_batch_and_errors():
    w = fastq.QTensor(np.ones((3, 4), np.int8), 0.1, 0)
    layer = fastq.DynamicQuantizedLinear(w)
    assert layer(np.zeros((0, 4), np.float32)).shape == (0, 3)
    with pytest.raises(ValueError, match="x"):
        layer(np.array([[1.0, np.nan, 0, 0]], np.float32))
    with pytest.raises(ValueError, match="x"):
        layer(np.zeros((2, 5), np.float32))
    with pytest.raises(TypeError, match="weight"):
        fastq.DynamicQuantizedLinear(np.ones((3, 4), np.int8))
    with pytest.raises(ValueError, match="mode"):
        fastq.DynamicQuantizedLinear(w, mode="tflite")
    with pytest.raises(ValueError, match="bias"):
        fastq.DynamicQuantizedLinear(w, bias=np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="module"):
        fastq.DynamicQuantizedLinear.from_torch(torch.nn.Linear(4, 3))


def test_affine_weights_with_zero_points_match_torch(engine):
    qc = tq.QConfig(activation=tq.default_dynamic_quant_observer,
                    weight=tq.PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_affine))
    torch.manual_seed(4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qm = tq.quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(50, 30)), {torch.nn.Linear: qc})
    layer = fastq.DynamicQuantizedLinear.from_torch(qm[0])
    assert np.any(np.asarray(layer.weight.zero_point) != 0)     # the row-sum term is exercised
    x = np.random.default_rng(0).standard_normal((2, 10, 50)).astype(np.float32)
    with torch.no_grad():
        expected = qm(torch.from_numpy(x)).numpy()
    assert np.array_equal(layer(x), expected)
