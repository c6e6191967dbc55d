"""Backend selection: FASTQ_BACKEND forces an ISA path at import, fastq.set_backend at run time."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastq
from fastq import reference

SITE = os.path.dirname(os.path.dirname(os.path.abspath(fastq.__file__)))
PROBE = ("import fastq, numpy as np; from fastq import reference; rng = np.random.default_rng(5);"
         "a = rng.integers(0, 256, (7, 45), dtype=np.uint8); w = rng.integers(-128, 128, (70, 45), dtype=np.int8);"
         "ok = np.array_equal(fastq.qgemm(a, 9, w, 3), reference.qgemm(a, 9, w, 3));"
         "print(fastq.get_backend(), ok)")


def run_with_env(**env):
    full = dict(os.environ, PYTHONPATH=SITE + os.pathsep + os.environ.get("PYTHONPATH", ""), **env)
    return subprocess.run([sys.executable, "-c", PROBE], env=full, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", fastq.backends())
def test_environment_variable_forces_each_backend(name):
    r = run_with_env(FASTQ_BACKEND=name)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [name, "True"]


@pytest.mark.parametrize("var,value", [("FASTQ_BACKEND", "neon9"), ("FASTQ_BACKEND", "AVX2"),
                                       ("FASTQ_NUM_THREADS", "3abc"), ("FASTQ_NUM_THREADS", "0"),
                                       ("FASTQ_NUM_THREADS", "1000"), ("FASTQ_NUM_THREADS", "-2"),
                                       ("FASTQ_NUM_THREADS", "2.5")])
def test_invalid_environment_warns_and_uses_the_default(var, value):
    """One rule for both variables: a RuntimeWarning naming the variable and the value, the
    default is used, and `import fastq` works."""
    probe = PROBE + "; print(fastq.get_num_threads())"
    clean = dict(os.environ, PYTHONPATH=SITE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    clean.pop("FASTQ_BACKEND", None)
    clean.pop("FASTQ_NUM_THREADS", None)
    runs = [subprocess.run([sys.executable, "-W", "always::RuntimeWarning", "-c", probe], env=env,
                           capture_output=True, text=True, timeout=120) for env in (clean, dict(clean, **{var: value}))]
    for r in runs:
        assert r.returncode == 0, r.stderr
    assert "RuntimeWarning" not in runs[0].stderr
    assert "RuntimeWarning" in runs[1].stderr and "%s=%r" % (var, value) in runs[1].stderr
    assert runs[1].stdout.split() == runs[0].stdout.split()       # backend, result, threads: the defaults


def test_set_backend_round_trip():
    previous = fastq.get_backend()
    try:
        for name in fastq.backends():
            fastq.set_backend(name)
            assert fastq.get_backend() == name
        fastq.set_backend("auto")
        assert fastq.get_backend() == fastq.backends()[-1]
    finally:
        fastq.set_backend(previous)
    assert fastq.backends()[0] == "scalar"


def test_layer_built_on_one_backend_runs_on_another(rng):
    """Packed weights are ISA-independent: a layer packed under one backend is exact on all."""
    w = fastq.QTensor(rng.integers(-128, 128, (70, 37), dtype=np.int8), 0.02, 0)
    layer = fastq.QuantizedLinear(w, rng.standard_normal(70).astype(np.float32), 0.1, 100)
    x = fastq.QTensor(rng.integers(0, 256, (9, 37), dtype=np.uint8), 0.05, 120)
    expect = reference.linear(x.values, 0.05, 120, w.values, [0.02], 0, layer.bias, 0.1, 100)
    previous = fastq.get_backend()
    try:
        for name in fastq.backends():
            fastq.set_backend(name)
            assert np.array_equal(layer(x).values, expect), name
    finally:
        fastq.set_backend(previous)
