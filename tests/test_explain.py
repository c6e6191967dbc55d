"""fastq.explain: a trace's output is the compiled kernel's (and fastq.reference's) in every
mode, dtype and bias kind; compare names the stage where two modes part; the hand computation
of the classic 2x2 walk-through gives its -0.7886 where torch gives -0.7907; price tags use
torch's MinMaxObserver qparams."""
import json
from fractions import Fraction

import numpy as np
import pytest

import fastq
from fastq import reference as R
from fastq.explain import observe, price_tags, with_mode
from fastq.tools.explain import (SEED_HAND, SEED_TORCH, SEED_W, SEED_X, random_dynamic, random_layer,
                                 seed_example, seed_float_output)

f32 = np.float32
CASES = [(rq, ro) for rq in ("fbgemm", "qnnpack") for ro in ("double",)] + \
        [("tflite", ro) for ro in ("double", "single", "double_up")]


def _rows(v, k):
    return v.reshape(int(np.prod(v.shape[:-1])), k)


def _kernel(layer, x, row, col):
    return int(_rows(layer(x).values, layer.out_features)[row, col])


def _check_trace(layer, x, row, col):
    t = layer.explain(x, row, col)
    assert t.output == _kernel(layer, x, row, col)
    assert t.checks["reference"] == t.output and t.checks["kernel"] == t.output
    w = layer.weight
    xv = _rows(x.values, layer.in_features).astype(np.int64)
    acc = int(R.qgemm(xv, x.zero_point, w.values, w.zero_point)[row, col])
    d = t.to_dict()
    assert d["acc"] == acc and d["output"] == t.output
    terms = d["acc_terms"]
    assert terms["sum_xw"] - terms["zx_colsum"] - terms["rowsum_zw"] + terms["k_zx_zw"] == acc
    assert sum(d["products"]) == acc
    real = _rows(fastq.dequantize(layer(x)), layer.out_features)[row, col]
    assert f32(t.real) == real
    return t


def test_trace_equals_kernel_random_layers(backend):
    """Property test, on every compiled backend this CPU runs: random layers over every mode,
    rounding, dtype in and out, per-tensor / per-channel weights (with zero points), bias
    none / float / int32, ReLU."""
    rng = np.random.default_rng(12)
    n_cases = 0
    for i in range(600):
        requant, rounding = CASES[i % len(CASES)]
        k, n, m = int(rng.integers(1, 40)), int(rng.integers(1, 6)), int(rng.integers(1, 4))
        layer, x = random_layer(requant, k, n, m, seed=int(rng.integers(2**31)), per_channel=bool(i % 2),
                                relu=bool(i % 3 == 0), bias=i % 5 != 0, rounding=rounding,
                                in_dtype="int8" if i % 4 in (1, 2) else "uint8",
                                out_dtype="int8" if i % 4 in (2, 3) else "uint8", w_zero_point=i % 7 < 3)
        if requant == "tflite" and i % 10 == 4:       # an int32 bias, used as is
            layer = fastq.QuantizedLinear(layer.weight, rng.integers(-2**20, 2**20, n).astype(np.int32),
                                          layer.scale, layer.zero_point, relu=layer.relu, requant="tflite",
                                          rounding=rounding, dtype=layer.dtype.name)
        _check_trace(layer, x, int(rng.integers(m)), int(rng.integers(n)))
        n_cases += 1
    assert n_cases == 600


def test_trace_equals_kernel_saturating_and_effective_scale():
    """Outputs driven into both clamps, and tflite's effective_scale='float64'."""
    for requant, rounding in CASES:
        for out_dtype in ("uint8", "int8"):
            layer, x = random_layer(requant, 16, 4, 3, seed=5, rounding=rounding, out_dtype=out_dtype)
            tiny = fastq.QuantizedLinear(layer.weight, layer.bias, layer.scale / 20, layer.zero_point,
                                         requant=requant, rounding=rounding, dtype=out_dtype,
                                         effective_scale="float64" if requant == "tflite" else "float32")
            outs = {_check_trace(tiny, x, row, col).output for row in range(3) for col in range(4)}
            qmin, qmax = (-128, 127) if out_dtype == "int8" else (0, 255)
            assert qmin in outs and qmax in outs


