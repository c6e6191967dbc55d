"""Quantized pooling: fastq.reference.max_pool / avg_pool against torch 2.13, bit for bit.

Pins (docs/ARITHMETIC.md §18): average pooling rounds differently on NCHW and channels-last
inputs (and on the channel tail of the channels-last path); engine qnnpack ignores
count_include_pad and divisor_override."""
import numpy as np
import pytest

from torch_helpers import engine

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from fastq import reference as R  # noqa: E402


def _cases(rng, n, qnnpack=False):
    for _ in range(n):
        k = int(rng.choice([2, 3, 4, 5]))
        s = int(rng.choice([1, 2, 3]))
        p = int(rng.integers(0, k // 2 + 1))
        ceil = False if qnnpack else bool(rng.integers(0, 2))
        cip = bool(rng.integers(0, 2))
        dov = int(rng.choice([0, 0, 0, 3, 4, 6]))
        h, w = int(rng.integers(k, 10)), int(rng.integers(k, 10))
        c = int(rng.integers(1, 40))
        x = rng.integers(0, 256, (int(rng.integers(1, 3)), c, h, w)).astype(np.uint8)
        yield (k, k), (s, s), (p, p), ceil, cip, dov or None, x, int(rng.integers(0, 256))


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_avg_pool2d(rng, layout):
    bad = total = 0
    with engine("x86"):
        for k, s, p, ceil, cip, dov, x, zx in _cases(rng, 120):
            xq = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), 0.05, zx)
            if layout == "nhwc":
                xq = xq.contiguous(memory_format=torch.channels_last)
            yt = F.avg_pool2d(xq, k, s, p, ceil, cip, dov)
            assert (yt.q_scale(), yt.q_zero_point()) == (0.05, zx)      # the input's qparams
            q = R.avg_pool(x, zx, k, s, p, ceil, cip, dov, path=layout)
            bad += int((q != yt.int_repr().numpy()).sum())
            total += q.size
    assert bad == 0 and total > 10000


def test_avg_pool2d_paths_differ(rng):
    """The NCHW formula (zero point added before rounding) is wrong for channels-last inputs and
    the other way round: exact .5 ties (divisor 2, 4, ...) round differently."""
    x = rng.integers(0, 256, (1, 32, 8, 8)).astype(np.uint8)
    a = R.avg_pool(x, 3, (2, 2), (2, 2), (0, 0), path="nchw")
    b = R.avg_pool(x, 3, (2, 2), (2, 2), (0, 0), path="nhwc")
    assert (a != b).sum() > 10


def test_avg_pool2d_qnnpack(rng):
    bad = total = 0
    with engine("qnnpack"):
        for k, s, p, ceil, cip, dov, x, zx in _cases(rng, 120, qnnpack=True):
            xq = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), 0.05, zx)
            y = F.avg_pool2d(xq, k, s, p, ceil, cip, dov).int_repr().numpy()
            q = R.avg_pool(x, zx, k, s, p, ceil, cip, dov, path="qnnpack", scale=0.05)
            bad += int((q != y).sum())
            total += q.size
    assert bad == 0 and total > 10000


@pytest.mark.parametrize("eng", ["x86", "qnnpack"])
def test_max_pool(rng, eng):
    with engine(eng):
        for k, s, p, ceil, cip, dov, x, zx in _cases(rng, 60):
            for d in (1, 2) if eng == "x86" else (1,):      # qnnpack's dilated max pool: see below
                span = (k[0] - 1) * d + 1
                if p[0] > k[0] // 2 or span > min(x.shape[2:]) + 2 * p[0]:
                    continue
                xq = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), 0.05, zx)
                y = F.max_pool2d(xq, k, s, p, d, ceil).int_repr().numpy()
                assert np.array_equal(R.max_pool(x, k, s, p, (d, d), ceil), y)
                y1 = F.max_pool1d(xq[:, :, 0], k[0], s[0], p[0], d, ceil).int_repr().numpy()
                assert np.array_equal(R.max_pool(x[:, :, 0], k[:1], s[:1], p[:1], (d,), ceil), y1)


def test_max_pool_qnnpack_dilated_is_not_the_max(rng):
    """torch 2.13's qnnpack max pool with dilation > 1 does not return the window maximum
    (QNNPACK's u8 max pool reads other taps); fastq refuses to import it (torch_conv)."""
    x = rng.integers(0, 256, (1, 16, 7, 7)).astype(np.uint8)
    xq = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), 0.05, 3)
    with engine("qnnpack"):
        y = F.max_pool2d(xq, 2, 2, 1, 2).int_repr().numpy()
    with engine("x86"):
        y86 = F.max_pool2d(xq, 2, 2, 1, 2).int_repr().numpy()
    assert np.array_equal(R.max_pool(x, (2, 2), (2, 2), (1, 1), (2, 2)), y86)
    assert not np.array_equal(y, y86)
