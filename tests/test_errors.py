"""Bad input gets a TypeError / ValueError naming the argument, never a crash or a wrong answer."""
import re

import numpy as np
import pytest

import fastq


def layer(requant="fbgemm", k=8, n=4, **kw):
    w = fastq.QTensor(np.ones((n, k), np.int8), 0.1, 0)
    return fastq.QuantizedLinear(w, kw.pop("bias", None), 0.2, 3, requant=requant, **kw)


def x_q(shape=(2, 8), dtype=np.uint8):
    return fastq.QTensor(np.zeros(shape, dtype), 0.5, 0)


@pytest.mark.parametrize("call,exc,name", [
    (lambda: fastq.qgemm(np.zeros((2, 3), np.int8), 0, np.zeros((4, 3), np.int8), 0), TypeError, "^a: "),
    (lambda: fastq.qgemm(np.zeros((2, 3), np.float32), 0, np.zeros((4, 3), np.int8), 0), TypeError, "^a: "),
    (lambda: fastq.qgemm(np.zeros((2, 3), np.uint8), 0, np.zeros((4, 3), np.uint8), 0), TypeError, "^w: "),
    (lambda: fastq.qgemm(np.zeros(3, np.uint8), 0, np.zeros((4, 3), np.int8), 0), ValueError, "^a: "),
    (lambda: fastq.qgemm(np.zeros((2, 3), np.uint8), 0, np.zeros((4, 3, 1), np.int8), 0), ValueError, "^w: "),
    (lambda: fastq.qgemm(np.zeros((2, 3), np.uint8), 0, np.zeros((4, 5), np.int8), 0), ValueError, "K mismatch"),
    (lambda: fastq.qgemm(np.zeros((2, 3), np.uint8), 256, np.zeros((4, 3), np.int8), 0), ValueError, "a_zero_point"),
    (lambda: fastq.qgemm(np.zeros((2, 3), np.uint8), -1, np.zeros((4, 3), np.int8), 0), ValueError, "a_zero_point"),
    (lambda: fastq.qgemm(np.zeros((2, 3), np.uint8), 0.5, np.zeros((4, 3), np.int8), 0), ValueError, "a_zero_point"),
    (lambda: fastq.qgemm(np.zeros((2, 3), np.uint8), "1", np.zeros((4, 3), np.int8), 0), TypeError, "a_zero_point"),
    (lambda: fastq.qgemm(np.zeros((2, 3), np.uint8), 0, np.zeros((4, 3), np.int8), 128), ValueError, "w_zero_point"),
    (lambda: fastq.qgemm(np.zeros((2, 3), np.uint8), 0, np.zeros((4, 3), np.int8), [0, 1]), ValueError, "w_zero_point"),
    (lambda: fastq.quantize(np.zeros(3, np.float32), 0.0, 0), ValueError, "scale"),
    (lambda: fastq.quantize(np.zeros(3, np.float32), -1.0, 0), ValueError, "scale"),
    (lambda: fastq.quantize(np.zeros(3, np.float32), float("nan"), 0), ValueError, "scale"),
    (lambda: fastq.quantize(np.zeros(3, np.float32), float("inf"), 0), ValueError, "scale"),
    (lambda: fastq.quantize(np.zeros(3, np.float32), 1e-50, 0), ValueError, "scale"),
    (lambda: fastq.quantize(np.zeros(3, np.float32), "0.1", 0), TypeError, "scale"),
    (lambda: fastq.quantize(np.zeros(3, np.float32), 0.1, 300), ValueError, "zero_point"),
    (lambda: fastq.quantize(np.zeros(3, np.float32), 0.1, 200, dtype="int8"), ValueError, "zero_point"),
    (lambda: fastq.quantize(np.zeros(3, np.float32), 0.1, 0, dtype="int16"), TypeError, "dtype"),
    (lambda: fastq.quantize(np.array(["a"]), 0.1, 0), TypeError, "x"),
    (lambda: fastq.quantize_per_channel(np.zeros((3, 2), np.float32), [0.1, 0.1], [0, 0], axis=0), ValueError, "scales"),
    (lambda: fastq.quantize_per_channel(np.zeros((3, 2), np.float32), [0.1] * 3, [0, 0, 200], axis=0), ValueError, "zero_points"),
    (lambda: fastq.quantize_per_channel(np.zeros((3, 2), np.float32), [0.1] * 3, [0] * 3, axis=2), ValueError, "axis"),
    (lambda: fastq.dequantize(np.zeros(3, np.uint8)), TypeError, "q"),
    (lambda: fastq.QTensor(np.zeros(3, np.int16), 0.1, 0), TypeError, "values"),
    (lambda: fastq.QTensor(np.zeros(3, np.uint8), 0.1, -1), ValueError, "zero_point"),
    (lambda: fastq.QTensor(np.zeros((3, 2), np.int8), [0.1, -0.1, 0.1], [0, 0, 0], axis=0), ValueError, "scale"),
    (lambda: fastq.choose_qparams(1.0, -1.0), ValueError, "min_val"),
    (lambda: fastq.choose_qparams(float("nan"), 1.0), ValueError, "min_val"),
    (lambda: fastq.choose_qparams(-1.0, 1.0, dtype="float32"), TypeError, "dtype"),
    (lambda: layer()(np.zeros((2, 8), np.uint8)), TypeError, "x"),
    (lambda: layer()(x_q((2, 7))), ValueError, "x"),
    # int8 inputs are taken (int8 x, zero point z == uint8 x + 128, z + 128); a wrong K is not
    (lambda: layer()(fastq.QTensor(np.zeros((2, 7), np.int8), 0.5, 0)), ValueError, "x"),
    (lambda: layer(requant="fast"), ValueError, "requant"),
    (lambda: layer(requant=3), TypeError, "requant"),
    (lambda: layer(bias=np.zeros(5, np.float32)), ValueError, "bias"),
    (lambda: layer(bias=np.zeros((4, 1), np.float32)), ValueError, "bias"),
    (lambda: layer(bias=np.array([0, 0, np.nan, 0], np.float32)), ValueError, "bias"),
    (lambda: layer(bias=np.zeros(4, np.int32)), TypeError, "bias"),
    (lambda: fastq.QuantizedLinear(np.ones((4, 8), np.int8), None, 0.2, 3), TypeError, "weight"),
    (lambda: fastq.QuantizedLinear(fastq.QTensor(np.ones((4, 8), np.uint8), 0.1, 0), None, 0.2, 3), TypeError, "weight"),
    (lambda: fastq.QuantizedLinear(fastq.QTensor(np.ones(8, np.int8), 0.1, 0), None, 0.2, 3), ValueError, "weight"),
    (lambda: fastq.QuantizedLinear(fastq.QTensor(np.ones((4, 8), np.int8), 0.1, 0), None, 0.0, 3), ValueError, "scale"),
    (lambda: fastq.QuantizedLinear(fastq.QTensor(np.ones((4, 8), np.int8), 0.1, 0), None, 0.2, 256), ValueError, "zero_point"),
    (lambda: fastq.set_backend("sse9"), ValueError, "name"),
    (lambda: fastq.set_num_threads(-1), ValueError, "n"),
    (lambda: fastq.set_num_threads(1.5), TypeError, "n"),
    (lambda: fastq.quantize_multiplier(float("nan")), ValueError, "real"),
])
def test_bad_input_names_the_argument(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


def test_layer_call_refuses_overflowing_k():
    k = (2**31 - 1) // (255 * 128) + 1
    w = fastq.QTensor(np.full((2, k), -128, np.int8), 0.1, 0)
    layer = fastq.QuantizedLinear(w, None, 0.2, 3)
    with pytest.raises(ValueError, match="overflow"):
        layer(fastq.QTensor(np.full((1, k), 255, np.uint8), 0.5, 0))


def test_m_zero_works():
    y = layer()(x_q((0, 8)))
    assert y.values.shape == (0, 4) and y.values.dtype == np.uint8


# ---------------------------------------------------------------- issue 9, item 5: no silent coercions
def weight(n=4, k=8, per_channel=False):
    if per_channel:
        return fastq.QTensor(np.ones((n, k), np.int8), np.full(n, 0.1), np.zeros(n, np.int64), axis=0)
    return fastq.QTensor(np.ones((n, k), np.int8), 0.1, 0)


FLAGS = [
    (lambda v: fastq.QuantizedLinear(weight(), None, 0.2, 3, relu=v), "relu"),
    (lambda v: fastq.DynamicQuantizedLinear(weight(), None, relu=v), "relu"),
    (lambda v: fastq.DynamicQuantizedLinear(weight(), None, reduce_range=v), "reduce_range"),  # None: default
    (lambda v: fastq.choose_qparams(-1.0, 1.0, symmetric=v), "symmetric"),
    (lambda v: fastq.choose_qparams(-1.0, 1.0, dtype="int8", reduce_range=v), "reduce_range"),
]


@pytest.mark.parametrize("call,name,value", [(c, n, v) for i, (c, n) in enumerate(FLAGS)
                                             for v in ("no", "False", 0, 1, None, 1.0) if not (i == 2 and v is None)])
def test_flags_take_only_bools(call, name, value):
    with pytest.raises(TypeError, match="%s: expected True or False, got %r" % (name, value)):
        call(value)


def test_flags_take_numpy_bools():
    assert fastq.QuantizedLinear(weight(), None, 0.2, 3, relu=np.bool_(True)).relu is True
    assert fastq.choose_qparams(-1.0, 1.0, symmetric=np.bool_(True)) == fastq.choose_qparams(-1.0, 1.0, symmetric=True)


@pytest.mark.parametrize("make", [
    lambda b: fastq.QuantizedLinear(weight(), b, 0.2, 3),
    lambda b: fastq.QuantizedLinear(weight(), b, 0.2, 3, requant="qnnpack"),
    lambda b: fastq.QuantizedLinear(weight(per_channel=True), b, 0.2, 3, requant="tflite"),
    lambda b: fastq.DynamicQuantizedLinear(weight(), b),
])
@pytest.mark.parametrize("big", [1e300, -1e39, 3.5e38])
def test_bias_that_overflows_float32_is_refused(make, big):
    """Finite in float64, inf in float32: the check comes after the cast."""
    with pytest.raises(ValueError, match="bias: .*float32.*%s" % re.escape(repr(abs(big)))):
        make(np.array([0.0, big, 1.0, 2.0]))


def test_qtensor_fields_cannot_be_reassigned():
    q = fastq.QTensor(np.zeros((2, 3), np.uint8), 0.5, 7)
    for name, value in (("zero_point", 300), ("scale", -1.0), ("values", np.zeros(5, np.int16)), ("axis", 0)):
        with pytest.raises(AttributeError, match="cannot be reassigned"):
            setattr(q, name, value)
    assert (q.scale, q.zero_point, q.axis, q.values.shape) == (0.5, 7, None, (2, 3))


def test_qtensor_values_keep_their_shape():
    """values is a view: the caller reshaping its array in place does not reshape the QTensor
    (a per-channel axis would no longer match its scales)."""
    v = np.zeros((3, 2), np.int8)
    q = fastq.QTensor(v, [0.1, 0.2, 0.3], [0, 0, 0], axis=0)
    v.shape = (2, 3)
    assert q.values.shape == (3, 2) and q.dequantize().shape == (3, 2)


def test_qtensor_per_channel_arrays_are_read_only_copies():
    scales, zps = np.array([0.1, 0.2, 0.3]), np.array([1, 2, 3])
    q = fastq.QTensor(np.zeros((3, 2), np.int8), scales, zps, axis=0)
    scales[0], zps[0] = -1.0, 300            # the caller's arrays: not the QTensor's
    assert q.scale[0] == 0.1 and q.zero_point[0] == 1
    with pytest.raises(ValueError, match="read-only"):
        q.scale[0] = -1.0
    with pytest.raises(ValueError, match="read-only"):
        q.zero_point[0] = 300
    with pytest.raises(AttributeError):
        q.scale = np.array([0.1, 0.2])       # wrong length for axis 0


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_layer_outputs_are_immutable_too(dtype):
    """The compiled call path builds its outputs with __new__ + setattr: still set once only."""
    y = fastq.QuantizedLinear(weight(), None, 0.2, 3, dtype=dtype)(x_q())
    for name, value in (("zero_point", 300), ("scale", -1.0), ("values", np.zeros(3, np.uint8)), ("axis", 0)):
        with pytest.raises(AttributeError, match="cannot be reassigned"):
            setattr(y, name, value)
    q = fastq.quantize(np.zeros(3, np.float32), 0.1, 5)
    with pytest.raises(AttributeError, match="cannot be reassigned"):
        q.scale = -1.0


def test_set_num_threads_takes_numpy_ints():
    old = fastq.get_num_threads()
    try:
        fastq.set_num_threads(np.int64(2))
        assert fastq.get_num_threads() == 2
        fastq.set_num_threads(np.array(1))
        assert fastq.get_num_threads() == 1
    finally:
        fastq.set_num_threads(0)
    assert fastq.get_num_threads() == old


@pytest.mark.parametrize("n", [10**10, 1000, 257, -1, np.int64(-5), 2**63])
def test_set_num_threads_out_of_range_is_a_value_error(n):
    old = fastq.get_num_threads()
    with pytest.raises(ValueError, match=r"n: expected an int in \[0, 256\].*got %d" % int(n)):
        fastq.set_num_threads(n)
    assert fastq.get_num_threads() == old        # not silently capped


@pytest.mark.parametrize("n", [1.0, "2", True, np.bool_(False), None])
def test_set_num_threads_refuses_non_ints(n):
    with pytest.raises(TypeError, match="n: expected an int"):
        fastq.set_num_threads(n)


def test_qgemm_takes_0d_zero_point_arrays():
    from fastq import reference
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 5), dtype=np.uint8)
    w = rng.integers(-128, 128, (4, 5), dtype=np.int8)
    expect = reference.qgemm(a, 7, w, -3)
    for za, zw in ((np.array(7), np.array(-3)), (np.int16(7), np.array(-3, np.int8)), (7, np.array([-3] * 4))):
        assert np.array_equal(fastq.qgemm(a, za, w, zw), expect)
    with pytest.raises(ValueError, match="a_zero_point: 300 is outside"):
        fastq.qgemm(a, np.array(300), w, 0)
    with pytest.raises(ValueError, match="w_zero_point"):
        fastq.qgemm(a, 0, w, np.array(200))


