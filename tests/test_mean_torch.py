"""Tensor.mean over dims (2, 3) of a quantized tensor against torch 2.13, per engine and layout,
many exact .5 means included (half the inputs at the zero point), keepdim either way.

Pins: x86 / fbgemm on a contiguous input divide the raw sum (zero point included) by H*W in float
and round; on a channels-last input torch dequantizes, sums in its float order (ATen's cascade /
ILP partial sums, reference.outer_sum) and quantizes; qnnpack runs its global average pool."""
import numpy as np
import pytest

import fastq
from fastq import reference as R
from fastq.layers.reduce import MeanHW
from torch_helpers import engine

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("eng", ["x86", "fbgemm", "qnnpack"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_mean_hw_matches_torch(rng, eng, channels_last):
    bad = total = other = 0
    with engine(eng):
        for t in range(60):
            h, w = [int(v) for v in rng.integers(1, 24, 2)]
            c, nb = int(rng.choice([1, 3, 8, 13, 33, 70])), int(rng.integers(1, 3))
            zx, sx = int(rng.integers(0, 256)), float(rng.uniform(0.01, 0.2))
            x = rng.integers(0, 256, (nb, c, h, w)).astype(np.uint8)
            if t % 2:
                x = np.where(rng.random(x.shape) < 0.6, np.uint8(zx), x)
            xt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), sx, zx)
            if channels_last:
                xt = xt.contiguous(memory_format=torch.channels_last)
            path = "qnnpack" if eng == "qnnpack" else ("nhwc" if channels_last else "nchw")
            for keepdim in (False, True):
                y = xt.mean([2, 3], keepdim=keepdim)
                q = MeanHW(keepdim, path)(fastq.QTensor(x, sx, zx))
                assert (q.scale, q.zero_point) == (y.q_scale(), y.q_zero_point()) and q.values.shape == tuple(y.shape)
                bad += int((q.values != y.int_repr().numpy()).sum())
                total += y.numel()
            for alt in set(R.MEAN_PATHS) - {path}:
                other += int((R.mean_hw(x, sx, zx, alt) != y.int_repr().numpy().reshape(nb, c)).sum())
    assert total > 1000 and bad == 0, "%d of %d differ" % (bad, total)
    assert other > 0        # another path's rounding misses some of these


@pytest.mark.parametrize("c", [1, 5, 8, 20, 40, 70])
def test_outer_sum_is_torchs_float_sum_order(rng, c):
    """The float sum of a channels-last tensor over H, W, bit for bit (the order torch adds in)."""
    for hw in [(1, 8), (5, 7), (13, 20), (17, 16), (30, 30)]:
        f = rng.standard_normal((2, c) + hw).astype(np.float32)
        t = torch.from_numpy(f).contiguous(memory_format=torch.channels_last).sum([2, 3]).numpy()
        rows = f.transpose(2, 3, 0, 1).reshape(hw[0] * hw[1], 2, c)
        assert np.array_equal(R.outer_sum(rows).view(np.uint32), t.view(np.uint32)), hw


def test_mean_hw_bad_input():
    with pytest.raises(ValueError, match=r"expects \[N, C, H, W\]"):
        MeanHW()(fastq.QTensor(np.zeros((2, 3), np.uint8), 0.1, 0))
    with pytest.raises(TypeError, match="takes uint8"):
        MeanHW(path="qnnpack")(fastq.QTensor(np.zeros((1, 2, 3, 3), np.int8), 0.1, 0))
    with pytest.raises(ValueError, match="path"):
        MeanHW(path="avx")


@pytest.mark.parametrize("eng", ["x86", "fbgemm"])
def test_channels_last_with_one_channel_or_one_pixel_takes_the_contiguous_path(eng):
    """A channels-last tensor with C == 1 or H * W == 1 is also contiguous, and ATen's mean then
    runs qmean_inner_dim (the "nchw" rounding), not the dequantize / float sum / quantize path:
    fastq's "nhwc" layer follows (it had missed 2 of 3 332 in a random run)."""
    rng = np.random.default_rng(5)
    bad = differ = total = 0
    with engine(eng):
        # two pixels: a sum of odd parity is a .5 tie for the integer path, which the float path
        # rounds by its float error; and the shapes of the random cases that caught it
        for shape in [(64, 1, 1, 2), (64, 1, 2, 1), (16, 1, 2, 2), (2, 1, 8, 9), (1, 1, 8, 16), (3, 1, 4, 19),
                      (4, 5, 1, 1), (2, 70, 1, 1)]:
            for sx, zx in [(0.10401478533044824, 60), (0.18981354437272513, 253), (0.10900969163908646, 0)]:
                for _ in range(8):
                    x = rng.integers(0, 256, shape).astype(np.uint8)
                    xt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), sx, zx)
                    y = xt.contiguous(memory_format=torch.channels_last).mean([2, 3]).int_repr().numpy()
                    q = MeanHW(False, "nhwc")(fastq.QTensor(x, sx, zx)).values
                    bad += int((q != y).sum())
                    total += y.size
                    f = R.dequantize(x, sx, zx).transpose(2, 3, 0, 1).reshape(shape[2] * shape[3], shape[0], shape[1])
                    naive = R.quantize_per_tensor((R.outer_sum(f) / np.float32(shape[2] * shape[3])).astype(np.float32),
                                                  sx, zx, "uint8")
                    differ += int((naive != y).sum())
    assert total > 500 and bad == 0, "%d of %d differ" % (bad, total)
    assert differ > 0       # the float path's rounding misses some: the case tests the choice
