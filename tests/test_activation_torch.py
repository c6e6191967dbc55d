"""Quantized hardswish and adaptive average pooling: fastq.reference against torch 2.13 on
constructed ties (an output scale that puts one input value's hardswish exactly on a half step).

Pins: x86 / fbgemm dequantize with fma in the vector body and round with the zero point added
after rounding; the scalar tail (elements past the last whole vector) dequantizes without fma and
adds the zero point in float before rounding; QNNPACK's table adds it in float too. Adaptive
average pooling on a channels-last input: the channel tail adds the zero point in float before
rounding, the vector channels with one fma."""
import numpy as np
import pytest

from torch_helpers import engine

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from fastq import reference as R  # noqa: E402
from fastq.layers.activation import vector_mask  # noqa: E402

f32 = np.float32


def _tie_cases(rng, n):
    for _ in range(n):
        sx = float(f32(rng.uniform(0.01, 0.06)))
        zx, zy = int(rng.integers(60, 200)), int(rng.integers(0, 100))
        y = R.hardswish_float(f32(sx) * f32(int(rng.integers(0, 256)) - zx))
        if y <= 0.05:
            continue
        yield sx, zx, float(f32(y / f32(int(rng.integers(3, 200)) + 0.5))), zy


def _block():
    cap = torch.backends.cpu.get_cpu_capability()
    return 64 if cap.startswith("AVX512") else 32 if cap.startswith("AVX2") else 0


@pytest.mark.parametrize("eng", ["x86", "fbgemm", "qnnpack"])
def test_hardswish_ties(rng, eng):
    bad = total = other = 0
    path = "qnnpack" if eng == "qnnpack" else "vector"
    with engine(eng):
        for sx, zx, sy, zy in _tie_cases(rng, 400):
            xq = np.concatenate([np.arange(256), rng.integers(0, 256, 100)]).astype(np.uint8)   # 356: a tail
            xt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(xq.reshape(1, -1, 1, 1).copy()), sx, zx)
            t = torch.ops.quantized.hardswish(xt, sy, zy).int_repr().numpy().reshape(-1)
            mask = vector_mask((356,), "nchw", _block(), 1)
            q = R.hardswish(xq, sx, zx, sy, zy, path, mask)
            bad += int((q != t).sum())
            total += t.size
            alt = R.hardswish(xq, sx, zx, sy, zy, "qnnpack" if path == "vector" else "vector", mask)
            other += int((alt != t).sum())
    assert total > 10000 and bad == 0, "%d of %d differ" % (bad, total)
    assert other > 0        # the ties tell the two roundings apart


@pytest.mark.parametrize("eng", ["x86", "qnnpack"])
def test_adaptive_avg_pool_channels_last(rng, eng):
    bad = total = 0
    with engine(eng):
        for t in range(80):
            h, w = [int(v) for v in rng.integers(2, 12, 2)]
            oh, ow = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
            if eng == "qnnpack":
                oh, ow = 1, 1
            c, zx = int(rng.choice([5, 20, 37])), int(rng.integers(0, 256))
            x = rng.integers(0, 256, (2, c, h, w)).astype(np.uint8)
            x = np.where(rng.random(x.shape) < 0.5, np.uint8(zx), x)        # many exact .5 means
            xt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), 0.05, zx)
            for cl in (False, True):
                xi = xt.contiguous(memory_format=torch.channels_last) if cl else xt
                y = F.adaptive_avg_pool2d(xi, (oh, ow)).int_repr().numpy()
                path = "qnnpack" if eng == "qnnpack" else ("nhwc" if cl else "nchw")
                q = R.adaptive_avg_pool(x, zx, (oh, ow), path, 16 if _block() == 64 else 8, scale=0.05)
                bad += int((q != y).sum())
                total += y.size
    assert total > 2000 and bad == 0, "%d of %d differ" % (bad, total)


def _sigmoid_tie_cases(rng, n):
    """Input scales that put sx * d (d = q - zx) on a half step of hardsigmoid's 1/256 output:
    (x + 3) / 6 * 256 = k + 0.5."""
    for _ in range(n):
        d = int(rng.choice([-1, 1])) * int(rng.integers(1, 120))
        k = int(rng.integers(1, 255))
        sx = float(f32(((k + 0.5) * 6 / 256 - 3) / d))
        if 0.001 < sx < 0.5:
            yield sx, int(rng.integers(max(0, d), min(256, 256 + d)))


@pytest.mark.parametrize("eng", ["x86", "fbgemm", "qnnpack"])
@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_hardsigmoid_ties(rng, eng, dtype):
    """F.hardsigmoid on a quantized tensor: scale 1/256, zero point 0 (quint8) / -128 (qint8); x86 and
    fbgemm dequantize with fma in the vector body only; qnnpack through its table for quint8 (qint8
    takes the vector kernel under every engine)."""
    bad = total = other = 0
    path = "qnnpack" if eng == "qnnpack" and dtype == "uint8" else "vector"      # qint8: the vector kernel
    off = 128 if dtype == "int8" else 0
    with engine(eng):
        for sx, zx in _sigmoid_tie_cases(rng, 1500):
            xq = (np.concatenate([np.arange(256), rng.integers(0, 256, 100)]) - off).astype(dtype)
            data = torch.from_numpy(xq.reshape(1, -1, 1, 1).copy())
            xt = torch._make_per_tensor_quantized_tensor(data, sx, zx - off)
            yt = F.hardsigmoid(xt)
            assert (yt.q_scale(), yt.q_zero_point()) == (1 / 256, R.hardsigmoid_zero_point(dtype))
            t = yt.int_repr().numpy().reshape(-1)
            mask = vector_mask((356,), "nchw", _block(), 1)
            q = R.hardsigmoid(xq, sx, zx - off, path, mask, dtype)
            bad += int((q != t).sum())
            total += t.size
            other += int((R.hardsigmoid(xq, sx, zx - off, "qnnpack" if path == "vector" else "vector", mask,
                                        dtype) != t).sum())
    assert total > 100000 and bad == 0, "%d of %d differ" % (bad, total)
    assert other > 0        # the ties tell the fma dequantize from the plain one
