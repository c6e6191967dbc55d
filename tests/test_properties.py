"""Property tests (hypothesis) of every public function against fastq.reference and real torch.

Profiles (hypothesis settings profiles, registered here):
  "fastq-ci"   (default)         a bounded run for CI, well under a minute;
  "fastq-long" (FASTQ_HYPOTHESIS=long)  13 000 examples per test, >= 200 000 over the file
               (FASTQ_HYPOTHESIS_EXAMPLES=n sets the per-test count).
Run the long one with
  FASTQ_HYPOTHESIS=long pytest tests/test_properties.py --hypothesis-show-statistics

Inputs cover constructed near ties (tests/near_tie_cases.py ideas: values at k + 0.5 and
nudged by an ulp, biases that nearly cancel acc, exact fixed-point ties), every memory layout
a caller can hand in (negative strides, zero-stride broadcasts, read-only, Fortran order, torch
tensors with requires_grad where torch tensors are taken) and 0-size dimensions. Hypothesis
draws shapes, quantization parameters, layouts and a seed; the array contents come from numpy
with that seed (fast enough for 200 000 examples)."""
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import fastq
from fastq import reference

torch = pytest.importorskip("torch")
import near_tie_cases as ntc  # noqa: E402

warnings.filterwarnings("ignore", message=".*qnnpack incorrectly ignores reduce_range.*")
warnings.filterwarnings("ignore", message=".*NumPy array is not writable.*")
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning:fastq.reference")

settings.register_profile("fastq-ci", max_examples=25, deadline=None,
                          suppress_health_check=list(HealthCheck), database=None)
# 17 tests x 13 000; FASTQ_HYPOTHESIS_EXAMPLES changes the per-test count
settings.register_profile("fastq-long", max_examples=int(os.environ.get("FASTQ_HYPOTHESIS_EXAMPLES", "13000")),
                          deadline=None, suppress_health_check=list(HealthCheck), database=None)
PROFILE = settings.get_profile("fastq-long" if os.environ.get("FASTQ_HYPOTHESIS") == "long" else "fastq-ci")

f32 = np.float32
seeds = st.integers(0, 2**32 - 1)
LAYOUTS = ("c", "fortran", "negative", "broadcast", "readonly", "torch")


# ----------------------------------------------------------------------------- helpers
def laid_out(arr, layout, rng):
    """arr's values in another memory layout (the values are arr's, except "broadcast", which
    repeats the first slice along axis 0 with stride 0 and returns those values)."""
    if arr.ndim == 0 and layout in ("c", "fortran", "negative", "broadcast"):
        return arr.copy()                     # (asfortranarray / ascontiguousarray make 0-d 1-d)
    if layout == "fortran":
        return np.asfortranarray(arr)
    if layout == "negative":
        return np.flip(np.flip(arr).copy()) if arr.ndim else arr
    if layout == "broadcast":
        if arr.ndim == 0 or arr.shape[0] == 0:
            return arr
        return np.broadcast_to(arr[:1], arr.shape)
    if layout == "readonly":
        out = arr.copy()
        out.flags.writeable = False
        return out
    if layout == "torch":
        t = torch.from_numpy(arr.copy())
        if t.is_floating_point():
            t.requires_grad_(True)
        return t
    return np.array(arr, order="C")           # (np.ascontiguousarray makes a 0-d array 1-d)


def values_of(x):
    """The values a call saw, as a fresh C-ordered array."""
    return np.array(x.detach().numpy() if isinstance(x, torch.Tensor) else x, order="C")


