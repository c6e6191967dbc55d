"""fastq.from_torch on real convolutional models converted under each engine: every output
compared bit for bit with torch, inputs 3x past the calibration range."""
import warnings

import numpy as np

import pytest

import fastq

torch = pytest.importorskip("torch")
from torch_helpers import engine  # noqa: E402
from cnn_models import FAMILIES, build, mismatches, value_mismatches  # noqa: E402

warnings.filterwarnings("ignore", message=".*reduce_range.*")


@pytest.mark.parametrize("eng", ["x86", "fbgemm", "qnnpack"])
@pytest.mark.parametrize("family", FAMILIES)
def test_cnn_matches_torch_bitwise(eng, family):
    with engine(eng):
        tm, xs = build(family, eng)
        model = fastq.from_torch(tm)
        bad, total = mismatches(tm, model, xs)
        vbad, vtotal, nvalues = value_mismatches(tm, model, xs)
    assert total > 0 and bad == 0, "%s / %s: %d of %d outputs differ" % (family, eng, bad, total)
    assert nvalues >= 3 and vbad == 0, "%s / %s: %d of %d integers differ" % (family, eng, vbad, vtotal)


def test_x86_packs_per_layer_like_torch():
    """MobileNetV1-0.25 under x86: the convolutions with groups <= 100 run oneDNN's arithmetic, the
    128- and 256-channel depthwise ones FBGEMM's (saturating int16 pairs), as torch packed them."""
    from fastq.layers.conv import QuantizedConv
    with engine("x86"):
        tm, xs = build("mobilenet_v1_025", "x86")
        model = fastq.from_torch(tm)
    convs = [n.layer for n in model.nodes if isinstance(n.layer, QuantizedConv)]
    kinds = {(c.arithmetic, c.groups > 100, c.saturates()) for c in convs}
    if "avx512vnni" in fastq.backends():
        assert ("onednn", False, False) in kinds and ("fbgemm", True, True) in kinds
    else:
        assert all(c.arithmetic == "fbgemm" for c in convs)


def test_converted_cnn_round_trips_through_a_model_file(tmp_path):
    with engine("x86"):
        tm, xs = build("resnet8", "x86")
        model = fastq.from_torch(tm)
    model.save(str(tmp_path / "r8.fq"))
    loaded = fastq.load(str(tmp_path / "r8.fq"))
    for x in xs:
        a, b = model(x), loaded(x)
        assert a.dtype == b.dtype and a.view(np.uint32).tolist() == b.view(np.uint32).tolist()


def _torchvision(family, eng):
    from torchvision_helpers import quantizable_models
    q = quantizable_models()
    torch.manual_seed(0)
    tm = getattr(q, family)(weights=None, quantize=False)
    tm.eval()
    tm.fuse_model()
    tm.qconfig = torch.ao.quantization.get_default_qconfig(eng)
    p = torch.ao.quantization.prepare(tm)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        p(torch.randn(1, 3, 64, 64, generator=g))
    return torch.ao.quantization.convert(p)


@pytest.mark.parametrize("eng", ["x86", "fbgemm", "qnnpack"])
@pytest.mark.parametrize("family", ["mobilenet_v2", pytest.param("resnet18", marks=pytest.mark.slow),
                                    "mobilenet_v3_large"])
def test_torchvision_models_match_torch_bitwise(family, eng):
    """torchvision's quantizable mobilenet_v2 / resnet18 / mobilenet_v3_large (adaptive average
    pooling on a conv's channels-last output, residual adds, hardswish, squeeze-excitation:
    hardsigmoid and a broadcasting quantized mul), every quantized intermediate integer equal to
    torch's, inputs 2x past the calibration range."""
    with engine(eng):
        qm = _torchvision(family, eng)
        model = fastq.from_torch(qm)
        xs = [(np.random.default_rng(1).standard_normal((1, 3, 64, 64)) * 2).astype(np.float32)]
        bad, total = mismatches(qm, model, xs)
        vbad, vtotal, nvalues = value_mismatches(qm, model, xs)
    assert total > 0 and bad == 0, "%s / %s: %d of %d outputs differ" % (family, eng, bad, total)
    assert nvalues >= 50 and vbad == 0, "%s / %s: %d of %d integers differ" % (family, eng, vbad, vtotal)


@pytest.mark.parametrize("eng", ["x86", "fbgemm", "qnnpack"])
@pytest.mark.parametrize("family", ["shufflenet_v2_x0_5"])
def test_torchvision_shufflenet_matches_torch_bitwise(family, eng):
    """shufflenet_v2: chunk, quantized cat, the channel shuffle (size(), //, view with computed
    sizes, transpose, contiguous) and mean([2, 3]) on a channels-last value."""
    test_torchvision_models_match_torch_bitwise(family, eng)


def test_unsupported_mean_refused_by_name():
    """from_torch names an op it does not reproduce and its fx node, never computes something else."""
    import torch.nn as nn

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.dq = torch.ao.quantization.QuantStub(), torch.ao.quantization.DeQuantStub()

        def forward(self, x):
            return self.dq(self.q(x).mean(1))

    with engine("x86"):
        m = M().eval()
        m.qconfig = torch.ao.quantization.get_default_qconfig("x86")
        p = torch.ao.quantization.prepare(m)
        p(torch.randn(1, 3, 4, 4))
        qm = torch.ao.quantization.convert(p)
        with pytest.raises(NotImplementedError, match=r"mean over dims 1 is not supported by fastq.from_torch "
                                                      r"\(fx node 'mean'"):
            fastq.from_torch(qm)
