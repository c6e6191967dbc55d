"""fastq.engines (the engine rules, once) and the importer registry (fastq.importers): the
rules against what torch itself does with each engine, and the registry's refusals."""
import sys

import numpy as np
import pytest
import torch
import torch.ao.nn.quantized as nnq

import fastq
from fastq import engines, importers
from fastq.importers import torch_fx

from torch_helpers import engine as pinned_engine


def test_every_engine_torch_reproduces_is_in_the_table():
    assert set(engines.ENGINES) == {"x86", "fbgemm", "qnnpack"}
    assert engines.for_requant("fbgemm") == "x86" and engines.for_requant("qnnpack") == "qnnpack"
    assert engines.for_requant("tflite") is None


@pytest.mark.parametrize("bad,exc,words", [
    (3, TypeError, r"engine: expected a torch quantized engine name, got 'int'"),
    ("onednn", ValueError, r"engine: 'onednn' is not reproduced by fastq; use one of fbgemm, qnnpack, x86"),
])
def test_engine_refuses(bad, exc, words):
    with pytest.raises(exc, match=words):
        engines.engine(bad)
    with pytest.raises(exc, match=words):
        fastq.quantize_model([np.eye(2, dtype=np.float32)], [np.ones((1, 2), np.float32)], engine=bad)


def test_current_engine_is_torchs_when_torch_is_imported():
    for name in ("qnnpack", "x86"):
        with pinned_engine(name):
            assert engines.current_name() == name


@pytest.mark.parametrize("engine", sorted(engines.ENGINES))
def test_the_rules_are_what_the_importer_builds_and_torch_computes(engine, rng):
    """A quantized Linear and a quantized add under each engine: from_torch picks the rules'
    settings, and the result is torch's to the bit (the rules are not just self-consistent)."""
    rules = engines.engine(engine)
    with pinned_engine(engine):
        lin = nnq.Linear(16, 8)
        w = torch.quantize_per_tensor(torch.from_numpy(rng.standard_normal((8, 16)).astype(np.float32)),
                                      0.02, 0, torch.qint8)
        lin.set_weight_bias(w, torch.from_numpy(rng.standard_normal(8).astype(np.float32)))
        lin.scale, lin.zero_point = 0.05, 120
        layer = fastq.QuantizedLinear.from_torch(lin)
        assert (layer.requant, layer.bias_rounding) == (rules.requant, rules.bias_rounding)
        x = torch.quantize_per_tensor(torch.from_numpy(rng.standard_normal((5, 16)).astype(np.float32)),
                                      0.03, 128, torch.quint8)
        want = lin(x).int_repr().numpy()
        got = layer(fastq.QTensor.from_torch(x)).values
        assert np.array_equal(got, want)

        class Add(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.f = nnq.QFunctional()
                self.f.scale, self.f.zero_point = 0.07, 100

            def forward(self, a, b):
                return self.f.add(a, b)

        model = fastq.from_torch(Add())
        add = [n.layer for n in model.nodes if type(n.layer).__name__ == "QuantizedAdd"][0]
        assert add.arithmetic == rules.add_arithmetic


def test_the_torch_importer_is_found_for_torch_modules_only():
    assert importers.find(torch.nn.Linear(2, 2)) is importers.IMPORTERS["torch"]
    assert importers.find([np.eye(2)]) is None
    assert importers.get("torch").load("convert") is torch_fx.convert


@pytest.mark.parametrize("bad,exc,words", [
    (None, TypeError, r"format: expected a str, got NoneType"),
    ("onnx", ValueError, r"format: 'onnx' has no importer; known: torch"),
])
def test_get_refuses(bad, exc, words):
    with pytest.raises(exc, match=words):
        importers.get(bad)


def test_a_capability_a_format_lacks_is_refused_by_name():
    imp = importers.Importer("toy", lambda obj: False, "pip install toy", convert=None)
    with pytest.raises(NotImplementedError, match="calibrate: fastq has no calibrate importer for toy models"):
        imp.load("calibrate")


def test_a_missing_foreign_library_says_how_to_install_it(monkeypatch):
    for name in [m for m in sys.modules if m.startswith("fastq.importers.torch")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)           # any "import torch" now fails
    with pytest.raises(ImportError, match=r"torch models need torch: pip install torch==2.13.0"):
        importers.get("torch").load("calibrate")


def test_the_module_table_refuses_what_it_does_not_hold():
    with pytest.raises(NotImplementedError, match=r"module torch.nn.modules.activation.Sigmoid is not supported "
                                                  r"by fastq.from_torch \(fx node '\?', module 'act'\); supported "
                                                  r"modules: LinearReLU, Linear, Quantize"):
        torch_fx.leaf_layer(torch.nn.Sigmoid(), "act", "x86")
    with pytest.raises(TypeError, match=r"module 'fc': a float Linear; quantize the model first"):
        torch_fx.leaf_layer(torch.nn.Linear(2, 2), "fc", "x86")


def test_the_0_1_module_paths_still_import():
    from fastq import calibrate, fx_calibrate, fx_convert, torch_compat
    assert torch_compat.model_from_torch is torch_fx.convert
    assert fx_convert.GraphBuilder is torch_fx.GraphBuilder
    assert callable(fx_calibrate.quantize_torch)
    assert calibrate.ENGINE_REQUANT == {"x86": "fbgemm", "fbgemm": "fbgemm", "qnnpack": "qnnpack"}
