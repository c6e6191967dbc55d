"""QuantizedConv / MaxPool / AvgPool as layers: against fastq.reference (independent of torch),
their input checks, and the model-file round trip (save -> load -> the same integers)."""
import numpy as np
import pytest

import fastq
from fastq import reference as R
from fastq.layers.conv import QuantizedConv
from fastq.layers.pool import AvgPool, MaxPool


def _weight(rng, shape, per_channel, symmetric=True):
    v = rng.integers(-128, 128, shape).astype(np.int8)
    if per_channel:
        zp = np.zeros(shape[0], np.int64) if symmetric else rng.integers(-5, 6, shape[0])
        return fastq.QTensor(v, rng.uniform(0.001, 0.05, shape[0]), zp, axis=0)
    return fastq.QTensor(v, float(rng.uniform(0.001, 0.05)), 0 if symmetric else 3)


def _x(rng, shape, dtype="uint8"):
    lo, hi = (0, 256) if dtype == "uint8" else (-128, 128)
    return fastq.QTensor(rng.integers(lo, hi, shape).astype(dtype), 0.04, int(rng.integers(lo, hi)) // 2 + (
        64 if dtype == "uint8" else 0))


@pytest.mark.parametrize("arithmetic", ["onednn", "fbgemm", "qnnpack", "tflite"])
@pytest.mark.parametrize("dims", [1, 2])
def test_layer_equals_reference(rng, arithmetic, dims):
    for per_channel in (False, True):
        k = (3,) if dims == 1 else (3, 2)
        w = _weight(rng, (6, 2) + k, per_channel)
        bias = rng.standard_normal(6).astype(np.float32)
        layer = QuantizedConv(w, bias, 0.2, 100, stride=2, padding=1, dilation=1, groups=2, relu=True,
                              arithmetic=arithmetic)
        x = _x(rng, (2, 4, 9) if dims == 1 else (2, 4, 9, 8))
        y = layer(x)
        expected = R.conv(x.values, x.scale, x.zero_point, w.values, w.scale, w.zero_point, bias, 0.2, 100,
                          stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=2, relu=True,
                          arithmetic=arithmetic, per_channel=per_channel)
        assert y.values.dtype == np.uint8 and (y.scale, y.zero_point) == (0.2, 100)
        assert np.array_equal(y.values, expected)


def test_int8_input_is_the_flipped_uint8(rng):
    w = _weight(rng, (5, 3, 3, 3), True)
    layer = QuantizedConv(w, None, 0.1, 9, padding=1)
    x8 = _x(rng, (1, 3, 6, 6), "int8")
    xu = fastq.QTensor((x8.values.astype(np.int16) + 128).astype(np.uint8), x8.scale, x8.zero_point + 128)
    assert np.array_equal(layer(x8).values, layer(xu).values)


def test_depthwise_saturation_setting(rng):
    w = fastq.QTensor(np.full((8, 1, 3, 3), 127, np.int8), 0.01, 0)
    x = fastq.QTensor(np.full((1, 8, 5, 5), 255, np.uint8), 0.1, 0)
    auto = QuantizedConv(w, None, 60.0, 0, padding=1, groups=8)
    off = QuantizedConv(w, None, 60.0, 0, padding=1, groups=8, depthwise_saturation="off")
    assert auto.saturates() and not off.saturates()
    # 255*127*2 = 64770 saturates to 32767 per pair: 4 pairs + 1 single tap
    acc = R.fbgemm_depthwise_acc(x.values, 0, w.values, 0, (1, 1), (1, 1))
    assert acc[0, 0, 2, 2] == 4 * 32767 + 255 * 127
    assert not np.array_equal(auto(x).values, off(x).values)
    assert not QuantizedConv(w, None, 60.0, 0, padding=1, groups=8, arithmetic="onednn").saturates()


@pytest.mark.parametrize("bad, err, words", [
    (dict(arithmetic="mkl"), ValueError, "arithmetic"),
    (dict(groups=4), ValueError, "groups"),
    (dict(stride=0), ValueError, "stride"),
    (dict(stride=[1, 2, 3]), ValueError, "stride"),
    (dict(padding=-1), ValueError, "padding"),
    (dict(stride="2"), TypeError, "stride"),
    (dict(zero_point=300), ValueError, "zero_point"),
    (dict(relu=1), TypeError, "relu"),
])
def test_bad_settings_name_the_argument(rng, bad, err, words):
    kw = dict(weight=_weight(rng, (6, 2, 3, 3), False), bias=None, scale=0.1, zero_point=3, groups=3)
    kw.update(bad)
    with pytest.raises(err, match=words):
        QuantizedConv(**kw)


def test_bad_inputs(rng):
    layer = QuantizedConv(_weight(rng, (6, 2, 3, 3), False), None, 0.1, 3)
    with pytest.raises(ValueError, match="x: expected shape"):
        layer(_x(rng, (1, 3, 6, 6)))
    with pytest.raises(ValueError, match="too small"):
        layer(_x(rng, (1, 2, 2, 6)))
    with pytest.raises(TypeError, match="QTensor"):
        layer(np.zeros((1, 2, 6, 6), np.float32))
    with pytest.raises(ValueError, match="symmetric"):
        QuantizedConv(_weight(rng, (6, 2, 3, 3), True, symmetric=False), None, 0.1, 3, arithmetic="onednn")
    with pytest.raises(TypeError, match="integer bias"):
        QuantizedConv(_weight(rng, (6, 2, 3, 3), False), np.arange(6), 0.1, 3)
    with pytest.raises(ValueError, match="shape"):
        QuantizedConv(fastq.QTensor(np.zeros((6, 2), np.int8), 0.1, 0), None, 0.1, 3)
    with pytest.raises(ValueError, match="padding"):
        AvgPool(2, 2, 2)
    with pytest.raises(ValueError, match="divisor_override"):
        AvgPool(2, divisor_override=0)
    with pytest.raises(ValueError, match="path"):
        AvgPool(2, path="nhcw")
    with pytest.raises(ValueError, match="1-D|2-D"):
        MaxPool(2)(_x(rng, (1, 2, 6)))


def test_model_file_round_trip(rng, tmp_path):
    layers = [
        QuantizedConv(_weight(rng, (8, 3, 3, 3), True), rng.standard_normal(8).astype(np.float32), 0.1, 5,
                      padding=1, relu=True, arithmetic="onednn"),
        QuantizedConv(_weight(rng, (8, 1, 3, 3), True, symmetric=False), None, 0.2, 7, padding=1, groups=8,
                      arithmetic="fbgemm"),
        MaxPool(3, 2, 1, ceil_mode=True),
        AvgPool(3, 2, 1, count_include_pad=False, path="nhwc", vector_channels=16),
        QuantizedConv(_weight(rng, (4, 8, 1, 1), False), rng.integers(-500, 500, 4), 0.3, 2,
                      arithmetic="tflite", rounding="single"),
    ]
    model = fastq.Model(layers)
    x = _x(rng, (2, 3, 11, 11))
    y = model(x)
    model.save(str(tmp_path / "cnn.fq"))
    loaded = fastq.load(str(tmp_path / "cnn.fq"))
    for a, b in zip(model, loaded):
        assert type(a) is type(b) and a.get_settings() == b.get_settings()
    got = loaded(x)
    assert type(got) is type(y) and np.array_equal(np.asarray(getattr(got, "values", got)),
                                                   np.asarray(getattr(y, "values", y)))
    assert got.dtype == y.dtype
