"""Messages that must say what is wrong (issue 16): each case once misled a user."""
import numpy as np
import pytest

import fastq
from fastq import export
from fastq.explain import price_tags
from fastq.tools.explain import random_dynamic


def test_price_tags_name_the_value_that_is_not_finite():
    with pytest.raises(ValueError, match=r"value 1 of 3 is nan"):
        price_tags([1.0, float("nan"), 2.0])
    with pytest.raises(ValueError, match="at least one value, got none"):
        price_tags([])


def test_dynamic_explain_of_a_qtensor_says_floats_are_expected():
    layer, x = random_dynamic("fbgemm", 8, 4, 2, seed=0)
    q = fastq.quantize(np.asarray(x, np.float32), 0.05, 128)
    with pytest.raises(TypeError, match="DynamicQuantizedLinear takes a float array.*QTensor"):
        layer.explain(q)


def test_a_graph_without_outputs_is_refused():
    nodes = [fastq.Node("relu", fastq.layers.ReLU(), ("input",))]
    with pytest.raises(ValueError, match="outputs: a model needs at least one output"):
        fastq.Model(nodes=nodes, outputs=())


def test_summary_shows_escapes_not_terminal_sequences():
    name = "evil\x1b[2J\x1b]0;owned\x07\nforged row"
    model = fastq.Model([fastq.layers.ReLU()], [name])
    text = model.summary(np.zeros((1, 3), np.float32))
    assert "\x1b" not in text and "\x07" not in text and "forged row" in text
    assert all(c == "\n" or " " <= c <= "~" for c in text)
    assert "\\x1b[2J" in text and len(text.splitlines()) == len(fastq.Model([fastq.layers.ReLU()]).summary(
        np.zeros((1, 3), np.float32)).splitlines())


def test_export_to_an_empty_directory_name_is_a_value_error_naming_directory():
    from fastq.tools.explain import random_layer
    l1, _ = random_layer("fbgemm", 6, 5, 1, seed=1)
    model = fastq.Model([fastq.layers.Quantize(0.03, 120), l1, fastq.layers.Dequantize()])
    with pytest.raises(ValueError, match="directory: expected a folder path"):
        export.export_c(model, "")


def test_an_embedding_is_named_when_calibration_cannot_run_it():
    """quantize_model feeds float batches; an Embedding refuses them. The message names the fx
    node and the module type (it used to say only that "the model rejects an input", with the
    name buried in torch's fx dump), and keeps torch's first line only."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(self.emb(x))

    with pytest.raises(ValueError, match=r"at fx node 'emb' \(Embedding\)") as info:
        fastq.quantize_model(Tagger().eval(), [np.random.default_rng(0).integers(0, 10, (2, 5))])
    assert "\n" not in str(info.value)
    with pytest.raises(NotImplementedError, match=r"Embedding is not supported by fastq.from_torch"):
        fastq.from_torch(Tagger().eval())
