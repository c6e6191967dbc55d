"""Bad input gets a TypeError / ValueError naming the argument, never a crash or a wrong answer."""
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
