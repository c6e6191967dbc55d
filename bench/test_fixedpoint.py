"""fastq.multiply_by_quantized_multiplier (C, GIL released) against its numpy reference, per
rounding variant, per tensor and per channel: ns per element."""
import numpy as np
import pytest

import fastq
from fastq import reference

QUICK_SIZES = True   # honours --quick (bench/conftest.py)


def _data(n_elements, channels):
    rng = np.random.default_rng(0)
    acc = rng.integers(-(2**24), 2**24, (n_elements // channels, channels)).astype(np.int32)
    pairs = [fastq.quantize_multiplier(r) for r in 2.0 ** rng.uniform(-12, -4, channels)]
    return acc, np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


@pytest.mark.parametrize("channels", [1, 64])
@pytest.mark.parametrize("rounding", ["double", "single", "double_up"])
@pytest.mark.parametrize("impl", ["fastq", "numpy_reference"])
def test_multiply_by_quantized_multiplier(benchmark, cost, quick, impl, rounding, channels):
    n = 1 << (16 if quick else 20)
    acc, q, s = _data(n, channels)
    if channels == 1:
        q, s = q[:1], s[:1]
    benchmark.group = "multiply_by_quantized_multiplier, %d int32 (%s)" % (n, "per tensor" if channels == 1 else "per channel")
    benchmark.extra_info.update(impl=impl, rounding=rounding, elements=n)
    if impl == "fastq":
        fn = lambda: fastq.multiply_by_quantized_multiplier(acc, q, s, rounding=rounding)  # noqa: E731
    else:
        fn = lambda: reference.MBQM[rounding](acc, q, s)  # noqa: E731
    benchmark.pedantic(fn, rounds=3 if quick else 10, iterations=1, warmup_rounds=1)
    cost(lambda sec: {"ns_per_element": sec * 1e9 / n})
