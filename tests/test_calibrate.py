"""Calibration without torch.ao: fastq.observers and fastq.quantize_model against torch 2.13's
own observers and eager-mode prepare / convert of QuantWrapper(model), bit for bit."""
import copy
import functools
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastq
from fastq import observers as O
from fastq.calibrate import QConfig, quantize_model

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.ao.quantization import (QuantWrapper, convert, default_qconfig, fuse_modules,  # noqa: E402
                                   get_default_qconfig, prepare)
from torch.ao.quantization import observer as TO  # noqa: E402
from torch.ao.quantization.qconfig import QConfig as TorchQConfig  # noqa: E402

from torch_helpers import engine as pinned_engine  # noqa: E402

f32 = np.float32
warnings.filterwarnings("ignore", message=".*reduce_range will be deprecated.*")
warnings.filterwarnings("ignore", message=".*must run observer before.*")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# --------------------------------------------------------------------------- data
def batch_sets(rng, shape):
    """Calibration batch sequences that reach every branch of the observers."""
    def normal(scale=1.0, offset=0.0, n=None):
        s = shape if n is None else (n,) + tuple(shape[1:])
        return (rng.standard_normal(s) * scale + offset).astype(f32)

    same = [rng.uniform(-1, 1, shape).astype(f32) for _ in range(3)]
    for b in same:                                  # identical min and max: histograms add
        b.reshape(-1)[:2] = (-1.0, 1.0)
    outliers = normal()
    outliers.reshape(-1)[3] = 80.0
    outliers.reshape(-1)[7] = -25.0
    # values exactly on the histogram's bin edges, and halfway between them
    edges = (np.arange(shape[-1] * 4) - 2 * shape[-1]).astype(f32) / f32(64)
    ties = np.resize(np.concatenate([edges, edges + f32(1 / 128)]), shape).astype(f32)
    return {
        "grow": [normal(1), normal(2, 0.5), normal(0.5), normal(5, -3), normal(1, 10)],
        "shrink": [normal(10), normal(1), normal(0.1)],
        "same_range": same,
        "constant": [np.full(shape, 2.5, f32)],
        "constant_then_random": [np.full(shape, -1.5, f32), normal(), normal(3)],
        "zeros": [np.zeros(shape, f32)],
        "zeros_then_positive": [np.zeros(shape, f32), np.abs(normal())],
        "outliers": [outliers, normal(), normal(0.5)],
        "relu_like": [np.maximum(normal(), 0) for _ in range(3)],
        "ties": [ties, ties * f32(2)],
        "one_row": [normal(n=1), normal(n=1, scale=4)],
    }


# --------------------------------------------------------------------------- torch primitives
def test_linspace_cascade_sum_histc_floor_divide_equal_torch(rng):
    bad = {"linspace": 0, "sum": 0, "histc": 0, "floor_divide": 0}
    for _ in range(40):
        a, b = np.sort(rng.standard_normal(2).astype(f32) * f32(rng.uniform(0.01, 100)))
        for steps in (2, 2049, 32769):
            t = torch.linspace(torch.tensor(a), torch.tensor(b), steps).numpy()
            bad["linspace"] += int((O.linspace(a, b, steps) != t).sum())
        for n in (3, 7, 8, 31, 2048, 2049, 32768):
            x = ((rng.standard_normal(n) * rng.uniform(0.01, 1000)) ** 3).astype(f32)
            bad["sum"] += torch.from_numpy(x).sum().item() != float(O.cascade_sum(x))
        x = (rng.standard_normal(int(rng.integers(1, 3000))) * rng.uniform(0.01, 100)).astype(f32)
        lo, hi = f32(x.min() - rng.uniform(0, 2)), f32(x.max() + rng.uniform(0, 2))
        for lo_, hi_ in ((x.min(), x.max()), (lo, hi), (lo, lo)):
            t = torch.histc(torch.from_numpy(x), 2048, min=float(lo_), max=float(hi_)).numpy()
            bad["histc"] += not np.array_equal(O.histc(x, 2048, lo_, hi_), t)
        d = float(rng.uniform(1e-3, 3))
        t = torch.div(torch.from_numpy(x), d, rounding_mode="floor").numpy()
        bad["floor_divide"] += not np.array_equal(O._floor_divide(x, d), t)
    # values on the edges of a 2048-bin histogram of [-1, 1] and next to them
    edges = np.linspace(-1, 1, 2049).astype(f32)
    near = np.concatenate([edges, np.nextafter(edges, f32(2)), np.nextafter(edges, f32(-2))])
    near = np.clip(near, -1, 1).astype(f32)
    t = torch.histc(torch.from_numpy(near), 2048, min=-1.0, max=1.0).numpy()
    bad["histc"] += not np.array_equal(O.histc(near, 2048, -1.0, 1.0), t)
    assert bad == {"linspace": 0, "sum": 0, "histc": 0, "floor_divide": 0}, bad


