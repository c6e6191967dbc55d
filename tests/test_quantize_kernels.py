"""The float <-> uint8 / int8 conversion kernels (quantize, dequantize, min/max) on every ISA,
every length 0..70 (all vector tails) and a few large ones, against fastq.reference and torch."""
from fractions import Fraction

import numpy as np
import pytest

import fastq
from fastq import _kernels, reference

ISA_NAMES = _kernels.backend_names()
ISAS = _kernels.conversion_isas()          # every ISA this CPU runs, compiled backend or not
SIZES = list(range(71)) + [127, 129, 1000, 4099, 256 * 784 + 5]
DTYPES = [("uint8", 0, 255), ("int8", -128, 127)]
SCALES = [0.1, 2.0**-7, 0.0123456, 3.3, 1e-5]


@pytest.fixture(params=ISAS, ids=[ISA_NAMES[i] for i in ISAS])
def isa(request):
    return request.param


def special_floats(scale, zp, qmin, qmax):
    """NaN, infinities, huge, denormal, signed zeros, torch's cap and the clamp edges."""
    s = np.float32(scale)
    edges = [(v - zp) * s for v in (qmin - 0.5, qmin - 0.51, qmax + 0.5, qmax + 0.49, qmax + 1)]
    return np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e30, -1e30, 3.4e38, -3.4e38,
                     2.0**-149, -(2.0**-149), 1e-40, -1e-40, 2147483520.0 * s, 2147483648.0 * s,
                     -2147483648.0 * s] + edges, np.float32)


def float_pool(rng, scale, zp, qmin, qmax, n=3000):
    """Tie-heavy values: (k + 0.5 - zp) * scale rounded to float32 (fmaf decides on which side
    of the tie they land), mixed with random and special values, shuffled."""
    k = rng.integers(qmin - 20, qmax + 20, n)
    ties = ((k + 0.5 - zp) * np.float32(scale)).astype(np.float32)
    rand = (rng.standard_normal(n) * 100 * scale).astype(np.float32)
    pool = np.concatenate([ties, rand, np.tile(special_floats(scale, zp, qmin, qmax), 20)])
    return rng.permutation(pool)


def sized(pool, n, i):
    """n values of the pool starting at a varying offset (the pool repeats as needed)."""
    reps = n // pool.size + 2
    return np.ascontiguousarray(np.tile(pool, reps)[(i * 37) % pool.size:][:n])


def inv_of(scale):
    return float(np.float32(1.0) / np.float32(scale))


@pytest.mark.parametrize("dtype,qmin,qmax", DTYPES)
def test_quantize_kernel_every_size_matches_reference(isa, dtype, qmin, qmax, rng):
    for scale in SCALES:
        for zp in (qmin, qmax, int(rng.integers(qmin, qmax + 1))):
            pool = float_pool(rng, scale, zp, qmin, qmax)
            for i, n in enumerate(SIZES):
                x = sized(pool, n, i)
                q = _kernels.quantize(x, inv_of(scale), float(zp), qmin, qmax, qmin < 0, isa)
                assert q.dtype == np.dtype(dtype) and q.shape == x.shape
                with np.errstate(over="ignore"):
                    expected = reference.quantize_per_tensor(x, scale, zp, dtype)
                assert np.array_equal(q, expected), (scale, zp, n, np.flatnonzero(q != expected)[:5])


def test_quantize_kernel_keeps_shape_and_layout(isa, rng):
    x = (rng.standard_normal((7, 9, 5)) * 40).astype(np.float32)
    for view in (x, x.transpose(2, 0, 1), x[:, ::2, :]):
        q = _kernels.quantize(view, inv_of(0.25), 3.0, 0, 255, False, isa)
        assert q.shape == view.shape
        assert np.array_equal(q, reference.quantize_per_tensor(view, 0.25, 3, "uint8"))


torch_dtypes = {"uint8": "quint8", "int8": "qint8"}


