"""A resnet18-shaped torch model (stem conv, max pool, residual blocks whose identity input is
the max pool's or the previous add's output, adaptive average pool, linear) imported with
from_torch under x86 and qnnpack: its compiled run has every step bound (none falls back to the
full call each time: the max pool and the adds keep their inputs' channels-last layout in the
full run as in the bound one), and its outputs and every intermediate value equal torch's.
Odd sizes put a scalar tail after torch's 64-element vector body."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402

import fastq  # noqa: E402
import cnn_models as CM  # noqa: E402


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.a, self.b = CM.cbr(c, c, 3, 1, 1), CM.cbr(c, c, 3, 1, 1, relu=False)
        self.add = nn.quantized.FloatFunctional()

    def forward(self, x):
        return self.add.add_relu(self.b(self.a(x)), x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = torch.ao.quantization.QuantStub(), torch.ao.quantization.DeQuantStub()
        self.stem = CM.cbr(3, 12, 3, 2, 1)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.b1, self.b2 = Block(12), Block(12)
        self.avg, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(12, 5)

    def forward(self, x):
        x = self.b2(self.b1(self.pool(self.stem(self.quant(x)))))
        return self.dequant(self.fc(torch.flatten(self.avg(x), 1)))


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
def test_every_step_bound_and_equal_to_torch(engine):
    if engine not in torch.backends.quantized.supported_engines:
        pytest.skip("engine %s not in this torch" % engine)
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        net = Net()
        CM._randomize_bn(net, 3)
        tm = CM.convert(net, engine, (4, 3, 23, 21), CM._fuse_cbr(net))
        m = fastq.from_torch(tm)
        for x in CM.inputs((3, 23, 21), batches=(1, 3)):     # 12 x 6 x 6 = 432 values a sample
            with torch.no_grad():
                want = tm(torch.from_numpy(x)).numpy()
            for _ in range(3):                                 # full, compiled, compiled (re-bound)
                y = m(x)
                assert np.array_equal(y.view(np.uint32), want.view(np.uint32)), engine
            unbound = [m.nodes[s[7]].name for s in m._compiled.steps if s[0] is None]
            assert unbound == [], unbound
            assert all(s[8] == 0 for s in m._compiled.steps)  # bound at once, never again
            bad, total = CM.value_mismatches(tm, m, [x])[:2]
            assert bad == 0 and total > 0
    finally:
        torch.backends.quantized.engine = old