# --------------------------------------------------------------------------- observers
def _torch_kwargs(kw):
    kw = dict(kw)
    if "dtype" in kw:
        kw["dtype"] = {"uint8": torch.quint8, "int8": torch.qint8}[kw["dtype"]]
    if "qscheme" in kw:
        kw["qscheme"] = getattr(torch, kw["qscheme"])
    return kw


PER_TENSOR = [
    ("HistogramObserver", dict(reduce_range=True)),                  # x86 / fbgemm activations
    ("HistogramObserver", dict()),                                   # qnnpack activations
    ("HistogramObserver", dict(dtype="int8")),
    ("HistogramObserver", dict(qscheme="per_tensor_symmetric")),
    ("HistogramObserver", dict(dtype="int8", qscheme="per_tensor_symmetric", reduce_range=True)),
    ("HistogramObserver", dict(bins=256, quant_min=0, quant_max=100)),
    ("MinMaxObserver", dict(quant_min=0, quant_max=127)),            # default_qconfig activations
    ("MinMaxObserver", dict()),
    ("MinMaxObserver", dict(reduce_range=True)),
    ("MinMaxObserver", dict(dtype="int8", qscheme="per_tensor_symmetric")),   # default weights
    ("MinMaxObserver", dict(qscheme="per_tensor_symmetric")),
    ("MinMaxObserver", dict(qscheme="per_tensor_symmetric", quant_min=0, quant_max=100)),
    ("MinMaxObserver", dict(dtype="int8", reduce_range=True)),
]


@pytest.mark.parametrize("name,kw", PER_TENSOR, ids=["%s-%s" % (n, "-".join("%s=%s" % i for i in k.items()))
                                                     for n, k in PER_TENSOR])
def test_per_tensor_observer_equals_torch(rng, name, kw):
    mismatches, cases = {}, 0
    for set_name, batches in batch_sets(rng, (6, 32)).items():
        ours, theirs = getattr(O, name)(**kw), getattr(TO, name)(**_torch_kwargs(kw))
        for b in batches:
            ours(b)
            theirs(torch.from_numpy(b))
        state = [ours.min_val == theirs.min_val.item(), ours.max_val == theirs.max_val.item()]
        if name == "HistogramObserver":
            state.append(np.array_equal(ours.histogram, theirs.histogram.numpy()))
        scale, zp = ours.calculate_qparams()
        t_scale, t_zp = theirs.calculate_qparams()
        cases += 1
        if not (all(state) and scale == float(t_scale) and zp == int(t_zp)):
            mismatches[set_name] = (scale, zp, float(t_scale), int(t_zp), state)
    assert not mismatches, "%d of %d batch sets differ: %s" % (len(mismatches), cases, mismatches)


PER_CHANNEL = [
    dict(dtype="int8", qscheme="per_channel_symmetric"),                 # default per-channel weights
    dict(dtype="int8", qscheme="per_channel_affine"),
    dict(dtype="int8", qscheme="per_channel_symmetric", reduce_range=True),
    dict(dtype="uint8", qscheme="per_channel_affine", ch_axis=1),
]