def test_qgemm_messages_name_its_parameters():
    for call in (lambda: fastq.qgemm(np.zeros((2, 3), np.int8), 0, np.zeros((4, 3), np.int8), 0),
                 lambda: fastq.qgemm(np.zeros((2, 3), np.uint8), 0, np.zeros((4, 3), np.uint8), 0)):
        with pytest.raises(TypeError) as e:
            call()
        assert "a_u8" not in str(e.value) and "w_s8" not in str(e.value)


# ---------------------------------------------------------------- issue 9, item 4: K = 0, empty axes
@pytest.mark.parametrize("requant", ["fbgemm", "qnnpack", "tflite"])
@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("x_dtype", [np.uint8, np.int8])
def test_k_zero_layers(requant, dtype, x_dtype):
    """K = 0: acc = 0, the output is the requantized bias, on every input / output dtype."""
    from fastq import reference
    w = fastq.QTensor(np.zeros((3, 0), np.int8), 0.1, 0)
    bias = np.array([1.0, -2.0, 0.3], np.float32)
    layer = fastq.QuantizedLinear(w, bias, 0.05, 3 if dtype == "uint8" else -5, requant=requant, dtype=dtype)
    y = layer(fastq.QTensor(np.zeros((2, 0), x_dtype), 0.5, 1))
    zy = 3 if dtype == "uint8" else 123
    expect = reference.linear(np.zeros((2, 0), np.uint8), 0.5, 1, w.values, 0.1, 0, bias, 0.05, zy, requant=requant)
    if dtype == "int8":
        expect = (expect.astype(np.int16) - 128).astype(np.int8)
    assert y.values.shape == (2, 3) and np.array_equal(y.values, expect)


