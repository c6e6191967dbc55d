"""QuantizedLinear(requant="tflite") and int8 activations: the compiled layer against the numpy
reference (which computes int8 natively, without the +128 identity the kernel uses), the
firmware parameters, and vectors recorded from real TensorFlow Lite interpreters (LiteRT 2.3.0,
tflite-runtime 2.14.0)."""
import os

import numpy as np
import pytest

import fastq
from fastq import reference

HERE = os.path.dirname(__file__)
DATA = os.path.join(HERE, "data", "tflite_fc_vectors.npz")           # LiteRT 2.3.0
DATA_214 = os.path.join(HERE, "data", "tflite214_fc_vectors.npz")    # tflite-runtime 2.14.0


def _qrange(dtype):
    return (-128, 127) if np.dtype(dtype) == np.int8 else (0, 255)


def make_layer_case(rng, n, k, per_channel, bias_kind, in_dtype, out_dtype, big_multiplier=False):
    w = rng.integers(-128, 127, (n, k), endpoint=True).astype(np.int8)
    if per_channel:
        w_scales = 2.0 ** rng.uniform(-9, -4, n)
        w_zps = np.zeros(n, np.int64)
        weight = fastq.QTensor(w, w_scales, w_zps, axis=0)
    else:
        w_scales = np.array([2.0 ** rng.uniform(-9, -4)])
        w_zps = np.array([int(rng.integers(-20, 20))])
        weight = fastq.QTensor(w, float(w_scales[0]), int(w_zps[0]))
    x_scale = float(np.float32(2.0 ** rng.uniform(-7, -1)))
    spread = np.sqrt(k) * 70 * x_scale * w_scales.max()
    y_scale = spread / 100 * 2.0 ** rng.uniform(-1, 1)
    if big_multiplier:                     # s_in s_w / s_out > 1: a left shift
        y_scale = x_scale * w_scales.min() / 2.0 ** rng.uniform(0.2, 3)
    lo, hi = _qrange(out_dtype)
    y_zp = int(rng.integers(lo, hi, endpoint=True))
    bias = None
    if bias_kind == "float":
        bias = rng.normal(0, 40 * x_scale * w_scales.max(), n).astype(np.float32)
    elif bias_kind == "int":
        bias = rng.integers(-(2**16), 2**16, n).astype(np.int32)
    xlo, xhi = _qrange(in_dtype)
    x_zp = int(rng.integers(xlo, xhi, endpoint=True))
    return weight, w, w_scales, w_zps, bias, x_scale, x_zp, y_scale, y_zp


def reference_output(x, x_scale, x_zp, w, w_scales, w_zps, bias, y_scale, y_zp, relu, per_channel,
                     rounding, out_dtype, effective_scale="float32"):
    return reference.linear_tflite(x, x_scale, x_zp, w, w_scales, w_zps, bias, y_scale, y_zp, relu,
                                   per_channel, rounding, out_dtype, effective_scale)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("bias_kind", [None, "float", "int"])
@pytest.mark.parametrize("in_dtype, out_dtype", [("uint8", "uint8"), ("int8", "int8"), ("int8", "uint8")])
@pytest.mark.parametrize("rounding", ["double", "single", "double_up"])
def test_layer_matches_reference(rng, backend, per_channel, bias_kind, in_dtype, out_dtype, rounding):
    for relu, (m, k, n) in ((False, (1, 37, 5)), (True, (9, 100, 70)), (False, (3, 8, 64))):
        weight, w, w_scales, w_zps, bias, x_scale, x_zp, y_scale, y_zp = make_layer_case(
            rng, n, k, per_channel, bias_kind, in_dtype, out_dtype)
        lo, hi = _qrange(in_dtype)
        x = rng.integers(lo, hi, (m, k), endpoint=True).astype(in_dtype)
        layer = fastq.QuantizedLinear(weight, bias, y_scale, y_zp, relu=relu, requant="tflite",
                                      rounding=rounding, dtype=out_dtype)
        y = layer(fastq.QTensor(x, x_scale, x_zp))
        assert y.values.dtype == np.dtype(out_dtype) and y.zero_point == y_zp and y.scale == y_scale
        expected = reference_output(x, x_scale, x_zp, w, w_scales, w_zps, bias, y_scale, y_zp, relu,
                                    per_channel, rounding, out_dtype)
        assert np.array_equal(y.values, expected)


