"""Model files: every option of every layer survives save -> load bit for bit; every kind of
damaged, truncated, hostile or inconsistent file is refused with a ValueError naming the file;
a killed save or a full disk leaves the previous file loadable."""
import errno
import hashlib
import io
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
import uuid
import warnings
import zipfile
import zlib

import numpy as np
import pytest

import fastq
import model_file_cases as cases
from fastq.layers import Dequantize, Quantize

HERE = os.path.dirname(os.path.abspath(__file__))
FORMAT1_FILE = os.path.join(HERE, "data", "model_format1.npz")   # fastq 0.1's Model.save
FORMAT2_FILE = os.path.join(HERE, "data", "model_format2.npz")   # the first settings-as-data main's

# ---------------------------------------------------------------------------------- round trip
_ATTRS = ("scale", "zero_point", "relu", "requant", "rounding", "dtype", "effective_scale", "input_scale",
          "input_zero_point", "per_channel", "mode", "reduce_range", "start_dim", "end_dim",
          "in_features", "out_features", "takes")


def _bits(a):
    a = np.asarray(a)
    return (str(a.dtype), a.shape, a.tobytes())


def _snapshot(layer):
    """Everything a layer holds that decides its outputs, comparable with ==."""
    d = {"type": type(layer).__name__, "repr": repr(layer)}
    for name in _ATTRS:
        if hasattr(layer, name):
            v = getattr(layer, name)
            d[name] = (type(v).__name__, str(v) if isinstance(v, np.dtype) else v)
    w = getattr(layer, "weight", None)
    if isinstance(w, fastq.QTensor):
        d["weight"] = (_bits(w.values), _bits(w.scale), _bits(w.zero_point), w.axis)
    elif w is not None:             # a float per-channel weight (batch norm)
        d["weight"] = _bits(w)
    for name in ("bias", "int_bias"):
        if getattr(layer, name, None) is not None:
            d[name] = _bits(getattr(layer, name))
    if hasattr(layer, "get_settings"):
        d["settings"] = layer.get_settings()
        d["arrays"] = {k: _bits(v) for k, v in layer.get_arrays().items()}
    return d


ALL_CASES = cases.all_cases()


@pytest.mark.parametrize("case", ALL_CASES, ids=[c[0] for c in ALL_CASES])
def test_round_trip_every_option(tmp_path, case):
    """Fails on fastq 0.1's .npz save / load: it dropped dtype, effective_scale, input_scale and
    input_zero_point (int8-output layers came back as uint8, "float64" as "float32")."""
    _, model, x = case
    path = tmp_path / "m.fqm"
    model.save(str(path))
    loaded = fastq.load(str(path))
    assert len(loaded) == len(model)
    for a, b in zip(model, loaded):
        assert _snapshot(b) == _snapshot(a)
    assert repr(loaded) == repr(model)
    if hasattr(model, "nodes"):
        assert _structure(loaded) == _structure(model)
    assert _output_bits(loaded(x)) == _output_bits(model(x))


def _structure(model):
    return ([(n.name, tuple(n.inputs), tuple(n.outputs)) for n in model.nodes],
            tuple(model.inputs), tuple(model.outputs))


def _output_bits(y):
    """Outputs as bytes (float32 compared bit for bit); several outputs come as a tuple."""
    ys = y if isinstance(y, tuple) else (y,)
    return [_bits(v) if isinstance(v, np.ndarray) else (type(v).__name__, v) for v in ys]


@pytest.fixture(params=["x86", "fbgemm", "qnnpack"])
def engine(request):
    """torch's quantized engine pinned while a test runs (the tests without torch still run)."""
    torch = pytest.importorskip("torch")
    if request.param not in torch.backends.quantized.supported_engines:
        pytest.skip("torch has no %s engine here" % request.param)
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = request.param
    yield request.param
    torch.backends.quantized.engine = previous