def _tie_layer(requant, rounding, bias=None, sy=4.0, dtype="uint8", zy=128):
    """s_x = s_w = 1 and s_y = 4: the multiplier is exactly 1/4 in every mode (tflite: q31 = 2^30,
    shift -1, so SRDHM halves exactly and the final shift meets the tie), so acc = 4k + 2 lands
    on an exact tie (k + 1/2) and each mode's tie rule decides."""
    w = fastq.QTensor(np.array([[1]], np.int8), 1.0, 0)
    zy = zy if dtype == "uint8" else zy - 128
    return fastq.QuantizedLinear(w, bias, sy, zy, requant=requant, rounding=rounding, dtype=dtype)


@pytest.mark.parametrize("requant,rounding", CASES)
@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_exact_ties(requant, rounding, dtype):
    layer = _tie_layer(requant, rounding, dtype=dtype)
    xs = np.array([[v] for v in range(0, 256)], np.uint8)        # acc = x - 100: odd and even, both signs
    x = fastq.QTensor(xs, 1.0, 100)
    ties = 0
    for row in range(0, 256, 3):
        t = _check_trace(layer, x, row, 0)
        pre = t.pre_round
        if pre.denominator == 2:
            ties += 1
            r = t.step("r+z_y").value - t.zero_point
            if requant in ("fbgemm", "qnnpack"):
                assert r % 2 == 0                                 # half to even
            elif rounding == "double" and pre < 0:
                assert r == pre - Fraction(1, 2)                  # ties away from zero
            else:
                assert r == pre + Fraction(1, 2)                  # ties toward +infinity
    assert ties > 15


def test_issue9_reproducer_follows_the_kernel():
    """The fused-bias near-cancellation case of issue 9 (K = N = 1): whatever the kernel does
    (two roundings today, torch's fmaf once the core lands it), the trace says the same."""
    w = fastq.QTensor(np.array([[50]], np.int8), 0.02826206386089325, 0)
    layer = fastq.QuantizedLinear(w, np.array([18.583898544311523], np.float32), 0.0012441023718565702, 0,
                                  requant="fbgemm")
    x = fastq.QTensor(np.array([[54]], np.uint8), 0.08724277466535568, 204)
    t = _check_trace(layer, x, 0, 0)
    assert t.output in (73, 74)


