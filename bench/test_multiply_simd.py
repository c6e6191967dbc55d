"""SIMD multiply(-accumulate) throughput, one core: the measured peaks that the other
benchmarks quote as "% of peak" (fastq._bench.peak_int8_gops() and friends).

vpdpbusd (u8 x s8 -> s32), vpmaddwd (s16), vpmulld (s32), vfmadd231ps (f32), vfmadd231pd
(f64), at 512 bits (AVX-512) and 256 bits (AVX2 / AVX-VNNI), each only where this CPU runs
it (run-time detection in src/fastq/csrc/bench/simd.c). Operations: 2 per multiply-
accumulate, 1 per vpmulld multiply.
"""
import pytest

from fastq import _bench

QUICK_SIZES = True   # honours --quick (bench/conftest.py)

CASES = [(i, b) for i in _bench.INSTRUCTIONS for b in _bench.WIDTHS]


@pytest.mark.parametrize("instr,bits", CASES, ids=["%s-%d" % c for c in CASES])
def test_simd_peak(benchmark, cost, quick, core_ghz, instr, bits):
    if not _bench.simd_supported(instr, bits):
        pytest.skip("this CPU does not run %s at %d bits" % (instr, bits))
    n = 50_000 if quick else 1_000_000          # iterations per call, each one instruction per chain
    instrs = n * _bench.simd_chains(bits)
    ops = instrs * _bench.simd_products(instr, bits) * _bench.ops_per_product(instr)
    benchmark.group = "SIMD peak, one core (%s)" % ("quick" if quick else "n=%d" % n)
    benchmark.extra_info.update(instr=instr, bits=bits, type=_bench.INSTRUCTION_TYPES[instr])
    benchmark.pedantic(_bench.simd_ns, args=(instr, bits, n, 1), rounds=3 if quick else 10,
                       iterations=1, warmup_rounds=1)
    cost(lambda s: {"gops": ops / s / 1e9, "ops_per_cycle": ops / (s * 1e9 * core_ghz),
                    "instr_per_cycle": instrs / (s * 1e9 * core_ghz)})