@pytest.mark.parametrize("dtype,qmin,qmax", DTYPES)
def test_quantize_every_backend_matches_torch(backend, dtype, qmin, qmax, rng):
    torch = pytest.importorskip("torch")
    tdtype = getattr(torch, torch_dtypes[dtype])
    unfused_differs = 0
    for scale in (0.1, 0.0123456, 3.3):
        zp = int(rng.integers(qmin, qmax + 1))
        pool = float_pool(rng, scale, zp, qmin, qmax)
        for i, n in enumerate(SIZES):
            x = sized(pool, n, i)
            expected = torch.quantize_per_tensor(torch.from_numpy(x), scale, zp, tdtype).int_repr().numpy()
            q = fastq.quantize(x, scale, zp, dtype=dtype)
            assert np.array_equal(q.values, expected), (backend, scale, zp, n, np.flatnonzero(q.values != expected)[:5])
            # the data can tell fmaf from a multiply then an add (two roundings)
            with np.errstate(invalid="ignore", over="ignore"):
                t = (x * np.float32(inv_of(scale))).astype(np.float32) + np.float32(zp)
                unfused = np.clip(np.rint(np.where(np.isnan(t), qmax, t)), qmin, qmax)
            unfused_differs += int(np.count_nonzero(unfused != expected))
    assert unfused_differs > 0


@pytest.mark.parametrize("dtype,qmin,qmax", DTYPES)
def test_dequantize_kernel_every_size_matches_reference(isa, dtype, qmin, qmax, rng):
    all_values = np.arange(qmin, qmax + 1).astype(dtype)
    for scale in SCALES + [1e-38, 3e37]:                  # underflow to denormals, overflow to inf
        for zp in (qmin, qmax, int(rng.integers(qmin, qmax + 1))):
            pool = rng.permutation(np.tile(all_values, 4))
            for i, n in enumerate(SIZES):
                q = sized(pool, n, i)
                x = _kernels.dequantize(q, zp, float(np.float32(scale)), isa)
                assert x.dtype == np.float32 and x.shape == q.shape
                with np.errstate(over="ignore"):
                    expected = reference.dequantize(q, scale, zp)
                assert np.array_equal(x, expected, equal_nan=True), (scale, zp, n)


@pytest.mark.parametrize("dtype,qmin,qmax", DTYPES)
def test_dequantize_every_backend_matches_torch(backend, dtype, qmin, qmax, rng):
    torch = pytest.importorskip("torch")
    tdtype = getattr(torch, torch_dtypes[dtype])
    for scale in (0.1, 0.0123456, 3.3, 2.0**-7):
        zp = int(rng.integers(qmin, qmax + 1))
        pool = float_pool(rng, scale, zp, qmin, qmax)
        for i, n in enumerate(SIZES):
            t = torch.quantize_per_tensor(torch.from_numpy(sized(pool, n, i)), scale, zp, tdtype)
            x = fastq.dequantize(fastq.QTensor.from_torch(t))
            assert np.array_equal(x, t.dequantize().numpy()), (backend, scale, zp, n)


def test_minmax_kernel_every_size(isa, rng):
    for i, n in enumerate(SIZES):
        x = (rng.standard_normal(n) * 10).astype(np.float32)
        if n:
            x[rng.integers(n)] = rng.choice([-0.0, 3.4e38, -3.4e38, 1e-40])
        mn, mx, finite = _kernels.minmax(x, isa)
        assert finite
        assert mn.dtype == np.float32 and mx.dtype == np.float32
        if n:
            assert (mn, mx) == (x.min(), x.max()), n
        for bad in (np.nan, np.inf, -np.inf):
            if n:
                y = x.copy()
                y[(i * 7) % n] = bad                     # every lane position over the sizes
                assert _kernels.minmax(y, isa)[2] is False, (n, bad)


def test_minmax_empty_and_layouts(isa, rng):
    assert _kernels.minmax(np.zeros(0, np.float32), isa) == (0.0, 0.0, True)
    x = (rng.standard_normal((33, 17)) * 3).astype(np.float32)
    mn, mx, finite = _kernels.minmax(x.T[::2], isa)
    assert finite and (mn, mx) == (x.T[::2].min(), x.T[::2].max())


