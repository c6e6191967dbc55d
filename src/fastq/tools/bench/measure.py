"""How `fastq bench` and `pytest bench/` time a call and turn seconds into figures.

Both run on one thread by default (fastq, torch, onnxruntime), so figures compare with the
one-core peaks of fastq._bench; both quote GOPS = 2*M*K*N / seconds and "% of peak" of the
measured vpdpbusd (or FMA) throughput. pytest-benchmark does its own timing in bench/; the
threads, the backend, the operation counts and the rounds come from here.
"""
from __future__ import annotations

import contextlib
import time

import fastq


def _torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


@contextlib.contextmanager
def threads(n):
    """fastq and torch (when installed) use n threads inside; their settings come back after."""
    torch = _torch_or_none()
    before = (fastq.get_num_threads(), torch.get_num_threads() if torch else None)
    fastq.set_num_threads(n)
    if torch:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        fastq.set_num_threads(before[0])
        if torch:
            torch.set_num_threads(before[1])


@contextlib.contextmanager
def backend(name):
    """fastq runs on the ISA backend `name` inside (ValueError when this CPU cannot run it)."""
    before = fastq.get_backend()
    fastq.set_backend(name)
    try:
        yield name
    finally:
        fastq.set_backend(before)


def best_seconds(fn, min_time=0.05, repeats=3):
    """Seconds per call of fn(): the best of `repeats` timings of a loop lasting ~min_time
    (the loop count comes from one warm-up call). The best, because the machine is shared:
    the least disturbed run is the one that measures the code."""
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    loops = max(1, int(min_time / once))
    best = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        t = (time.perf_counter() - t0) / loops
        best = t if best is None or t < best else best
    return best


def matmul_ops(m, k, n):
    """Operations of an [M, K] x [K, N] product: one multiply and one add per term."""
    return 2 * m * k * n


def gops(ops, seconds):
    return ops / seconds / 1e9


def pct_of_peak(gops_value, peak_gops):
    """100 * gops / peak, or None when the peak is unknown (no such instruction here)."""
    return 100.0 * gops_value / peak_gops if peak_gops else None


def rounds_for(ops, budget_ops, lo, hi):
    """How many timed rounds of a call of `ops` operations fit a budget, within [lo, hi]."""
    return max(lo, min(hi, int(budget_ops / ops)))
