"""The four MLPerf Tiny models (tests/mlperf_tiny.py), converted by torch under x86 and qnnpack,
imported with from_torch, exported to C and run on every firmware target: net_run's floats and
net_run_quantized's integers equal fastq's (and fastq's equal torch's) bit for bit."""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastq  # noqa: E402
from fastq import export  # noqa: E402
from firmware import harness  # noqa: E402
import mlperf_tiny as mt  # noqa: E402

ENGINES = ("x86", "qnnpack")
SAMPLES = {"kws": 3, "vww": 3, "ic": 3, "ad": 3}


def _torch_run(tm, engine, x):
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        with torch.no_grad():
            return tm(torch.from_numpy(x)).numpy()
    finally:
        torch.backends.quantized.engine = prev


def quantized_io(model, x):
    """net_run_quantized's integers: the first Quantize's output (one sample, torch's order) and
    the last Dequantize's input."""
    first = next(n for n in model.nodes if type(n.layer).__name__ == "Quantize")
    last = [n for n in model.nodes if type(n.layer).__name__ == "Dequantize"][-1]
    qin, qout = [], []
    for row in x:
        vals = model.run_values(row[None])
        qin.append(vals[first.outputs[0]].values.reshape(-1))
        qout.append(vals[last.inputs[0]].values.reshape(-1).astype(np.int64))
    return np.array(qin), np.array(qout)


class Suite:
    def __init__(self, tmp):
        self.tmp, self.cases, self.expected = tmp, [], {}
        for name in mt.MODELS:
            shape = mt.MODELS[name][1]
            for engine in ENGINES:
                tm = mt.quantized(name, engine)
                model = fastq.from_torch(tm, engine=engine)
                x = mt.inputs(name, SAMPLES[name])
                y = np.asarray(model(x), np.float32)
                ty = _torch_run(tm, engine, x)
                assert np.array_equal(y.view(np.uint32), ty.view(np.uint32)), (name, engine)
                cname = "%s_%s" % (name, engine)
                gen = export.generate(model, name=cname, input_shape=shape)
                assert gen.has_quantized
                q, qy = quantized_io(model, x)
                self.cases.append(harness.Case(cname, gen, x.reshape(len(x), -1), q))
                self.expected[cname] = (y.reshape(len(x), -1).view(np.uint32), qy)

    def mismatches(self, results):
        """{case: (floats differing, integers differing, values compared)}."""
        out = {}
        for c in self.cases:
            y, qy = self.expected[c.name]
            r = results[c.name]
            assert np.all(r.rc == 0) and np.all(r.qrc == 0), c.name
            out[c.name] = (int(np.sum(r.y != y)), int(np.sum(r.qy != qy)), y.size + qy.size)
        return out


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return Suite(tmp_path_factory.mktemp("mlperf"))


def _need(target):
    missing = target.missing()
    if missing:
        msg = "%s: %s not found; install with: %s" % (target.name, ", ".join(missing), harness.INSTALL)
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def test_macs_are_mlperf_tinys():
    """The architectures are the reference's: their MACs agree with MLPerf Tiny's counts to 1%."""
    for name, (macs, _, _) in mt.PUBLISHED.items():
        assert abs(mt.macs(name) - macs) / macs < 0.01, name


@pytest.mark.parametrize("target", list(harness.TARGETS))
def test_mlperf_tiny_bit_exact(suite, target):
    t = harness.TARGETS[target]
    _need(t)
    exe = harness.build(t, suite.cases, str(suite.tmp / target))
    rc, out, err = harness.run(t, exe, timeout=600)
    assert rc == 0, err[-2000:]
    bad = {k: v for k, v in suite.mismatches(harness.parse(out, suite.cases)).items() if v[0] or v[1]}
    assert not bad, bad


def test_arena_is_reused(suite):
    """The arena holds the live values only: well below the sum of every activation."""
    for c in suite.cases:
        if c.name.startswith("ad"):
            continue
        fp = c.gen.footprint
        assert fp.arena < 0.6 * c.gen.activation_bytes, (c.name, fp.arena, c.gen.activation_bytes)
