"""A whole MLP: fastq int8 against torch quantized (eager mode, engine x86) and torch
float32, batch 1 and batch 256, one thread; and the bytes each keeps for its weights.

The fastq model is chained by hand from QuantizedLinear.from_torch on the layers of the
torch quantized model (fastq.tools.bench.models.FastqMLP), float32 in and out like the torch
models, and its uint8 outputs are checked equal to torch's before timing.
"""
import numpy as np
import pytest

pytest.importorskip("torch")
from fastq.tools.bench import models as bm  # noqa: E402
from fastq.tools.bench.suite import LEVELS  # noqa: E402

QUICK_SIZES = True   # honours --quick (bench/conftest.py): the sizes of `fastq bench --quick`

IMPLS = ("fastq int8", "torch quantized", "torch float32")


def _level(quick):
    return LEVELS["quick" if quick else "default"]


def pytest_generate_tests(metafunc):
    if "batch" in metafunc.fixturenames:
        from conftest import is_quick
        metafunc.parametrize("batch", _level(is_quick(metafunc.config))["mlp_batches"])


@pytest.fixture(scope="module")
def models(quick):
    return bm.mlp_models(_level(quick)["mlp"], "x86")


@pytest.mark.parametrize("impl", IMPLS)
def test_mlp(benchmark, cost, models, batch, impl):
    x = np.random.default_rng(batch).standard_normal((batch, models["sizes"][0])).astype(np.float32)
    if impl == "fastq int8":
        assert bm.mlp_mismatches(models, x) == 0, "fastq MLP differs from torch: not a fair benchmark"
    fn = bm.mlp_calls(models, x)[impl]
    benchmark.group = "MLP %s batch %d" % ("-".join(map(str, models["sizes"])), batch)
    benchmark.extra_info.update(impl=impl, batch=batch, weights_bytes=models["weights"][impl])
    with bm.quiet_torch():
        benchmark.pedantic(fn, rounds=20 if batch == 1 else 5, iterations=1, warmup_rounds=2)
    cost(lambda s: {"us_per_call": s * 1e6, "samples_per_s": batch / s,
                    "weights_bytes": models["weights"][impl]})
