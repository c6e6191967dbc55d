"""Real torch eager-mode models for the graph tests: each family converted under one engine.
FAMILIES: name -> builder(engine) -> (converted torch model, list of float inputs)."""
import functools
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.ao.quantization as tq
import torch.ao.nn.quantized as nnq

CAL_SCALE, TEST_SCALE = 1.0, 4.0        # test inputs reach 4x past the calibrated range


def _convert(m, engine, cal_shape, fuse=None, seed=0):
    m.eval()
    if fuse:
        tq.fuse_modules(m, fuse, inplace=True)
    m.qconfig = tq.get_default_qconfig(engine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = tq.prepare(m)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(3):
            p(torch.randn(*cal_shape, generator=gen) * CAL_SCALE)
        return tq.convert(p)


def _inputs(shape_tail, seed=0):
    rng = np.random.default_rng(1000 + seed)
    xs = [(rng.standard_normal((b,) + shape_tail) * TEST_SCALE).astype(np.float32) for b in (1, 7, 64)]
    # values on a grid of the input scale's half steps: near-ties for Quantize
    xs.append(np.round(rng.uniform(-3, 3, (5,) + shape_tail) * 64).astype(np.float32) / 128)
    return xs


class Order(nn.Module):
    """Registered b, a; called b(a(x))."""
    def __init__(self):
        super().__init__()
        self.quant, self.b, self.a, self.dequant = tq.QuantStub(), nn.Linear(24, 24), nn.Linear(24, 24), tq.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.b(self.a(self.quant(x))))


class Functional(nn.Module):
    """torch.flatten, F.relu, torch.relu, in-place relu, view with size(), transpose / permute /
    contiguous / reshape, squeeze / unsqueeze, Hardtanh (module and in-place F.hardtanh), relu6,
    dropout."""
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.fc1, self.fc2, self.fc3 = nn.Linear(4 * 6, 32), nn.Linear(32, 32), nn.Linear(32, 8)
        self.act = nn.Hardtanh(-0.5, 1.5)
        self.drop = nn.Dropout(0.2)

    def forward(self, x):
        x = self.quant(x)                      # [B, 4, 6]
        x = x.transpose(1, 2).contiguous().permute(0, 2, 1)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.drop(x)
        x = self.fc2(x)
        x = torch.relu(x)
        x = x.unsqueeze(1)
        x = F.relu(x, inplace=True)
        x = x.view(x.size(0), -1)
        x = self.act(x)
        F.hardtanh(x, -0.25, 1.0, inplace=True)
        x = F.relu6(self.fc3(x)).reshape(-1, 2, 4).squeeze(0)
        x = F.dropout(x, 0.3, training=self.training)
        return self.dequant(x)


class Residual(nn.Module):
    """x + f(x) through QFunctional: add (unfused) or add_relu (fused), then mul / scalars."""
    def __init__(self, fused):
        super().__init__()
        self.fused = fused
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.fc1, self.fc2, self.fc3 = nn.Linear(24, 24), nn.Linear(24, 24), nn.Linear(24, 10)
        self.relu = nn.ReLU()
        self.skip, self.gate = nnq.FloatFunctional(), nnq.FloatFunctional()
        self.s1, self.s2 = nnq.FloatFunctional(), nnq.FloatFunctional()

    def forward(self, x):
        x = self.quant(x)
        y = self.fc2(self.relu(self.fc1(x)))
        y = self.skip.add_relu(x, y) if self.fused else self.relu(self.skip.add(x, y))
        y = self.gate.mul(y, x)
        y = self.s2.mul_scalar(self.s1.add_scalar(y, 0.37), -1.5)
        return self.dequant(self.fc3(y))


class Concat(nn.Module):
    """Two branches of different qparams joined by QFunctional.cat (requantized)."""
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.left, self.right = nn.Sequential(nn.Linear(16, 20), nn.ReLU()), nn.Linear(16, 12)
        self.cat = nnq.FloatFunctional()
        self.head = nn.Linear(32, 5)

    def forward(self, x):
        x = self.quant(x)
        return self.dequant(self.head(self.cat.cat([self.left(x), self.right(x)], dim=1)))


