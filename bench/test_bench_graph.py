"""The graph's own cost: fastq.from_torch of the 784-256-128-10 MLP (QuantStub, fused
Linear+ReLU x2, Linear, DeQuantStub: 7 nodes with the two Identity left by fusion) against
(a) the same layers called one after another in a plain Python loop (the sum of the layer
calls), and (b) torch's converted model, batch 1 and 256, one thread.

    pytest bench/test_bench_graph.py --benchmark-only --benchmark-group-by=param:batch

overhead per node = (graph - loop) / nodes; the outputs are checked equal before timing."""
import numpy as np
import pytest

import fastq

torch = pytest.importorskip("torch")
from fastq.tools.bench import models as bm  # noqa: E402

QUICK_SIZES = True
SIZES = (784, 256, 128, 10)


@pytest.fixture(scope="module")
def mlp():
    rng = np.random.default_rng(0)
    with bm.quiet_torch():
        torch.set_num_threads(1)
        fmodel = bm.float_mlp(SIZES)
        qmodel = bm.quantized_mlp(fmodel, rng.standard_normal((256, SIZES[0])).astype(np.float32))
        model = fastq.from_torch(qmodel, engine="x86")
    fastq.set_num_threads(1)
    return qmodel, model, [n.layer for n in model.nodes]


def _loop(layers, x):
    for layer in layers:
        x = layer(x)
    return fastq.dequantize(x) if isinstance(x, fastq.QTensor) else x


@pytest.mark.parametrize("batch", (1, 256))
@pytest.mark.parametrize("impl", ("fastq graph", "fastq layer loop", "torch quantized"))
def test_graph_overhead(benchmark, mlp, impl, batch):
    qmodel, model, layers = mlp
    x = np.random.default_rng(1).standard_normal((batch, SIZES[0])).astype(np.float32)
    with torch.no_grad():
        expected = qmodel(torch.from_numpy(x)).numpy()
    assert np.array_equal(model(x), expected) and np.array_equal(_loop(layers, x), expected)
    benchmark.group = "graph batch %d" % batch
    benchmark.extra_info["nodes"] = len(model.nodes)
    if impl == "fastq graph":
        benchmark(model, x)
    elif impl == "fastq layer loop":
        benchmark(_loop, layers, x)
    else:
        xt = torch.from_numpy(x)

        def run():
            with torch.no_grad():
                return qmodel(xt)
        benchmark(run)


@pytest.mark.parametrize("n", (4096, 65536))
@pytest.mark.parametrize("impl", ("fastq add", "torch add", "fastq mul", "torch mul"))
def test_elementwise_kernels(benchmark, impl, n):
    """The residual-path ops alone: QuantizedAdd / QuantizedMul against torch.ops.quantized
    (engine x86, one thread), n uint8 elements; outputs checked equal first."""
    from fastq.layers import arith as ar
    torch.set_num_threads(1)
    torch.backends.quantized.engine = "x86"
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 256, n).astype(np.uint8), rng.integers(0, 256, n).astype(np.uint8)
    qa, qb = fastq.QTensor(a, 0.02, 120), fastq.QTensor(b, 0.03, 130)
    with bm.quiet_torch():
        ta = torch._make_per_tensor_quantized_tensor(torch.from_numpy(a), 0.02, 120)
        tb = torch._make_per_tensor_quantized_tensor(torch.from_numpy(b), 0.03, 130)
    add, mul = ar.QuantizedAdd(0.04, 128), ar.QuantizedMul(0.01, 100)
    assert np.array_equal(add(qa, qb).values, torch.ops.quantized.add(ta, tb, 0.04, 128).int_repr().numpy())
    assert np.array_equal(mul(qa, qb).values, torch.ops.quantized.mul(ta, tb, 0.01, 100).int_repr().numpy())
    benchmark.group = "elementwise n=%d" % n
    run = {"fastq add": lambda: add(qa, qb), "torch add": lambda: torch.ops.quantized.add(ta, tb, 0.04, 128),
           "fastq mul": lambda: mul(qa, qb), "torch mul": lambda: torch.ops.quantized.mul(ta, tb, 0.01, 100)}[impl]
    benchmark(run)
