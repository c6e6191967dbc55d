"""Settings as data: every option of every layer survives get_settings / from_state and
Model.save / fastq.load, with bitwise-equal outputs; settings are checked and read-only."""
import itertools

import numpy as np
import pytest

import fastq
from fastq.layers import _base, elementwise as ew

RNG = np.random.default_rng(11)
K, N = 7, 5


def _weight(per_channel, rng):
    w = rng.integers(-128, 128, (N, K), dtype=np.int8)
    if per_channel:
        return fastq.QTensor(w, rng.uniform(0.001, 0.02, N), rng.integers(-3, 4, N), axis=0)
    return fastq.QTensor(w, 0.0071, -2)


def _linear_cases():
    for requant, dtype, per_channel, bias, relu in itertools.product(
            ("fbgemm", "qnnpack", "tflite"), ("uint8", "int8"), (False, True), ("none", "float", "int32"),
            (False, True)):
        if bias == "int32" and requant != "tflite":
            continue
        roundings = ("double", "single", "double_up") if requant == "tflite" else ("double",)
        effective = ("float32", "float64") if requant == "tflite" else ("float32",)
        inputs = ((None, None), (0.031, None), (0.031, 7)) if requant == "tflite" else ((None, None),)
        bias_roundings = ("fused", "separate", "divide") if requant == "fbgemm" else ("fused",)
        for rounding, eff, (in_scale, in_zp), bias_rounding in itertools.product(
                roundings, effective, inputs, bias_roundings):
            if in_zp is not None and (rounding, eff) != ("double", "float32"):
                continue                    # keeps the product small; each axis still covered
            yield dict(requant=requant, dtype=dtype, per_channel=per_channel, bias=bias, relu=relu,
                       rounding=rounding, effective_scale=eff, input_scale=in_scale, input_zero_point=in_zp,
                       bias_rounding=bias_rounding)


def _make_linear(case, rng):
    w = _weight(case["per_channel"], rng)
    bias = {"none": None, "float": rng.normal(0, 0.5, N).astype(np.float32),
            "int32": rng.integers(-5000, 5000, N).astype(np.int32)}[case["bias"]]
    zp = -9 if case["dtype"] == "int8" else 121
    return fastq.QuantizedLinear(w, bias, 0.047, zp, relu=case["relu"], requant=case["requant"],
                                 rounding=case["rounding"], dtype=case["dtype"],
                                 input_scale=case["input_scale"], input_zero_point=case["input_zero_point"],
                                 effective_scale=case["effective_scale"], bias_rounding=case["bias_rounding"])


def _input(layer, rng):
    scale = layer.input_scale or 0.031
    zp = layer.input_zero_point if layer.input_zero_point is not None else 7
    return fastq.QTensor(rng.integers(0, 256, (3, K), dtype=np.uint8), scale, zp)


def _same_layer(a, b):
    assert type(a) is type(b)
    assert a.get_settings() == b.get_settings()
    ga, gb = a.get_arrays(), b.get_arrays()
    assert sorted(ga) == sorted(gb)
    for k in ga:
        assert ga[k].dtype == gb[k].dtype and np.array_equal(ga[k], gb[k]), k


LINEAR_CASES = list(_linear_cases())


