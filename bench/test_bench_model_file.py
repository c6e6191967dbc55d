"""Model files: save / load of a 784-1024-1024-10 MLP (--quick: 256-256-256-10) in format 3
(checked header, sha256, fsync, atomic rename; load checks everything and builds the layers)
against the bare .npz the earlier formats were (np.savez; np.load of every member, then
from_state per layer, no checks), in one run.

    pytest bench/test_bench_model_file.py --benchmark-only --benchmark-group-by=group
"""
import numpy as np
import pytest

import fastq
from fastq.layers import Dequantize, Quantize

QUICK_SIZES = True


@pytest.fixture(scope="module")
def mlp(quick):
    sizes = (256, 256, 256, 10) if quick else (784, 1024, 1024, 10)
    rng = np.random.default_rng(0)
    layers = [Quantize(0.05, 128)]
    for k, n in zip(sizes, sizes[1:]):
        w = fastq.QTensor(rng.integers(-128, 128, (n, k)).astype(np.int8), rng.uniform(0.001, 0.01, n),
                          np.zeros(n, np.int32), axis=0)
        layers.append(fastq.QuantizedLinear(w, rng.standard_normal(n).astype(np.float32), 0.1, 128,
                                            relu=n != sizes[-1]))
    layers.append(Dequantize())
    return fastq.Model(layers)


def _npz_arrays(model):
    return {"%d.%s" % (i, k): v for i, layer in enumerate(model) for k, v in layer.get_arrays().items()}


@pytest.mark.parametrize("fmt", ["format 3", "bare npz"])
def test_save(benchmark, mlp, tmp_path, fmt):
    benchmark.group = "model file save"
    path = str(tmp_path / "m")
    if fmt == "format 3":
        benchmark(mlp.save, path)
    else:
        arrays = _npz_arrays(mlp)

        def save_npz():
            with open(path, "wb") as f:
                np.savez(f, **arrays)
        benchmark(save_npz)


@pytest.mark.parametrize("fmt", ["format 3", "bare npz"])
def test_load(benchmark, mlp, tmp_path, fmt):
    benchmark.group = "model file load"
    path = str(tmp_path / "m")
    if fmt == "format 3":
        mlp.save(path)
        loaded = benchmark(fastq.load, path)
        x = np.random.default_rng(1).standard_normal((4, 784 if mlp[1].in_features == 784 else 256))
        assert np.array_equal(loaded(x), mlp(x))
    else:
        with open(path, "wb") as f:
            np.savez(f, **_npz_arrays(mlp))

        kinds = [(type(layer), layer.get_settings()) for layer in mlp]

        def load_npz():                 # what format 2 did: np.load, then from_state per layer
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            return fastq.Model([cls.from_state(settings, {k.split(".", 1)[1]: v for k, v in arrays.items()
                                                          if k.startswith("%d." % i)})
                                for i, (cls, settings) in enumerate(kinds)])
        benchmark(load_npz)