class Block(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.fc, self.relu, self.add = nn.Linear(n, n), nn.ReLU(), nnq.FloatFunctional()

    def forward(self, x):
        return self.add.add(x, self.relu(self.fc(x)))


class Nested(nn.Module):
    """ModuleList / ModuleDict of blocks, one block called twice (shared weights)."""
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.blocks = nn.ModuleList([Block(20), Block(20)])
        self.heads = nn.ModuleDict({"main": nn.Linear(20, 6), "aux": nn.Linear(20, 3)})

    def forward(self, x):
        x = self.quant(x)
        x = self.blocks[0](x)
        x = self.blocks[1](x)
        x = self.blocks[0](x)                  # called twice
        return self.dequant(self.heads["main"](x))


class TupleOut(nn.Module):
    """Two outputs (a tuple), one read through getitem of size()."""
    def __init__(self):
        super().__init__()
        self.quant, self.dq1, self.dq2 = tq.QuantStub(), tq.DeQuantStub(), tq.DeQuantStub()
        self.a, self.b = nn.Linear(12, 7), nn.Linear(12, 3)

    def forward(self, x):
        x = self.quant(x)
        n = x.size()[0]
        return self.dq1(self.a(x)), self.dq2(self.b(x).reshape(n, 3))


class InPlace(nn.Module):
    """In-place relu whose result is read through the tensor it changed (not its return value)."""
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.fc1, self.fc2 = nn.Linear(16, 16), nn.Linear(16, 6)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.quant(x)
        y = self.fc1(x)
        F.relu(y, inplace=True)
        z = self.fc2(y)
        self.relu(z)
        return self.dequant(z)


class DynamicNet(nn.Module):
    """Float residual add, torch.cat, ReLU, ReLU6, Hardtanh, scalar mul / add around dynamic
    Linears, between unconverted stubs."""
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(18, 18), nn.Linear(18, 10), nn.Linear(28, 4)
        self.relu, self.act = nn.ReLU(), nn.Hardtanh(-2.0, 2.0)
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()     # unconverted: floats pass

    def forward(self, x):
        x = self.quant(x)
        y = x + self.relu(self.fc1(x))
        z = torch.cat([F.relu6(self.fc2(y)), self.act(y)], dim=1)
        return self.dequant(self.fc3(z * 0.5) + 1.0)


def order(engine):
    torch.manual_seed(0)
    return _convert(Order(), engine, (64, 24)), _inputs((24,))


def functional(engine):
    torch.manual_seed(1)
    return _convert(Functional(), engine, (64, 4, 6)), _inputs((4, 6))


def residual_unfused(engine):
    torch.manual_seed(2)
    return _convert(Residual(False), engine, (64, 24)), _inputs((24,))


def residual_fused(engine):
    torch.manual_seed(3)
    return _convert(Residual(True), engine, (64, 24), fuse=[["fc1", "relu"]]), _inputs((24,))


def concat(engine):
    torch.manual_seed(4)
    return _convert(Concat(), engine, (64, 16)), _inputs((16,))


def nested(engine):
    torch.manual_seed(5)
    return _convert(Nested(), engine, (64, 20)), _inputs((20,))


def quant_wrapper(engine):
    torch.manual_seed(6)
    inner = nn.Sequential(nn.Linear(10, 30), nn.ReLU(), nn.Linear(30, 10), nn.ReLU6(), nn.Linear(10, 4))
    return _convert(tq.QuantWrapper(inner), engine, (64, 10), fuse=[["module.0", "module.1"]]), _inputs((10,))


def tuple_out(engine):
    torch.manual_seed(7)
    return _convert(TupleOut(), engine, (64, 12)), _inputs((12,))


def inplace(engine):
    torch.manual_seed(9)
    return _convert(InPlace(), engine, (64, 16)), _inputs((16,))


def dynamic(engine):
    torch.manual_seed(8)
    m = DynamicNet().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tq.quantize_dynamic(m, {nn.Linear}), _inputs((18,))


_BUILDERS = {
    "order": order, "functional": functional, "residual_unfused": residual_unfused,
    "residual_fused": residual_fused, "concat": concat, "nested": nested,
    "quant_wrapper": quant_wrapper, "tuple_out": tuple_out, "inplace": inplace, "dynamic": dynamic,
}


@functools.lru_cache(maxsize=None)
def _built(name, engine):
    return _BUILDERS[name](engine)


# name -> builder(engine): each (family, engine) is converted once per test session (the tests
# only read the torch models and inputs).
FAMILIES = {name: functools.partial(_built, name) for name in _BUILDERS}


def mismatches(tm, model, xs):
    """(mismatching elements, total elements), comparing float32 bit patterns."""
    bad = total = 0
    for x in xs:
        with torch.no_grad():
            expected = tm(torch.from_numpy(x))
        got = model(x)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = got if isinstance(got, tuple) else (got,)
        assert len(got) == len(expected)
        for e, g in zip(expected, got):
            e = e.numpy()
            assert g.dtype == np.float32 and g.shape == e.shape, (g.shape, e.shape)
            bad += int(np.sum(g.view(np.uint32) != e.view(np.uint32)))
            total += e.size
    return bad, total
