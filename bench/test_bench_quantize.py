"""float <-> uint8 conversions: fastq against torch and the numpy reference, single-threaded.

    pytest bench/test_bench_quantize.py --benchmark-only --benchmark-group-by=group \
        --benchmark-columns=median,iqr,rounds

Groups: quantize (fastq.quantize, torch.quantize_per_tensor, reference.quantize_per_tensor, and
the raw kernel on each ISA this CPU runs), dequantize (fastq.dequantize, torch .dequantize(),
reference.dequantize), and the dynamic-quantization range pass (one C min/max/finite pass vs
numpy's isfinite + min + max). Shapes: a 256-row MNIST batch (256x784) and one row (1x784).
Each group's peers run back to back, so their ratios come from one stretch of time.
"""
import numpy as np
import pytest

import fastq
from fastq import _kernels, reference

SHAPES = [(256, 784), (1, 784)]
SCALE, ZERO_POINT = 0.0123456, 117
ISA_NAMES = _kernels.backend_names()


def _floats(shape):
    return (np.random.default_rng(0).standard_normal(shape) * 1.2).astype(np.float32)


def _quantize_impls(x):
    inv = float(np.float32(1.0) / np.float32(SCALE))
    impls = {
        "fastq": lambda: fastq.quantize(x, SCALE, ZERO_POINT, "uint8"),
        "reference": lambda: reference.quantize_per_tensor(x, SCALE, ZERO_POINT, "uint8"),
    }
    for isa in _kernels.conversion_isas():
        impls["kernel_" + ISA_NAMES[isa]] = lambda isa=isa: _kernels.quantize(x, inv, ZERO_POINT, 0, 255, False, isa)
    try:
        import torch
        xt = torch.from_numpy(x)
        impls["torch"] = lambda: torch.quantize_per_tensor(xt, SCALE, ZERO_POINT, torch.quint8)
    except ImportError:
        pass
    return impls


QUANTIZE_IMPLS = ["fastq", "torch", "reference"] + ["kernel_" + n for n in ISA_NAMES]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "%dx%d" % s)
@pytest.mark.parametrize("impl", QUANTIZE_IMPLS)
def test_quantize(benchmark, shape, impl):
    x = _floats(shape)
    fn = _quantize_impls(x).get(impl)
    if fn is None:
        pytest.skip("%s is not available here" % impl)
    benchmark.group = "quantize %dx%d" % shape
    benchmark.extra_info.update(impl=impl, shape=list(shape))
    benchmark.pedantic(fn, rounds=300 if shape[0] > 1 else 3000, iterations=1, warmup_rounds=5)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "%dx%d" % s)
@pytest.mark.parametrize("impl", ["fastq", "torch", "reference"] + ["kernel_" + n for n in ISA_NAMES])
def test_dequantize(benchmark, shape, impl):
    q = fastq.quantize(_floats(shape), SCALE, ZERO_POINT, "uint8")
    if impl == "fastq":
        fn = lambda: fastq.dequantize(q)                               # noqa: E731
    elif impl.startswith("kernel_"):
        isa = ISA_NAMES.index(impl[len("kernel_"):])
        if isa not in _kernels.conversion_isas():
            pytest.skip("%s does not run here" % impl)
        fn = lambda: _kernels.dequantize(q.values, ZERO_POINT, float(np.float32(SCALE)), isa)  # noqa: E731
    elif impl == "reference":
        fn = lambda: reference.dequantize(q.values, q.scale, q.zero_point)  # noqa: E731
    else:
        torch = pytest.importorskip("torch")
        t = torch.quantize_per_tensor(torch.from_numpy(_floats(shape)), SCALE, ZERO_POINT, torch.quint8)
        fn = t.dequantize
    benchmark.group = "dequantize %dx%d" % shape
    benchmark.extra_info.update(impl=impl, shape=list(shape))
    benchmark.pedantic(fn, rounds=300 if shape[0] > 1 else 3000, iterations=1, warmup_rounds=5)


def _numpy_range(x):
    if not np.all(np.isfinite(x)):
        raise ValueError("x")
    return x.min(), x.max()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "%dx%d" % s)
@pytest.mark.parametrize("impl", ["fastq", "numpy"] + ["kernel_" + n for n in ISA_NAMES])
def test_dynamic_range(benchmark, shape, impl):
    x = _floats(shape)
    if impl == "numpy":
        fn = lambda: _numpy_range(x)                                   # noqa: E731
    elif impl == "fastq":
        fn = lambda: _kernels.minmax(x)                                # noqa: E731
    else:
        isa = ISA_NAMES.index(impl[len("kernel_"):])
        if isa not in _kernels.conversion_isas():
            pytest.skip("%s does not run here" % impl)
        fn = lambda: _kernels.minmax(x, isa)                           # noqa: E731
    benchmark.group = "dynamic range %dx%d" % shape
    benchmark.extra_info.update(impl=impl, shape=list(shape))
    benchmark.pedantic(fn, rounds=300 if shape[0] > 1 else 3000, iterations=1, warmup_rounds=5)