@pytest.mark.parametrize("case", LINEAR_CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_quantized_linear_round_trip(case, tmp_path):
    rng = np.random.default_rng(len(str(case)))
    layer = _make_linear(case, rng)
    again = type(layer).from_state(layer.get_settings(), layer.get_arrays())
    _same_layer(layer, again)
    x = _input(layer, rng)
    y = layer(x)
    assert y.values.dtype == np.dtype(case["dtype"])
    assert np.array_equal(again(x).values, y.values)
    # through a model file: every setting (dtype, effective_scale, input qparams ...) comes back
    model = fastq.Model([layer])
    path = tmp_path / "m.fq"
    model.save(str(path))
    loaded = fastq.load(str(path))
    _same_layer(layer, loaded[0])
    assert np.array_equal(loaded[0](x).values, y.values)


@pytest.mark.parametrize("mode,per_channel,bias,relu,reduce_range", list(itertools.product(
    ("fbgemm", "qnnpack"), (False, True), (False, True), (False, True), (None, False, True))))
def test_dynamic_linear_round_trip(mode, per_channel, bias, relu, reduce_range, tmp_path):
    rng = np.random.default_rng(3)
    b = rng.normal(0, 0.5, N).astype(np.float32) if bias else None
    layer = fastq.DynamicQuantizedLinear(_weight(per_channel, rng), b, relu=relu, mode=mode,
                                         reduce_range=reduce_range)
    assert layer.reduce_range == (mode == "fbgemm" if reduce_range is None else reduce_range)
    x = rng.normal(0, 2, (4, K)).astype(np.float32)
    y = layer(x)
    again = type(layer).from_state(layer.get_settings(), layer.get_arrays())
    _same_layer(layer, again)
    assert np.array_equal(again(x).view(np.uint32), y.view(np.uint32))
    fastq.Model([layer]).save(str(tmp_path / "d.fq"))
    loaded = fastq.load(str(tmp_path / "d.fq"))[0]
    _same_layer(layer, loaded)
    assert np.array_equal(loaded(x).view(np.uint32), y.view(np.uint32))


@pytest.mark.parametrize("layer", [ew.Quantize(0.02, 3), ew.Quantize(0.5, -7, "int8"), ew.Dequantize(),
                                   ew.Identity(), ew.ReLU(), ew.ReLU6(), ew.Flatten(), ew.Flatten(0, 1)],
                         ids=repr)
def test_elementwise_round_trip(layer):
    _same_layer(layer, type(layer).from_state(layer.get_settings(), layer.get_arrays()))


def test_every_registered_layer_is_covered():
    assert {"QuantizedLinear", "DynamicQuantizedLinear", "Quantize", "Dequantize", "Identity", "ReLU",
            "ReLU6", "Flatten"} <= set(_base.LAYER_TYPES)


def test_settings_are_read_only():
    layer = _make_linear(LINEAR_CASES[0], RNG)
    with pytest.raises(AttributeError):
        layer.scale = 2.0
    with pytest.raises(AttributeError):
        layer.requant = "qnnpack"
    with pytest.raises(AttributeError):
        ew.Quantize(0.1, 3).zero_point = 300


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(relu="no"), TypeError, "relu"),
    (dict(relu=1), TypeError, "relu"),
    (dict(requant="onednn"), ValueError, "requant"),
    (dict(rounding=None), TypeError, "rounding"),
    (dict(dtype="int16"), TypeError, "dtype"),
    (dict(dtype="int8", zero_point=200), ValueError, "zero_point"),
    (dict(effective_scale="half"), ValueError, "effective_scale"),
    (dict(input_zero_point=3), ValueError, "input_zero_point"),
    (dict(scale=-1.0), ValueError, "scale"),
    (dict(bias=np.full(N, 1e300)), ValueError, "bias"),
])
def test_constructor_checks_name_the_setting(kwargs, exc, match):
    w = _weight(False, RNG)
    with pytest.raises(exc, match=match):
        fastq.QuantizedLinear(w, **kwargs)


def test_from_state_refuses_undeclared_settings_and_arrays():
    layer = _make_linear(LINEAR_CASES[0], RNG)
    with pytest.raises(ValueError, match="no setting"):
        type(layer).from_state(dict(layer.get_settings(), colour="red"), layer.get_arrays())
    with pytest.raises(ValueError, match="no array"):
        type(layer).from_state(layer.get_settings(), dict(layer.get_arrays(), extra=np.zeros(2)))


def test_repr_comes_from_the_settings():
    layer = fastq.QuantizedLinear(_weight(False, RNG), None, 0.1, -3, dtype="int8", requant="tflite",
                                  rounding="single", relu=True)
    r = repr(layer)
    assert r.startswith("QuantizedLinear(in_features=7, out_features=5")
    for part in ("dtype='int8'", "zero_point=-3", "requant='tflite'", "rounding='single'", "relu=True"):
        assert part in r
    assert "effective_scale" not in r          # defaults are left out
