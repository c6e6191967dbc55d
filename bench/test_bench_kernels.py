"""Kernel speed per backend, single thread (pytest-benchmark).

    PYTHONPATH=src python -m pytest bench/test_bench_kernels.py --benchmark-group-by=group

Each group is one shape and entry point; inside it the backends line up, so the speed-up of
each ISA over scalar is the ratio of their times. extra_info["gops"] = 2*M*N*K / time."""
import numpy as np
import pytest

import fastq
from fastq.tools.bench import measure

SHAPES = [(1, 64, 64), (1, 1024, 1024), (32, 1024, 1024), (256, 1024, 1024)]
# the `backend` fixture (bench/conftest.py) runs each benchmark once per ISA this CPU has


def operands(m, n, k, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (m, k), dtype=np.uint8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    return x, w


def record(benchmark, m, n, k):
    stats = benchmark.stats.stats if hasattr(benchmark.stats, "stats") else benchmark.stats
    benchmark.extra_info["gops"] = round(measure.gops(measure.matmul_ops(m, k, n), stats.min), 2)


@pytest.mark.parametrize("m,n,k", SHAPES, ids=lambda v: str(v))
def test_quantized_linear(benchmark, backend, m, n, k):
    benchmark.group = "QuantizedLinear %dx%dx%d" % (m, n, k)
    x, w = operands(m, n, k)
    rng = np.random.default_rng(1)
    layer = fastq.QuantizedLinear(fastq.QTensor(w, rng.uniform(0.01, 0.02, n), np.zeros(n, np.int64), axis=0),
                                  rng.normal(0, 1, n).astype(np.float32), 0.5, 64)
    xq = fastq.QTensor(x, 0.02, 3)
    layer(xq)
    benchmark(layer, xq)
    record(benchmark, m, n, k)


@pytest.mark.parametrize("m,n,k", SHAPES, ids=lambda v: str(v))
def test_qgemm(benchmark, backend, m, n, k):
    """fastq.qgemm packs the weights on every call (its API takes raw weights)."""
    benchmark.group = "qgemm %dx%dx%d" % (m, n, k)
    x, w = operands(m, n, k)
    benchmark(fastq.qgemm, x, 3, w, 0)
    record(benchmark, m, n, k)