def shapes(min_dims=1, max_dims=3, max_side=9):
    return st.lists(st.integers(0, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


def floats_near_ties(rng, shape, scale, zero_point, qmin, qmax):
    """Floats: a mix of random values, values at (k + 0.5 - zp) * scale nudged by 0-2 ulps,
    exact multiples, range ends, signed zeros and a few huge / special values."""
    n = int(np.prod(shape))
    kind = rng.integers(0, 6, n)
    inv = f32(1.0) / f32(scale)
    k = rng.integers(qmin - 3, qmax + 4, n)
    x = np.empty(n, np.float32)
    x[:] = rng.normal(0, 1, n) * (qmax - qmin) * scale
    tie = ((k + 0.5 - zero_point) / np.float64(inv)).astype(np.float32)
    sel = kind == 1
    x[sel] = ntc._ulps(tie[sel], rng.integers(-2, 3, int(sel.sum())))
    sel = kind == 2
    x[sel] = ((k[sel] - zero_point) * np.float64(scale)).astype(np.float32)
    sel = kind == 3
    x[sel] = rng.choice(np.array([0.0, -0.0, 1e30, -1e30, 3e38, -3e38, 1e-40], np.float32), int(sel.sum()))
    return x.reshape(shape)


def torch_engine(name):
    return ntc._engine(name)


# ----------------------------------------------------------------------------- quantize / dequantize
@PROFILE
@given(shape=shapes(), scale=st.floats(1e-4, 10.0), zp_frac=st.floats(0, 1), signed=st.booleans(),
       layout=st.sampled_from(LAYOUTS), seed=seeds)
def test_quantize(shape, scale, zp_frac, signed, layout, seed):
    rng = np.random.default_rng(seed)
    qmin, qmax = (-128, 127) if signed else (0, 255)
    zp = int(round(qmin + zp_frac * (qmax - qmin)))
    x = floats_near_ties(rng, shape, scale, zp, qmin, qmax)
    dtype = "int8" if signed else "uint8"
    x_in = laid_out(x, layout, rng)
    xv = values_of(x_in)                                     # the values the call saw
    got = fastq.quantize(x_in, scale, zp, dtype)
    expect = torch.quantize_per_tensor(torch.from_numpy(np.ascontiguousarray(xv)), scale, zp,
                                       torch.qint8 if signed else torch.quint8).int_repr().numpy()
    assert got.values.dtype == np.dtype(dtype) and got.values.shape == shape
    assert np.array_equal(got.values, expect)
    assert np.array_equal(got.values, reference.quantize_per_tensor(xv, scale, zp, dtype))
    assert (got.scale, got.zero_point) == (scale, zp)


@PROFILE
@given(shape=shapes(1, 3), axis_frac=st.floats(0, 0.999), signed=st.booleans(),
       layout=st.sampled_from(LAYOUTS), seed=seeds)
def test_quantize_per_channel(shape, axis_frac, signed, layout, seed):
    rng = np.random.default_rng(seed)
    axis = int(axis_frac * len(shape))
    c = shape[axis]
    qmin, qmax = (-128, 127) if signed else (0, 255)
    scales = rng.uniform(1e-3, 2.0, c)
    zps = rng.integers(qmin, qmax + 1, c)
    x = floats_near_ties(rng, shape, float(scales.mean()) if c else 0.1, 0, qmin, qmax)
    xin = laid_out(x, layout, rng)
    xv = values_of(xin)
    dtype = "int8" if signed else "uint8"
    scales_in = laid_out(scales, layout, rng)
    scales = values_of(scales_in).astype(np.float64)        # the values the call saw
    got = fastq.quantize_per_channel(xin, scales_in, zps, axis, dtype)
    expect = torch.quantize_per_channel(torch.from_numpy(np.ascontiguousarray(xv)), torch.from_numpy(scales),
                                        torch.from_numpy(zps.astype(np.int64)), axis,
                                        torch.qint8 if signed else torch.quint8).int_repr().numpy()
    assert np.array_equal(got.values, expect)
    assert np.array_equal(got.values, reference.quantize_per_channel(xv, scales, zps, axis, dtype))


@PROFILE
@given(shape=shapes(), per_channel=st.booleans(), signed=st.booleans(), layout=st.sampled_from(LAYOUTS),
       seed=seeds)
def test_dequantize(shape, per_channel, signed, layout, seed):
    rng = np.random.default_rng(seed)
    qmin, qmax = (-128, 127) if signed else (0, 255)
    q = rng.integers(qmin, qmax + 1, shape).astype(np.int8 if signed else np.uint8)
    q_in = laid_out(q, layout, rng)
    q = values_of(q_in)
    if per_channel:
        axis = int(rng.integers(0, len(shape)))
        scales = rng.uniform(1e-4, 3.0, shape[axis]) * (1 + rng.choice([0, 2.0 ** -30]))
        zps = rng.integers(qmin, qmax + 1, shape[axis])
        qt = fastq.QTensor(q_in, scales, zps, axis=axis)
        tq = torch._make_per_channel_quantized_tensor(torch.from_numpy(np.ascontiguousarray(q)),
                                                      torch.from_numpy(scales), torch.from_numpy(zps), axis)
        ref = reference.dequantize(q, scales, zps, axis)
    else:
        scale = float(rng.uniform(1e-4, 3.0)) * (1 + float(rng.choice([0, 2.0 ** -30])))
        zp = int(rng.integers(qmin, qmax + 1))
        qt = fastq.QTensor(q_in, scale, zp)
        tq = torch._make_per_tensor_quantized_tensor(torch.from_numpy(np.ascontiguousarray(q)), scale, zp)
        ref = reference.dequantize(q, scale, zp)
    got = fastq.dequantize(qt)
    assert got.dtype == np.float32 and got.shape == shape
    assert ntc._same(got, tq.dequantize().numpy()).all()
    assert ntc._same(got, ref).all()


@PROFILE
@given(lo=st.floats(-1e6, 1e6), width=st.floats(0, 1e6), dtype=st.sampled_from(["uint8", "int8"]),
       symmetric=st.booleans(), reduce_range=st.booleans())
def test_choose_qparams(lo, width, dtype, symmetric, reduce_range):
    hi = lo + width
    if symmetric and reduce_range and dtype == "uint8":
        with pytest.raises(ValueError, match="reduce_range"):
            fastq.choose_qparams(lo, hi, dtype, symmetric, reduce_range)
        return
    got = fastq.choose_qparams(lo, hi, dtype, symmetric, reduce_range)
    assert got == reference.choose_qparams(lo, hi, dtype, symmetric, reduce_range)
    obs = torch.ao.quantization.MinMaxObserver(
        dtype=torch.quint8 if dtype == "uint8" else torch.qint8, reduce_range=reduce_range,
        qscheme=torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine)
    obs(torch.tensor([lo, hi], dtype=torch.float32))
    s, z = obs.calculate_qparams()
    assert got == (float(s), int(z))


# ----------------------------------------------------------------------------- integer core
@PROFILE
@given(m=st.integers(0, 9), n=st.integers(0, 70), k=st.sampled_from([0, 1, 3, 16, 65, 200, 40000, 70000]),
       za=st.integers(0, 255), per_column=st.booleans(), near_zp=st.booleans(),
       layout=st.sampled_from(LAYOUTS), zp_0d=st.booleans(), seed=seeds)
def test_qgemm(m, n, k, za, per_column, near_zp, layout, zp_0d, seed):
    rng = np.random.default_rng(seed)
    if k > 1000:
        m, n = min(m, 2), min(n, 3)
    a = rng.integers(0, 256, (m, k)).astype(np.uint8)
    if near_zp:            # inputs near their zero point: large K passes the data check
        a = np.clip(za + rng.integers(-1, 2, (m, k)), 0, 255).astype(np.uint8)
    w = rng.integers(-128, 128, (n, k)).astype(np.int8)
    zw = rng.integers(-128, 128, n) if per_column else int(rng.integers(-128, 128))
    zw_arg = np.array(zw) if (zp_0d and not per_column) else zw
    za_arg = np.array(za) if zp_0d else za
    a_in, w_in = laid_out(a, layout, rng), laid_out(w, layout, rng)
    av, wv = values_of(a_in), values_of(w_in)
    expect = reference.qgemm(av, za, wv, zw)
    dev_w = int(np.max(np.abs(wv.astype(np.int64) - np.reshape(zw, (-1, 1))))) if wv.size else 0
    dev_a = int(np.max(np.abs(av.astype(np.int64) - za))) if av.size else 0
    try:
        got = fastq.qgemm(a_in, za_arg, w_in, zw_arg)
    except ValueError as e:
        assert "overflow" in str(e) and k * dev_a * dev_w > 2**31 - 1
        return
    assert got.dtype == np.int32 and got.shape == (m, n)
    assert np.array_equal(got, expect)


# ----------------------------------------------------------------------------- fixed point
@PROFILE
@given(real=st.one_of(st.floats(-1e3, 1e3), st.floats(-1e-8, 1e-8), st.sampled_from([0.5, 1.0, -1.0, 2.0**-31])),
       rounding=st.sampled_from(["double", "single", "double_up"]))
def test_quantize_multiplier(real, rounding):
    q, s = fastq.quantize_multiplier(real, rounding)
    assert (q, s) == reference.quantize_multiplier(real, rounding)
    if q:
        assert 2**30 <= abs(q) <= 2**31 and -31 <= s
        if not (rounding == "single" and s == 30 and abs(real) >= 2**30):
            assert abs(q * 2.0 ** (s - 31) - real) <= abs(real) * 2.0 ** -30


@PROFILE
@given(shape=shapes(0, 3, 7), per_channel=st.booleans(), rounding=st.sampled_from(["double", "single", "double_up"]),
       ties=st.booleans(), layout=st.sampled_from(LAYOUTS), seed=seeds)
def test_multiply_by_quantized_multiplier(shape, per_channel, rounding, ties, layout, seed):
    rng = np.random.default_rng(seed)
    n_last = shape[-1] if shape else 1
    c = n_last if per_channel else 1
    q = rng.integers(2**30, 2**31, c)
    q[rng.random(c) < 0.2] = 2**30
    s = rng.integers(-31, 31, c)
    size = int(np.prod(shape))
    x = rng.integers(-(2**31), 2**31, size).astype(np.int64).reshape(shape)
    if ties and size and rounding != "single":        # SRDHM / RDBPOT ties for column 0's multiplier
        x0, mod = ntc._solve(int(q[0]), 1 << 30, 31)
        x.reshape(-1)[:] = ntc._spread(rng, x0, mod, size)[:size] if mod < 2**31 else x.reshape(-1)
        s[:] = np.minimum(s, 0)
    if ties and size and rounding == "single":
        e = int(rng.integers(0, 10))
        qq = 1 << 30
        q[:] = qq
        s[:] = -e
        x0, mod = ntc._solve(qq, 1 << (30 + e), 31 + e)
        x.reshape(-1)[:] = ntc._spread(rng, x0, mod, size)[:size]
    x = x.astype(np.int32)
    qa = q if per_channel else int(q[0])
    sa = s if per_channel else int(s[0])
    x_in = laid_out(x, layout, rng)
    xv = values_of(x_in)
    got = fastq.multiply_by_quantized_multiplier(x_in, qa, sa, rounding)
    expect = reference.MBQM[rounding](xv, np.broadcast_to(q, (n_last,)) if per_channel else q[0],
                                      np.broadcast_to(s, (n_last,)) if per_channel else s[0])
    assert np.shape(got) == shape
    assert np.array_equal(np.asarray(got, np.int64), np.asarray(expect, np.int64).reshape(shape))


# ----------------------------------------------------------------------------- layers
def layer_case(rng, k, n, per_channel, relu, has_bias, requant, near_tie):
    """A random static layer; with near_tie the bias nearly cancels row 0's acc and the result
    sits next to k + 0.5 (the fbgemm fused-bias construction)."""
    w = rng.integers(-128, 128, (n, k)).astype(np.int8)
    sw = rng.uniform(1e-3, 0.05, n) if per_channel else float(rng.uniform(1e-3, 0.05))
    zw = np.zeros(n, np.int64) if per_channel else int(rng.choice([0, int(rng.integers(-20, 20))]))
    if requant == "qnnpack" and not per_channel:
        zw = int(rng.integers(-20, 20))
    sx = float(rng.uniform(0.005, 0.1))
    zx = int(rng.integers(0, 256))
    sy = float(rng.uniform(1e-3, 0.5)) if not near_tie else float(rng.uniform(1e-4, 0.01))
    zy = int(rng.integers(0, 256))
    bias = None
    if has_bias:
        bias = (rng.standard_normal(n) * rng.choice([0.1, 1.0, 30.0])).astype(np.float32)
    return w, sw, zw, sx, zx, sy, zy, bias


def near_tie_bias(x, sx, zx, w, sw, zw, sy, zy, rng):
    n = w.shape[0]
    acc = reference.qgemm(x[:1], zx, w, zw)[0] if x.shape[0] else np.zeros(n, np.int64)
    swa = np.broadcast_to(np.atleast_1d(np.asarray(sw, np.float64)).astype(np.float32), (n,))
    atws = (f32(sx) * swa).astype(np.float32)
    mult = (atws / f32(sy)).astype(np.float32)
    u = rng.integers(-zy, 256 - zy, n) + 0.5
    bias = ((u / mult.astype(np.float64) - acc) * atws.astype(np.float64)).astype(np.float32)
    return ntc._ulps(bias, rng.integers(-3, 4, n))


def expected_linear(xv, sx, zx, w, sw, zw, bias, sy, zy, relu, requant, per_channel, dtype, x_signed):
    """fastq.reference, in uint8 terms: int8 x / y are uint8 + 128 with the zero point + 128."""
    xu = (xv.astype(np.int16) + 128).astype(np.uint8) if x_signed else xv
    zxu = zx + 128 if x_signed else zx
    zyu = zy + 128 if dtype == "int8" else zy
    x2 = xu.reshape(int(np.prod(xu.shape[:-1])), w.shape[1])
    if requant == "tflite":
        out = reference.linear_tflite(x2, sx, zxu, w, sw, zw, bias, sy, zyu, relu, per_channel)
    else:
        out = reference.linear(x2, sx, zxu, w, sw, zw, bias, sy, zyu, relu, requant, per_channel)
        if requant == "fbgemm" and bias is not None and not per_channel:
            # torch 2.13 rounds bias * rcp + acc once (docs/ARITHMETIC.md "fbgemm")
            acc = reference.qgemm(x2, zxu, w, zw)
            out = ntc.fbgemm_fused_ref(acc, sx, sw, sy, zyu, bias, relu, per_channel)
    out = out.reshape(xv.shape[:-1] + (w.shape[0],))
    return (out.astype(np.int16) - 128).astype(np.int8) if dtype == "int8" else out.astype(np.uint8)


def run_linear(data, requant, near_tie):
    rng = np.random.default_rng(data.draw(seeds, "seed"))
    k = data.draw(st.sampled_from([1, 2, 7] if near_tie else [0, 1, 2, 7, 33, 130]), "k")
    n = data.draw(st.integers(0 if not near_tie else 1, 40), "n")
    lead = data.draw(shapes(0, 2, 5), "lead")
    per_channel = data.draw(st.booleans(), "per_channel")
    relu = data.draw(st.booleans(), "relu")
    has_bias = near_tie or data.draw(st.booleans(), "bias")
    dtype = data.draw(st.sampled_from(["uint8", "int8"]), "dtype")
    x_signed = data.draw(st.booleans(), "x_signed")
    layout = data.draw(st.sampled_from(LAYOUTS), "layout")
    backend = data.draw(st.sampled_from(fastq.backends()), "backend")
    w, sw, zw, sx, zx, sy, zy, bias = layer_case(rng, k, n, per_channel, relu, has_bias, requant, near_tie)
    xu = rng.integers(0, 256, lead + (k,)).astype(np.uint8)
    if near_tie:
        bias = near_tie_bias(xu.reshape(-1, k), sx, zx, w, sw, zw, sy, zy, rng)
    if x_signed:
        xv, zx_in = (xu.astype(np.int16) - 128).astype(np.int8), zx - 128
    else:
        xv, zx_in = xu, zx
    zy_in = zy - 128 if dtype == "int8" else zy
    wq = fastq.QTensor(w, sw, zw, axis=0) if per_channel else fastq.QTensor(w, sw, zw)
    bias_in = laid_out(bias, layout, rng) if bias is not None else None
    bias = None if bias is None else values_of(bias_in).astype(np.float32)   # the values the call saw
    layer = fastq.QuantizedLinear(wq, bias_in, sy, zy_in, relu=relu, requant=requant, dtype=dtype)
    x_lay = laid_out(xv, layout, rng)
    x_in = values_of(x_lay)                                                        # the values the call saw
    xu = (x_in.astype(np.int16) + 128).astype(np.uint8) if x_signed else x_in
    fastq.set_backend(backend)
    try:
        try:
            got = layer(fastq.QTensor(x_lay, sx, zx_in))
        except ValueError as e:
            assert "overflow" in str(e)
            return None
    finally:
        fastq.set_backend("auto")
    expect = expected_linear(x_in, sx, zx_in, w, sw, zw, bias, sy, zy_in, relu, requant, per_channel, dtype, x_signed)
    assert got.values.dtype == np.dtype(dtype) and got.values.shape == lead + (n,)
    assert (got.scale, got.zero_point) == (sy, zy_in)
    assert np.array_equal(got.values, expect)
    return (w, sw, zw, per_channel, bias, sy, zy, relu, xu, sx, zx, dtype, x_signed, got)


@PROFILE
@pytest.mark.parametrize("requant", ["fbgemm", "qnnpack", "tflite"])
@given(data=st.data())
def test_quantized_linear_vs_reference(requant, data):
    run_linear(data, requant, near_tie=False)


@PROFILE
@pytest.mark.parametrize("eng", ["x86", "fbgemm", "qnnpack"])
@given(data=st.data())
def test_quantized_linear_vs_torch(eng, data):
    """uint8 outputs (what torch's quantized Linear gives) also against the real module."""
    requant = "qnnpack" if eng == "qnnpack" else "fbgemm"
    case = run_linear(data, requant, near_tie=False)
    if case is None:
        return
    w, sw, zw, per_channel, bias, sy, zy, relu, xu, sx, zx, dtype, x_signed, got = case
    x2 = xu.reshape(int(np.prod(xu.shape[:-1])), xu.shape[-1])      # torch takes 2-D and more
    if w.shape[0] == 0 or w.shape[1] == 0 or x2.shape[0] == 0:
        return                        # torch's packed Linear refuses empty weights
    with torch_engine(eng):
        mod = ntc._torch_linear(w, sw, zw, per_channel, bias, sy, zy, relu)
        xt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x2), sx, zx)
        expect = mod(xt).int_repr().numpy().reshape(got.values.shape)
    out = got.values if dtype == "uint8" else (got.values.astype(np.int16) + 128).astype(np.uint8)
    assert np.array_equal(out, expect)