@pytest.mark.parametrize("effective_scale", ["float32", "float64"])
@pytest.mark.parametrize("rounding", ["double", "single", "double_up"])
def test_layer_left_shift_and_saturation(rng, backend, effective_scale, rounding):
    # multipliers >= 1 (left shifts) and extreme inputs: most outputs saturate, some wrap
    for per_channel in (False, True):
        weight, w, w_scales, w_zps, bias, x_scale, x_zp, y_scale, y_zp = make_layer_case(
            rng, 33, 64, per_channel, "int", "int8", "int8", big_multiplier=True)
        x = rng.choice(np.array([-128, 127], np.int8), (4, 64))
        layer = fastq.QuantizedLinear(weight, bias, y_scale, y_zp, requant="tflite", rounding=rounding,
                                      dtype="int8", effective_scale=effective_scale)
        assert layer.fixed_point_params(x_scale).shift.max() > 0
        y = layer(fastq.QTensor(x, x_scale, x_zp))
        expected = reference_output(x, x_scale, x_zp, w, w_scales, w_zps, bias, y_scale, y_zp, False,
                                    per_channel, rounding, "int8", effective_scale)
        assert np.array_equal(y.values, expected)


def test_int8_is_uint8_plus_128(rng):
    # the identity the kernel relies on, checked against the reference in both dtypes
    weight, w, w_scales, w_zps, bias, x_scale, x_zp, y_scale, y_zp = make_layer_case(
        rng, 20, 30, True, "float", "int8", "int8")
    x = rng.integers(-128, 127, (5, 30), endpoint=True).astype(np.int8)
    for relu in (False, True):
        y8 = reference_output(x, x_scale, x_zp, w, w_scales, w_zps, bias, y_scale, y_zp, relu, True,
                              "double", "int8")
        yu = reference_output((x.astype(np.int64) + 128).astype(np.uint8), x_scale, x_zp + 128, w, w_scales,
                              w_zps, bias, y_scale, y_zp + 128, relu, True, "double", "uint8")
        assert np.array_equal(y8.astype(np.int64) + 128, yu)


@pytest.mark.parametrize("requant", ["fbgemm", "qnnpack"])
def test_int8_activations_float_modes(rng, backend, requant):
    # torch has no int8-activation Linear: an int8 layer is defined as the uint8 layer on x + 128
    # with zero points + 128, output - 128 (reference.linear on the shifted values)
    n, k = 40, 50
    w = rng.integers(-127, 127, (n, k), endpoint=True).astype(np.int8)
    w_scales = 2.0 ** rng.uniform(-9, -5, n) if requant == "fbgemm" else np.array([0.004])
    weight = (fastq.QTensor(w, w_scales, np.zeros(n, np.int64), axis=0) if requant == "fbgemm"
              else fastq.QTensor(w, 0.004, 0))
    bias = rng.normal(0, 0.1, n).astype(np.float32)
    x = rng.integers(-128, 127, (7, k), endpoint=True).astype(np.int8)
    for relu in (False, True):
        layer = fastq.QuantizedLinear(weight, bias, 0.05, -3, relu=relu, requant=requant, dtype="int8")
        y = layer(fastq.QTensor(x, 0.02, 5))
        expected = reference.linear((x.astype(np.int64) + 128).astype(np.uint8), 0.02, 133, w, w_scales,
                                    0, bias, 0.05, 125, relu=relu, requant=requant,
                                    per_channel=requant == "fbgemm")
        assert y.values.dtype == np.int8 and y.zero_point == -3
        assert np.array_equal(y.values.astype(np.int64) + 128, expected)


def test_batched_input_shape(rng):
    weight, w, w_scales, w_zps, bias, x_scale, x_zp, y_scale, y_zp = make_layer_case(
        rng, 6, 10, False, "float", "int8", "int8")
    x = rng.integers(-128, 127, (2, 3, 10), endpoint=True).astype(np.int8)
    layer = fastq.QuantizedLinear(weight, bias, y_scale, y_zp, requant="tflite", dtype="int8")
    y = layer(fastq.QTensor(x, x_scale, x_zp))
    expected = reference_output(x.reshape(6, 10), x_scale, x_zp, w, w_scales, w_zps, bias, y_scale, y_zp,
                                False, False, "double", "int8")
    assert y.values.shape == (2, 3, 6) and np.array_equal(y.values.reshape(6, 6), expected)


