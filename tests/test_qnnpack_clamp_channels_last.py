"""Where torch itself is wrong: under engine qnnpack, torch 2.13's quantized relu6 / hardtanh on a
channels-last tensor (every quantized conv's output is one) returns its NHWC bytes labelled NCHW.
fastq computes the intended clamp; the oracle is torch's output with its bytes read back in the
order torch wrote them (NHWC), and torch's own labelled result is checked to be scrambled."""
import numpy as np
import pytest

import fastq
from fastq.layers.elementwise import Hardtanh, ReLU6
from torch_helpers import engine

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402


@pytest.mark.parametrize("op", ["relu6", "hardtanh"])
def test_qnnpack_channels_last_clamp_is_the_intended_op(rng, op):
    layer = ReLU6() if op == "relu6" else Hardtanh(-1.0, 2.5)
    scrambled = total = 0
    with engine("qnnpack"):
        for shape in [(1, 4, 3, 3), (2, 5, 4, 6), (1, 16, 7, 7)]:
            x = rng.integers(0, 256, shape).astype(np.uint8)
            xt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), 0.05, 120)
            xcl = xt.contiguous(memory_format=torch.channels_last)
            yt = F.relu6(xcl) if op == "relu6" else F.hardtanh(xcl, -1.0, 2.5)
            raw = yt.int_repr().contiguous().numpy()
            n, c, h, w = shape
            corrected = raw.reshape(n, h, w, c).transpose(0, 3, 1, 2)      # the bytes in the order torch wrote them
            q = layer(fastq.QTensor(x, 0.05, 120)).values
            assert np.array_equal(q, corrected)
            # and that is the intended op: torch's own contiguous-input result
            plain = (F.relu6(xt) if op == "relu6" else F.hardtanh(xt, -1.0, 2.5)).int_repr().numpy()
            assert np.array_equal(q, plain)
            scrambled += int((raw != q).sum())
            total += q.size
    assert scrambled > 0, "torch no longer scrambles: drop the note in ARITHMETIC.md and the summary row"


def test_summary_row_names_the_difference():
    for layer in (ReLU6(), Hardtanh(0.0, 6.0)):
        assert "scrambles a channels-last input" in layer.summary_row([None], None)["arithmetic"]