def test_near_ties_fbgemm_bias_cancellation():
    """Constructed near-.5 cases where the bias nearly cancels the accumulator."""
    rng = np.random.default_rng(9)
    for _ in range(120):
        sx, sw, sy = (float(f32(v)) for v in rng.uniform(0.001, 0.1, 3))
        wv = int(rng.integers(1, 128))
        xv = int(rng.integers(0, 256))
        zx = int(rng.integers(0, 256))
        acc = (xv - zx) * wv
        target = int(rng.integers(-50, 50)) + 0.5
        bias = f32(target * sy - acc * sx * sw)
        for requant in ("fbgemm", "qnnpack"):
            layer = fastq.QuantizedLinear(fastq.QTensor(np.array([[wv]], np.int8), sw, 0), np.array([bias]),
                                          sy, 128, requant=requant)
            _check_trace(layer, fastq.QTensor(np.array([[xv]], np.uint8), sx, zx), 0, 0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_overflowing_y_and_empty_k():
    """y = inf in float32 (a tiny output scale): rne gives INT32_MIN, q = 0, as the kernel does;
    K = 0: acc = 0, the output is the bias alone."""
    w = fastq.QTensor(np.array([[100, -100]], np.int8), 1.0, 0)
    x = fastq.QTensor(np.array([[255, 0]], np.uint8), 1.0, 0)
    for requant in ("fbgemm", "qnnpack"):
        t = _check_trace(fastq.QuantizedLinear(w, None, 1e-38, 0, requant=requant), x, 0, 0)
        assert not np.isfinite(t.step("y").value) and t.step("r").value == R.INT32_MIN and t.output == 0
        assert t.pre_round is None and "rounded" in str(t) and t.hand().partings
    w0 = fastq.QTensor(np.zeros((2, 0), np.int8), 0.1, 0)
    x0 = fastq.QTensor(np.zeros((3, 0), np.uint8), 0.1, 0)
    for requant, rounding in CASES:
        layer = fastq.QuantizedLinear(w0, np.array([0.5, -0.5], np.float32), 0.1, 10, requant=requant,
                                      rounding=rounding)
        t = _check_trace(layer, x0, 1, 1)
        assert t.acc == 0 and t.output == 5


def test_int8_output_explained():
    """Issue 8: an int8-output layer with a negative zero point; the trace's q, its real value and
    its sign are the kernel's (the old explain clamped to [0, 255] and printed MISMATCH)."""
    w = fastq.QTensor(np.array([[-100, 90, 3]], np.int8), 0.01, 0)
    x = fastq.QTensor(np.array([[130, 100, 100], [100, 60, 0]], np.uint8), 0.05, 100)   # q -95, -117
    for requant, rounding in CASES:
        layer = fastq.QuantizedLinear(w, None, 0.02, -20, requant=requant, rounding=rounding, dtype="int8")
        y = layer(x)
        for row in range(2):
            t = layer.explain(x, row, 0)
            assert -128 < t.output == int(y.values[row, 0]) < -20
            assert t.real == fastq.dequantize(y)[row, 0] < 0
            text = str(t)
            assert "-> all equal" in text and "MISMATCH" not in text
            assert "clamp(%d, -128, 127)" % t.step("r+z_y").value in text


@pytest.mark.parametrize("mode", ["fbgemm", "qnnpack"])
def test_dynamic_trace_equals_kernel_bits(mode):
    rng = np.random.default_rng(4)
    for i in range(40):
        k, n, m = int(rng.integers(1, 30)), int(rng.integers(1, 5)), int(rng.integers(1, 4))
        layer, x = random_dynamic(mode, k, n, m, seed=int(rng.integers(2**31)), per_channel=bool(i % 2),
                                  relu=i % 3 == 0, bias=i % 4 != 0)
        x = x * f32(10.0 ** rng.uniform(-4, 2))
        row, col = int(rng.integers(m)), int(rng.integers(n))
        t = layer.explain(x, row, col)
        y = layer(x)[row, col]
        assert np.float32(t.output).view(np.uint32) == np.float32(y).view(np.uint32)
        assert t.equal
        d = t.to_dict()
        sx, zx = layer.input_qparams(x)
        assert d["x"]["scale"] == sx and d["x"]["zero_point"] == zx
        xq = R.quantize_per_tensor(x.reshape(-1, k), sx, zx, "uint8")
        assert d["acc"] == int(R.qgemm(xq, zx, layer.weight.values, layer.weight.zero_point)[row, col])


def test_to_dict_is_json_and_steps_are_exact():
    layer, x = random_layer("fbgemm", 8, 3, 2, seed=1, per_channel=False)
    t = layer.explain(x, 1, 2)
    d = json.loads(json.dumps(t.to_dict()))
    assert d["output"] == t.output and d["acc"] == t.acc
    for s in t.steps:
        if s.kind == "f32" and s.exact is not None and s.name not in ("inv",):
            # one float32 operation: the float32 nearest the exact value
            v = float(s.value)
            lo, hi = np.nextafter(f32(v), f32(-np.inf)), np.nextafter(f32(v), f32(np.inf))
            assert abs(Fraction(v) - s.exact) <= min(abs(Fraction(float(lo)) - s.exact),
                                                     abs(Fraction(float(hi)) - s.exact))
    assert t.step("y").value == f32(t.step("f").value * t.step("mult").value)


# --------------------------------------------------------------------------- compare
def _cmp(la, lb, x, row=0, col=0):
    return la.explain(x, row, col).compare(lb.explain(x, row, col))


def test_compare_bias_float_vs_int32():
    layer = _tie_layer("fbgemm", "double", bias=np.array([0.4], np.float32), sy=0.5)
    x = fastq.QTensor(np.array([[100]], np.uint8), 1.0, 100)          # acc = 0: the bias alone
    c = _cmp(layer, with_mode(layer, "qnnpack"), x)
    assert c.parts_at == "bias"
    assert "float32" in c.a_how and "rounded to int32 first" in c.b_how
    assert c.values_part_at == "bias"
    assert (c.a.output, c.b.output) == (129, 128)                      # 0.4 / 0.5 -> 1 vs rne(0.4) = 0
    assert not c.same_output
    text = str(c)
    assert "They part at the bias stage" in text and "rounded to int32 first" in text


def test_compare_without_bias_parts_at_the_multiplier():
    layer, x = random_layer("fbgemm", 8, 3, 2, seed=2, bias=False)
    c = _cmp(layer, with_mode(layer, "qnnpack"), x, 1, 1)
    assert c.parts_at == "multiplier"
    assert "f32(f32(s_x * s_w) / s_y)" in c.a_how and "f32(1 / s_y)" in c.b_how


def test_compare_roundings():
    layer = _tie_layer("tflite", "double")
    x = fastq.QTensor(np.array([[94]], np.uint8), 1.0, 100)            # acc = -6: -1.5, a negative tie
    single, up = with_mode(layer, "tflite", "single"), with_mode(layer, "tflite", "double_up")
    c = _cmp(layer, single, x)
    assert c.parts_at == "scale" and "SaturatingRoundingDoublingHighMul" in c.a_how
    assert "no rounding yet" in c.b_how
    c = _cmp(layer, up, x)
    assert c.parts_at == "round"
    assert "ties away from zero" in c.a_how and "ties toward +infinity" in c.b_how
    assert c.values_part_at == "round" and (c.a.output, c.b.output) == (126, 127)
    assert _cmp(layer, layer, x).parts_at is None


def test_compare_dynamic_modes_part_at_the_input():
    layer, x = random_dynamic("fbgemm", 8, 3, 2, seed=0)
    c = _cmp(layer, with_mode(layer, "qnnpack"), x, 1, 2)
    assert c.parts_at == "input" and "reduce_range" in c.a_how and "[0, 255]" in c.b_how
    assert c.values_part_at == "input"


def test_compare_fbgemm_vs_tflite_with_bias():
    layer, x = random_layer("fbgemm", 8, 3, 2, seed=6)
    c = _cmp(layer, with_mode(layer, "tflite"), x)
    assert c.parts_at == "bias" and "ties away from zero" in c.b_how


# --------------------------------------------------------------------------- the hand computation
def test_seed_hand_vs_integer_path():
    layer, x_q, qp = seed_example()
    for col in range(2):
        t = layer.explain(x_q, 0, col)
        h = t.hand()
        assert round(h.hand, 4) == SEED_HAND[col] and round(h.real, 4) == SEED_TORCH[col]
        assert abs(sum(c for _, _, c, _ in h.partings) - h.difference) < 1e-12
        names = [p[0] for p in h.partings]
        assert "requantize" in names and "bias" not in names
        assert "-0.7886" in str(h) if col == 0 else "0.6932" in str(h)


def test_hand_names_bias_rounding_and_clamp():
    layer = _tie_layer("qnnpack", "double", bias=np.array([0.4], np.float32), sy=0.5)
    x = fastq.QTensor(np.array([[100]], np.uint8), 1.0, 100)
    h = layer.explain(x, 0, 0).hand()
    assert [p[0] for p in h.partings][0] == "bias"
    assert abs(h.hand - 0.4) < 1e-7 and h.real == 0.0
    clamped = fastq.QuantizedLinear(fastq.QTensor(np.array([[127]], np.int8), 1.0, 0), None, 1.0, 128)
    h = clamped.explain(fastq.QTensor(np.array([[255]], np.uint8), 1.0, 0), 0, 0).hand()
    assert "clamp" in [p[0] for p in h.partings]
    assert abs(sum(p[2] for p in h.partings) - h.difference) < 1e-9


# --------------------------------------------------------------------------- models
def _chain(tmp_path):
    l1, _ = random_layer("fbgemm", 6, 5, 1, seed=1, relu=True)
    l2, _ = random_layer("qnnpack", 5, 3, 1, seed=2)
    sx = 0.03
    model = fastq.Model([fastq.layers.Quantize(sx, 120), l1, l2, fastq.layers.Dequantize()],
                        ["quant", "fc1", "fc2", "dequant"])
    path = str(tmp_path / "m.npz")
    model.save(path)
    return fastq.load(path)


def test_model_explain(tmp_path):
    model = _chain(tmp_path)
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    h = model.layers[1](model.layers[0](x))
    y2 = model.layers[2](h)
    for node in ("fc2", 2):
        t = model.explain(x, node, 3, 1)
        assert t.output == int(y2.values[3, 1]) and t.equal
    t = model.explain(x, "fc1", 2, 4)
    assert t.output == int(h.values[2, 4])
    # an op without traces: its one refusal names the node, the op and the capability
    with pytest.raises(NotImplementedError, match="node 'dequant' \\(Dequantize\\).*'explain'"):
        model.explain(x, "dequant", 0, 0)
    with pytest.raises(ValueError, match="node"):
        model.explain(x, "fc9", 0, 0)
    with pytest.raises(ValueError, match="row"):
        model.explain(x, "fc2", 4, 0)


def test_explain_a_node_of_a_graph():
    """A DAG: two Linear branches of one Quantize, a quantized add, a Linear after it."""
    from fastq.layers.arith import QuantizedAdd
    fa, _ = random_layer("qnnpack", 6, 3, 1, seed=4)
    fb, _ = random_layer("fbgemm", 6, 3, 1, seed=5, per_channel=True)
    fc, _ = random_layer("tflite", 3, 2, 1, seed=6, out_dtype="int8")
    nodes = [fastq.Node("quant", fastq.layers.Quantize(0.05, 100), ("x",)), fastq.Node("a", fa, ("quant",)),
             fastq.Node("b", fb, ("quant",)), fastq.Node("add", QuantizedAdd(0.2, 128), ("a", "b")),
             fastq.Node("c", fc, ("add",)), fastq.Node("dequant", fastq.layers.Dequantize(), ("c",))]
    g = fastq.Model(nodes=nodes, inputs=("x",), outputs=("dequant",))
    x = np.random.default_rng(1).standard_normal((2, 6)).astype(np.float32)
    values = g.run_values(x)
    assert g.explain(x, "b", 1, 1).output == int(values["b"].values[1, 1])
    assert g.explain(x, 1, 0, 2).output == int(values["a"].values[0, 2])
    t = g.explain(x, "c", 1, 0)
    assert t.output == int(values["c"].values[1, 0]) and t.equal
    assert t.x["scale"] == 0.2 and t.x["values"].tolist() == values["add"].values[1].tolist()
    with pytest.raises(NotImplementedError, match="node 'add' \\(QuantizedAdd\\).*'explain'"):
        g.explain(x, "add", 0, 0)


# --------------------------------------------------------------------------- errors
def test_explain_errors():
    layer, x = random_layer()
    with pytest.raises(TypeError, match="layer"):
        fastq.explain(object(), x)
    with pytest.raises(TypeError, match="x"):
        layer.explain(x.values)
    with pytest.raises(ValueError, match="col: 99"):
        layer.explain(x, 0, 99)
    with pytest.raises(ValueError, match="row"):
        layer.explain(x, -1, 0)
    with pytest.raises(TypeError, match="row"):
        layer.explain(x, 0.5, 0)
    with pytest.raises(ValueError, match="x"):
        layer.explain(fastq.QTensor(np.zeros((1, 3), np.uint8), 0.1, 0))
    dyn, xf = random_dynamic()
    with pytest.raises(ValueError, match="x"):
        dyn.explain(np.full_like(xf, np.nan))
    with pytest.raises(TypeError, match="other"):
        layer.explain(x).compare("fbgemm")
    with pytest.raises(ValueError, match="requant"):
        with_mode(fastq.QuantizedLinear(layer.weight, np.zeros(4, np.int32), 0.1, 0, requant="tflite"), "fbgemm")


# --------------------------------------------------------------------------- price tags
def test_price_tags_the_walkthrough_table():
    """The walk-through's bounded fit: labels {-1, 0, 1, 2}, s = 3.9033, z = -1, and its table."""
    t = price_tags([1.99, 2.00, 0.59, 12.30, 8.50, 8.99], bits=2, dtype="int8", observer="tight", qrange=(-1, 2))
    assert round(t.scale, 4) == 3.9033 and t.zero_point == -1
    assert t.q.tolist() == [0, 0, -1, 2, 1, 1]
    assert np.round(t.dequantized.astype(np.float64), 2).tolist() == [3.90, 3.90, 0.00, 11.71, 7.81, 7.81]
    assert round(float(np.abs(t.loss).sum()), 2) == 6.87
    d = t.to_dict()
    assert d["levels_used"] == 4 and json.dumps(d)


def test_price_tags_minmax_two_bits():
    t = price_tags([1.99, 2.00, 0.59, 12.30, 8.50, 8.99], bits=2)
    assert (t.qmin, t.qmax) == (0, 3) and t.zero_point == 0 and t.scale == float(f32(f32(12.3) / f32(3)))
    assert t.q.tolist() == [0, 0, 0, 3, 2, 2]
    text = str(t)
    assert "scale = " in text and "|     total |" in text


def test_observer_matches_torch_minmax():
    torch = pytest.importorskip("torch")
    from torch.ao.quantization import MinMaxObserver
    rng = np.random.default_rng(7)
    checked = 0
    for i in range(80):
        v = (rng.standard_normal(int(rng.integers(1, 20))) * 10.0 ** rng.uniform(-3, 2) + rng.uniform(-3, 3))
        v = v.astype(np.float32)
        dtype = "uint8" if i % 2 == 0 else "int8"
        symmetric = i % 4 >= 2
        bits = 8 if i % 3 == 0 else int(rng.integers(1, 8))
        t = price_tags(v, bits=bits, dtype=dtype, symmetric=symmetric)
        kwargs = dict(dtype=torch.quint8 if dtype == "uint8" else torch.qint8,
                      qscheme=torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine)
        if bits < 8:
            kwargs.update(quant_min=t.qmin, quant_max=t.qmax)
        obs = MinMaxObserver(**kwargs)
        obs(torch.from_numpy(v))
        s, z = obs.calculate_qparams()
        assert (t.scale, t.zero_point) == (float(s), int(z)), (i, bits, dtype, symmetric)
        tq = torch.quantize_per_tensor(torch.from_numpy(v), float(s), int(z),
                                       torch.quint8 if dtype == "uint8" else torch.qint8)
        assert t.q.tolist() == np.clip(tq.int_repr().numpy().astype(np.int64), t.qmin, t.qmax).tolist()
        if bits == 8:
            assert np.array_equal(t.dequantized, tq.dequantize().numpy())
        checked += 1
    assert checked == 80


def test_histogram_observer_matches_torch():
    torch = pytest.importorskip("torch")
    from torch.ao.quantization import HistogramObserver
    rng = np.random.default_rng(8)
    for i in range(6):
        v = rng.standard_normal(50).astype(np.float32) * 3
        bits = 8 if i < 2 else 4
        t = price_tags(v, bits=bits, dtype="int8" if i % 2 else "uint8", observer="histogram")
        kw = dict(dtype=torch.qint8 if i % 2 else torch.quint8)
        if bits < 8:
            kw.update(quant_min=t.qmin, quant_max=t.qmax)
        obs = HistogramObserver(**kw)
        obs(torch.from_numpy(v))
        s, z = obs.calculate_qparams()
        assert (t.scale, t.zero_point) == (float(s), int(z))


def test_observe_errors():
    with pytest.raises(ValueError, match="values"):
        observe([], 0, 3)
    with pytest.raises(ValueError, match="observer"):
        observe([1.0], 0, 3, observer="percentile")
    with pytest.raises(ValueError, match="quant_min"):
        observe([1.0], 1, 3)
    with pytest.raises(ValueError, match="qmin"):
        observe([1.0], -1, 3, dtype="uint8")
    with pytest.raises(ValueError, match="bits"):
        price_tags([1.0], bits=9)


# --------------------------------------------------------------------------- the 2x2 walk-through
def test_seed_example_is_the_posts_numbers():
    layer, x_q, qp = seed_example()
    assert x_q.values.tolist() == [[90, 255]]
    assert (qp["sx"], qp["zx"]) == (0.0021285151597112417, 0)
    assert (qp["sy"], qp["zy"]) == (0.0058139534667134285, 136)
    assert np.round(fastq.dequantize(x_q).astype(np.float64), 4).tolist() == [[0.1916, 0.5428]]
    y = fastq.dequantize(layer(x_q))
    assert np.round(y.astype(np.float64), 4).tolist() == [list(SEED_TORCH)]


@pytest.mark.parametrize("engine", ["x86", "fbgemm", "qnnpack"])
def test_seed_example_against_torch(engine):
    torch = pytest.importorskip("torch")
    import torch.nn as nn
    import torch.ao.quantization as tq
    if engine not in torch.backends.quantized.supported_engines:
        pytest.skip("engine %s not built" % engine)
    requant = "qnnpack" if engine == "qnnpack" else "fbgemm"
    layer, x_q, qp = seed_example(requant)
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        model = nn.Sequential(tq.QuantStub(), nn.Linear(2, 2, bias=False), tq.DeQuantStub()).eval()
        with torch.no_grad():
            model[1].weight.copy_(torch.from_numpy(SEED_W))
        model.qconfig = tq.QConfig(activation=tq.MinMaxObserver.with_args(dtype=torch.quint8),
                                   weight=tq.MinMaxObserver.with_args(dtype=torch.qint8))
        prepared = tq.prepare(model)
        x = torch.from_numpy(SEED_X)
        with torch.no_grad():
            assert np.array_equal(prepared[1](x).numpy(), seed_float_output())   # the observer's y
            prepared(x)
            q = tq.convert(prepared)
            xq, yq, w = q[0](x), q[1](q[0](x)), q[1].weight()
    finally:
        torch.backends.quantized.engine = old
    assert (xq.q_scale(), xq.q_zero_point()) == (qp["sx"], qp["zx"])
    assert (w.q_scale(), w.q_zero_point()) == (qp["sw"], qp["zw"])
    assert np.array_equal(w.int_repr().numpy(), layer.weight.values)
    assert (yq.q_scale(), yq.q_zero_point()) == (qp["sy"], qp["zy"])
    for col in range(2):
        t = layer.explain(x_q, 0, col)
        assert t.output == int(yq.int_repr()[0, col])
        assert t.real == yq.dequantize().numpy()[0, col]
    manual = ((xq.int_repr().double() - xq.q_zero_point()) @ (w.int_repr().double() - w.q_zero_point()).T
              * (xq.q_scale() * w.q_scale())).numpy()
    # a float64 hand computation (not an integer of fastq's): the trace sums the dequantized
    # products in its own order, torch's double matmul in another, so equal to the last bits only
    assert [layer.explain(x_q, 0, c).hand().hand for c in range(2)] == pytest.approx(manual[0].tolist(), abs=1e-15)


# --------------------------------------------------------------------------- torch itself
def test_trace_equals_torch_static():
    """The trace of a layer imported from torch equals torch's output integer, per engine."""
    from torch_helpers import ENGINES, engine, make_linear, random_qinput, torch
    rng = np.random.default_rng(21)
    n = 0
    for eng in ENGINES:
        with engine(eng):
            for i in range(12):
                k, nout = int(rng.integers(1, 30)), int(rng.integers(1, 5))
                m = make_linear(rng, k, nout, per_channel=bool(i % 2), relu=i % 3 == 0, has_bias=i % 4 != 3,
                                w_zero_points=eng != "qnnpack" and i % 2 == 0)
                xt = random_qinput(rng, (3, k))
                expected = m(xt).int_repr().numpy()
                layer = fastq.QuantizedLinear.from_torch(m, engine=eng)
                x = fastq.QTensor.from_torch(xt)
                for row in range(3):
                    col = int(rng.integers(nout))
                    assert layer.explain(x, row, col).output == int(expected[row, col])
                    n += 1
    assert n == 36 * len(ENGINES)
    assert torch is not None


def test_trace_equals_torch_dynamic():
    from torch_helpers import ENGINES, engine, torch
    import torch.ao.nn.quantized.dynamic as nnqd
    rng = np.random.default_rng(22)
    for eng in ENGINES:
        with engine(eng):
            for i in range(6):
                k, nout = int(rng.integers(1, 30)), int(rng.integers(1, 5))
                w = torch.quantize_per_tensor(torch.from_numpy(rng.standard_normal((nout, k)).astype(np.float32)),
                                              0.02, 0, torch.qint8)
                m = nnqd.Linear(k, nout)
                m.set_weight_bias(w, torch.from_numpy(rng.standard_normal(nout).astype(np.float32)))
                x = rng.standard_normal((2, k)).astype(np.float32)
                expected = m(torch.from_numpy(x)).numpy()
                layer = fastq.DynamicQuantizedLinear.from_torch(m, engine=eng)
                for row in range(2):
                    col = int(rng.integers(nout))
                    y = layer.explain(x, row, col).output
                    assert np.float32(y).view(np.uint32) == expected[row, col].view(np.uint32)


def test_text_search_of_a_trace():
    """`"..." in trace` searches its walk-through (what str(trace) prints)."""
    layer, x = random_layer("fbgemm", 4, 2, 1, seed=3)
    t = layer.explain(x, 0, 1)
    assert "acc = %d" % t.acc in t and "all equal" in t and "MISMATCH" not in t
    assert ("fmaf(bias, inv, f)" in t) != ("f + b'" in t)     # the fused or the two-rounding bias add
