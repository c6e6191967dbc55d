"""fastq.quantize_model on float CNNs against torch's eager flow (fuse_modules with the module
lists a torch user writes, prepare / convert of QuantWrapper(model)), bitwise, per family and
qconfig: output scales and zero points, weight scales and zero points, int8 weights, float
biases (BatchNorm folded by fastq.fusion), the other layer settings (the conv arithmetic torch
packed, fused ReLU, geometry), and the outputs on new inputs reaching 4x past the calibration
range."""
import copy
import warnings
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.ao.nn.quantized as nnq  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.ao.quantization import (QuantWrapper, convert, default_qconfig, fuse_modules,  # noqa: E402
                                   get_default_qconfig, prepare)

import fastq  # noqa: E402
from conv_calib_models import FAMILIES, build  # noqa: E402
from test_calibrate_graph import _bits, _without_identities, pinned_engine  # noqa: E402

f32 = np.float32
QCONFIG_ENGINES = [("x86", "x86"), ("fbgemm", "fbgemm"), ("qnnpack", "qnnpack"), ("minmax", "x86")]
warnings.filterwarnings("ignore", message=".*(reduce_range|migrate|deprecat).*")


def torch_reference(model, batches, qconfig, fuse=None):
    m = QuantWrapper(copy.deepcopy(model)).eval()
    fuse = model.fuse if fuse is None else fuse
    if fuse:
        fuse_modules(m, [["module." + p for p in group] for group in fuse], inplace=True)
    m.qconfig = default_qconfig if qconfig == "minmax" else get_default_qconfig(qconfig)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare(m, inplace=True)
        with torch.no_grad():
            for b in batches:
                m(torch.from_numpy(b))
        convert(m, inplace=True)
    return m


class _ContiguousReLU6(nn.Module):
    """torch 2.13's quantized relu6 under qnnpack labels a channels-last result NCHW (its bytes
    scrambled): the corrected oracle gives it a contiguous input, which it handles right."""

    def forward(self, x):
        return F.relu6(x.contiguous())


def corrected(tm):
    tm = copy.deepcopy(tm)
    for path, m in list(tm.named_modules()):
        if type(m) in (nnq.ReLU6, nn.ReLU6):
            parent, _, name = path.rpartition(".")
            setattr(tm.get_submodule(parent) if parent else tm, name, _ContiguousReLU6())
    return tm


_QPARAM_ARRAYS = {"weight_scale": "scales", "weight_zero_point": "zero_points", "weight": "weights",
                  "bias": "biases", "int_bias": "biases"}
_QPARAM_SETTINGS = {"scale": "scales", "zero_point": "zero_points"}


def mismatches(fq, tm, x, engine):
    """Counts of what differs from torch: scales / zero points (outputs' and weights'), weights,
    biases, other settings, nodes (layer type or wiring), outputs. Layers are compared with
    fastq.from_torch of torch's converted model, node for node (Identity nodes skipped)."""
    counts = dict.fromkeys(("scales", "zero_points", "weights", "biases", "settings", "nodes", "outputs"), 0)
    with pinned_engine(engine):
        ref = fastq.from_torch(tm)
    mine, theirs = _without_identities(fq), _without_identities(ref)
    counts["nodes"] += abs(len(mine) - len(theirs))
    for (a, wa), (b, wb) in zip(mine, theirs):
        if type(a.layer) is not type(b.layer) or wa != wb:
            counts["nodes"] += 1
            continue
        sa, sb = a.layer.get_settings(), b.layer.get_settings()
        for k in set(sa) | set(sb):
            if sa.get(k) != sb.get(k):
                counts[_QPARAM_SETTINGS.get(k, "settings")] += 1
        arr_a, arr_b = a.layer.get_arrays(), b.layer.get_arrays()
        for k in set(arr_a) | set(arr_b):
            va, vb = arr_a.get(k), arr_b.get(k)
            key = _QPARAM_ARRAYS.get(k, "settings")
            if va is None or vb is None:
                counts[key] += int((va is None) != (vb is None))
                continue
            va, vb = np.asarray(va), np.asarray(vb)
            if va.shape != vb.shape or va.dtype != vb.dtype:
                counts[key] += max(va.size, vb.size, 1)
            else:
                counts[key] += int((_bits(va) != _bits(vb)).sum())
    with pinned_engine(engine), torch.no_grad():
        ty = corrected(tm)(torch.from_numpy(x)).numpy()
    y = fq(x)
    counts["outputs"] += max(y.size, ty.size) if y.shape != ty.shape else int((y.view(np.uint32) != ty.view(np.uint32)).sum())
    return counts


def batches_for(rng, shape):
    """Three batches of different ranges (the histogram's range grows between them), one on a
    1/64 grid with exact zeros."""
    a = (rng.standard_normal((4,) + shape)).astype(f32)
    b = (rng.standard_normal((3,) + shape) * 2.5).astype(f32)
    grid = (np.round(rng.standard_normal((2,) + shape) * 128) / 64).astype(f32)
    grid.reshape(2, -1)[0, ::3] = 0
    return [a, b, grid]


def new_inputs(rng, shape):
    x = (rng.standard_normal((5,) + shape) * 4).astype(f32)
    x[0] = 0
    return x


@pytest.fixture(scope="module")
def models():
    return {name: build(name) for name in FAMILIES}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("qconfig,engine", QCONFIG_ENGINES, ids=["%s-%s" % p for p in QCONFIG_ENGINES])
