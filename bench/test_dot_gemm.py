"""Dot products and matrix products at equal shapes: fastq int8 against float32 and
float64 (numpy, torch), one thread. GOPS = 2*M*K*N / s; "% peak" against the measured
one-core peak of the matching type (vpdpbusd for int8, vfmadd231ps/pd for float32/64).

fastq.qgemm packs the weights on every call (it is the one-shot API); "fastq linear" is
QuantizedLinear with weights packed once, as a model runs it (requantized uint8 out).
"""
import numpy as np
import pytest

import fastq
from fastq import _bench
from fastq.tools.bench import measure

QUICK_SIZES = True   # honours --quick (bench/conftest.py)

IMPLS = ("fastq qgemm int8", "fastq linear int8", "numpy float32", "numpy float64",
         "torch float32", "torch float64")
PEAK_OF = {"int8": "vpdpbusd", "float32": "vfmadd231ps", "float64": "vfmadd231pd"}


@pytest.fixture(scope="module")
def peaks():
    out = {}
    for kind, instr in PEAK_OF.items():
        out[kind] = _bench.peak_ops_per_s(instr, n=200_000, repeats=3)
    return out


def _shapes(quick):
    # (M, K, N): a dot product is M = N = 1
    if quick:
        return [(1, 1024, 1), (64, 64, 64)]
    return [(1, 65536, 1), (1, 1024, 1024), (256, 256, 256), (512, 1024, 1024)]


def _build(impl, m, k, n, rng):
    a_u8 = rng.integers(0, 256, (m, k), dtype=np.uint8)
    w_s8 = rng.integers(-127, 128, (n, k), dtype=np.int8)
    if impl == "fastq qgemm int8":
        return lambda: fastq.qgemm(a_u8, 128, w_s8, 0)
    if impl == "fastq linear int8":
        layer = fastq.QuantizedLinear(fastq.QTensor(w_s8, 0.01, 0), None, 0.5, 128)
        x = fastq.QTensor(a_u8, 0.02, 128)
        return lambda: layer(x)
    lib, dtype = impl.split()
    a = rng.standard_normal((m, k)).astype(dtype)
    w = rng.standard_normal((k, n)).astype(dtype)
    if lib == "numpy":
        return lambda: a @ w
    torch = pytest.importorskip("torch")
    ta, tw = torch.from_numpy(a), torch.from_numpy(w)
    return lambda: ta @ tw

def pytest_generate_tests(metafunc):
    if "shape" in metafunc.fixturenames:
        from conftest import is_quick
        shapes = _shapes(is_quick(metafunc.config))
        metafunc.parametrize("shape", shapes, ids=["%dx%dx%d" % s for s in shapes])


@pytest.mark.parametrize("impl", IMPLS)
def test_dot_gemm(benchmark, cost, quick, peaks, shape, impl):
    m, k, n = shape
    fn = _build(impl, m, k, n, np.random.default_rng(0))
    fn()
    ops = measure.matmul_ops(m, k, n)
    kind = "int8" if "int8" in impl else impl.split()[1]
    benchmark.group = "%s M=%d K=%d N=%d" % ("dot" if m == n == 1 else "matmul", m, k, n)
    benchmark.extra_info.update(impl=impl, m=m, k=k, n=n, ops=ops)
    benchmark.pedantic(fn, rounds=measure.rounds_for(ops, 2e8 if quick else 2e9, 3, 1000), iterations=1,
                       warmup_rounds=1)
    peak = peaks.get(kind)
    cost(lambda s: {"gops": measure.gops(ops, s),
                    "pct_peak": measure.pct_of_peak(measure.gops(ops, s), peak and peak / 1e9) or float("nan")})