@pytest.mark.parametrize("kw", PER_CHANNEL, ids=lambda k: "-".join("%s=%s" % i for i in k.items()))
def test_per_channel_observer_equals_torch(rng, kw):
    mismatches = {}
    sets = batch_sets(rng, (12, 20))
    sets["one_outlier_row"] = [np.concatenate([rng.standard_normal((11, 20)), np.full((1, 20), 0.0)]).astype(f32)]
    for set_name, batches in sets.items():
        ours = O.PerChannelMinMaxObserver(**kw)
        theirs = TO.PerChannelMinMaxObserver(**_torch_kwargs(kw))
        for b in batches:
            ours(b)
            theirs(torch.from_numpy(b))
        s, z = ours.calculate_qparams()
        ts, tz = theirs.calculate_qparams()
        if not (np.array_equal(s, ts.numpy()) and np.array_equal(z, tz.numpy())):
            mismatches[set_name] = int((s != ts.numpy()).sum() + (z != tz.numpy()).sum())
    assert not mismatches, mismatches


def test_choose_qparams_is_the_same_arithmetic(rng):
    """fastq.choose_qparams (MinMaxObserver's qparams) and observers.calculate_qparams agree."""
    for _ in range(300):
        lo, hi = np.sort(rng.standard_normal(2) * 10 ** rng.uniform(-8, 3)).astype(f32)
        for dtype, sym, rr in (("uint8", False, False), ("uint8", False, True), ("int8", True, False),
                               ("int8", False, True), ("uint8", True, False), ("int8", True, True)):
            qmin, qmax, _ = O.qmin_qmax(dtype, rr)
            s, z = O.calculate_qparams(lo, hi, qmin, qmax, sym, dtype)
            assert (float(s), int(z)) == fastq.choose_qparams(float(lo), float(hi), dtype, sym, rr)


# --------------------------------------------------------------------------- quantize_model
class Branchless(nn.Module):
    """flatten, an unfused functional relu, a fused module relu, dropout, no-bias layer."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(24, 20)
        self.fc2 = nn.Linear(20, 16, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(0.3)
        self.fc3 = nn.Linear(16, 6)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.drop(self.act(self.fc2(x)))
        return self.fc3(x)


class SharedRelu(nn.Module):
    """One ReLU module called after two Linears: fuse_modules cannot fuse both; none fused."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(10, 12)
        self.b = nn.Linear(12, 8)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.b(self.relu(self.a(x))))


def mlp(seed, dims):
    torch.manual_seed(seed)
    layers = []
    for i, (k, n) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(k, n))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


def models():
    torch.manual_seed(3)
    return {
        "mlp_16_32_24_10": (mlp(1, [16, 32, 24, 10]), [("0", "1"), ("2", "3")], (8, 16)),
        "mlp_7_40_5": (mlp(2, [7, 40, 5]), [("0", "1")], (5, 7)),
        "branchless": (Branchless().eval(), [("fc2", "act")], (4, 2, 3, 4)),
        "shared_relu": (SharedRelu().eval(), [], (6, 10)),
    }


def torch_qconfig(name):
    if name == "minmax":
        return default_qconfig
    if isinstance(name, str):
        return get_default_qconfig(name)
    return name


def torch_reference(model, fuse, batches, qconfig):
    """What the brief compares against: QuantWrapper(model), Linear+ReLU pairs fused, prepare,
    the batches, convert (the caller pins the engine)."""
    m = QuantWrapper(copy.deepcopy(model)).eval()
    if fuse:
        fuse_modules(m, [["module." + a, "module." + b] for a, b in fuse], inplace=True)
    m.qconfig = torch_qconfig(qconfig)
    prepare(m, inplace=True)
    with torch.no_grad():
        for b in batches:
            m(torch.from_numpy(b))
    convert(m, inplace=True)
    return m


