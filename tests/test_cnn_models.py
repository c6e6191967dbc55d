"""fastq.from_torch on real convolutional models converted under each engine: every output
compared bit for bit with torch, inputs 3x past the calibration range."""
import warnings

import numpy as np

import pytest

import fastq

torch = pytest.importorskip("torch")
from torch_helpers import engine  # noqa: E402
from cnn_models import FAMILIES, build, mismatches  # noqa: E402

warnings.filterwarnings("ignore", message=".*reduce_range.*")


@pytest.mark.parametrize("eng", ["x86", "fbgemm", "qnnpack"])
@pytest.mark.parametrize("family", FAMILIES)
def test_cnn_matches_torch_bitwise(eng, family):
    with engine(eng):
        tm, xs = build(family, eng)
        model = fastq.from_torch(tm)
        bad, total = mismatches(tm, model, xs)
    assert total > 0 and bad == 0, "%s / %s: %d of %d differ" % (family, eng, bad, total)


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


@pytest.mark.parametrize("family", ["shufflenet_v2_x0_5", "mobilenet_v2", "resnet18", "mobilenet_v3_large"])
def test_torchvision_models_refused_by_name(family):
    """torchvision's quantizable models pool with adaptive_avg_pool2d (whose torch rounding is not
    pinned yet), shufflenet shuffles channels with size() // groups, mobilenet_v3 uses hardswish:
    from_torch names the first op it does not reproduce and its fx node, never computes something
    else."""
    from torchvision_helpers import quantizable_models
    q = quantizable_models()
    with engine("x86"):
        tm = getattr(q, family)(weights=None, quantize=False)
        tm.eval()
        tm.fuse_model()
        tm.qconfig = torch.ao.quantization.get_default_qconfig("x86")
        p = torch.ao.quantization.prepare(tm)
        p(torch.randn(1, 3, 64, 64))
        qm = torch.ao.quantization.convert(p)
        with pytest.raises(NotImplementedError, match=r"is not supported by fastq.from_torch \(fx node '\w+'"):
            fastq.from_torch(qm)
