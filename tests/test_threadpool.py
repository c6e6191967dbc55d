"""The thread pool and per-call state under concurrent callers (issue 9, items 2 and 6)."""
import threading

import numpy as np
import pytest

import fastq
from fastq import _kernels, reference


def test_overflow_check_is_per_call_under_a_racing_thread():
    """One thread calls with an input that overflows int32 (must raise every time) and a large
    non-contiguous input (its copy releases the GIL); another calls the same layer with another
    input zero point, whose bound needs no check. The bound used to live in the layer: the
    first call then skipped its check and returned wrapped values."""
    k = 40000
    w = np.full((2, k), -128, np.int8)
    layer = fastq.QuantizedLinear(fastq.QTensor(w, 0.001, 127), None, 1000.0, 0)
    bad = fastq.QTensor(np.full((k, 8), 255, np.uint8).T, 0.01, 0)       # 255 * 255 * K > 2^31
    good = fastq.QTensor(np.full((8, k), 130, np.uint8), 0.01, 128)
    expect_good = reference.requant_fbgemm(reference.qgemm(good.values, 128, w, 127), 0.01, [0.001], 1000.0, 0)
    failures, stop = [], threading.Event()

    def overflowing():
        try:
            for _ in range(150):
                try:
                    layer(bad)
                    failures.append("no error")
                except ValueError:
                    pass
        finally:
            stop.set()

    def fitting():
        while not stop.is_set():
            if not np.array_equal(layer(good).values, expect_good):
                failures.append("wrong result")

    threads = [threading.Thread(target=overflowing), threading.Thread(target=fitting)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


@pytest.mark.parametrize("backend_name", [b for b in fastq.backends()])
def test_pool_stress_changing_thread_counts(backend_name):
    """Callers that take the pool one after another with different thread counts (a worker
    that sat out one loop must not join the next one twice), others running inline meanwhile,
    while a thread changes set_num_threads: every result equals the one-thread result."""
    rng = np.random.default_rng(5)
    n, k = 512, 256
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    layer = fastq.QuantizedLinear(fastq.QTensor(w, rng.uniform(0.01, 0.02, n), np.zeros(n, np.int64), axis=0),
                                  rng.normal(0, 1, n).astype(np.float32), 0.5, 64)
    xs = [fastq.QTensor(rng.integers(0, 256, (m, k), dtype=np.uint8), 0.02, 3) for m in (16, 40, 64)]
    old_backend, old_threads = fastq.get_backend(), fastq.get_num_threads()
    fastq.set_backend(backend_name)
    fastq.set_num_threads(1)
    expect = [layer(x).values for x in xs]
    failures, stop = [], threading.Event()

    def caller(offset):
        for i in range(150):
            j = (i + offset) % len(xs)
            if not np.array_equal(layer(xs[j]).values, expect[j]):
                failures.append((offset, i))

    def changer():
        i = 0
        while not stop.is_set():
            fastq.set_num_threads(1 + i % 5)
            i += 1

    try:
        ch = threading.Thread(target=changer)
        ch.start()
        callers = [threading.Thread(target=caller, args=(o,)) for o in range(3)]
        for t in callers:
            t.start()
        for t in callers:
            t.join()
        stop.set()
        ch.join()
    finally:
        fastq.set_backend(old_backend)
        fastq.set_num_threads(0 if old_threads is None else 0)
    assert failures == []


def test_gemm_direct_threads_agree():
    """fq_gemm with explicit thread counts 1..6 back to back (the pool grows and shrinks its
    active set every call)."""
    rng = np.random.default_rng(6)
    w = rng.integers(-128, 128, (300, 200), dtype=np.int8)
    pw = _kernels.PackedWeights(w, np.zeros(1, np.int32))
    ep = _kernels.Epilogue(pw, _kernels.EPI_INT32, pw.col_offsets(0))
    a = rng.integers(0, 256, (64, 200), dtype=np.uint8)
    expect = _kernels.gemm(pw, ep, a, 1)
    for i in range(300):
        assert np.array_equal(_kernels.gemm(pw, ep, a, 1 + (i * 7) % 6), expect)
