"""fastq against the int8 paths a user would otherwise pick, single-threaded, shape by shape.

    pytest bench/test_bench_peers.py --benchmark-only --benchmark-group-by=group \
        --benchmark-json=bench-out/peers.json && python bench/report.py bench-out/peers.json

Each shape's peers run back to back (interleaved), so their ratios come from one stretch of time.
"""
import numpy as np
import pytest

import fastq

import peers

SHAPES = [(1, 64, 64), (1, 1024, 1024), (8, 1024, 1024), (32, 1024, 1024), (256, 1024, 1024),
          (128, 4096, 4096), (1, 4096, 4096), (64, 768, 3072)]


def _cases():
    for shape in SHAPES:
        for name in list(peers.LAYER_PEERS) + list(peers.GEMM_PEERS):
            yield pytest.param(shape, name, id="%dx%dx%d-%s" % (shape + (name,)))


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    threads = (torch.get_num_threads(), fastq.get_num_threads())
    torch.set_num_threads(1)
    fastq.set_num_threads(1)
    yield
    torch.set_num_threads(threads[0])
    fastq.set_num_threads(threads[1])


@pytest.mark.parametrize("shape,impl", list(_cases()))
def test_peer(benchmark, shape, impl):
    m, k, n = shape
    build = peers.LAYER_PEERS.get(impl) or peers.GEMM_PEERS[impl]
    fn = build(m, k, n, np.random.default_rng(0))
    if fn is None:
        pytest.skip("%s does not take this shape" % impl)
    benchmark.group = "%s %dx%dx%d" % ("layer" if impl in peers.LAYER_PEERS else "gemm", m, k, n)
    benchmark.extra_info.update(impl=impl, m=m, k=k, n=n, ops=2 * m * k * n)
    rounds = max(25, min(3000, int(2e10 / (2 * m * k * n))))
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=2)


@pytest.mark.parametrize("threads", [1, 2])
def test_threads(benchmark, threads):
    m, k, n = 256, 1024, 1024
    fn = peers.fastq_linear(m, k, n, np.random.default_rng(0))
    fastq.set_num_threads(threads)
    try:
        benchmark.group = "threads 256x1024x1024"
        benchmark.extra_info.update(impl="fastq_linear_%dt" % threads, m=m, k=k, n=n, ops=2 * m * k * n)
        # warm-up long enough for the OS to spread a new worker thread onto the other core
        benchmark.pedantic(fn, rounds=60, iterations=1, warmup_rounds=30)
    finally:
        fastq.set_num_threads(1)
