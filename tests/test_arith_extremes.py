"""Quantized add / mul where the result lies beyond int32 output steps (an output scale far
below the inputs'), the QNNPACK add at scale ratios in [2^-14, 2^-10), and add_scalar values
torch refuses: torch with the engine pinned is the oracle; the reference, the layers and the add / mul kernels
of every backend of the kernel table that has its own (scalar, AVX2) must give its integers."""
import warnings

import numpy as np
import pytest

import fastq
from fastq import _kernels as ew, reference
from fastq.layers import arith as ar

torch = pytest.importorskip("torch")
from torch_helpers import engine, engine_fixture  # noqa: E402,F401

warnings.filterwarnings("ignore", message=".*deprecated.*")
f32 = np.float32


def _tq(v, s, z):
    return torch._make_per_tensor_quantized_tensor(torch.from_numpy(v), s, z)


def _extreme_cases(rng, count, dtype):
    """Random layers with scales from 10^[-8, 3] (a few percent overflow int32 output steps) and
    constructed ones whose 128 * (1 / s_y) lands on each side of 2^31 - 128 and 2^31."""
    lo, hi = (0, 256) if dtype == "uint8" else (-128, 128)
    for i in range(count):
        n = int(rng.choice([1, 7, 63, 64, 65, 100, 128, 130]))
        sa, sb, s = (float(v) for v in 10.0 ** rng.uniform(-8, 3, 3))
        za, zb, z = (int(v) for v in rng.integers(lo, hi, 3))
        if i % 4 == 0:                         # near the conversion limits, both zero-point halves
            sa, sb, za, zb = 1.0, 1.0, 0, 0
            edge = float(rng.choice([2.0**31 - 128, 2.0**31]))
            s = float(f32(128.0 / edge) * f32(1 + int(rng.integers(-3, 4)) * 2.0**-23))
            z = int(rng.choice([lo, lo + 127, lo + 128, hi - 1]))
        a = rng.integers(lo, hi, n).astype(dtype)
        b = rng.integers(lo, hi, n).astype(dtype)
        if i % 4 == 0:
            a[: n // 2] = hi - 1 if i % 8 else lo + 0
        yield a, sa, za, b, sb, zb, s, z, bool(i % 3 == 0)


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_add_and_mul_give_torch_integers_beyond_int32_steps(engine, dtype):
    if engine == "qnnpack" and dtype == "int8":
        pytest.skip("torch's qnnpack runs int8 mul through XNNPACK, another kernel")
    rng = np.random.default_rng(16)
    saturated = 0
    for a, sa, za, b, sb, zb, s, z, relu in _extreme_cases(rng, 400, dtype):
        ta, tb = _tq(a, sa, za), _tq(b, sb, zb)
        qa, qb = fastq.QTensor(a, sa, za), fastq.QTensor(b, sb, zb)
        t = (torch.ops.quantized.mul_relu if relu else torch.ops.quantized.mul)(ta, tb, s, z).int_repr().numpy()
        m = reference.qmul_multiplier(sa, sb, s)
        ref = reference.qmul(a, za, b, zb, m, z, relu, dtype)
        assert np.array_equal(t, ref), ("mul", sa, sb, s, za, zb, z, relu)
        assert np.array_equal(ar.QuantizedMul(s, z, relu)(qa, qb).values, ref)
        if engine == "qnnpack" and dtype == "uint8":
            continue                           # QNNPACK's own add: the test below
        t = (torch.ops.quantized.add_relu if relu else torch.ops.quantized.add)(ta, tb, s, z).int_repr().numpy()
        ref = reference.qadd_fbgemm(a, sa, za, b, sb, zb, s, z, relu, dtype=dtype)
        assert np.array_equal(t, ref), ("add", sa, sb, s, za, zb, z, relu)
        assert np.array_equal(ar.QuantizedAdd(s, z, relu)(qa, qb).values, ref)
        saturated += int(np.sum(np.abs((a.astype(np.float64) - za) * sa + (b.astype(np.float64) - zb) * sb) / s > 2**31))
    assert saturated > 0 or engine == "qnnpack"   # the cases reach the region of the defect


def test_body_and_tail_differ_beyond_int32_like_torch():
    """Constructed: 128 * 2^24 = 2^31 output steps. torch's add body caps at 2^31 - 128, and
    adding a zero point >= 128 wraps to a negative int32 (0); its tail saturates (255). The mul
    body converts to INT32_MIN (0), its tail through lrintf into int64 (255)."""
    n = 65                                         # 64 in the body, 1 in the tail
    a, b = np.full(n, 128, np.uint8), np.full(n, 1, np.uint8)
    s = float(f32(1) / f32(2**24))
    for z, body, tail in ((200, 0, 255), (100, 255, 255)):
        got = reference.qadd_fbgemm(a, 1.0, 0, b * 0, 1.0, 0, s, z)
        assert list(got[[0, 63, 64]]) == [body, body, tail]
        t = torch.ops.quantized.add(_tq(a, 1.0, 0), _tq(b * 0, 1.0, 0), s, z).int_repr().numpy()
        assert np.array_equal(t, got)
    got = reference.qmul(a, 0, b, 0, reference.qmul_multiplier(1.0, 1.0, s), 100)
    assert list(got[[0, 63, 64]]) == [0, 0, 255]
    assert np.array_equal(torch.ops.quantized.mul(_tq(a, 1.0, 0), _tq(b, 1.0, 0), s, 100).int_repr().numpy(), got)


@pytest.mark.parametrize("signed", [False, True])
def test_c_loops_equal_reference_beyond_int32_every_tail(signed):
    """Every elementwise backend's kernels (AVX2 body + scalar leftover, the scalar loops) against
    the oracle on every length 0..130 with output scales that push most results past int32, so
    both conversions of body and tail are exercised; torch's split and all-body (the 8-lane
    loops then end on every tail length)."""
    isas = ew.family_backends("elementwise")
    assert 0 in isas
    rng = np.random.default_rng(61)
    lo, dt = (-128, np.int8) if signed else (0, np.uint8)
    for n in range(131):
        sa, sb = (float(f32(v)) for v in 10.0 ** rng.uniform(0, 3, 2))
        s = float(f32(10.0 ** rng.uniform(-8, -6)))
        za, zb, z = (int(v) + lo for v in rng.integers(0, 256, 3))
        a = (rng.integers(0, 256, n).astype(np.int16) + lo).astype(dt)
        b = (rng.integers(0, 256, n).astype(np.int16) + lo).astype(dt)
        relu = bool(n % 2)
        m = reference.qmul_multiplier(sa, sb, s)
        for n_vec in (n // 64 * 64, n):
            block = 64 if n_vec == n // 64 * 64 else n
            args = (n_vec, sa, za, sb, zb, float(f32(1) / f32(s)), z, relu)
            add = reference.qadd_fbgemm(a, sa, za, b, sb, zb, s, z, relu, vector_block=block, dtype=dt)
            mul = reference.qmul(a, za, b, zb, m, z, relu, dtype=dt, vector_block=block)
            for isa in isas:
                assert np.array_equal(ew.qadd_fbgemm(a, b, *args, isa=isa), add), (n, n_vec, isa)
                assert np.array_equal(ew.qmul(a, b, n_vec, za, zb, float(m), z, relu, isa=isa), mul), (n, n_vec, isa)


def test_qnnpack_add_runs_every_scale_ratio_torch_runs():
    """Ratios s_a / s_y in [2^-14, 2^-10) give QNNPACK shifts of 32..35; torch runs them (its
    constants and kernel then shift mod 32 or with sign fill, by tile), so fastq must too."""
    rng = np.random.default_rng(35)
    shifts = set()
    with engine("qnnpack"):
        for i in range(240):
            n = int(rng.choice([1, 3, 7, 8, 9, 33, 100, 4096, 4097, 4103, 4104, 8195]))
            s = float(10 ** rng.uniform(-3, 0))
            ra = 2.0 ** rng.uniform(-14, -10)
            rb = 2.0 ** rng.uniform(-14, 8) if i % 2 else 2.0 ** rng.uniform(-14, -10)
            sa, sb = s * ra, s * rb
            za, zb, z = (int(v) for v in rng.integers(0, 256, 3))
            relu = i % 3 == 0 and z < 255
            a = rng.integers(0, 256, n).astype(np.uint8)
            b = rng.integers(0, 256, n).astype(np.uint8)
            t = (torch.ops.quantized.add_relu if relu else torch.ops.quantized.add)(
                _tq(a, sa, za), _tq(b, sb, zb), s, z).int_repr().numpy()
            ref = reference.qadd_qnnpack(a, sa, za, b, sb, zb, s, z, relu)
            assert np.array_equal(t, ref), (n, sa, sb, s, za, zb, z)
            layer = ar.QuantizedAdd(s, z, relu=relu, arithmetic="qnnpack")
            assert np.array_equal(layer(fastq.QTensor(a, sa, za), fastq.QTensor(b, sb, zb)).values, ref)
            zpp, am, bm, shift = reference.qnnpack_add_params(sa, za, sb, zb, s)
            shifts.add(shift)
            for isa in ew.family_backends("elementwise"):
                got = ew.qadd_qnnpack(a, b, zpp, am, bm, shift, z, z if relu else 0, 255, isa=isa)
                assert np.array_equal(got, ref), (n, shift, isa)
    assert {32, 33, 34, 35} <= shifts


@pytest.mark.parametrize("dtype", [torch.quint8, torch.qint8])
def test_add_scalar_refuses_what_torch_refuses(dtype):
    """torch refuses add_scalar when round(value / scale) (half to even) does not fit int32."""
    x = torch.quantize_per_tensor(torch.linspace(-1, 1, 8), 1.0, 0, dtype)
    q = fastq.QTensor(x.int_repr().numpy(), 1.0, 0)
    for v in (2147483647.0, 2147483647.4, 2147483647.5, 2147483648.0, -2147483648.5, -2147483648.6,
              1e18, -1e18, 3e38, 1e300):
        try:
            torch.ops.quantized.add_scalar(x, v)
            torch_ok = True
        except RuntimeError:
            torch_ok = False
        if torch_ok:
            ar.QuantizedAddScalar(v)(q)
        else:
            with pytest.raises(ValueError, match=r"value: .*%s" % repr(float(v)).replace("+", r"\+")):
                ar.QuantizedAddScalar(v)(q)
    assert not torch_ok                                       # the table reaches the refusals