@PROFILE
@given(data=st.data())
def test_quantized_linear_fbgemm_near_tie_bias(data):
    """The constructed case of issue 9 (1): the bias nearly cancels acc, the result next to .5."""
    run_linear(data, "fbgemm", near_tie=True)


@PROFILE
@pytest.mark.parametrize("eng", ["x86", "fbgemm", "qnnpack"])
@given(data=st.data())
def test_dynamic_quantized_linear(eng, data):
    rng = np.random.default_rng(data.draw(seeds, "seed"))
    k = data.draw(st.sampled_from([1, 2, 7, 33, 130]), "k")
    n = data.draw(st.integers(1, 40), "n")
    lead = data.draw(shapes(1, 2, 5), "lead")
    per_channel = data.draw(st.booleans(), "per_channel")
    relu = data.draw(st.booleans(), "relu")
    has_bias = data.draw(st.booleans(), "bias")
    cancel = data.draw(st.booleans(), "cancel")
    layout = data.draw(st.sampled_from(LAYOUTS), "layout")
    magnitude = data.draw(st.sampled_from([1e-6, 1e-2, 1.0, 100.0]), "magnitude")
    mode = "qnnpack" if eng == "qnnpack" else "fbgemm"
    w = rng.integers(-128, 128, (n, k)).astype(np.int8)
    sw = rng.uniform(1e-3, 0.05, n) if per_channel else float(rng.uniform(1e-3, 0.05))
    zw = np.zeros(n, np.int64) if per_channel else 0
    x = (rng.normal(0, 1, lead + (k,)) * magnitude).astype(np.float32)
    wq = fastq.QTensor(w, sw, zw, axis=0) if per_channel else fastq.QTensor(w, sw, zw)
    bias = (rng.standard_normal(n)).astype(np.float32) if has_bias else None
    if has_bias and cancel and int(np.prod(lead)):
        sx, zx = fastq.DynamicQuantizedLinear(wq, None, mode=mode).input_qparams(x)
        xq = reference.quantize_per_tensor(x.reshape(-1, k)[:1], sx, zx, "uint8")
        acc = reference.qgemm(xq, zx, w, zw)[0]
        s = (f32(sx) * np.broadcast_to(np.atleast_1d(np.asarray(sw)).astype(np.float32), (n,))).astype(np.float32)
        bias = ntc._ulps(-(acc.astype(np.float32) * s).astype(np.float32), rng.integers(-3, 4, n))
    bias_in = None if bias is None else laid_out(bias, layout, rng)
    bias = None if bias is None else values_of(bias_in).astype(np.float32)
    layer = fastq.DynamicQuantizedLinear(wq, bias_in, relu=relu, mode=mode)
    x_in = laid_out(x, layout, rng)
    x = values_of(x_in).astype(np.float32)
    got = layer(x_in)
    assert got.dtype == np.float32 and got.shape == lead + (n,)
    assert ntc._same(got, reference.linear_dynamic(x, w, sw, zw, bias, relu, mode)).all()
    import torch.ao.nn.intrinsic.quantized.dynamic as nniqd
    import torch.ao.nn.quantized.dynamic as nnqd
    with torch_engine(eng):
        mod = (nniqd.LinearReLU if relu else nnqd.Linear)(k, n, dtype=torch.qint8)
        wt = torch.from_numpy(w)
        if per_channel:
            wqt = torch._make_per_channel_quantized_tensor(wt, torch.from_numpy(np.asarray(sw)), torch.from_numpy(zw), 0)
        else:
            wqt = torch._make_per_tensor_quantized_tensor(wt, sw, zw)
        mod.set_weight_bias(wqt, None if bias is None else torch.from_numpy(bias))
        expect = mod(torch.from_numpy(x)).detach().numpy()
    assert ntc._same(got, expect).all()
