"""QuantizedLinear against real torch quantized Linear, engine pinned: integers must be equal."""
import numpy as np
import pytest

import fastq
from torch_helpers import ENGINES, engine, make_linear, random_qinput, torch

PRIMES = [1, 2, 3, 5, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093]


def run_both(m, x):
    y_torch = m(x).int_repr().numpy()
    layer = fastq.QuantizedLinear.from_torch(m)
    y_fastq = layer(fastq.QTensor.from_torch(x))
    assert y_fastq.scale == m.scale and y_fastq.zero_point == m.zero_point
    return y_torch, y_fastq.values


@pytest.mark.parametrize("eng", ENGINES)
def test_random_layers(eng, rng):
    mismatches = total = 0
    with engine(eng):
        for trial in range(40):
            m_rows = int(rng.integers(1, 65))
            k = int(rng.choice(PRIMES)) if trial % 2 else int(rng.integers(1, 4097))
            if trial < 4:
                k = [1, 4096, 4093, 64][trial]
            n = int(rng.integers(1, 101))
            per_channel = bool(trial % 3)
            m = make_linear(rng, k, n, per_channel=per_channel, relu=bool(trial % 4 == 1),
                            has_bias=bool(trial % 5), w_zero_points=bool(trial % 2))
            x = random_qinput(rng, (m_rows, k))
            y_torch, y_fastq = run_both(m, x)
            mismatches += int((y_torch != y_fastq).sum())
            total += y_torch.size
    assert mismatches == 0, "%d of %d outputs differ from torch (%s)" % (mismatches, total, eng)


@pytest.mark.parametrize("eng", ENGINES)
def test_power_of_two_scales_tie_heavy(eng, rng):
    """Power-of-two scales make y = acc * 2^-e land exactly on .5 often: round half to even."""
    with engine(eng):
        for trial in range(12):
            k, n = int(rng.integers(1, 200)), int(rng.integers(1, 70))
            m = make_linear(rng, k, n, per_channel=bool(trial % 2), relu=False, has_bias=bool(trial % 3),
                            w_scale=2.0 ** -int(rng.integers(3, 8)), out_scale=2.0 ** -int(rng.integers(0, 6)),
                            bias_scale=0.25)
            x = random_qinput(rng, (int(rng.integers(1, 20)), k), scale=2.0 ** -int(rng.integers(1, 6)))
            y_torch, y_fastq = run_both(m, x)
            np.testing.assert_array_equal(y_fastq, y_torch)


@pytest.mark.parametrize("eng", ENGINES)
@pytest.mark.parametrize("out_scale", [1e-9, 1e-6, 1e-3, 10.0, 1e4])
def test_extreme_output_scales(eng, out_scale, rng):
    """Saturation at 0/255, and the overflow quirk: |y| >= 2^31 converts to INT32_MIN, i.e. 0."""
    with engine(eng):
        for zp in (0, 77, 255):
            m = make_linear(rng, 96, 40, per_channel=False, relu=False, has_bias=True, bias_scale=1e3,
                            out_scale=out_scale, out_zero_point=zp)
            y_torch, y_fastq = run_both(m, random_qinput(rng, (9, 96)))
            np.testing.assert_array_equal(y_fastq, y_torch)


@pytest.mark.parametrize("eng", ENGINES)
def test_rounded_value_near_int32_max(eng):
    """y = 2^31 - 128 (largest float below 2^31) plus a zero point of 200: the zero point is added
    with saturation (int16 packs), so the output is 255, not a wrapped 0."""
    with engine(eng):
        k, n = 8, 4
        m = torch.ao.nn.quantized.Linear(k, n)
        wq = torch.quantize_per_tensor(torch.zeros(n, k), 1.0, 0, torch.qint8)
        m.set_weight_bias(wq, torch.tensor([32767.998046875, 32767.99609375, 32767.0, -32768.0]))
        m.scale, m.zero_point = 2.0 ** -16, 200
        x = torch.quantize_per_tensor(torch.zeros(2, k), 1.0, 10, torch.quint8)
        y_torch, y_fastq = run_both(m, x)
        np.testing.assert_array_equal(y_fastq, y_torch)


@pytest.mark.parametrize("eng", ENGINES)
def test_relu_and_batch_dims(eng, rng):
    with engine(eng):
        m = make_linear(rng, 33, 17, per_channel=True, relu=True, has_bias=True)
        x = random_qinput(rng, (2, 3, 33))
        y_torch, y_fastq = run_both(m, x)
        assert y_fastq.shape == (2, 3, 17)
        np.testing.assert_array_equal(y_fastq, y_torch)
        assert y_fastq.min() >= m.zero_point


@pytest.mark.parametrize("eng", ENGINES)
def test_every_backend_matches_torch(eng, backend, rng):
    with engine(eng):
        for trial in range(6):
            k, n = int(rng.integers(1, 300)), int(rng.integers(1, 140))
            m = make_linear(rng, k, n, per_channel=bool(trial % 2), relu=bool(trial % 3 == 0), has_bias=True)
            y_torch, y_fastq = run_both(m, random_qinput(rng, (int(rng.integers(1, 30)), k)))
            np.testing.assert_array_equal(y_fastq, y_torch)


def test_engine_argument_picks_requantization(rng):
    with engine("x86"):
        m = make_linear(rng, 16, 8, per_channel=False, relu=False, has_bias=True)
    assert fastq.QuantizedLinear.from_torch(m, engine="qnnpack").requant == "qnnpack"
    assert fastq.QuantizedLinear.from_torch(m, engine="x86").requant == "fbgemm"
    with pytest.raises(ValueError, match="engine"):
        fastq.QuantizedLinear.from_torch(m, engine="onednn")
    with pytest.raises(TypeError, match="module"):
        fastq.QuantizedLinear.from_torch(torch.nn.Linear(3, 4))
