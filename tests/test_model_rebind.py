"""model.py's compiled run re-binds a step whose bound callable misses (up to _REBINDS times):
the first, full run can hand a node values of another layout than the bound run hands it (an op
whose full call returns C order while its bound call keeps channels-last), so the node's first
binding misses on every compiled run until it is bound again for what it really receives."""
from __future__ import annotations

import numpy as np

import fastq
from fastq import layers as L
from fastq import model as model_mod
from fastq.layers._base import QUANT, Layer
from fastq.layers._fast import MISS
from fastq.model import Model, Node
from fastq.qtensor import QTensor


def _cl(v):
    return np.ascontiguousarray(v.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


class _Relayout(Layer):
    """A test op passing its values on: C order from its full call, channels-last from its bound
    one (as QuantizedAdd did before it kept its inputs' layout in the full call too)."""
    takes = QUANT

    def __call__(self, x):
        return QTensor(np.ascontiguousarray(x.values), x.scale, x.zero_point)

    def _bind(self, x):
        def run(x):
            if type(x) is not QTensor:
                return MISS
            return QTensor(_cl(x.values), x.scale, x.zero_point)
        return run


class _Flip(_Relayout):
    """Its bound call alternates the layouts, so the node after it keeps missing."""
    def _bind(self, x):
        state = [0]

        def run(x):
            state[0] += 1
            v = _cl(x.values) if state[0] % 2 else np.ascontiguousarray(x.values)
            return QTensor(v, x.scale, x.zero_point)
        return run


def _model(relayout):
    nodes = [Node("q", L.Quantize(0.03, 120), ("x",)), Node("re", relayout, ("q",)),
             Node("relu", L.ReLU(), ("re",)), Node("dq", L.Dequantize(), ("relu",))]
    return Model(nodes=nodes, inputs=("x",), outputs=("dq",))


def _step(m, name):
    i = [k for k, n in enumerate(m.nodes) if n.name == name][0]
    return [s for s in m._compiled.steps if s[7] == i][0]


def _want(m, x):
    return fastq.dequantize(m.run_values(x)["relu"])


def test_a_step_missing_on_another_layout_is_bound_again():
    m = _model(_Relayout())
    x = np.random.default_rng(0).uniform(-3, 3, (2, 8, 5, 5)).astype(np.float32)
    first = m(x)                                    # full run: relu bound for C-order values
    step = _step(m, "relu")
    f0 = step[0]
    assert f0 is not None and step[8] == 0
    assert f0(QTensor(_cl(fastq.quantize(x, 0.03, 120).values), 0.03, 120)) is MISS
    for _ in range(3):
        y = m(x)
        assert np.array_equal(y.view(np.uint32), _want(m, x).view(np.uint32))
        assert np.array_equal(y.view(np.uint32), first.view(np.uint32))
    assert step[0] is not f0 and step[0] is not None and step[8] == 1     # bound again, once
    q = QTensor(_cl(fastq.quantize(x, 0.03, 120).values), 0.03, 120)
    assert step[0](q) is not MISS                   # for the channels-last values it receives


def test_rebinding_stops_after_the_limit_and_results_stay_right():
    m = _model(_Flip())
    x = np.random.default_rng(1).uniform(-3, 3, (1, 4, 3, 3)).astype(np.float32)
    m(x)
    step = _step(m, "relu")
    for k in range(3 * model_mod._REBINDS):
        y = m(x)
        assert np.array_equal(y.view(np.uint32), _want(m, x).view(np.uint32)), k
        assert step[8] <= model_mod._REBINDS
    assert step[8] == model_mod._REBINDS
