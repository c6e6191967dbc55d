"""Issue 16, the exported C and the export API: names never reach C raw, every value planned
with its shape (views, cat on any axis, transposes, broadcasting float ops), add / mul at the
extremes as the runtime runs them, constants that read back exactly, int32 sizes, an atomic
write. The oracle of every numeric check is the runtime (itself held to torch and to
fastq.reference elsewhere), run on the same samples one at a time as the C runs them, and the
C is compiled by a real compiler with -Wall -Wextra -Werror -pedantic."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

import fastq
from fastq import export, reference as R
from fastq.export import cgen
from fastq.export import plan as P
from fastq.export.plan import c_ident, float_literal
from fastq.layers import arith as A, elementwise as E, shape as S
from fastq.model import Model, Node
from firmware import harness

STRICT = ["-Wall", "-Wextra", "-Werror", "-pedantic", "-ffp-contract=off", "-O1"]


def _graph(nodes, out):
    return Model(nodes=nodes, inputs=("x",), outputs=(out,))


def _weight(seed, n, k):
    rng = np.random.default_rng(seed)
    return fastq.QTensor(rng.integers(-128, 128, (n, k)).astype(np.int8), 0.0113, 0)


def _x(seed, shape, lo=-4.0, hi=4.0):
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(np.float32)


def _per_sample(model, x):
    """The runtime's outputs, one sample per call (what net_run computes), as float bits."""
    y = np.concatenate([np.asarray(model(x[i:i + 1]), np.float32).reshape(1, -1) for i in range(len(x))])
    return y.view(np.uint32)


def _run_c(gens_and_x, tmp_path):
    """Compiles [(Generated, x)] into one host program; [(rc, y bits)] per model."""
    if shutil.which("gcc") is None:
        pytest.skip("no host gcc")
    t = harness.TARGETS["host"]
    cases = [harness.Case(g.name, g, x.reshape(len(x), -1)) for g, x in gens_and_x]
    exe = harness.build(t, cases, str(tmp_path))
    rc, out, err = harness.run(t, exe)
    assert rc == 0, err
    res = harness.parse(out, cases)
    return [(res[c.name].rc, res[c.name].y) for c in cases]


def _compile_everywhere(gen, tmp_path):
    """gen's net.c compiled as C99 and C11 by gcc and arm-none-eabi-gcc with strict warnings."""
    d = tmp_path / ("c_" + gen.name)
    gen.write(str(d))
    src = str(d / (gen.name + ".c"))
    compilers = [("gcc", [])]
    if shutil.which("arm-none-eabi-gcc"):
        compilers.append(("arm-none-eabi-gcc", ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
                                                "-mfpu=fpv4-sp-d16"]))
    for cc, arch in compilers:
        for std in ("-std=c99", "-std=c11"):
            p = subprocess.run([cc, std] + arch + STRICT + ["-c", src, "-o", str(d / "o.o")],
                               capture_output=True, text=True)
            assert p.returncode == 0, (cc, std, p.stderr[:2000])


def _expect_c_equals_runtime(model, x, tmp_path, name="net", **kw):
    gen = export.generate(model, name=name, **kw)
    _compile_everywhere(gen, tmp_path)
    (rc, y), = _run_c([(gen, x)], tmp_path / "run")
    want = _per_sample(model, x)
    assert np.all(rc == 0)
    assert y.shape == want.shape, (y.shape, want.shape)
    bad = int(np.sum(y != want))
    assert bad == 0, "%d of %d values differ" % (bad, want.size)
    return gen


def _linear_chain(names, k=6, n=5, seed=0):
    """Quantize -> QuantizedLinear -> ReLU -> Dequantize, the nodes named as given."""
    lin = fastq.QuantizedLinear(_weight(seed, n, k), np.linspace(-0.5, 0.5, n), 0.09, 7)
    layers = [E.Quantize(0.05, 100), lin, E.ReLU(), E.Dequantize()]
    nodes, prev = [], "x"
    for nm, layer in zip(names, layers):
        nodes.append(Node(nm, layer, (prev,)))
        prev = nm
    return _graph(nodes, prev)


# ------------------------------------------------------------------------ names into C
HOSTILE = [
    "fc */ static const int evil = 1; /* ",
    "x??/\nint injected = 1;",
    "q\\\nint spliced;",
    "a*/b/*c",
    "\u00e9\u4e2d\x1b[31m",
    "\ud800 lone surrogate",
    "tab\there\rcr",
    "?" * 7 + "/",
]