# ------------------------------------------------------------------ firmware parameters
def test_fixed_point_params_reproduce_the_layer(rng):
    weight, w, w_scales, w_zps, bias, x_scale, x_zp, y_scale, y_zp = make_layer_case(
        rng, 12, 40, True, "float", "int8", "int8")
    layer = fastq.QuantizedLinear(weight, bias, y_scale, y_zp, relu=True, requant="tflite", dtype="int8",
                                  input_scale=x_scale, input_zero_point=x_zp)
    p = layer.fixed_point_params()
    assert np.array_equal(layer.multipliers, p.multiplier) and np.array_equal(layer.shifts, p.shift)
    assert np.array_equal(layer.bias_int32, p.bias)
    assert p.multiplier.dtype == np.int32 and p.bias.dtype == np.int32
    assert (p.act_min, p.act_max, p.output_zero_point) == (max(-128, y_zp), 127, y_zp)
    mult, shift = reference.tflite_multipliers(x_scale, w_scales, y_scale, True)
    assert np.array_equal(p.multiplier, mult) and np.array_equal(p.shift, shift)
    assert np.array_equal(p.bias, reference.tflite_bias(bias, x_scale, w_scales))
    # what a firmware does with them: folded bias + sum x (w - zw), requantize, add zero point, clamp
    x = rng.integers(-128, 127, (4, 40), endpoint=True).astype(np.int8)
    acc = p.folded_bias.astype(np.int64) + reference.qgemm(x, 0, w, w_zps)
    y = fastq.multiply_by_quantized_multiplier(reference.wrap_int32(acc), p.multiplier, p.shift)
    y = np.clip(y.astype(np.int64) + p.output_zero_point, p.act_min, p.act_max)
    assert np.array_equal(layer(fastq.QTensor(x, x_scale, x_zp)).values, y)


def test_fixed_point_params_without_input_scale(rng):
    weight, w, w_scales, w_zps, bias, x_scale, x_zp, y_scale, y_zp = make_layer_case(
        rng, 4, 8, False, "int", "uint8", "uint8")
    layer = fastq.QuantizedLinear(weight, bias, y_scale, y_zp, requant="tflite")
    with pytest.raises(ValueError, match="input_scale"):
        layer.multipliers
    with pytest.raises(ValueError, match="x_scale"):
        layer.fixed_point_params()
    p = layer.fixed_point_params(x_scale)
    assert np.array_equal(p.bias, bias) and p.folded_bias is None       # an int32 bias is used as is
    # calls with any input quantization work when the layer was not tied to one
    x = rng.integers(0, 255, (2, 8), endpoint=True).astype(np.uint8)
    for xs in (x_scale, x_scale * 3):
        expected = reference_output(x, xs, 7, w, w_scales, w_zps, bias, y_scale, y_zp, False, False,
                                    "double", "uint8")
        assert np.array_equal(layer(fastq.QTensor(x, xs, 7)).values, expected)


def test_input_scale_is_enforced(rng):
    weight, *_ = make_layer_case(rng, 4, 8, False, None, "uint8", "uint8")
    layer = fastq.QuantizedLinear(weight, None, 0.1, 3, requant="tflite", input_scale=0.02)
    x = np.zeros((1, 8), np.uint8)
    layer(fastq.QTensor(x, 0.02, 100))
    with pytest.raises(ValueError, match="input_scale"):
        layer(fastq.QTensor(x, 0.03, 100))


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(dtype="int16"), TypeError, "dtype"),
    (dict(dtype="int8", zero_point=200), ValueError, "zero_point"),
    (dict(zero_point=-1), ValueError, "zero_point"),
    (dict(rounding="up"), ValueError, "rounding"),
    (dict(effective_scale="float16"), ValueError, "effective_scale"),
    (dict(input_zero_point=3), ValueError, "input_zero_point"),
    (dict(input_scale=-1.0), ValueError, "input_scale"),
    (dict(input_scale=1.0, scale=1e-12), ValueError, "scale"),      # multiplier far above 2^30
    (dict(requant="fbgemm", bias=np.zeros(4, np.int32)), TypeError, "bias"),
])
def test_layer_validation(rng, kwargs, exc, name):
    weight, *_ = make_layer_case(rng, 4, 8, False, None, "uint8", "uint8")
    args = dict(bias=None, scale=0.1, zero_point=3, requant="tflite")
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        fastq.QuantizedLinear(weight, **args)


def test_fixed_point_params_only_for_tflite(rng):
    weight, *_ = make_layer_case(rng, 4, 8, False, None, "uint8", "uint8")
    layer = fastq.QuantizedLinear(weight, None, 0.1, 3, requant="fbgemm")
    with pytest.raises(ValueError, match="requant"):
        layer.fixed_point_params(0.1)


# ------------------------------------------------------------------ a real TFLite interpreter
def _vector_cases(path=DATA):
    data = np.load(path)
    for i in range(int(data["n_cases"])):
        p = "c%03d_" % i
        x_scale, x_zp, y_scale, y_zp, relu, per_channel, signed = data[p + "scalars"]
        c = dict(x=data[p + "x"], w=data[p + "w"], w_scales=data[p + "w_scales"],
                 w_zero_points=data[p + "w_zero_points"], bias=data.get(p + "bias"),
                 x_scale=float(x_scale), x_zero_point=int(x_zp), y_scale=float(y_scale),
                 y_zero_point=int(y_zp), relu=bool(relu), per_channel=bool(per_channel), signed=bool(signed),
                 y_ref=data[p + "y_ref"], y_opt=data[p + "y_opt"])
        yield c