def test_k_zero_dynamic_layer():
    w = fastq.QTensor(np.zeros((3, 0), np.int8), 0.1, 0)
    bias = np.array([1.0, -2.0, 0.3], np.float32)
    y = fastq.DynamicQuantizedLinear(w, bias)(np.zeros((2, 0), np.float32))
    assert np.array_equal(y, np.broadcast_to(bias, (2, 3)))


@pytest.mark.parametrize("shape", [(3, 0), (0,), (0, 4), (2, 0, 5)])
def test_multiply_by_quantized_multiplier_empty(shape):
    out = fastq.multiply_by_quantized_multiplier(np.zeros(shape, np.int32), 2**30, -1)
    assert out.shape == shape and out.dtype == np.int32


@pytest.mark.parametrize("call,message", [
    (lambda: fastq.QTensor(np.zeros((3, 2), np.int8), [0.1, -0.5, 0.1], [0, 0, 0], axis=0),
     r"scale: .*positive finite float32, got -0\.5 at index 1"),
    (lambda: fastq.QTensor(np.zeros((3, 2), np.int8), [0.1] * 3, [0, 1.5, 0], axis=0), r"zero_point: .*got 1\.5"),
    (lambda: fastq.QTensor(np.zeros((3, 2), np.int8), [0.1] * 3, [0, 200, 0], axis=0),
     r"zero_point: .*\[-128, 127\], got range \[0, 200\]"),
    (lambda: fastq.quantize(np.zeros(3, np.float32), "0.1", 0), r"scale: expected a positive float, got str '0\.1'"),
    (lambda: fastq.quantize(np.zeros(3, np.float32), 0.1, 300), r"zero_point: 300 is outside \[0, 255\]"),
    (lambda: fastq.qgemm(np.zeros((2, 3), np.uint8), "1", np.zeros((4, 3), np.int8), 0),
     r"a_zero_point: expected an int in \[0, 255\], got '1'"),
])
def test_messages_name_the_value_and_what_was_expected(call, message):
    with pytest.raises((TypeError, ValueError), match=message):
        call()