def test_round_trip_of_a_torch_model(tmp_path, engine):
    torch = pytest.importorskip("torch")
    import torch.ao.quantization as tq
    torch.manual_seed(0)
    m = torch.nn.Sequential(tq.QuantStub(), torch.nn.Linear(16, 12), torch.nn.ReLU(),
                            torch.nn.Linear(12, 5), tq.DeQuantStub()).eval()
    m.qconfig = tq.get_default_qconfig(engine)
    tq.fuse_modules(m, [["1", "2"]], inplace=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = tq.prepare(m)
        p(torch.randn(64, 16))
        tm = tq.convert(p)
    model = fastq.from_torch(tm, engine=engine)
    model.save(str(tmp_path / "t.fqm"))
    loaded = fastq.load(tmp_path / "t.fqm")                 # a PathLike works too
    x = cases.x_for(np.random.default_rng(1), (9, 16), 2.0)
    expected = tm(torch.from_numpy(x)).numpy()
    assert np.array_equal(loaded(x).view(np.uint32), expected.view(np.uint32))
    assert [_snapshot(a) for a in loaded] == [_snapshot(a) for a in model]


GRAPH_FAMILIES = ["order", "functional", "residual_unfused", "residual_fused", "concat", "nested",
                  "quant_wrapper", "tuple_out", "inplace", "dynamic"]


@pytest.mark.parametrize("family", GRAPH_FAMILIES)
def test_round_trip_of_torch_graph_families(tmp_path, engine, family):
    """Every model family of the graph tests, converted under each engine: the loaded model has
    the same nodes, settings and arrays, and its outputs equal torch's bit for bit."""
    pytest.importorskip("torch")
    import graph_models
    tm, xs = graph_models.FAMILIES[family](engine)
    model = fastq.from_torch(tm)
    model.save(str(tmp_path / "g.fqm"))
    loaded = fastq.load(str(tmp_path / "g.fqm"))
    assert _structure(loaded) == _structure(model)
    assert [_snapshot(a) for a in loaded] == [_snapshot(a) for a in model]
    bad, total = graph_models.mismatches(tm, loaded, xs)
    assert bad == 0 and total > 0


def test_every_registered_op_is_in_the_round_trip():
    """A new op registered in LAYER_TYPES fails here until the round trip covers it."""
    from fastq.layers._base import LAYER_TYPES
    covered = {type(layer).__name__ for _, model, _ in ALL_CASES for layer in model}
    assert sorted(set(LAYER_TYPES) - covered) == []


def test_saving_again_gives_the_same_bytes(tmp_path):
    _, model, _ = ALL_CASES[5]
    model.save(str(tmp_path / "a.fqm"))
    fastq.load(str(tmp_path / "a.fqm")).save(str(tmp_path / "b.fqm"))
    assert (tmp_path / "a.fqm").read_bytes() == (tmp_path / "b.fqm").read_bytes()


# ---------------------------------------------------------------------------------- file helpers
def _mf():
    from fastq import model_file
    return model_file


def _small_model():
    rng = np.random.default_rng(3)
    fc = fastq.QuantizedLinear(cases.weight(rng, 4, 6, True), rng.standard_normal(4).astype(np.float32),
                               0.05, 100, requant="fbgemm")
    dyn = fastq.DynamicQuantizedLinear(cases.weight(rng, 3, 4, False), rng.standard_normal(3).astype(np.float32))
    return fastq.Model([Quantize(0.04, 128), fc, Dequantize(), dyn], names=["quant", "fc", "dequant", "dyn"])


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.fqm"
    _small_model().save(str(path))
    return path


def _split(data):
    mf = _mf()
    _, _, n, _ = struct.unpack_from("<8sII32s", data)
    start = -(-(48 + n) // mf.ALIGN) * mf.ALIGN
    return json.loads(data[48:48 + n]), data[start:]


def _join(header, payload, version=None, text=None, rehash_payload=True):
    """A file with correct checksums: what a hostile writer would make."""
    mf = _mf()
    if rehash_payload and isinstance(header, dict) and isinstance(header.get("payload"), dict):
        header["payload"]["sha256"] = hashlib.sha256(payload).hexdigest()
    if text is None:
        text = json.dumps(header).encode()
    pad = bytes(-(-(48 + len(text)) // mf.ALIGN) * mf.ALIGN - 48 - len(text))
    prefix = struct.pack("<8sII32s", mf.MAGIC, mf.VERSION if version is None else version, len(text),
                         hashlib.sha256(text).digest())
    return prefix + text + pad + payload


def _refused(path, *fragments):
    with pytest.raises(ValueError) as e:
        fastq.load(str(path))
    msg = str(e.value)
    assert str(path) in msg, msg
    for f in fragments:
        assert f in msg, msg
    return msg


def _node(h, name):
    return next(n for n in h["nodes"] if n["name"] == name)


def _array(h, node, role):
    aname = _node(h, node)["arrays"][role]
    return next(a for a in h["arrays"] if a["name"] == aname)


# ---------------------------------------------------------------------------------- damaged files
def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.fqm"
    path.write_bytes(b"")
    _refused(path, "empty")


def test_not_a_model_file(tmp_path):
    path = tmp_path / "text.fqm"
    path.write_bytes(b"hello, this is not a model\n" * 10)
    _refused(path, "not a fastq model file")


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastq.load(str(tmp_path / "nothing.fqm"))


def test_every_truncation_is_refused(small):
    data = small.read_bytes()
    with open(small, "r+b") as f:              # cut in place, longest first: no file per case
        for n in reversed(range(len(data))):
            f.truncate(n)
            f.flush()
            _refused(small)
    small.write_bytes(data + b"\0")
    _refused(small, "unexpected bytes after the payload")


def test_every_flipped_byte_is_refused(small):
    data = small.read_bytes()
    with open(small, "r+b") as f:              # flip in place and back
        for mask in (0x01, 0x80):
            for i in range(len(data)):
                f.seek(i)
                f.write(bytes([data[i] ^ mask]))
                f.flush()
                _refused(small)
                f.seek(i)
                f.write(data[i:i + 1])
        f.flush()
    assert small.read_bytes() == data
    small.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    _refused(small, "payload checksum mismatch")
    i = 48 + 10
    small.write_bytes(data[:i] + bytes([data[i] ^ 1]) + data[i + 1:])
    _refused(small, "header checksum mismatch")


def test_the_untouched_file_loads(small):
    assert _snapshot(fastq.load(str(small))[1]) == _snapshot(_small_model()[1])
    h, payload = _split(small.read_bytes())
    assert [n["op"] for n in h["nodes"]] == ["Quantize", "QuantizedLinear", "Dequantize", "DynamicQuantizedLinear"]
    assert all(a["offset"] % 64 == 0 for a in h["arrays"])


# Each tamper rewrites the file with correct checksums (a hostile or buggy writer), so only the
# structural checks can refuse it. (id, mutate(header, payload) -> payload or None, message)
def _set(path_, value):
    def mutate(h, p):
        obj = h
        for k in path_[:-1]:
            obj = obj[k] if not callable(k) else k(h)
        obj[path_[-1]] = value
    return mutate


def _on_array(node, role, **changes):
    def mutate(h, p):
        _array(h, node, role).update(changes)
    return mutate


def _on_node(node, **changes):
    def mutate(h, p):
        _node(h, node).update(changes)
    return mutate


def _on_settings(node, **changes):
    def mutate(h, p):
        _node(h, node)["settings"].update(changes)
    return mutate


def _swap_shape(h, p):
    a = _array(h, "fc", "weight")
    a["shape"] = a["shape"][::-1]


def _overlap(h, p):
    _array(h, "fc", "bias")["offset"] = _array(h, "fc", "weight")["offset"]


def _duplicate_array_name(h, p):
    _array(h, "fc", "bias")["name"] = _array(h, "fc", "weight")["name"]


def _unused_array(h, p):
    del _node(h, "dyn")["arrays"]["bias"]


def _shared_array(h, p):
    _node(h, "dyn")["arrays"]["bias"] = _node(h, "fc")["arrays"]["bias"]


def _dup_node(h, p):
    _node(h, "dequant")["name"] = "fc"


def _cycle(h, p):
    _node(h, "quant")["inputs"] = list(_node(h, "dyn")["outputs"])


def _self_loop(h, p):
    n = _node(h, "dequant")
    n["inputs"] = list(n["outputs"])


def _two_producers(h, p):
    _node(h, "dequant")["outputs"] = list(_node(h, "fc")["outputs"])


def _output_is_input(h, p):
    _node(h, "quant")["outputs"] = list(h["inputs"])


def _wrong_dtype_bias(h, p):
    _array(h, "fc", "bias")["dtype"] = "int32"        # same size; fbgemm layers take a float bias


def _short_channel_scales(h, p):
    a = _array(h, "fc", "weight_scale")
    a["shape"] = [a["shape"][0] - 1]
    a["nbytes"] -= 8
    end = a["offset"] + a["nbytes"]
    return p[:end] + bytes(8) + p[end + 8:]             # the padding stays zero


def _long_bias(h, p):
    a = _array(h, "fc", "bias")
    a["shape"] = [a["shape"][0] + 1]
    a["nbytes"] += 4                                 # reads into the padding after it


def _gap_bytes(h, p):
    a = _array(h, "fc", "weight")
    end = a["offset"] + a["nbytes"]
    return p[:end] + b"\x01" + p[end + 1:]


def _drop_array(h, p, node, role):
    a = _array(h, node, role)
    h["arrays"].remove(a)
    del _node(h, node)["arrays"][role]
    return p[:a["offset"]] + bytes(a["nbytes"]) + p[a["offset"] + a["nbytes"]:]


def _negative_zero_point_for_uint8(h, p):
    _node(h, "fc")["settings"]["zero_point"] = -1


TAMPERS = [
    ("shape-swapped", _swap_shape, "node 'fc'"),
    ("shape-nbytes-mismatch", _on_array("fc", "weight", shape=[4, 7]), "nbytes"),
    ("shape-and-nbytes-too-big", _on_array("fc", "weight", shape=[400, 6], nbytes=2400), "outside"),
    ("shape-negative", _on_array("fc", "weight", shape=[-4, -6]), "outside [0,"),
    ("shape-bool", _on_array("fc", "weight", shape=[True, 24]), "expected an integer"),
    ("shape-float", _on_array("fc", "weight", shape=[4.0, 6]), "expected an integer"),
    ("shape-string", _on_array("fc", "weight", shape="4,6"), "'shape' must be a list"),
    ("shape-9-dims", _on_array("fc", "weight", shape=[1] * 9), "dimensions"),
    ("dtype-uint8-weight", _on_array("fc", "weight", dtype="uint8"), "node 'fc'"),
    ("dtype-int32-bias", _wrong_dtype_bias, "node 'fc'"),
    ("dtype-float16", _on_array("fc", "bias", dtype="float16", nbytes=8), "not one of"),
    ("dtype-object", _on_array("fc", "bias", dtype="object"), "not one of"),
    ("dtype-int64", _on_array("fc", "weight_zero_point", dtype="int64"), "not one of"),
    ("offset-misaligned", _on_array("fc", "bias", offset=1), "not a multiple"),
    ("offset-negative", _on_array("fc", "bias", offset=-64), "outside"),
    ("offset-past-end", _on_array("fc", "bias", offset=1 << 40), "outside"),
    ("offset-overlap", _overlap, "overlap"),
    ("offset-string", _on_array("fc", "bias", offset="0"), "'offset' must be an integer"),
    ("nbytes-huge", _set(["payload", "nbytes"], 1 << 40), "truncated"),
    ("per-channel-scales-short", _short_channel_scales, "node 'fc'"),
    ("bias-long", _long_bias, "node 'fc'"),
    ("array-name-twice", _duplicate_array_name, "declared twice"),
    ("array-unused", _unused_array, "used by no node"),
    ("array-shared", _shared_array, "already used by node"),
    ("array-undeclared", _on_node("fc", arrays={"weight": "nope"}), "does not declare"),
    ("array-unknown-role", lambda h, p: _node(h, "fc")["arrays"].update(extra=_node(h, "dyn")["arrays"].pop("bias")),
     "unknown array"),
    ("array-missing-weight", lambda h, p: _drop_array(h, p, "dyn", "weight"), "node 'dyn'"),
    ("gap-not-zero", _gap_bytes, "non-zero bytes between arrays"),
    ("op-unknown", _on_node("fc", op="Conv2d"), "unknown op 'Conv2d'"),
    ("op-not-a-string", _on_node("fc", op=7), "'op' must be a string"),
    ("setting-unknown", _on_settings("fc", colour="blue"), "unknown setting 'colour'"),
    ("setting-out-of-range", _on_settings("fc", zero_point=300), "zero_point"),
    ("setting-negative-zero-point", _negative_zero_point_for_uint8, "zero_point"),
    ("setting-negative-scale", _on_settings("fc", scale=-0.5), "scale"),
    ("setting-zero-scale", _on_settings("quant", scale=0.0), "scale"),
    ("setting-huge-scale", _on_settings("quant", scale=1e300), "scale"),
    ("setting-bad-requant", _on_settings("fc", requant="fast"), "requant"),
    ("setting-bad-dtype", _on_settings("fc", dtype="int16"), "dtype"),
    ("setting-bad-rounding", _on_settings("fc", rounding="up"), "rounding"),
    ("setting-bad-effective-scale", _on_settings("fc", effective_scale="float16"), "effective_scale"),
    ("setting-bad-mode", _on_settings("dyn", mode="tflite"), "mode"),
    ("setting-relu-string", _on_settings("fc", relu="yes"), "relu"),
    ("setting-reduce-range-int", _on_settings("dyn", reduce_range=1), "reduce_range"),
    ("setting-nested-list", _on_settings("fc", scale=[[0.1]]), "must be a string, number"),
    ("setting-object", _on_settings("fc", scale={"a": 1}), "must be a string, number"),
    ("setting-list-for-a-scalar", _on_settings("fc", scale=[0.1]), "node 'fc' (QuantizedLinear): scale"),
    ("setting-long-list", _on_settings("fc", scale=[0.1] * 65), "at most 64"),
    ("setting-huge-int", _on_settings("fc", zero_point=10 ** 30), "int64"),
    ("per-channel-flag-off", _on_settings("fc", per_channel=False), "node 'fc'"),
    ("per-channel-flag-on", _on_settings("dyn", per_channel=True), "node 'dyn'"),
    ("settings-not-object", _on_node("fc", settings=[]), "'settings' must be an object"),
    ("node-name-twice", _dup_node, "used twice"),
    ("node-name-empty", _on_node("fc", name=""), "non-empty string"),
    ("node-no-outputs", _on_node("dequant", outputs=[]), "produces no value"),
    ("node-two-inputs", lambda h, p: _node(h, "dequant")["inputs"].append(h["inputs"][0]),
     "takes 1 input(s), the file gives it 2"),
    ("node-two-outputs", lambda h, p: _node(h, "dequant")["outputs"].append("extra"), "gives 1 output"),
    ("node-unknown-key", _on_node("fc", colour=1), "unknown key"),
    ("node-not-object", lambda h, p: h["nodes"].__setitem__(0, "quant"), "expected an object"),
    ("edge-dangling", _on_node("fc", inputs=["nowhere"]), "produced by no node"),
    ("edge-cycle", _cycle, "cycle"),
    ("edge-self-loop", _self_loop, "cycle"),
    ("value-two-producers", _two_producers, "already produced"),
    ("value-overwrites-input", _output_is_input, "already produced by a model input"),
    ("output-dangling", _set(["outputs"], ["nowhere"]), "model output 'nowhere'"),
    ("inputs-twice", _set(["inputs"], ["input", "input"]), "listed twice"),
    ("inputs-not-list", _set(["inputs"], "input"), "'inputs' must be a list"),
    ("nodes-not-list", _set(["nodes"], {}), "'nodes' must be a list"),
    ("arrays-not-list", _set(["arrays"], {}), "'arrays' must be a list"),
    ("array-entry-not-object", lambda h, p: h["arrays"].append(3), "expected an object"),
    ("format-wrong", _set(["format"], "onnx"), "format"),
    ("format-missing", lambda h, p: h.pop("format"), "'format' is missing"),
    ("payload-missing", lambda h, p: h.pop("payload"), "'payload' is missing"),
    ("payload-sha-not-hex", lambda h, p: h["payload"].update(sha256="z" * 64), "hex"),
    ("header-unknown-key", _set(["extra"], 1), "unknown key"),
]


@pytest.mark.parametrize("mutate,fragment", [t[1:] for t in TAMPERS], ids=[t[0] for t in TAMPERS])
def test_tampered_file_is_refused(small, mutate, fragment):
    h, payload = _split(small.read_bytes())
    sha = h["payload"]["sha256"]
    new_payload = mutate(h, payload)
    if isinstance(new_payload, bytes):
        payload = new_payload
    rehash = isinstance(h.get("payload"), dict) and h["payload"].get("sha256") == sha
    small.write_bytes(_join(h, payload, rehash_payload=rehash))
    _refused(small, fragment)


def _paths(obj, prefix=()):
    yield prefix
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        yield from _paths(v, prefix + (k,))


def _random_json(rng, depth=0):
    kind = int(rng.integers(0, 9 if depth < 2 else 6))
    if kind == 6:
        return [_random_json(rng, depth + 1) for _ in range(rng.integers(0, 3))]
    if kind == 7:
        return {"name": _random_json(rng, depth + 1)}
    return [None, True, [0, 1, -1, 3, 64, 2**31, -2**40, 2**70][rng.integers(0, 8)],
            [0.0, -1.5, 1e-30, 1e300, 0.05][rng.integers(0, 5)], "x", "weight", None, None, {}][kind]


def test_random_header_mutations_raise_only_value_error(small):
    """500 hostile headers (one value replaced by a random JSON value, checksums fixed): each
    either loads or raises ValueError naming the file; never another exception."""
    data = small.read_bytes()
    rng = np.random.default_rng(int(os.environ.get("FASTQ_TEST_SEED", "0")))
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(500):
        h, payload = _split(data)
        paths = [p for p in _paths(h) if p]
        where = paths[rng.integers(0, len(paths))]
        obj = h
        for k in where[:-1]:
            obj = obj[k]
        obj[where[-1]] = _random_json(rng)
        small.write_bytes(_join(h, payload, rehash_payload=where[:2] != ("payload", "sha256")))
        try:
            fastq.load(str(small))
            outcomes["loaded"] += 1
        except ValueError as e:
            assert str(small) in str(e)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 400, outcomes


def _graph_file(tmp_path):
    path = tmp_path / "graph.fqm"
    cases.graph_cases()[0][1].save(str(path))
    return path


@pytest.mark.parametrize("mutate,fragment", [
    (lambda h: _node(h, "add")["inputs"].pop(), "node 'add' (QuantizedAdd): takes 2 input(s), the file gives it 1"),
    (lambda h: _node(h, "add")["inputs"].append("a"), "takes 2 input(s), the file gives it 3"),
    (lambda h: _node(h, "fc1").update(inputs=["s"]), "cycle"),
    (lambda h: _node(h, "cat")["inputs"].append("nowhere"), "input 'nowhere' is produced by no node"),
    (lambda h: _node(h, "mul").update(outputs=["s"]), "already produced by node 'add'"),
    (lambda h: h.update(outputs=["z", "y", "gone"]), "model output 'gone'"),
    (lambda h: _node(h, "view").update(op="Squeeze"), "unknown setting 'shape'"),
    (lambda h: _node(h, "view")["settings"].update(shape=[None, -1, -1]), "-1 appears more than once"),
    (lambda h: _node(h, "p")["settings"].update(dims=[0, "2", 1]), "dims"),
    (lambda h: _node(h, "item")["settings"].update(index=1.5), "index"),
], ids=["add-one-input", "add-three-inputs", "cycle-through-add", "cat-dangling", "two-producers",
        "output-dangling", "op-swapped", "reshape-two-minus-ones", "permute-string", "getitem-float"])
def test_tampered_graph_file_is_refused(tmp_path, mutate, fragment):
    path = _graph_file(tmp_path)
    h, payload = _split(path.read_bytes())
    mutate(h)
    path.write_bytes(_join(h, payload))
    _refused(path, fragment)


def test_payload_checksum_is_checked(small):
    h, payload = _split(small.read_bytes())
    payload = bytes([payload[0] ^ 1]) + payload[1:]
    small.write_bytes(_join(h, payload, rehash_payload=False))
    _refused(small, "payload checksum mismatch")


@pytest.mark.parametrize("text,fragment", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[1, 2, 3]", "expected a JSON object"),
    (b"null", "expected a JSON object"),
    (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
    (b'{"format": "fastq.Model", "format": "fastq.Model"}', "appears twice"),
    (b'{"format": NaN}', "not a JSON number"),
    (b'{"format": Infinity}', "not a JSON number"),
    (b"", "not valid JSON"),
], ids=["garbage", "not-utf8", "list", "null", "deep-nesting", "duplicate-key", "nan", "inf", "empty"])
def test_header_that_is_not_a_json_object(small, text, fragment):
    h, payload = _split(small.read_bytes())
    small.write_bytes(_join(h, payload, text=text))
    _refused(small, fragment)


def test_a_long_cycle_is_found_in_linear_time(small):
    """20 000 Identity nodes listed last-first, the first one fed by the last: a quadratic
    check would take minutes."""
    h, payload = _split(small.read_bytes())
    n = 20000
    h["nodes"] += [{"name": "id%d" % i, "op": "Identity", "inputs": ["v%d" % ((i - 1) % n)],
                    "outputs": ["v%d" % i], "settings": {}, "arrays": {}} for i in reversed(range(n))]
    small.write_bytes(_join(h, payload))
    _refused(small, "cycle through node(s) 'id")


def test_nan_setting_is_refused(small):
    h, payload = _split(small.read_bytes())
    text = json.dumps(h).replace('"scale": 0.04', '"scale": NaN').encode()
    assert b"NaN" in text
    small.write_bytes(_join(h, payload, text=text))
    _refused(small, "not a JSON number")


@pytest.mark.parametrize("version", [0, 1, 2, 4, 2**32 - 1])
def test_unknown_version(small, version):
    h, payload = _split(small.read_bytes())
    small.write_bytes(_join(h, payload, version=version))
    _refused(small, "format version %d" % version)


def test_header_length_over_the_limit(small):
    data = bytearray(small.read_bytes())
    struct.pack_into("<I", data, 12, (16 << 20) + 1)
    small.write_bytes(bytes(data))
    _refused(small, "over the limit")


def test_nonzero_padding_after_the_header(small):
    data = small.read_bytes()
    h, payload = _split(data)
    good = _join(h, payload)
    _, _, n, _ = struct.unpack_from("<8sII32s", good)
    assert (48 + n) % 64, "this header length leaves no padding; change the small model"
    small.write_bytes(good[:48 + n] + b"\x01" + good[48 + n + 1:])
    _refused(small, "non-zero bytes between the header and the payload")


def _peak_bytes_of_load(path):
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as e:
            fastq.load(str(path))
        return tracemalloc.get_traced_memory()[1], str(e.value)
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind", ["array-beyond-file", "payload-beyond-file", "many-huge-arrays",
                                  "consistent-but-padded"])
def test_hostile_2mb_file_fails_small(small, kind):
    """A 2 MB file whose header asks for terabytes: refused before any big allocation.
    (numpy reports its array buffers to tracemalloc, so the peak covers them.)"""
    h, payload = _split(small.read_bytes())
    big = 2 << 20
    payload = payload + bytes(-len(payload) % 64)
    end = len(payload)
    payload += bytes(big)
    h["payload"]["nbytes"] = len(payload)
    side = 2**31 - 1
    if kind == "array-beyond-file":
        h["arrays"].append({"name": "huge", "dtype": "int8", "shape": [side, side], "offset": end,
                            "nbytes": side * side})
        _node(h, "fc")["arrays"]["huge"] = "huge"
    elif kind == "payload-beyond-file":
        h["payload"]["nbytes"] = 1 << 61
    elif kind == "many-huge-arrays":
        for i in range(2000):
            h["arrays"].append({"name": "huge%d" % i, "dtype": "float64", "shape": [side, side, side],
                                "offset": end, "nbytes": 8 * side ** 3})
    else:  # a 2 MB weight for a 4x6 layer: the file is consistent, the layer refuses it
        h["arrays"].append({"name": "huge", "dtype": "int8", "shape": [big // 6, 6], "offset": end,
                            "nbytes": big // 6 * 6})
        h["arrays"].remove(_array(h, "fc", "weight"))
        _node(h, "fc")["arrays"]["weight"] = "huge"
        h["payload"]["nbytes"] = len(payload)
    small.write_bytes(_join(h, payload))
    assert os.path.getsize(small) > big
    peak, msg = _peak_bytes_of_load(small)
    assert str(small) in msg
    assert peak < 20 << 20, (peak, msg)


# ---------------------------------------------------------------------------------- format 1
def _zip_members(path):
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _npy(a):
    bio = io.BytesIO()
    np.save(bio, a, allow_pickle=True)
    return bio.getvalue()


def _write_zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _format1_meta(members):
    return json.loads(str(np.load(io.BytesIO(members["__fastq__.npy"]))))


def test_format1_file_loads():
    """tests/data/model_format1.npz was written by fastq 0.1's Model.save (cases.format1_model)."""
    model = cases.format1_model()
    with pytest.warns(UserWarning, match="format-1"):
        loaded = fastq.load(FORMAT1_FILE)
    x = cases.x_for(np.random.default_rng(4), (6, 2, 4), 2.0)
    assert np.array_equal(loaded(x).view(np.uint32), model(x).view(np.uint32))
    assert [_snapshot(a) for a in loaded] == [_snapshot(a) for a in model]


def test_format2_file_loads():
    """tests/data/model_format2.npz: written by main's .npz save of every setting (f758d05)."""
    model = cases.format2_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = fastq.load(FORMAT2_FILE)
    x = cases.x_for(np.random.default_rng(4), (6, 2, 4), 2.0)
    assert np.array_equal(loaded(x).view(np.uint32), model(x).view(np.uint32))
    assert [_snapshot(a) for a in loaded] == [_snapshot(a) for a in model]
    assert loaded[9].dtype == np.int8 and loaded[9].effective_scale == "float64"


def _as_graph_meta(meta):
    """Format 2 as the graph branch wrote it: each layer with its inputs and outputs."""
    prev = "input"
    for cfg in meta["layers"]:
        cfg["inputs"], cfg["outputs"] = [prev], [cfg["name"]]
        prev = cfg["name"]
    meta["inputs"], meta["outputs"] = ["input"], [prev]
    return meta


@pytest.mark.parametrize("cycle", [False, True])
def test_format2_graph_form(tmp_path, cycle):
    members = _zip_members(FORMAT2_FILE)
    meta = _as_graph_meta(_format1_meta(members))
    if cycle:
        meta["layers"][0]["inputs"] = [meta["layers"][3]["name"]]
    members["__fastq__.npy"] = _npy(np.array(json.dumps(meta)))
    path = tmp_path / "graph2.npz"
    _write_zip(path, members)
    if cycle:
        _refused(path, "cycle", "format-2")
        return
    loaded = fastq.load(str(path))
    model = cases.format2_model()
    x = cases.x_for(np.random.default_rng(4), (6, 2, 4), 2.0)
    assert np.array_equal(loaded(x).view(np.uint32), model(x).view(np.uint32))


@pytest.mark.parametrize("change,fragment", [
    (lambda m, a: m["layers"][2]["settings"].update(zero_point=999), "node 'fc1' (QuantizedLinear): zero_point"),
    (lambda m, a: m["layers"][2].update(type="Conv2d"), "unknown op 'Conv2d'"),
    (lambda m, a: m["layers"][2]["settings"].update(colour=1), "unknown setting"),
    (lambda m, a: m["layers"][2]["settings"].update(relu=[[1]]), "must be a string, number"),
    (lambda m, a: m["layers"][2].pop("settings"), "expected an object with name, settings, type"),
    (lambda m, a: m["layers"][3].update(name="fc1"), "used twice"),
    (lambda m, a: a.__setitem__("2.bias.npy", _npy(np.zeros(13, np.float32))), "node 'fc1'"),
    (lambda m, a: a.__setitem__("2.extra.npy", _npy(np.zeros(3, np.float32))), "unknown array 'extra'"),
    (lambda m, a: a.__setitem__("42.bias.npy", _npy(np.zeros(3, np.float32))), "used by no node"),
], ids=["zero-point", "unknown-op", "unknown-setting", "setting-list", "no-settings", "duplicate-name",
        "bias-shape", "unknown-array", "orphan-array"])
def test_format2_inconsistent_file(tmp_path, change, fragment):
    members = _zip_members(FORMAT2_FILE)
    meta = _format1_meta(members)
    change(meta, members)
    members["__fastq__.npy"] = _npy(np.array(json.dumps(meta)))
    path = tmp_path / "bad2.npz"
    _write_zip(path, members)
    _refused(path, fragment, "format-2")


def test_format1_truncations_are_refused(tmp_path):
    data = open(FORMAT1_FILE, "rb").read()
    path = tmp_path / "cut.npz"
    path.write_bytes(data)
    with open(path, "r+b") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in reversed(list(range(2, 200)) + list(range(200, len(data), 37))):
            f.truncate(n)
            f.flush()
            _refused(path)


def test_format1_flipped_bytes_never_crash(tmp_path):
    """Format 1 has no checksum over its JSON: a flip there may still load; it must never
    raise anything but ValueError."""
    data = open(FORMAT1_FILE, "rb").read()
    path = tmp_path / "flip.npz"
    path.write_bytes(data)
    outcomes = {"refused": 0, "loaded": 0}
    with open(path, "r+b") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(2, len(data), 5):
            f.seek(i)
            f.write(bytes([data[i] ^ 0x10]))
            f.flush()
            try:
                fastq.load(str(path))
                outcomes["loaded"] += 1
            except ValueError as e:
                assert str(path) in str(e)
                outcomes["refused"] += 1
            f.seek(i)
            f.write(data[i:i + 1])
            f.flush()
    assert outcomes["refused"] > outcomes["loaded"]


@pytest.mark.parametrize("source", [FORMAT1_FILE, FORMAT2_FILE], ids=["format1", "format2"])
def test_npz_random_description_mutations_raise_only_value_error(tmp_path, source):
    members = _zip_members(source)
    base = _format1_meta(members)
    rng = np.random.default_rng(int(os.environ.get("FASTQ_TEST_SEED", "0")))
    path = tmp_path / "mut.npz"
    refused = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(150):
            meta = json.loads(json.dumps(base))
            paths = [p for p in _paths(meta) if p]
            where = paths[rng.integers(0, len(paths))]
            obj = meta
            for k in where[:-1]:
                obj = obj[k]
            obj[where[-1]] = _random_json(rng)
            members["__fastq__.npy"] = _npy(np.array(json.dumps(meta)))
            _write_zip(path, members)
            try:
                fastq.load(str(path))
            except ValueError as e:
                assert str(path) in str(e)
                refused += 1
    assert refused > 100


def test_format1_zip_bomb_is_refused_unopened(tmp_path):
    members = _zip_members(FORMAT1_FILE)
    path = tmp_path / "bomb.npz"
    zeros = np.zeros(64 << 20, np.int8)                # 64 MiB that deflates to ~64 KiB
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr("2.bomb.npy", _npy(zeros), compress_type=zipfile.ZIP_DEFLATED)
    del zeros
    assert os.path.getsize(path) < 1 << 20
    peak, msg = _peak_bytes_of_load(path)
    assert "zip bomb" in msg and peak < 20 << 20, (peak, msg)


def test_format1_zip_directory_that_lies(tmp_path):
    """A member whose directory entry claims a small size but inflates to more: zipfile stops at
    the claimed size and the CRC no longer matches."""
    members = _zip_members(FORMAT1_FILE)
    path = tmp_path / "liar.npz"
    _write_zip(path, members, zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    cd = data.rfind(b"PK\x01\x02")                    # last central-directory entry
    (size,) = struct.unpack_from("<I", data, cd + 24)
    struct.pack_into("<I", data, cd + 24, size // 2)
    path.write_bytes(bytes(data))
    _refused(path)


def test_format1_npy_header_with_a_huge_shape(tmp_path):
    members = _zip_members(FORMAT1_FILE)
    raw = members["2.weight.npy"]
    members["2.weight.npy"] = raw.replace(b"(12, 8)", b"(1200000000, 8000000)")
    assert members["2.weight.npy"] != raw
    path = tmp_path / "shape.npz"
    _write_zip(path, members)
    peak, msg = _peak_bytes_of_load(path)
    assert "needs" in msg and peak < 20 << 20


def test_format1_pickled_member_is_not_unpickled(tmp_path):
    members = _zip_members(FORMAT1_FILE)
    members["2.bias.npy"] = _npy(np.array([{"a": 1}, None], dtype=object))
    path = tmp_path / "pickle.npz"
    _write_zip(path, members)
    _refused(path, "not a model array")


def test_format1_int8_layer_that_fastq_01_could_not_reload(tmp_path):
    """fastq 0.1 saved an int8-output layer without its dtype: its negative zero point cannot be
    a uint8 one. The message says how to re-export."""
    members = _zip_members(FORMAT1_FILE)
    meta = _format1_meta(members)
    meta["layers"][4]["zero_point"] = -5
    members["__fastq__.npy"] = _npy(np.array(json.dumps(meta)))
    path = tmp_path / "int8.npz"
    _write_zip(path, members)
    _refused(path, "re-export", "fc2", "zero_point")


@pytest.mark.parametrize("change,fragment", [
    (lambda m: m["layers"][2].update(type="Conv2d"), "unknown type"),
    (lambda m: m["layers"][2].update(relu="yes"), "wrong type"),
    (lambda m: m["layers"][2].pop("scale"), "missing"),
    (lambda m: m.update(version=7), "version 7"),
    (lambda m: m.update(version=True), "version True"),
    (lambda m: m.update(layers={}), "not a list"),
    (lambda m: m["layers"].pop(), "belongs to no layer"),
], ids=["unknown-type", "wrong-type", "missing-key", "version", "version-bool", "layers-not-list",
        "orphan-member"])
def test_format1_inconsistent_description(tmp_path, change, fragment):
    members = _zip_members(FORMAT1_FILE)
    meta = _format1_meta(members)
    change(meta)
    members["__fastq__.npy"] = _npy(np.array(json.dumps(meta)))
    path = tmp_path / "bad.npz"
    _write_zip(path, members)
    _refused(path, fragment)


def test_format1_without_description(tmp_path):
    members = _zip_members(FORMAT1_FILE)
    del members["__fastq__.npy"]
    path = tmp_path / "nometa.npz"
    _write_zip(path, members)
    _refused(path, "__fastq__")


# ---------------------------------------------------------------------------------- save
def test_save_over_an_existing_file_and_umask_permissions(tmp_path):
    path = tmp_path / "m.fqm"
    old = os.umask(0o027)
    try:
        _small_model().save(str(path))          # a new file: 0o666 & ~umask, as open(path, "wb")
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o640
    path.write_bytes(b"old")
    _small_model().save(str(path))
    assert fastq.load(str(path))[1].out_features == 4
    assert os.listdir(tmp_path) == ["m.fqm"]


def test_save_keeps_the_mode_and_follows_a_symlink(tmp_path):
    target = tmp_path / "v1.fqm"
    target.write_bytes(b"old")
    os.chmod(target, 0o604)
    link = tmp_path / "current.fqm"
    os.symlink("v1.fqm", link)
    _small_model().save(str(link))
    assert os.path.islink(link) and os.readlink(link) == "v1.fqm"
    assert os.stat(target).st_mode & 0o777 == 0o604
    assert fastq.load(str(link))[1].out_features == 4
    assert sorted(os.listdir(tmp_path)) == ["current.fqm", "v1.fqm"]


def test_save_refuses_what_it_cannot_write(tmp_path):
    class Mine:
        takes = "any"

        def __call__(self, x):
            return x
    with pytest.raises(TypeError, match="node '0'.*Mine"):
        fastq.Model([Mine()]).save(str(tmp_path / "m.fqm"))
    with pytest.raises(TypeError, match="path"):
        _small_model().save(3)
    with pytest.raises(TypeError, match="path"):
        fastq.load(None)
    with pytest.raises(OSError, match="no_such_folder"):
        _small_model().save(str(tmp_path / "no_such_folder" / "m.fqm"))
    assert os.listdir(tmp_path) == []


def test_save_refuses_what_load_would_refuse(tmp_path):
    layers = list(_small_model())
    with pytest.raises(ValueError, match="node name: expected a non-empty string of at most 1024"):
        fastq.Model(layers, names=["q", "x" * 1025, "d", "y"]).save(str(tmp_path / "m.fqm"))
    assert os.listdir(tmp_path) == []


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "m.fqm"
    good = cases.format1_model()
    good.save(str(path))
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError) as e:
        _small_model().save(str(path))
    assert str(path) in str(e.value) and e.value.errno == errno.EIO
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.fqm"]


_CHILD = r"""
import sys
import model_file_cases as cases
path = sys.argv[1]
models = [cases.big_model(1), cases.big_model(2)]
print("ready", flush=True)
i = 0
while True:
    models[i % 2].save(path)
    i += 1
"""


def test_sigkill_during_save_leaves_old_or_new(tmp_path):
    path = tmp_path / "m.fqm"
    models = [cases.big_model(1), cases.big_model(2)]
    x = cases.x_for(np.random.default_rng(0), (2, 2048))
    expected = [m(x).tobytes() for m in models]
    models[0].save(str(path))
    assert os.path.getsize(path) > 2 << 20
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(fastq.__file__)), HERE,
                                         env.get("PYTHONPATH", "")])
    rnd = random.Random(int(os.environ.get("FASTQ_TEST_SEED", "0")))
    seen = {0: 0, 1: 0}
    for _ in range(6):
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], env=env, stdout=subprocess.PIPE)
        try:
            assert child.stdout.readline().strip() == b"ready"
            time.sleep(rnd.uniform(0.0, 0.3))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
        got = fastq.load(str(path))(x).tobytes()
        assert got in expected
        seen[expected.index(got)] += 1
    # a killed save leaves its temporary file (no process is left to remove it); never the target
    leftovers = [f for f in os.listdir(tmp_path) if f != "m.fqm"]
    assert all(f.startswith(".m.fqm.") and f.endswith(".tmp") for f in leftovers)
    assert leftovers, "no kill landed inside a save (a save is ~95% of the child's loop)"


def test_full_disk_keeps_the_old_file(tmp_path):
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "fastq-test-%s" % uuid.uuid4().hex[:8], str(mnt)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root): %s" % r.stderr.decode().strip())
    try:
        path = mnt / "m.fqm"
        small = _small_model()
        small.save(str(path))
        before = path.read_bytes()
        with pytest.raises(OSError) as e:
            cases.big_model(3, n=512, k=2048).save(str(path))     # ~1 MB, the disk holds 512 KB
        assert e.value.errno == errno.ENOSPC and str(path) in str(e.value)
        assert path.read_bytes() == before
        assert os.listdir(mnt) == ["m.fqm"]
        assert _snapshot(fastq.load(str(path))[1]) == _snapshot(small[1])
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


# ---------------------------------------------------------------------------------- fastq model
def test_cli_check_and_convert(tmp_path, capsys):
    from fastq.tools.cli import main
    good, bad, new = tmp_path / "good.fqm", tmp_path / "bad.fqm", tmp_path / "new.fqm"
    _small_model().save(str(good))
    bad.write_bytes(good.read_bytes()[:-3])
    assert main(["model", "check", str(good)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok %s: 4 nodes (1 Quantize, 1 QuantizedLinear, 1 Dequantize, 1 DynamicQuantizedLinear)"
                          % good), out
    assert main(["model", "check", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert "REFUSED %s: truncated" % bad in out
    assert main(["model", "convert", FORMAT1_FILE, str(new)]) == 0
    assert "format-1" in capsys.readouterr().err
    assert new.read_bytes()[:8] == _mf().MAGIC
    x = cases.x_for(np.random.default_rng(4), (6, 2, 4), 2.0)
    assert np.array_equal(fastq.load(str(new))(x).view(np.uint32), cases.format1_model()(x).view(np.uint32))
    assert main(["model", "convert", str(bad), str(tmp_path / "x.fqm")]) == 2     # a user error
    assert not (tmp_path / "x.fqm").exists()
