"""The op conformance harness (XNNPACK's tester idea, per op): for every registered op and each
of its cases (cases.py): the runtime on every backend = the reference runner (oracle.py); the
model file round trip, bitwise; the exported C compiled by the host gcc with strict flags = the
runtime (all cases in one program); the summary row; explain = the kernel or the op's stated
refusal; the torch importer row = torch where a torch module exists."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import cases as C
import fastq
import oracle
from fastq import export
from fastq.layers import LAYER_TYPES
from fastq.layers._spec import Spec
from firmware import harness

OPS = sorted(LAYER_TYPES)
_CACHE = {}


def cases_of(op):
    if op not in _CACHE:
        _CACHE[op] = C.CASES[op]() if op in C.CASES else []
    return _CACHE[op]


def bits(y):
    return np.asarray(y, np.float32).view(np.uint32)


def test_every_registered_op_has_cases():
    missing = [op for op in OPS if not cases_of(op)]
    assert not missing, "registered ops without conformance cases: %s" % missing
    for op in OPS:      # each op's cases hold that op
        assert any(op in {type(n.layer).__name__ for n in c.model.nodes} for c in cases_of(op)), op


@pytest.mark.parametrize("op", OPS)
def test_runtime_equals_reference_on_every_backend(op):
    backends = fastq.backends()
    assert backends and backends[0] == "scalar"
    try:
        for b in backends:
            fastq.set_backend(b)
            for c in cases_of(op):
                y, r = c.model(c.x), oracle.run(c.model, c.x)
                assert y.shape == r.shape and np.array_equal(bits(y), bits(r)), (op, c.label, b)
    finally:
        fastq.set_backend("auto")


@pytest.mark.parametrize("op", OPS)
def test_model_file_round_trip(op, tmp_path):
    for i, c in enumerate(cases_of(op)):
        path = str(tmp_path / ("m%d.fq" % i))
        c.model.save(path)
        m = fastq.load(path)
        assert [type(n.layer) for n in m.nodes] == [type(n.layer) for n in c.model.nodes], c.label
        for a, b in zip(m.nodes, c.model.nodes):
            assert a.layer.get_settings() == b.layer.get_settings(), (c.label, a.name)
            ga, gb = a.layer.get_arrays(), b.layer.get_arrays()
            assert sorted(ga) == sorted(gb) and all(np.array_equal(ga[k], gb[k]) for k in ga), (c.label, a.name)
        assert np.array_equal(bits(m(c.x)), bits(c.model(c.x))), c.label


def _program(entries, workdir):
    """Compiles entries [(key, Case, Generated named m<index>)] into one host program;
    {key: harness.Result}."""
    t = harness.TARGETS["host"]
    hcases = [harness.Case("m%d" % i, gen, c.x.reshape(len(c.x), -1)) for i, (_, c, gen) in enumerate(entries)]
    exe = harness.build(t, hcases, str(workdir))
    rc, out, err = harness.run(t, exe)
    assert rc == 0, err
    res = harness.parse(out, hcases)
    return {key: res[hc.name] for hc, (key, _, _) in zip(hcases, entries)}


def _generate(c, name):
    return export.generate(c.model, name=name, input_size=int(np.prod(c.x.shape[1:])), input_shape=c.x.shape[1:])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every exportable case of every op in one C program: {(op, label): (case, result)}."""
    if shutil.which("gcc") is None:
        pytest.skip("no host gcc")
    entries = []
    for op in OPS:
        if not has_emit_c(op):
            continue
        for c in cases_of(op):
            if c.exports:
                entries.append(((op, c.label), c, _generate(c, "m%d" % len(entries))))
    res = _program(entries, tmp_path_factory.mktemp("ops_c"))
    return {key: (c, res[key]) for key, c, _ in entries}


def has_emit_c(op):
    """Whether the op has a C emitter of its own (else every export of it is the op's stated refusal)."""
    from fastq.layers._base import Layer
    return LAYER_TYPES[op].emit_c is not Layer.emit_c


def _check_refusal(op, c):
    """The export of a model holding op raises the one NotImplementedError naming the op's node,
    the op and the capability."""
    with pytest.raises(NotImplementedError) as e:
        _generate(c, "refused")
    msg = str(e.value)
    nodes = [n.name for n in c.model.nodes if type(n.layer).__name__ == op]
    assert any("node %r (%s)" % (n, op) in msg for n in nodes) and "'export'" in msg, msg


@pytest.mark.parametrize("op", OPS)
def test_exported_c_equals_runtime(op, exported):
    if not has_emit_c(op):       # an op without a C emitter yet: its stated refusal, on every case
        for c in cases_of(op):
            _check_refusal(op, c)
        return
    for c in cases_of(op):
        if not c.exports:
            with pytest.raises(NotImplementedError, match="node .*%s" % op):
                _generate(c, "refused")
            continue
        _, r = exported[(op, c.label)]
        # the C runs one sample per call (a dynamic layer picks its quantization per call)
        y = np.concatenate([c.model(c.x[i:i + 1]).reshape(1, -1) for i in range(len(c.x))])
        assert np.all(r.rc == 0), (op, c.label)
        assert r.y.shape == y.shape, (op, c.label)
        bad = np.nonzero(r.y != bits(y))
        assert not len(bad[0]), (op, c.label, "%d values differ" % len(bad[0]), "first at", bad[0][:1], bad[1][:1])