def compare(fq, tm, x):
    """Mismatch counts of every quantity: input qparams, each layer's output qparams, weights
    (values, scales, zero points), bias, and the outputs on x (bitwise)."""
    counts = {"input_qparams": 0, "output_qparams": 0, "weights": 0, "bias": 0, "outputs": 0}
    q = fq.layers[0]
    counts["input_qparams"] += (q.scale != tm.quant.scale.item()) + (q.zero_point != tm.quant.zero_point.item())
    for name, layer in zip(fq.names, fq.layers):
        if not isinstance(layer, fastq.QuantizedLinear):
            continue
        tl = tm.module.get_submodule(name)
        counts["output_qparams"] += (layer.scale != tl.scale) + (layer.zero_point != tl.zero_point)
        tw = fastq.QTensor.from_torch(tl.weight())
        counts["weights"] += int((layer.weight.values != tw.values).sum())
        counts["weights"] += int(np.sum(np.asarray(layer.weight.scale) != np.asarray(tw.scale)))
        counts["weights"] += int(np.sum(np.asarray(layer.weight.zero_point) != np.asarray(tw.zero_point)))
        tb = tl.bias()
        if layer.bias is None and tb is not None and not tb.any():
            tb = None                               # qnnpack packs a missing bias as zeros
        if (tb is None) != (layer.bias is None):
            counts["bias"] += 1
        elif tb is not None:
            counts["bias"] += int((layer.bias.view(np.uint32) != tb.detach().numpy().view(np.uint32)).sum())
        assert layer.relu == (type(tl).__name__ == "LinearReLU")
    with torch.no_grad():
        ty = tm(torch.from_numpy(x)).numpy()
    counts["outputs"] += int((fq(x).view(np.uint32) != ty.view(np.uint32)).sum())
    return counts


def new_inputs(rng, shape, batches):
    """Fresh inputs: inside, at and far outside the calibration range."""
    span = max(float(np.abs(b).max()) for b in batches) or 1.0
    x = (rng.standard_normal((64,) + tuple(shape[1:])) * span).astype(f32)
    x.reshape(64, -1)[0] = span * 10
    x.reshape(64, -1)[1] = -span * 10
    x.reshape(64, -1)[2] = 0
    return x


QCONFIG_ENGINES = [("x86", "x86"), ("fbgemm", "fbgemm"), ("qnnpack", "qnnpack"),
                   ("minmax", "x86"), ("minmax", "qnnpack")]
SETS_PER_MODEL = {
    "mlp_16_32_24_10": ("grow", "constant_then_random", "outliers", "ties"),
    "mlp_7_40_5": ("zeros_then_positive", "same_range", "one_row"),
    "branchless": ("grow", "constant", "shrink"),
    "shared_relu": ("outliers", "zeros", "relu_like"),
}


@pytest.mark.parametrize("qconfig,engine", QCONFIG_ENGINES, ids=["%s-%s" % p for p in QCONFIG_ENGINES])
@pytest.mark.parametrize("model_name", list(SETS_PER_MODEL))
def test_quantize_model_equals_prepare_convert(rng, qconfig, engine, model_name):
    if engine not in torch.backends.quantized.supported_engines:
        pytest.skip("engine %s not in this torch build" % engine)
    model, fuse, shape = models()[model_name]
    sets = batch_sets(rng, shape)
    total = {}
    with pinned_engine(engine):
        for set_name in SETS_PER_MODEL[model_name]:
            batches = sets[set_name]
            fq = quantize_model(model, batches, qconfig=qconfig, engine=engine)
            tm = torch_reference(model, fuse, batches, qconfig)
            counts = compare(fq, tm, new_inputs(rng, shape, batches))
            for k, v in counts.items():
                total[k] = total.get(k, 0) + v
            expected = "fbgemm" if engine in ("x86", "fbgemm") else "qnnpack"
            assert all(layer.requant == expected for layer in fq.layers
                       if isinstance(layer, fastq.QuantizedLinear))
    assert set(total.values()) == {0}, total