def test_dynamic_input_qparams_use_the_whole_range(backend, rng):
    w = fastq.QTensor(rng.integers(-127, 128, (5, 37)).astype(np.int8), 0.02, 0)
    layer = fastq.DynamicQuantizedLinear(w)
    for n in (1, 3, 8):
        x = (rng.standard_normal((n, 37)) * 4).astype(np.float32)
        assert layer.input_qparams(x) == reference.choose_qparams_dynamic(x.min(), x.max(), True)
        x[-1, -1] = np.nan
        with pytest.raises(ValueError, match="finite"):
            layer(x)


# --------------------------------------------------------------------------- fmaf without FMA
def exact_f32(v):
    """The float32 nearest the rational v, ties to even (v finite, inside the float32 range)."""
    f = np.float32(float(v))
    cands = [np.nextafter(f, np.float32(-np.inf)), f, np.nextafter(f, np.float32(np.inf))]
    best = min(abs(Fraction(float(c)) - v) for c in cands)
    near = [c for c in cands if abs(Fraction(float(c)) - v) == best]
    return next(c for c in near if not (int(c.view(np.int32)) & 1)) if len(near) > 1 else near[0]


def double_rounding_cases(rng):
    """x, y, z where rounding x*y + z to double first lands exactly on a float32 midpoint:
    x*y = X*Y*2^e with X*Y = m*2^k +- 1 (k >= 30), the m*2^k part on z's half-ulp bit and
    the +-1 below double precision. A naive (float)((double)x*y + z) rounds these wrong."""
    xs, ys, zs = [], [], []
    for k in (30, 31, 32, 34):
        for sign in (1, -1):
            found = 0
            for big_x in rng.integers(2**23, 2**24, 40000):
                big_x = int(big_x) | 1
                m = (-sign * pow(2, -k, big_x)) % big_x  # big_x divides m*2^k + sign
                if m == 0 or (m * 2**k + sign) // big_x >= 2**24:
                    continue
                big_y = (m * 2**k + sign) // big_x
                for z in (1.0, 3.0, 100.0, 200.0, -128.0, 255.0, -7.0):
                    tz = (m & -m).bit_length() - 1
                    e = int(np.floor(np.log2(abs(z)))) - 24 - k - tz
                    s = 1.0 if z > 0 else -1.0
                    xs.append(s * big_x * 2.0**-24)
                    ys.append(big_y * 2.0**(e + 24))
                    zs.append(z)
                found += 1
                if found == 6:
                    break
    return [np.array(v, np.float32) for v in (xs, ys, zs)]


def test_portable_fmaf_is_exact(rng):
    x, y, z = double_rounding_cases(rng)
    n = 3000
    rx = (rng.standard_normal(n) * 10.0 ** rng.integers(-20, 20, n)).astype(np.float32)
    ry = (rng.standard_normal(n) * 10.0 ** rng.integers(-10, 10, n)).astype(np.float32)
    rz = rng.integers(-128, 256, n).astype(np.float32)
    x, y, z = np.concatenate([x, rx]), np.concatenate([y, ry]), np.concatenate([z, rz])
    got = _kernels.fmaf_portable(x, y, z)
    expected = np.array([exact_f32(Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c)))
                         for a, b, c in zip(x, y, z)], np.float32)
    assert np.array_equal(got, expected)
    naive = (x.astype(np.float64) * y + z).astype(np.float32)
    assert np.count_nonzero(naive != expected) > 0      # the cases do catch double rounding
    special = np.array([np.nan, np.inf, -np.inf, 3e38, 0.0], np.float32)
    ones = np.ones_like(special)
    got = _kernels.fmaf_portable(special, np.full_like(special, 10.0), ones)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = (special.astype(np.float64) * 10 + 1).astype(np.float32)
    assert np.array_equal(got, expected, equal_nan=True)
