"""quantized::mul with broadcasting (squeeze-excitation: [N, C, 1, 1] times [N, C, H, W]) against
torch 2.13 under each engine, and the refusal where torch's rounding would depend on its
iteration order (products past 2^31 output steps)."""
import numpy as np
import pytest

import fastq
from fastq.layers.arith import QuantizedMul
from torch_helpers import engine

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("eng", ["x86", "fbgemm", "qnnpack"])
@pytest.mark.parametrize("shapes", [((2, 24, 1, 1), (2, 24, 5, 7)), ((2, 24, 5, 7), (2, 24, 1, 1)),
                                    ((1, 13, 1, 1), (3, 13, 4, 4)), ((2, 1, 3, 5), (2, 9, 3, 5))])
def test_broadcast_mul_matches_torch(rng, eng, shapes):
    bad = total = 0
    with engine(eng):
        for _ in range(20):
            sa, sb = float(rng.uniform(0.002, 0.05)), float(rng.uniform(0.01, 0.1))
            sy, za, zb, zy = float(rng.uniform(0.001, 0.03)), *[int(v) for v in rng.integers(0, 256, 3)]
            a = rng.integers(0, 256, shapes[0]).astype(np.uint8)
            b = rng.integers(0, 256, shapes[1]).astype(np.uint8)
            ta = torch._make_per_tensor_quantized_tensor(torch.from_numpy(a), sa, za)
            tb = torch._make_per_tensor_quantized_tensor(torch.from_numpy(b), sb, zb)
            for cl in (False, True):
                if cl:
                    ta, tb = (t.contiguous(memory_format=torch.channels_last) for t in (ta, tb))
                t = torch.ops.quantized.mul(ta, tb, sy, zy).int_repr().numpy()
                q = QuantizedMul(sy, zy)(fastq.QTensor(a, sa, za), fastq.QTensor(b, sb, zb)).values
                assert q.shape == t.shape
                bad += int((q != t).sum())
                total += t.size
    assert bad == 0, "%d of %d differ" % (bad, total)


def test_broadcast_mul_refused_past_int32_steps():
    a = fastq.QTensor(np.zeros((1, 4, 1, 1), np.uint8), 1.0, 0)
    b = fastq.QTensor(np.zeros((1, 4, 3, 3), np.uint8), 1.0, 0)
    with pytest.raises(ValueError, match=r"broadcasting inputs of shapes \(1, 4, 1, 1\) and \(1, 4, 3, 3\)"):
        QuantizedMul(1e-5, 0)(a, b)
    with pytest.raises(ValueError, match="do not broadcast"):
        QuantizedMul(0.1, 0)(a, fastq.QTensor(np.zeros((1, 3, 3, 3), np.uint8), 1.0, 0))