def _layer_for(c, rounding, effective_scale):
    if c["signed"]:
        w, zw = c["w"], c["w_zero_points"]
    else:   # uint8 weights w with zero point z == int8 weights w - 128 with zero point z - 128
        w = (c["w"].astype(np.int16) - 128).astype(np.int8)
        zw = c["w_zero_points"] - 128
    if c["per_channel"]:
        weight = fastq.QTensor(w, c["w_scales"], zw, axis=0)
    else:
        weight = fastq.QTensor(w, float(c["w_scales"][0]), int(zw[0]))
    return fastq.QuantizedLinear(weight, c["bias"], c["y_scale"], c["y_zero_point"], relu=c["relu"],
                                 requant="tflite", rounding=rounding, effective_scale=effective_scale,
                                 dtype="int8" if c["signed"] else "uint8", input_scale=c["x_scale"],
                                 input_zero_point=c["x_zero_point"])


def test_tflite_optimized_kernels(backend):
    # LiteRT 2.3.0's builtin (optimized, ruy) FULLY_CONNECTED kernels on x86-64, int8 per-tensor,
    # int8 per-channel and uint8: fixed point with rounding="double_up" and per-tensor
    # multipliers from the float32 product s_in * s_w
    cases = list(_vector_cases())
    assert len(cases) >= 100
    n_elements = 0
    differs = {"double": 0, "single": 0}
    for c in cases:
        x = fastq.QTensor(c["x"], c["x_scale"], c["x_zero_point"])
        y = _layer_for(c, "double_up", "float32")(x).values
        assert y.dtype == c["y_opt"].dtype
        assert np.array_equal(y, c["y_opt"])
        n_elements += y.size
        for rounding in differs:
            differs[rounding] += int((_layer_for(c, rounding, "float32")(x).values != c["y_opt"]).sum())
    # the vectors hold exact ties: the other two roundings do not reproduce them
    assert n_elements > 8000 and differs["double"] > 100 and differs["single"] > 100


def _mismatches(cases, key, rounding, effective_scale):
    """Elements of the recorded outputs `key` that the layer with these settings does not reproduce."""
    n = 0
    for c in cases:
        x = fastq.QTensor(c["x"], c["x_scale"], c["x_zero_point"])
        n += int((_layer_for(c, rounding, effective_scale)(x).values != c[key]).sum())
    return n


def test_tflite214_reference_kernels(backend):
    # tflite-runtime 2.14.0's BUILTIN_REF FULLY_CONNECTED (int8 per-tensor, int8 per-channel,
    # uint8) is fixed point: fastq's default rounding="double" (gemmlowp) with per-tensor
    # multipliers from the float32 product s_in * s_w, bit for bit
    cases = list(_vector_cases(DATA_214))
    assert len(cases) >= 100 and sum(c["y_ref"].size for c in cases) > 8000
    for c in cases:
        x = fastq.QTensor(c["x"], c["x_scale"], c["x_zero_point"])
        y = _layer_for(c, "double", "float32")(x).values
        assert y.dtype == c["y_ref"].dtype
        assert np.array_equal(y, c["y_ref"])
    # the vectors tell the settings apart: ties split the roundings, and the per-tensor
    # multiplier computed all in double is off by one ulp often enough to move some outputs
    for rounding, effective_scale in (("single", "float32"), ("double_up", "float32"), ("double", "float64")):
        assert _mismatches(cases, "y_ref", rounding, effective_scale) > 50


def test_tflite214_optimized_kernels(backend):
    # tflite-runtime 2.14.0's builtin (optimized) kernels on x86-64: int8 layers round as
    # rounding="double_up", uint8 ones as rounding="double" (per-tensor multipliers from the
    # float32 product in both)
    cases = list(_vector_cases(DATA_214))
    int8 = [c for c in cases if c["signed"]]
    uint8 = [c for c in cases if not c["signed"]]
    assert len(int8) >= 60 and len(uint8) >= 30
    for group, rounding in ((int8, "double_up"), (uint8, "double")):
        for c in group:
            x = fastq.QTensor(c["x"], c["x_scale"], c["x_zero_point"])
            assert np.array_equal(_layer_for(c, rounding, "float32")(x).values, c["y_opt"])
    assert _mismatches(int8, "y_opt", "double", "float32") > 50
    assert _mismatches(uint8, "y_opt", "double_up", "float32") > 50
