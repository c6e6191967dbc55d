"""quantize / quantize_per_channel / dequantize / choose_qparams against torch 2.13."""
import numpy as np
import pytest

import fastq
from fastq import reference

torch = pytest.importorskip("torch")


def tie_heavy_floats(rng, scale, zp, n):
    """x exactly at (k + 0.5) * scale - the rounding ties - plus random and special values."""
    k = rng.integers(-300, 300, n)
    ties = ((k + 0.5 - zp) * scale).astype(np.float32)
    rand = (rng.standard_normal(n) * 100 * scale).astype(np.float32)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, -1e30, 3e9, -3e9,
                        np.float32(2.0**-149), 2147483520.0 * scale], np.float32)
    return np.concatenate([ties, rand, special])


SCALES = [1.0, 0.5, 2.0**-7, 0.1, 0.0123456, 3.3, 1e-5, 7.0]


@pytest.mark.parametrize("dtype,tdtype", [("uint8", "quint8"), ("int8", "qint8")])
@pytest.mark.parametrize("scale", SCALES)
def test_quantize_per_tensor_matches_torch(dtype, tdtype, scale, rng):
    lo, hi = (0, 255) if dtype == "uint8" else (-128, 127)
    for zp in (lo, 0 if dtype == "int8" else 128, hi, int(rng.integers(lo, hi + 1))):
        x = tie_heavy_floats(rng, scale, zp, 4000)
        expected = torch.quantize_per_tensor(torch.from_numpy(x), scale, zp, getattr(torch, tdtype)).int_repr().numpy()
        q = fastq.quantize(x, scale, zp, dtype=dtype)
        assert q.values.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(q.values, expected)
        # the pen-and-paper version (fmaf emulated in float64 with round-to-odd) agrees too
        np.testing.assert_array_equal(reference.quantize_per_tensor(x, scale, zp, dtype), expected)


@pytest.mark.parametrize("dtype,tdtype", [("uint8", "quint8"), ("int8", "qint8")])
def test_quantize_per_channel_matches_torch(dtype, tdtype, rng):
    lo, hi = (0, 255) if dtype == "uint8" else (-128, 127)
    for axis in (0, 1):
        shape = (13, 29)
        scales = rng.uniform(1e-3, 0.2, shape[axis])
        scales[:3] = [0.5, 2.0**-5, 0.1]
        zps = rng.integers(lo, hi + 1, shape[axis])
        x = (rng.standard_normal(shape) * 5).astype(np.float32)
        x.flat[:8] = [np.nan, np.inf, -np.inf, 1e30, -1e30, 0.25, 0.75, -0.25]
        expected = torch.quantize_per_channel(torch.from_numpy(x), torch.from_numpy(scales), torch.from_numpy(zps),
                                              axis, getattr(torch, tdtype)).int_repr().numpy()
        q = fastq.quantize_per_channel(x, scales, zps, axis=axis, dtype=dtype)
        np.testing.assert_array_equal(q.values, expected)
        assert q.axis == axis


def test_dequantize_matches_torch(rng):
    for scale, zp, tdtype in [(0.1, 3, torch.quint8), (0.0123456, 200, torch.quint8), (3.3, -7, torch.qint8)]:
        x = torch.from_numpy((rng.standard_normal(5000) * 50).astype(np.float32))
        t = torch.quantize_per_tensor(x, scale, zp, tdtype)
        q = fastq.QTensor.from_torch(t)
        np.testing.assert_array_equal(fastq.dequantize(q), t.dequantize().numpy())
    scales = torch.from_numpy(rng.uniform(1e-3, 0.3, 7))
    zps = torch.from_numpy(rng.integers(-10, 10, 7))
    t = torch.quantize_per_channel(torch.randn(7, 11), scales, zps, 0, torch.qint8)
    np.testing.assert_array_equal(fastq.QTensor.from_torch(t).dequantize(), t.dequantize().numpy())


@pytest.mark.parametrize("dtype,tdtype", [("uint8", "quint8"), ("int8", "qint8")])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("reduce_range", [False, True])
def test_choose_qparams_matches_min_max_observer(dtype, tdtype, symmetric, reduce_range, rng):
    from torch.ao.quantization.observer import MinMaxObserver
    qscheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
    if symmetric and reduce_range and dtype == "uint8":
        with pytest.raises(NotImplementedError):
            MinMaxObserver(dtype=getattr(torch, tdtype), qscheme=qscheme, reduce_range=reduce_range)
        with pytest.raises(ValueError, match="reduce_range"):
            fastq.choose_qparams(-1.0, 1.0, dtype=dtype, symmetric=True, reduce_range=True)
        return
    cases = [(0.0, 0.0), (-1.0, 1.0), (0.5, 3.0), (-7.25, -0.5), (-1e-9, 1e-9), (-0.1, 1e4)]
    cases += [tuple(sorted(rng.standard_normal(2) * 10 ** rng.uniform(-3, 3))) for _ in range(40)]
    for mn, mx in cases:
        obs = MinMaxObserver(dtype=getattr(torch, tdtype), qscheme=qscheme, reduce_range=reduce_range)
        obs(torch.tensor([mn, mx], dtype=torch.float32))
        scale_t, zp_t = obs.calculate_qparams()
        scale, zp = fastq.choose_qparams(float(np.float32(mn)), float(np.float32(mx)), dtype=dtype,
                                         symmetric=symmetric, reduce_range=reduce_range)
        assert (scale, zp) == (float(scale_t), int(zp_t)), (mn, mx)


def test_qtensor_round_trip_with_torch(rng):
    from fastq.torch_compat import qtensor_to_torch
    t = torch.quantize_per_tensor(torch.randn(4, 5), 0.05, 17, torch.quint8)
    q = fastq.QTensor.from_torch(t)
    assert (q.scale, q.zero_point, q.axis) == (t.q_scale(), t.q_zero_point(), None)
    back = qtensor_to_torch(q)
    assert torch.equal(back.int_repr(), t.int_repr()) and back.q_scale() == t.q_scale()


def test_quantize_accepts_layouts(rng):
    x = (rng.standard_normal((6, 8)) * 3).astype(np.float32)
    expected = fastq.quantize(x, 0.05, 100).values
    np.testing.assert_array_equal(fastq.quantize(np.asfortranarray(x), 0.05, 100).values, expected)
    np.testing.assert_array_equal(fastq.quantize(x.T.copy().T, 0.05, 100).values, expected)
    ro = x.copy()
    ro.setflags(write=False)
    np.testing.assert_array_equal(fastq.quantize(ro, 0.05, 100).values, expected)
    np.testing.assert_array_equal(fastq.quantize(torch.from_numpy(x), 0.05, 100).values, expected)
    np.testing.assert_array_equal(fastq.quantize(x[:, ::2], 0.05, 100).values, expected[:, ::2])
    assert fastq.quantize(np.zeros((0, 3), np.float32), 0.1, 0).values.shape == (0, 3)
    # a 0-d input stays 0-d, as in torch
    scalar = fastq.quantize(np.float32(1.25), 0.1, 3)
    expected0 = torch.quantize_per_tensor(torch.tensor(1.25), 0.1, 3, torch.quint8)
    assert scalar.values.shape == tuple(expected0.shape) == ()
    assert int(scalar.values) == int(expected0.int_repr())
    assert fastq.dequantize(scalar) == expected0.dequantize().item()