def test_explicit_qconfig_equals_torch(rng):
    """Observers other than the defaults: a 512-bin histogram with a custom range, per-channel
    affine weights, and a narrowed int8 weight range (torch clamps the weights to it)."""
    cases = [
        (QConfig(functools.partial(O.HistogramObserver, bins=512, quant_min=0, quant_max=200),
                 functools.partial(O.PerChannelMinMaxObserver, dtype="int8", qscheme="per_channel_affine")),
         TorchQConfig(activation=TO.HistogramObserver.with_args(bins=512, quant_min=0, quant_max=200),
                      weight=TO.PerChannelMinMaxObserver.with_args(dtype=torch.qint8,
                                                                   qscheme=torch.per_channel_affine))),
        (QConfig(functools.partial(O.MinMaxObserver, reduce_range=True),
                 functools.partial(O.MinMaxObserver, dtype="int8", quant_min=-100, quant_max=100)),
         TorchQConfig(activation=TO.MinMaxObserver.with_args(reduce_range=True),
                      weight=TO.MinMaxObserver.with_args(dtype=torch.qint8, quant_min=-100, quant_max=100))),
        (QConfig(O.HistogramObserver,
                 functools.partial(O.PerChannelMinMaxObserver, dtype="int8",
                                   qscheme="per_channel_symmetric", reduce_range=True)),
         TorchQConfig(activation=TO.HistogramObserver,
                      weight=TO.PerChannelMinMaxObserver.with_args(dtype=torch.qint8, reduce_range=True,
                                                                   qscheme=torch.per_channel_symmetric))),
    ]
    model, fuse, shape = models()["mlp_16_32_24_10"]
    batches = batch_sets(rng, shape)["grow"]
    with pinned_engine("x86"):
        for ours, theirs in cases:
            fq = quantize_model(model, batches, qconfig=ours, engine="x86")
            counts = compare(fq, torch_reference(model, fuse, batches, theirs), new_inputs(rng, shape, batches))
            assert set(counts.values()) == {0}, counts


# --------------------------------------------------------------------------- numpy weights
def dyadic_layers(rng, dims):
    """Weights, biases and inputs on coarse power-of-two grids: every float32 product and partial
    sum is exact, so numpy's matmul and torch's give the same bits in any order."""
    layers = []
    for i, (k, n) in enumerate(zip(dims[:-1], dims[1:])):
        w = (rng.integers(-4, 5, (n, k)) / 4).astype(f32)
        b = (rng.integers(-8, 9, n) / 4).astype(f32)
        layers.append({"weight": w, "bias": b, "relu": i < len(dims) - 2})
    return layers


def torch_twin(layers):
    mods = []
    for layer in layers:
        n, k = layer["weight"].shape
        lin = nn.Linear(k, n)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(layer["weight"]))
            lin.bias.copy_(torch.from_numpy(layer["bias"]))
        mods.append(lin)
        if layer["relu"]:
            mods.append(nn.ReLU())
    fuse = [(str(i - 1), str(i)) for i, m in enumerate(mods) if isinstance(m, nn.ReLU)]
    return nn.Sequential(*mods).eval(), fuse


NUMPY_ONLY = r"""
import sys, json
sys.modules["torch"] = None                       # any "import torch" now fails
import numpy as np
import fastq
args = np.load(sys.argv[1])
n = int(args["n_layers"])
layers = [{"weight": args["w%d" % i], "bias": args["b%d" % i], "relu": bool(args["r%d" % i])} for i in range(n)]
batches = [args["batch%d" % i] for i in range(int(args["n_batches"]))]
out = {}
for qc, engine in (("x86", None), ("qnnpack", None), ("minmax", "x86")):
    m = fastq.quantize_model(layers, batches, qconfig=qc, engine=engine)
    out[qc] = {"y": m(args["x"]).view(np.uint32).tolist(),
               "qparams": [[float(l.scale), int(l.zero_point)] for l in m.layers if hasattr(l, "zero_point")],
               "weights": [l.weight.values.tolist() for l in m.layers if hasattr(l, "weight")]}
assert "torch" not in [k for k, v in sys.modules.items() if v is not None]
print(json.dumps(out))
"""


