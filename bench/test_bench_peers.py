"""fastq against the int8 paths a user would otherwise pick, single-threaded, shape by shape.

    pytest bench/test_bench_peers.py --benchmark-only --benchmark-group-by=group \
        --benchmark-json=bench-out/peers.json && python bench/report.py bench-out/peers.json

Each shape's peers run back to back (interleaved), so their ratios come from one stretch of time.
"""
import numpy as np
import pytest

from fastq.tools.bench import measure, peers

SHAPES = [(1, 64, 64), (1, 1024, 1024), (8, 1024, 1024), (32, 1024, 1024), (256, 1024, 1024),
          (128, 4096, 4096), (1, 4096, 4096), (64, 768, 3072)]


def _cases():
    for shape in SHAPES:
        for name in list(peers.LAYER_PEERS) + list(peers.GEMM_PEERS):
            yield pytest.param(shape, name, id="%dx%dx%d-%s" % (shape + (name,)))


@pytest.mark.parametrize("shape,impl", list(_cases()))
def test_peer(benchmark, shape, impl):
    m, k, n = shape
    build = peers.LAYER_PEERS.get(impl) or peers.GEMM_PEERS[impl]
    try:
        fn = build(m, k, n, np.random.default_rng(0))
    except ImportError as e:
        pytest.skip(str(e))
    if fn is None:
        pytest.skip("%s does not take this shape" % impl)
    ops = measure.matmul_ops(m, k, n)
    benchmark.group = "%s %dx%dx%d" % ("layer" if impl in peers.LAYER_PEERS else "gemm", m, k, n)
    benchmark.extra_info.update(impl=impl, m=m, k=k, n=n, ops=ops)
    benchmark.pedantic(fn, rounds=measure.rounds_for(ops, 2e10, 25, 3000), iterations=1, warmup_rounds=2)


@pytest.mark.parametrize("threads", [1, 2])
def test_threads(benchmark, threads):
    m, k, n = 256, 1024, 1024
    fn = peers.fastq_linear(m, k, n, np.random.default_rng(0))
    with measure.threads(threads):
        benchmark.group = "threads 256x1024x1024"
        benchmark.extra_info.update(impl="fastq_linear_%dt" % threads, m=m, k=k, n=n,
                                    ops=measure.matmul_ops(m, k, n))
        # warm-up long enough for the OS to spread a new worker thread onto the other core
        benchmark.pedantic(fn, rounds=60, iterations=1, warmup_rounds=30)
