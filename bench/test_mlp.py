"""A whole MLP: fastq int8 against torch quantized (eager mode, engine x86) and torch
float32, batch 1 and batch 256, one thread; and the bytes each keeps for its weights.

The fastq model is chained by hand from QuantizedLinear.from_torch on the layers of the
torch quantized model (fastq.tools.bench.models.FastqMLP), float32 in and out like the torch
models, and its uint8 outputs are checked equal to torch's before timing.
"""
import numpy as np
import pytest

import fastq

torch = pytest.importorskip("torch")
from fastq.tools.bench import models as bm  # noqa: E402

QUICK_SIZES = True   # honours --quick (bench/conftest.py)

IMPLS = ("fastq int8", "torch quantized", "torch float32")


def _sizes(quick):
    return (256, 256, 256, 10) if quick else (784, 1024, 1024, 10)


def pytest_generate_tests(metafunc):
    if "batch" in metafunc.fixturenames:
        from conftest import is_quick
        metafunc.parametrize("batch", (1, 32) if is_quick(metafunc.config) else (1, 256))


@pytest.fixture(scope="module")
def models(quick):
    sizes = _sizes(quick)
    rng = np.random.default_rng(0)
    with bm.quiet_torch():
        fmodel = bm.float_mlp(sizes)
        qmodel = bm.quantized_mlp(fmodel, rng.standard_normal((256, sizes[0])).astype(np.float32))
        fq = bm.FastqMLP(qmodel, engine="x86")
    weights = {"fastq int8": bm.fastq_mlp_bytes(fq), "torch quantized": bm.torch_quantized_bytes(qmodel),
               "torch float32": bm.torch_float_bytes(fmodel)}
    return {"sizes": sizes, "fastq int8": fq, "torch quantized": qmodel, "torch float32": fmodel,
            "weights": weights}


@pytest.mark.parametrize("impl", IMPLS)
def test_mlp(benchmark, cost, models, batch, impl):
    x = np.random.default_rng(batch).standard_normal((batch, models["sizes"][0])).astype(np.float32)
    model = models[impl]
    if impl == "fastq int8":
        fq, qmodel = model, models["torch quantized"]
        with bm.quiet_torch(), torch.no_grad():
            theirs = qmodel.body(qmodel.quant(torch.from_numpy(x))).int_repr().numpy()
        ours = fq.quantized(fastq.quantize(x, fq.in_scale, fq.in_zero_point)).values
        assert np.array_equal(ours, theirs), "fastq MLP differs from torch: not a fair benchmark"
        fn = lambda: fq(x)  # noqa: E731
    else:
        xt = torch.from_numpy(x)

        def fn():
            with torch.no_grad():
                return model(xt)
    benchmark.group = "MLP %s batch %d" % ("-".join(map(str, models["sizes"])), batch)
    benchmark.extra_info.update(impl=impl, batch=batch, weights_bytes=models["weights"][impl])
    with bm.quiet_torch():
        benchmark.pedantic(fn, rounds=20 if batch == 1 else 5, iterations=1, warmup_rounds=2)
    cost(lambda s: {"us_per_call": s * 1e6, "samples_per_s": batch / s,
                    "weights_bytes": models["weights"][impl]})