def test_numpy_weights_without_torch_equal_torch(rng, tmp_path):
    layers = dyadic_layers(rng, [12, 16, 12, 6])
    batches = [(rng.integers(-16, 17, (9, 12)) / 4).astype(f32) for _ in range(3)]
    batches.append((rng.integers(0, 9, (4, 12)) / 8).astype(f32))
    x = (rng.integers(-40, 41, (30, 12)) / 4).astype(f32)
    arrays = {"n_layers": len(layers), "n_batches": len(batches), "x": x}
    for i, layer in enumerate(layers):
        arrays.update({"w%d" % i: layer["weight"], "b%d" % i: layer["bias"], "r%d" % i: layer["relu"]})
    for i, b in enumerate(batches):
        arrays["batch%d" % i] = b
    np.savez(tmp_path / "args.npz", **arrays)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    res = subprocess.run([sys.executable, "-c", NUMPY_ONLY, str(tmp_path / "args.npz")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    model, fuse = torch_twin(layers)
    for qc, engine in (("x86", "x86"), ("qnnpack", "qnnpack"), ("minmax", "x86")):
        with pinned_engine(engine):
            tm = torch_reference(model, fuse, batches, qc)
            with torch.no_grad():
                ty = tm(torch.from_numpy(x)).numpy()
            tq = [[tm.quant.scale.item(), tm.quant.zero_point.item()]]
            tq += [[tl.scale, tl.zero_point] for tl in tm.module if hasattr(tl, "zero_point")]
            tw = [tl.weight().int_repr().numpy().tolist() for tl in tm.module if hasattr(tl, "weight")]
        assert got[qc]["qparams"] == tq, qc
        assert got[qc]["weights"] == tw, qc
        assert np.array_equal(np.array(got[qc]["y"], np.uint32), ty.view(np.uint32)), qc


def test_numpy_tuple_form_equals_dict_form_and_survives_save_load(rng, tmp_path):
    layers = dyadic_layers(rng, [8, 10, 4])
    tuples = [(d["weight"], d["bias"], d["relu"]) for d in layers]
    batches = [(rng.standard_normal((5, 8)) * 2).astype(f32) for _ in range(2)]
    x = rng.standard_normal((7, 8)).astype(f32)
    a = quantize_model(layers, batches, "x86")
    b = quantize_model(tuples, batches, "x86")
    assert np.array_equal(a(x).view(np.uint32), b(x).view(np.uint32))
    assert [getattr(layer, "scale", None) for layer in a] == [getattr(layer, "scale", None) for layer in b]
    a.save(str(tmp_path / "calibrated.npz"))
    assert np.array_equal(fastq.load(str(tmp_path / "calibrated.npz"))(x).view(np.uint32), a(x).view(np.uint32))


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(calibration_batches=[]), ValueError, "calibration_batches"),
    (dict(calibration_batches=[np.full((2, 4), np.nan, f32)]), ValueError, "calibration_batches[0]"),
    (dict(calibration_batches=[np.ones((2, 4), f32), np.array([[1, np.inf, 0, 0]], f32)]), ValueError,
     "calibration_batches[1]"),
    (dict(calibration_batches=[np.ones((2, 5), f32)]), ValueError, "calibration_batches[0]"),
    (dict(calibration_batches=[np.ones((0, 4), f32)]), ValueError, "empty"),
    (dict(calibration_batches=[np.array([["a"] * 4])]), TypeError, "calibration_batches[0]"),
    (dict(calibration_batches=np.ones((2, 4), f32)), TypeError, "calibration_batches"),
    (dict(calibration_batches=5), TypeError, "calibration_batches"),
    (dict(qconfig="int4"), ValueError, "qconfig"),
    (dict(qconfig=3), TypeError, "qconfig"),
    (dict(qconfig=QConfig(functools.partial(O.MinMaxObserver, dtype="int8"), O.MinMaxObserver)),
     ValueError, "qconfig.activation"),
    (dict(qconfig=QConfig(O.MinMaxObserver, O.MinMaxObserver)), ValueError, "qconfig.weight"),
    (dict(engine="onednn"), ValueError, "engine"),
])
def test_bad_arguments_name_themselves(kwargs, exc, words):
    args = dict(model=[{"weight": np.ones((3, 4), f32), "bias": None}],
                calibration_batches=[np.ones((2, 4), f32)])
    args.update(kwargs)
    with pytest.raises(exc, match=words.replace("[", r"\[").replace("]", r"\]")):
        quantize_model(**args)


