"""QNNPACK's average pooling multiplier on constructed .5 ties, against torch 2.13 (engine qnnpack).

Pins (docs/ARITHMETIC.md §18): torch hands QNNPACK's average pooling the input scale as both input
and output scale, and QNNPACK builds its multiplier as f32(s_in / f32(s_out * count)), not
f32(1 / count): the product s * count is rounded to float first. The two differ by one float step
for some (s, count); a window mean on an exact .5 (even count, acc = (2j + 1) * count / 2) then
rounds one way or the other. F.avg_pool2d, F.adaptive_avg_pool2d (sizes multiples of the output's)
and the MeanHW op (QNNPACK's global average pool) all take this multiplier."""
import numpy as np
import pytest

import fastq
from fastq import reference as R
from fastq.layers.pool import AdaptiveAvgPool, AvgPool
from torch_helpers import engine

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

f32 = np.float32


def _differs(s, count):
    """True when QNNPACK's multiplier is not f32(1 / count) for this scale."""
    return R.qnnpack_pool_multiplier(s, count) != f32(f32(1) / f32(count))


def _scale(rng, count):
    """A float32 scale for which the two multipliers differ (most scales do for some counts)."""
    for _ in range(200):
        s = float(f32(rng.uniform(0.002, 0.9)))
        if _differs(s, count):
            return s
    return float(f32(rng.uniform(0.002, 0.9)))


def _window(rng, n, acc, zx):
    """n uint8 values whose sum of (x - zx) is acc (None when out of reach)."""
    d = np.zeros(n, np.int64)
    left = acc
    for i in rng.permutation(n):
        step = int(np.clip(left, -zx, 255 - zx))
        d[i], left = step, left - step
    return None if left else (d + zx).astype(np.uint8)


def _tie_input(rng, nb, c, oh, ow, kh, kw, zx):
    """An input whose (kh x kw) windows mostly hold an exact .5 mean (even counts) or a random sum."""
    n = kh * kw
    x = np.empty((nb, c, oh * kh, ow * kw), np.uint8)
    for b in range(nb):
        for ch in range(c):
            for i in range(oh):
                for j in range(ow):
                    win = None
                    while win is None:
                        if n % 2 == 0 and rng.random() < 0.8:
                            acc = (2 * int(rng.integers(-6, 7)) + 1) * n // 2
                        else:
                            acc = int(rng.integers(-n * zx, n * (255 - zx) + 1))
                        win = _window(rng, n, acc, zx)
                    x[b, ch, i * kh:(i + 1) * kh, j * kw:(j + 1) * kw] = win.reshape(kh, kw)
    return x


def _geometries(rng, n):
    for _ in range(n):
        kh, kw = [int(v) for v in rng.choice([1, 2, 3, 4, 5, 6], 2)]
        if kh * kw == 1:
            kw = 2
        yield kh, kw, int(rng.integers(1, 4)), int(rng.integers(1, 4))


def _old(acc, count, zx):
    m = f32(f32(1) / f32(count))
    return np.clip(np.rint((acc.astype(f32) * m).astype(f32)).astype(np.int64) + zx, 0, 255)


def test_qnnpack_pool_multiplier_is_not_one_over_count():
    assert R.qnnpack_pool_multiplier(0.05, 6) != f32(1 / 6)
    assert R.qnnpack_pool_multiplier(0.5, 6) == f32(1 / 6)        # power-of-two scales: the same
    with pytest.raises(ValueError, match="scale"):
        R.qnnpack_pool_multiplier(None, 6)


@pytest.mark.parametrize("op", ["avg_pool2d", "adaptive_avg_pool2d"])
def test_qnnpack_average_pooling_ties(rng, op):
    bad = total = ties = old_bad = 0
    with engine("qnnpack"):
        for kh, kw, oh, ow in _geometries(rng, 70):
            zx = int(rng.integers(0, 256))
            s = _scale(rng, kh * kw)
            c = int(rng.choice([3, 8, 17]))
            x = _tie_input(rng, 2, c, oh, ow, kh, kw, zx)
            xt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), s, zx)
            if op == "avg_pool2d":
                y = F.avg_pool2d(xt, (kh, kw)).int_repr().numpy()
                q = AvgPool((kh, kw), path="qnnpack")(fastq.QTensor(x, s, zx)).values
                assert np.array_equal(q, R.avg_pool(x, zx, (kh, kw), (kh, kw), (0, 0), path="qnnpack", scale=s))
            else:
                y = F.adaptive_avg_pool2d(xt, (oh, ow)).int_repr().numpy()
                q = AdaptiveAvgPool((oh, ow), path="qnnpack")(fastq.QTensor(x, s, zx)).values
            acc = x.astype(np.int64).reshape(2, c, oh, kh, ow, kw).sum((3, 5)) - kh * kw * zx
            ties += int((2 * acc % (kh * kw) == 0).sum() - (acc % (kh * kw) == 0).sum())
            bad += int((q != y).sum())
            old_bad += int((_old(acc, kh * kw, zx) != y).sum())
            total += y.size
    print("%s: %d of %d differ (%d .5 ties); f32(1/count) misses %d" % (op, bad, total, ties, old_bad))
    assert ties > 2000 and bad == 0, "%d of %d differ" % (bad, total)
    assert old_bad > 0          # the ties tell f32(1 / count) from QNNPACK's multiplier


def test_qnnpack_mean_hw_ties(rng):
    """Tensor.mean((2, 3)) under qnnpack: the same multiplier with count H*W."""
    bad = total = old_bad = 0
    with engine("qnnpack"):
        for kh, kw, _, _ in _geometries(rng, 60):
            zx = int(rng.integers(0, 256))
            s = _scale(rng, kh * kw)
            x = _tie_input(rng, 2, 9, 1, 1, kh, kw, zx)
            xt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), s, zx)
            y = xt.mean([2, 3]).int_repr().numpy()
            q = R.mean_hw(x, s, zx, "qnnpack")
            acc = x.astype(np.int64).sum((2, 3)) - kh * kw * zx
            bad += int((q != y).sum())
            old_bad += int((_old(acc, kh * kw, zx) != y).sum())
            total += y.size
    print("mean: %d of %d differ; f32(1/count) misses %d" % (bad, total, old_bad))
    assert total > 1000 and bad == 0, "%d of %d differ" % (bad, total)
    assert old_bad > 0