def test_cnn_calibration_equals_prepare_convert(models, family, qconfig, engine):
    rng = np.random.default_rng(zlib.crc32(("%s %s" % (family, qconfig)).encode()))
    model = models[family]
    batches = batches_for(rng, model.shape)
    with pinned_engine(engine):
        fq = fastq.quantize_model(model, batches, qconfig=qconfig, engine=engine)
        tm = torch_reference(model, batches, qconfig)
    counts = mismatches(fq, tm, new_inputs(rng, model.shape), engine)
    assert set(counts.values()) == {0}, "%s / %s: %s" % (family, qconfig, counts)
    convs = [n.layer for n in fq.nodes if isinstance(n.layer, fastq.layers.conv.QuantizedConv)]
    assert convs and all(c.per_channel == (qconfig in ("x86", "fbgemm")) for c in convs)


def test_bn_folding_changes_what_is_observed(models):
    """The observers see the folded conv's float output: calibrating the unfolded Conv -> BN
    chain (BatchNorm made the identity after the conv) gives other weights, so the test above
    would fail without the fold."""
    model = models["dscnn"]
    rng = np.random.default_rng(3)
    batches = batches_for(rng, model.shape)
    fq = fastq.quantize_model(model, batches, qconfig="fbgemm", engine="fbgemm")
    plain = copy.deepcopy(model)
    for m in plain.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.zero_()
            m.running_var.fill_(1 - m.eps)
            m.weight.data.fill_(1)
            m.bias.data.zero_()
    fq_plain = fastq.quantize_model(plain, batches, qconfig="fbgemm", engine="fbgemm")
    stem, stem_plain = fq.node("stem.0").layer, fq_plain.node("stem.0").layer
    assert not np.array_equal(stem.get_arrays()["weight_scale"], stem_plain.get_arrays()["weight_scale"])
    assert stem.scale != stem_plain.scale


def test_qnnpack_relu6_oracle_is_needed(models):
    """torch's own converted MobileNetV1 under qnnpack differs from its corrected twin (the
    scrambled relu6 on channels-last values), while fastq equals the corrected one (the test
    above): fastq computes the intended relu6."""
    model = models["mobilenet_v1"]
    rng = np.random.default_rng(11)
    batches = batches_for(rng, model.shape)
    x = new_inputs(rng, model.shape)
    with pinned_engine("qnnpack"), torch.no_grad():
        tm = torch_reference(model, batches, "qnnpack")
        raw, fixed = tm(torch.from_numpy(x)).numpy(), corrected(tm)(torch.from_numpy(x)).numpy()
        fq = fastq.quantize_model(model, batches, qconfig="qnnpack", engine="qnnpack")
    assert not np.array_equal(raw, fixed)
    assert np.array_equal(fq(x).view(np.uint32), fixed.view(np.uint32))


# --------------------------------------------------------------------------- fusion rules
class _ConvTwoUsers(nn.Module):
    """The conv's output feeds the BatchNorm and a skip add: fuse_modules would change the
    skip's values, so a torch user cannot fuse them; fastq does not either: the BN stays a quantized op."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2)
        self.add = nnq.FloatFunctional()

    def forward(self, x):
        y = self.conv(x)
        return self.add.add(self.bn(y), y)


class _BnReluFunctional(nn.Module):
    """Conv -> BN -> functional relu: Conv + BN fuse (a module pair), the relu stays outside
    (fuse_modules fuses modules only): the conv's output is observed before the relu."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 5 * 5, 2)

    def forward(self, x):
        return self.fc(torch.flatten(F.relu(self.bn(self.conv(x))), 1))


def test_unfusable_batchnorm_stays_unfused():
    """The BN after a conv with two users is not folded: it becomes nnq.BatchNorm2d in torch and a
    QuantizedBatchNorm here, bitwise equal (tests/test_batchnorm_torch.py has the op itself)."""
    from conv_calib_models import randomize_bn
    from fastq.layers.batchnorm import QuantizedBatchNorm
    torch.manual_seed(0)
    model = randomize_bn(_ConvTwoUsers(), 2).eval()
    rng = np.random.default_rng(2)
    batches = batches_for(rng, (2, 3, 3))
    with pinned_engine("x86"):
        fq = fastq.quantize_model(model, batches, qconfig="x86", engine="x86")
        tm = torch_reference(model, batches, "x86", fuse=[])
    assert isinstance(fq.node("bn").layer, QuantizedBatchNorm)
    counts = mismatches(fq, tm, new_inputs(rng, (2, 3, 3)), "x86")
    assert set(counts.values()) == {0}, counts


def test_functional_relu_is_not_fused():
    torch.manual_seed(0)
    from conv_calib_models import randomize_bn
    model = randomize_bn(_BnReluFunctional(), 4).eval()
    rng = np.random.default_rng(4)
    batches = batches_for(rng, (3, 5, 5))
    with pinned_engine("x86"):
        fq = fastq.quantize_model(model, batches, qconfig="x86", engine="x86")
        tm = torch_reference(model, batches, "x86", fuse=[["conv", "bn"]])
    assert not fq.node("conv").layer.relu
    counts = mismatches(fq, tm, new_inputs(rng, (3, 5, 5)), "x86")
    assert set(counts.values()) == {0}, counts