@pytest.mark.parametrize("model,exc,words", [
    ([], ValueError, "model"),
    ("mlp", TypeError, "model"),
    ([{"weight": np.ones((3, 4), f32), "bias": np.ones(2, f32)}], ValueError, r"model\[0\].bias"),
    ([{"weight": np.ones((3, 4), f32)}, {"weight": np.ones((2, 5), f32)}], ValueError, r"model\[1\].weight"),
    ([{"weight": np.ones(4, f32)}], ValueError, r"model\[0\].weight"),
    ([{"weight": np.ones((3, 4), f32), "gain": 2}], ValueError, "gain"),
    ([{"weight": np.ones((3, 4), f32), "relu": "yes"}], TypeError, "relu"),
    ([{"weight": np.full((3, 4), np.nan, f32)}], ValueError, r"model\[0\].weight"),
    ([np.ones((3, 4), f32)], TypeError, r"model\[0\]"),
])
def test_bad_numpy_models_name_themselves(model, exc, words):
    with pytest.raises(exc, match=words):
        quantize_model(model, [np.ones((2, 4), f32)])


class Branching(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        return self.a(x) + self.b(x)


class ControlFlow(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > 0:
            return self.a(x)
        return x


@pytest.mark.parametrize("model,exc,words", [
    (Branching().eval(), NotImplementedError, "FloatFunctional"),
    (ControlFlow().eval(), NotImplementedError, "fx cannot trace"),
    (nn.Sequential(nn.Linear(4, 4), nn.Sigmoid()).eval(), NotImplementedError, "Sigmoid"),
    (nn.Sequential(nn.Linear(4, 4)), ValueError, "training mode"),
    (nn.Sequential(nn.Flatten()).eval(), ValueError, "no Linear"),
])
def test_torch_models_fastq_cannot_reproduce_are_refused(model, exc, words):
    with pytest.raises(exc, match=words):
        quantize_model(model, [np.ones((2, 4), f32)])


def test_torch_model_rejecting_the_batch_shape_names_the_batch():
    with pytest.raises(ValueError, match=r"calibration_batches\[0\]"):
        quantize_model(mlp(0, [4, 3]), [np.ones((2, 5), f32)])


@pytest.mark.parametrize("cls,kw,exc,words", [
    (O.MinMaxObserver, dict(dtype="int4"), ValueError, "dtype"),
    (O.MinMaxObserver, dict(qscheme="per_channel_affine"), ValueError, "qscheme"),
    (O.MinMaxObserver, dict(qscheme="per_tensor_symmetric", reduce_range=True), ValueError, "reduce_range"),
    (O.MinMaxObserver, dict(quant_min=5, quant_max=100), ValueError, "include 0"),
    (O.MinMaxObserver, dict(dtype="int8", quant_min=-200, quant_max=100), ValueError, "does not fit"),
    (O.HistogramObserver, dict(bins=0), ValueError, "bins"),
    (O.HistogramObserver, dict(bins=65536), ValueError, "bins"),
    (O.PerChannelMinMaxObserver, dict(ch_axis=1.5), TypeError, "ch_axis"),
])
def test_bad_observer_settings(cls, kw, exc, words):
    with pytest.raises(exc, match=words):
        cls(**kw)


def test_observers_refuse_nan():
    for obs in (O.MinMaxObserver(), O.HistogramObserver(), O.PerChannelMinMaxObserver()):
        with pytest.raises(ValueError, match="NaN"):
            obs(np.array([[1.0, np.nan]], f32))


def test_huge_constant_batch_is_refused_naming_the_batch():
    """torch's histc widens a constant range by +-1, which vanishes in float32 at 2^25."""
    with pytest.raises(ValueError, match=r"calibration_batches\[0\].*collapses"):
        quantize_model([{"weight": np.ones((3, 4), f32)}], [np.full((2, 4), 2.0**26, f32)], "x86")


def test_generator_of_torch_tensors_and_3d_batches_equal_torch(rng):
    """Batches as a one-pass generator of CPU torch tensors, [B, T, K] activations."""
    model = mlp(4, [16, 12, 5])
    batches = [(rng.standard_normal((3, 5, 16)) * s).astype(f32) for s in (1, 3, 0.5)]
    x = (rng.standard_normal((4, 7, 16)) * 4).astype(f32)
    with pinned_engine("x86"):
        fq = quantize_model(model, (torch.from_numpy(b) for b in batches), qconfig="x86")
        counts = compare(fq, torch_reference(model, [("0", "1")], batches, "x86"), x)
    assert set(counts.values()) == {0}, counts