@pytest.mark.parametrize("i", range(0, len(HOSTILE), 4))
def test_hostile_names_never_reach_the_c_raw(i, tmp_path):
    """Node names that end a comment, make a trigraph or splice a line: the C compiles under
    C99 and C11 with strict warnings, computes the runtime's numbers, and holds no raw name."""
    names = HOSTILE[i:i + 4]
    model = _linear_chain(names)
    gen = _expect_c_equals_runtime(model, _x(1, (5, 6)), tmp_path)
    text = gen.header + gen.source
    for nm in names:
        assert nm not in text
    assert "??" not in text
    for line in text.split("\n"):
        assert not re.search(r"[^ -~]", line)
    # a comment opened in the generated part closes where it should: no code between
    # the header's node list and its end
    assert "static const int evil" not in re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def test_comment_text_is_safe():
    for raw in HOSTILE + ["*/*/", "/**/", "??=", "???/", "a\\"]:
        s = P.comment_text(raw)
        assert "*/" not in s and "/*" not in s and "??" not in s and "\\" not in s and "\n" not in s
        assert all(" " <= ch <= "~" for ch in s)


def test_collisions_after_sanitising_are_resolved(tmp_path):
    """fc and fc_y once both defined NET_FC_Y_ZERO_POINT; a.b / a-b / a_b / A_B sanitise alike.
    The C compiles and computes the runtime's numbers."""
    w1, w2 = _weight(3, 6, 6), _weight(4, 5, 6)
    nodes = [Node("fc_y", E.Quantize(0.05, 100), ("x",)),
             Node("fc", fastq.QuantizedLinear(w1, None, 0.2, 9), ("fc_y",)),
             Node("a.b", E.ReLU(), ("fc",)), Node("a-b", E.ReLU6(), ("a.b",)), Node("a_b", E.ReLU(), ("a-b",)),
             Node("A_B", fastq.QuantizedLinear(w2, None, 0.3, 4), ("a_b",)),
             Node("1", E.Dequantize(), ("A_B",))]
    gen = _expect_c_equals_runtime(_graph(nodes, "1"), _x(2, (4, 6)), tmp_path)
    defines = re.findall(r"#define (\w+)", gen.source.split("#endif /* FASTQ_EXPORT_RUNTIME */")[1])
    assert "NET_FC__Y_ZERO_POINT" in defines and "NET_FC_Y__ZERO_POINT" in defines
    assert len(defines) == len(set(defines))
    used = set()
    idents = [c_ident(n, used) for n in ("a.b", "a-b", "a_b", "A_B", "a__b", "_a_", "")]
    assert len(set(idents)) == len(idents) and not any("__" in s for s in idents)


def test_long_names_are_cut_with_a_hash(tmp_path):
    used = set()
    a, b = c_ident("x" * 200 + "1", used), c_ident("x" * 200 + "2", used)
    assert a != b and len(a) <= 40 and len(b) <= 40


BAD_NAMES = ["net\n", "net\r", "_STDINT", "__net", "_net", "net_", "a__b", "int", "static", "bool", "fq", "FQ",
             "fastq", "fq_net", "memory", "strong", "uint8_t", "9net", "n\u00e9t", "", "net.h",
             "x" * 33, b"net", None, 3]


@pytest.mark.parametrize("name", BAD_NAMES, ids=[repr(n)[:20] for n in BAD_NAMES])
def test_bad_names_are_refused_before_anything_is_written(name, tmp_path):
    model = _linear_chain(["q", "fc", "r", "dq"])
    with pytest.raises((TypeError, ValueError), match="name"):
        export.export_c(model, str(tmp_path / "out"), name=name)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["net", "Net2", "my_net", "model_v1", "x" * 32, "encoder"])
def test_good_names_compile(name, tmp_path):
    _compile_everywhere(export.generate(_linear_chain(["q", "fc", "r", "dq"]), name=name), tmp_path)


