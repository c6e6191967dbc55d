"""Scalar multiply in C, per type: latency (one dependent chain) and throughput
(12 independent chains), in ns and core cycles per multiply.

How the C loops were checked not to be optimized away: see the comment at the top of
src/fastq/csrc/bench/scalar_mul.c (objdump of the built extension: one imul / mulss /
mulsd per C multiply, all operands in registers, the chain kept by empty asm barriers).
Cycles = ns x the core clock estimated from a dependent chain of integer adds (1 per
cycle), not the TSC.
"""
import pytest

from fastq import _bench

QUICK_SIZES = True   # honours --quick (bench/conftest.py)


@pytest.mark.parametrize("mode", _bench.MODES)
@pytest.mark.parametrize("dtype", _bench.DTYPES)
def test_scalar_multiply(benchmark, cost, quick, core_ghz, dtype, mode):
    n = 200_000 if quick else 4_000_000          # multiplies per chain per call
    chains = 1 if mode == "latency" else _bench.THROUGHPUT_CHAINS
    benchmark.group = "scalar multiply %s (n=%d x %d chains per call)" % (mode, n, chains)
    benchmark.extra_info.update(dtype=dtype, mode=mode, multiplies=n * chains)
    benchmark.pedantic(_bench.scalar_mul_ns, args=(dtype, mode, n, 1),
                       rounds=3 if quick else 10, iterations=1, warmup_rounds=1)
    cost(lambda s: {"ns_per_mul": s * 1e9 / (n * chains),
                    "cycles_per_mul": s * 1e9 / (n * chains) * core_ghz, "core_ghz": core_ghz})


def test_core_clock(benchmark, cost, quick):
    """The yardstick: a dependent chain of 64-bit adds, one per core cycle."""
    n = 1_000_000 if quick else 20_000_000
    benchmark.group = "core clock: dependent add chain (n=%d per call)" % n
    benchmark.pedantic(_bench.add_chain_ns, args=(n, 1), rounds=3 if quick else 10, iterations=1,
                       warmup_rounds=1)
    cost(lambda s: {"ns_per_add": s * 1e9 / n, "core_ghz": n / (s * 1e9)})
