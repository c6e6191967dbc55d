"""fastq.from_torch on real convolutional models converted under each engine: every output
compared bit for bit with torch, inputs 3x past the calibration range."""
import warnings

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