def _specs_of(model, values, node):
    out = []
    for v in node.inputs:
        x = values[v]
        if isinstance(x, fastq.QTensor):
            out.append(Spec("quant", x.values.shape, x.values.dtype.name, x.scale, x.zero_point))
        elif isinstance(x, np.ndarray):
            out.append(Spec("float", x.shape))
        else:
            out.append(Spec("int", () if isinstance(x, int) else (len(x),)))
    return out


@pytest.mark.parametrize("op", OPS)
def test_infer_and_summary_row(op):
    """infer gives each node's output spec as run; summary_row gives three texts; the model's
    summary holds one line per node."""
    for c in cases_of(op):
        values = c.model.run_values(c.x)
        for n in c.model.nodes:
            specs = _specs_of(c.model, values, n)
            got = n.layer.infer(*specs)
            (want,) = _specs_of(c.model, values, type("N", (), {"inputs": n.outputs})())
            # a dimension infer cannot know (a size given at run time) is None
            assert got.kind == want.kind and len(got.shape) == len(want.shape) and all(
                g is None or g == w for g, w in zip(got.shape, want.shape)), (c.label, n.name, got, want)
            if want.kind == "quant":
                assert (got.dtype, got.scale, got.zero_point) == (want.dtype, want.scale, want.zero_point), n.name
            row = n.layer.summary_row(specs, n.layer.prepare(*specs))
            assert set(row) == {"qparams", "constants", "arithmetic"} and all(isinstance(v, str) and v for v in row.values())
        text = c.model.summary(c.x)
        assert all(any(line.startswith(n.name + " ") for line in text.splitlines()) for n in c.model.nodes), c.label


@pytest.mark.parametrize("op", OPS)
def test_explain_is_the_kernel_or_a_stated_refusal(op):
    for c in cases_of(op):
        values = c.model.run_values(c.x)
        for n in c.model.nodes:
            if type(n.layer).__name__ != op:
                continue
            try:
                t = c.model.explain(c.x, n.name, 0, 0)
            except NotImplementedError as e:
                msg = str(e)
                assert repr(n.name) in msg and op in msg and "'explain'" in msg, msg
                continue
            y = values[n.outputs[0]]
            want = y.values.reshape(-1, y.values.shape[-1])[0, 0] if isinstance(y, fastq.QTensor) else \
                np.asarray(y).reshape(-1, np.shape(y)[-1])[0, 0]
            assert t.equal and t.checks["kernel"] == want, (c.label, n.name)


TORCH_ROWS = [op for op in OPS if any(c.torch is not None for c in cases_of(op))]


@pytest.mark.parametrize("op", TORCH_ROWS)
def test_torch_importer_row(op):
    rows = [c for c in cases_of(op) if c.torch is not None]
    torch = pytest.importorskip("torch")
    for c in rows:
        module, engine = c.torch()
        module.eval()
        old = torch.backends.quantized.engine
        torch.backends.quantized.engine = engine
        try:
            want = module(torch.from_numpy(c.x))
            want = (want.dequantize() if want.is_quantized else want).numpy()
            got = fastq.from_torch(module, engine=engine)(c.x)
        finally:
            torch.backends.quantized.engine = old
        assert np.array_equal(bits(got), bits(want)), c.label


def test_the_harness_catches_the_old_clamp_formula(tmp_path, monkeypatch):
    """The exporter's old bounds (quantize_per_tensor's fma form) part from torch's quantize_val
    on 210 of the constructed pairs; a ReLU6 / Hardtanh whose C used them fails the C = runtime
    check on exactly those pairs, and the op as it is passes it (test_exported_c_equals_runtime)."""
    from fastq import reference as R
    from fastq.layers import elementwise as E
    pairs = C.clamp_tie_pairs()
    assert len(pairs) == 20580
    parting = C.parting_pairs()
    assert len(parting) == 210
    real_emit = E._Clamp.emit_c

    def old_emit(self, ctx, node, inputs, output, op_data):
        x = inputs[0]
        if x.kind == "quant":           # the bound as the old exporter computed it: fma, no quantize_val
            lo, hi = op_data
            top = 6.0 if isinstance(self, E.ReLU6) else self.max_val
            op_data = (lo, int(R.quantize_per_tensor(np.float32(top), x.scale, x.zero_point, x.dtype)))
        return real_emit(self, ctx, node, inputs, output, op_data)

    monkeypatch.setattr(E._Clamp, "emit_c", old_emit)
    entries = [(name, c, _generate(c, "m%d" % i)) for i, (name, c) in enumerate(
        (k, c) for k in ("ReLU6", "Hardtanh") for c in cases_of(k) if c.label.endswith("parting pairs"))]
    res = _program(entries, tmp_path)
    for name, c, _ in entries:
        y = bits(c.model(c.x).reshape(len(c.x), -1))
        wrong_pairs = np.any(res[name].y != y, axis=0).reshape(len(parting), -1).any(axis=1)
        assert wrong_pairs.sum() == 210, (name, int(wrong_pairs.sum()))