# ------------------------------------------------------------------------ shapes
def test_the_issues_cat_of_unsqueezed_values_calibrated_with_torch(tmp_path):
    """torch.cat([a.unsqueeze(-1), b.unsqueeze(-1)], -1).flatten(1), calibrated with
    quantize_model: fastq equals torch, and the C equals fastq (it differed on 8 of 8 rows)."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.out = nn.Linear(6, 4), nn.Linear(6, 4), nn.Linear(8, 3)

        def forward(self, x):
            a, b = self.a(x), self.b(x)
            return self.out(torch.cat([a.unsqueeze(-1), b.unsqueeze(-1)], -1).flatten(1))

    torch.manual_seed(0)
    net = Net().eval()
    calib = [torch.randn(16, 6) for _ in range(4)]
    try:
        model = fastq.quantize_model(net, calib)
    except NotImplementedError as e:          # pragma: no cover - the calibrator's own limit
        pytest.skip("quantize_model: %s" % e)
    x = np.random.default_rng(5).standard_normal((8, 6)).astype(np.float32)
    _expect_c_equals_runtime(model, x, tmp_path)


def test_broadcasting_add_gives_every_value(tmp_path):
    """[S, 4, 1] + [S, 1, 4]: 16 values per sample (the C gave 4)."""
    g = _graph([Node("a", S.Reshape([-1, 4, 1]), ("x",)), Node("neg", A.MulScalar(-0.7), ("x",)),
                Node("b", S.Reshape([-1, 1, 4]), ("neg",)), Node("add", A.Add(), ("a", "b"))], "add")
    gen = _expect_c_equals_runtime(g, _x(6, (3, 4)), tmp_path, input_size=4)
    assert gen.output_size == 16


def test_views_that_move_the_batch_are_refused():
    for layers, what in (([S.Reshape([2, -1])], "batch"), ([S.Unsqueeze(0)], "batch"), ([E.Flatten(0)], "batch|values"),
                         ([S.Squeeze(0)], "batch"), ([S.Reshape([-1, 4])], "values")):
        m = Model([E.Quantize(0.1, 100)] + layers + [E.Dequantize()])
        with pytest.raises(NotImplementedError, match="node .*%s" % what):
            export.generate(m, input_size=8)


def test_quantized_broadcasting_is_refused_naming_the_node():
    g = _graph([Node("qa", E.Quantize(0.1, 100), ("x",)), Node("a", S.Reshape([-1, 4, 1]), ("qa",)),
                Node("b", S.Reshape([-1, 1, 4]), ("qa",)), Node("add", A.QuantizedAdd(0.1, 100), ("a", "b")),
                Node("dq", E.Dequantize(), ("add",))], "dq")
    with pytest.raises(NotImplementedError, match="node 'add'"):
        export.generate(g, input_size=4)


def test_a_3d_input_needs_its_shape_for_a_cat_on_the_last_axis(tmp_path):
    """Cat(-1) of a [S, 2, 3] input: with input_shape the C equals the runtime."""
    g = _graph([Node("neg", A.MulScalar(-0.5), ("x",)), Node("cat", A.Cat(-1), ("x", "neg"))], "cat")
    x = _x(7, (3, 2, 3))
    _expect_c_equals_runtime(g, x, tmp_path, input_size=6, input_shape=(2, 3))
    with pytest.raises(ValueError, match="input_shape"):
        export.generate(g, input_size=6, input_shape=(4, 2))


# ------------------------------------------------------------------------ arithmetic at the extremes
def _pair(op, s1, z1, s2, z2, dtype="uint8", k=-1.3):
    """a = quantize(x), b = quantize(k x): a product (a - za)(b - zb) has the sign of k."""
    return _graph([Node("qa", E.Quantize(s1, z1, dtype), ("x",)), Node("neg", A.MulScalar(k), ("x",)),
                   Node("qb", E.Quantize(s2, z2, dtype), ("neg",)), Node("op", op, ("qa", "qb")),
                   Node("dq", E.Dequantize(), ("op",))], "dq")


def test_add_and_mul_beyond_2_31_output_steps_in_c(tmp_path):
    """An output scale far too small: torch's vector body and scalar tail convert differently
    (255 where torch gives 0 was the old C); 70 values: a 64 body and a 6 tail; chunks of
    torch_threads too."""
    entries = []
    rng = np.random.default_rng(8)
    x = (rng.uniform(-4, 4, (3, 70)) * 1e3).astype(np.float32)
    models = []
    for ys in (1e-9, 3e-8, 1e-6):
        for dtype, z in (("uint8", 0), ("uint8", 200), ("int8", -100), ("int8", 100)):
            for relu in (False, True):
                models.append(_pair(A.QuantizedAdd(ys, z, relu=relu), 20.0, 10 if dtype == "uint8" else 0,
                                    30.0, 90 if dtype == "uint8" else -5, dtype))
                for k in (-1.3, 1.3):           # products of both signs
                    models.append(_pair(A.QuantizedMul(ys * 1e-3, z, relu=relu), 20.0, 10 if dtype == "uint8" else 0,
                                        30.0, 150 if dtype == "uint8" else 50, dtype, k))
    for i, m in enumerate(models):
        entries.append((export.generate(m, name="m%d" % i, input_size=70), x))
    res = _run_c(entries, tmp_path)
    bad = [i for i, (m, (rc, y)) in enumerate(zip(models, res)) if not np.array_equal(y, _per_sample(m, x))]
    assert not bad, "%d of %d models differ" % (len(bad), len(models))


def test_chunked_add_and_mul_in_c(tmp_path):
    """Samples of 70 000 values with torch_threads 3: three chunks, each a body and a tail."""
    x = (np.random.default_rng(9).uniform(-4, 4, (1, 70001)) * 1e3).astype(np.float32)
    models = [_pair(A.QuantizedAdd(1e-8, 3, torch_threads=3), 20.0, 10, 30.0, 90),
              _pair(A.QuantizedMul(1e-10, 3, torch_threads=3, vector_block=32), 20.0, 10, 30.0, 150, k=1.3)]
    res = _run_c([(export.generate(m, name="m%d" % i, input_size=70001), x) for i, m in enumerate(models)], tmp_path)
    for m, (rc, y) in zip(models, res):
        want = _per_sample(m, x)
        assert len(np.unique(want)) >= 2            # not one saturated value
        assert np.array_equal(y, want)


@pytest.mark.parametrize("n", [4096 + 5, 37])
def test_qnnpack_add_shifts_32_to_35_in_c(n, tmp_path):
    """Scale ratios in [2^-14, 2^-10): shifts 32..35. No shift in the C is out of range, and the
    C equals the runtime (long tiles by 31, a short last tile by the count mod 32)."""
    models, shifts = [], set()
    for e in (-14, -13, -12, -11, -10.5):
        sa = 2.0 ** e * 0.3
        m = _pair(A.QuantizedAdd(0.3, 128, arithmetic="qnnpack"), sa, 100, sa * 1.1, 30)
        shifts.add(R.qnnpack_add_params(sa, 100, sa * 1.1, 30, 0.3)[3])
        models.append(m)
    assert shifts >= {32, 33, 34, 35} - {35} and max(shifts) >= 33
    x = np.random.default_rng(10).uniform(-2e-4, 2e-4, (3, n)).astype(np.float32)
    gens = [export.generate(m, name="m%d" % i, input_size=n) for i, m in enumerate(models)]
    for g in gens:
        for k in re.findall(r"<<\s*(\d+)|>>\s*(\d+)|fq_asr\([^,]+,\s*(\d+)\)", g.source):
            assert all(v == "" or int(v) <= 31 for v in k)
        assert not re.search(r"1 << 3[2-9]", g.source)
    res = _run_c(list(zip(gens, [x] * len(gens))), tmp_path)
    for m, (rc, y) in zip(models, res):
        assert np.array_equal(y, _per_sample(m, x))


# ------------------------------------------------------------------------ constants and sizes
def test_float_literals_read_back_exactly():
    rng = np.random.default_rng(11)
    v = rng.standard_normal(20000).astype(np.float32) * np.float32(10.0) ** rng.integers(-38, 38, 20000).astype(np.float32)
    specials = np.array([np.finfo(np.float32).max, np.finfo(np.float32).tiny, 1e-45, -0.0, 0.0, 1e30, 16777217.0],
                        np.float32)
    for f in np.concatenate([v[np.isfinite(v)], specials]):
        s = float_literal(f)
        assert s.endswith("f") and np.float32(float(s[:-1])) == f and np.signbit(np.float32(float(s[:-1]))) == np.signbit(f)
        assert len(s) <= 16


def test_add_scalar_1e30_prints_no_long_literal(tmp_path):
    """QuantizedAddScalar(1e30) printed a 32-digit literal: now either torch's refusal (the
    value is more steps of the scale than int32 holds) or C that reads back and equals the runtime."""
    with pytest.raises((ValueError, NotImplementedError), match="value"):
        export.generate(Model([E.Quantize(0.05, 100), A.QuantizedAddScalar(1e30), E.Dequantize()]), input_size=5)
    for value, scale in ((1e30, 1e24), (-3e9, 2.0), (2.5e9, 1.25)):
        m = Model([E.Quantize(scale, 100), A.QuantizedAddScalar(value), E.Dequantize()])
        gen = _expect_c_equals_runtime(m, _x(12, (3, 5), -300 * scale, 300 * scale), tmp_path / str(value),
                                       input_size=5)
        assert not re.search(r"\d{13,}", gen.source.split("#endif /* FASTQ_EXPORT_RUNTIME */")[1])
    m = Model([A.AddScalar(1e30), A.MulScalar(-1e-30)])
    gen = _expect_c_equals_runtime(m, _x(13, (2, 4)), tmp_path / "float", input_size=4)
    assert not re.search(r"\d{13,}", gen.source.split("#endif /* FASTQ_EXPORT_RUNTIME */")[1])


@pytest.mark.parametrize("size", [2**31, 2**31 + 5, 2**29, 2**40])
def test_sizes_beyond_int32_are_refused(size):
    with pytest.raises(ValueError, match="input_size.*int32"):
        export.generate(Model([E.Quantize(0.1, 100), E.Dequantize()]), input_size=size)


# ------------------------------------------------------------------------ the write
def _old_pair(d):
    d.mkdir(parents=True, exist_ok=True)
    (d / "net.h").write_text("old header\n")
    (d / "net.c").write_text("old source\n")


def _pair_text(d):
    return (d / "net.h").read_text(), (d / "net.c").read_text()


def test_a_surrogate_name_exports_and_never_truncates(tmp_path):
    model = _linear_chain(["q", "fc\ud800", "r", "dq"])
    _old_pair(tmp_path)
    export.export_c(model, str(tmp_path))
    h, c = _pair_text(tmp_path)
    assert "net_run" in h and "net_run" in c
    assert sorted(os.listdir(tmp_path)) == ["net.c", "net.h"]


@pytest.mark.parametrize("fail_at", ["fsync", "second_write", "replace"])
def test_a_failure_mid_write_leaves_the_old_pair(fail_at, tmp_path, monkeypatch):
    model = _linear_chain(["q", "fc", "r", "dq"])
    _old_pair(tmp_path)
    calls = {"n": 0}
    if fail_at == "fsync":
        monkeypatch.setattr(cgen.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space left")))
    elif fail_at == "second_write":
        real = cgen.os.fdopen

        def fdopen(fd, *a, **k):
            calls["n"] += 1
            if calls["n"] == 2:
                os.close(fd)
                raise OSError(5, "I/O error")
            return real(fd, *a, **k)
        monkeypatch.setattr(cgen.os, "fdopen", fdopen)
    else:
        monkeypatch.setattr(cgen.os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(13, "denied")))
    with pytest.raises(OSError):
        export.export_c(model, str(tmp_path))
    assert _pair_text(tmp_path) == ("old header\n", "old source\n")
    assert sorted(os.listdir(tmp_path)) == ["net.c", "net.h"]


def test_an_encoding_failure_writes_nothing(tmp_path):
    gen = export.generate(_linear_chain(["q", "fc", "r", "dq"]))
    gen.source += "/* \u00e9 */"
    _old_pair(tmp_path)
    with pytest.raises(UnicodeEncodeError):
        gen.write(str(tmp_path))
    assert _pair_text(tmp_path) == ("old header\n", "old source\n")


def test_overwrite(tmp_path):
    model = _linear_chain(["q", "fc", "r", "dq"])
    _old_pair(tmp_path)
    with pytest.raises(FileExistsError, match="net.h"):
        export.export_c(model, str(tmp_path), overwrite=False)
    assert _pair_text(tmp_path) == ("old header\n", "old source\n")
    export.export_c(model, str(tmp_path))                   # the default replaces the pair
    assert "net_run" in _pair_text(tmp_path)[1]
    export.export_c(model, str(tmp_path / "new"), overwrite=False)
    assert sorted(os.listdir(tmp_path / "new")) == ["net.c", "net.h"]
    with pytest.raises(TypeError, match="overwrite"):
        export.export_c(model, str(tmp_path), overwrite="yes")
    with pytest.raises(ValueError, match="directory"):
        export.export_c(model, "")
