"""fastq.quantize_model on float torch graphs against torch's eager prepare / convert of
QuantWrapper(model) (Linear + ReLU module pairs fused), bitwise: every node's layer (type,
settings, arrays) against fastq.from_torch of torch's converted model, and the outputs on new
inputs, including values far outside the calibration range."""
import copy
import zlib

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.ao.nn.intrinsic as nni
from torch.ao.nn.quantized import FloatFunctional
from torch.ao.quantization import (QuantWrapper, convert, default_qconfig, fuse_modules,
                                   get_default_qconfig, prepare)

import fastq
from fastq import quantize_model

f32 = np.float32


# --------------------------------------------------------------------------- float models
class Residual(nn.Module):
    """fc1 + relu (fused), fc2, residual FloatFunctional.add with a skip Linear."""

    def __init__(self):
        super().__init__()
        self.fc1, self.relu, self.fc2 = nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 12)
        self.skip = nn.Linear(12, 12)
        self.add = FloatFunctional()
        self.out = nn.Linear(12, 5)

    def forward(self, x):
        h = self.fc2(self.relu(self.fc1(x)))
        return self.out(self.add.add(h, self.skip(x)))


class AddRelu(nn.Module):
    """add_relu of a Linear and the input itself; a functional in-place relu (not fused)."""

    def __init__(self):
        super().__init__()
        self.fc, self.head = nn.Linear(10, 10), nn.Linear(10, 4)
        self.ff = FloatFunctional()

    def forward(self, x):
        y = self.ff.add_relu(self.fc(x), x)
        return self.head(F.relu(y, inplace=True))


class CatBranches(nn.Module):
    """Two branches joined by FloatFunctional.cat, one by torch.relu, one by ReLU6, then a Linear;
    the head's relu module is fused."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 6), nn.Linear(8, 5)
        self.act_b = nn.ReLU6()
        self.cat = FloatFunctional()
        self.head, self.head_relu = nn.Linear(11, 7), nn.ReLU(inplace=True)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        y = self.cat.cat([torch.relu(self.a(x)), self.act_b(self.b(x))], dim=1)
        return self.drop(self.head_relu(self.head(y)))


class Mul(nn.Module):
    """Gate: Linear * hardtanh(Linear), mul_scalar / add_scalar, Identity."""

    def __init__(self):
        super().__init__()
        self.value, self.gate = nn.Linear(9, 8), nn.Linear(9, 8)
        self.ff, self.scal = FloatFunctional(), FloatFunctional()
        self.ident = nn.Identity()
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        g = F.hardtanh(self.gate(x), -0.5, 0.75)
        y = self.ff.mul(self.value(x), g)
        y = self.scal.add_scalar(self.scal.mul_scalar(y, 0.625), 0.25)
        return self.head(self.ident(y))


class Block(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.fc, self.relu = nn.Linear(n, n), nn.ReLU()
        self.add = FloatFunctional()

    def forward(self, x):
        return self.add.add(self.relu(self.fc(x)), x)


class Twice(nn.Module):
    """One block called twice: its Linear's and its FloatFunctional's observers see both calls."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(6, 10)
        self.block = Block(10)
        self.head = nn.Linear(10, 4)

    def forward(self, x):
        return self.head(self.block(self.block(self.inp(x))))


class Nested(nn.Module):
    """ModuleList of blocks (registered in reverse call order), a shape-op round trip."""

    def __init__(self):
        super().__init__()
        self.stages = nn.ModuleList([nn.Sequential(nn.Linear(12, 12), nn.ReLU()) for _ in range(2)])
        self.blocks = nn.ModuleList([Block(12), Block(12)])
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        for block in reversed(self.blocks):
            x = block(x)
        return self.head(x)


class Shapes(nn.Module):
    """Functional flatten / reshape / view / permute / transpose / squeeze / unsqueeze /
    contiguous / size on a [B, 2, 3, 4] input."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(24, 12)
        self.fc2 = nn.Linear(4, 4)
        self.flat = nn.Flatten()

    def forward(self, x):
        b = x.size(0)
        h = self.fc1(torch.flatten(x, 1))                        # [B, 12]
        h = h.reshape(b, 3, 4).permute(0, 2, 1).transpose(1, 2).contiguous()
        h = self.fc2(h.unsqueeze(1)).squeeze(1)                  # [B, 3, 4]
        return self.flat(h.view(b, -1))


class Mixed(nn.Module):
    """One FloatFunctional used for add and then cat (one observer for both), a plain torch.cat
    (first input's qparams), Tensor.relu_ / torch.relu_, an nn.Hardtanh module, F.relu6, a ReLU module
    after an add (nothing to fuse), a Linear whose output is read twice (not fused although a
    ReLU module follows)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 6)
        self.relu_b, self.relu_add = nn.ReLU(), nn.ReLU(inplace=True)
        self.ff = FloatFunctional()
        self.clip = nn.Hardtanh(-1.0, 2.0)
        self.head = nn.Linear(30, 5)

    def forward(self, x):
        a = self.a(x)
        b = self.b(x)
        rb = self.relu_b(b)
        s = self.relu_add(self.ff.add(a, b))
        c = self.ff.cat([s, rb.relu_()], 1)
        d = torch.cat([self.clip(a), F.relu6(a), torch.relu_(b)], 1)
        return self.head(torch.cat([c, d], dim=1))


class Prefused(nn.Module):
    """A float model fused already (torch.ao.nn.intrinsic.LinearReLU), then a Linear."""

    def __init__(self):
        super().__init__()
        self.fc = nni.LinearReLU(nn.Linear(5, 6), nn.ReLU())
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.fc(x))


# name -> (constructor, fused pairs, input shape)
FAMILIES = {
    "residual_add": (Residual, [("fc1", "relu")], (12,)),
    "add_relu": (AddRelu, [], (10,)),
    "cat_branches": (CatBranches, [("head", "head_relu")], (8,)),
    "mul_scalars": (Mul, [], (9,)),
    "block_twice": (Twice, [("block.fc", "block.relu")], (6,)),
    "nested_modulelist": (Nested, [("stages.0.0", "stages.0.1"), ("stages.1.0", "stages.1.1"),
                                   ("blocks.0.fc", "blocks.0.relu"), ("blocks.1.fc", "blocks.1.relu")], (12,)),
    "shapes": (Shapes, [], (2, 3, 4)),
    "mixed": (Mixed, [], (6,)),
    "prefused": (Prefused, [], (5,)),
}
QCONFIG_ENGINES = [("x86", "x86"), ("fbgemm", "fbgemm"), ("qnnpack", "qnnpack"),
                   ("minmax", "x86"), ("minmax", "qnnpack")]


class pinned_engine:
    def __init__(self, engine):
        self.engine = engine

    def __enter__(self):
        self.old = torch.backends.quantized.engine
        torch.backends.quantized.engine = self.engine

    def __exit__(self, *exc):
        torch.backends.quantized.engine = self.old


def torch_reference(model, fuse, batches, qconfig):
    m = QuantWrapper(copy.deepcopy(model)).eval()
    if fuse:
        fuse_modules(m, [["module." + a, "module." + b] for a, b in fuse], inplace=True)
    m.qconfig = default_qconfig if qconfig == "minmax" else get_default_qconfig(qconfig)
    prepare(m, inplace=True)
    with torch.no_grad():
        for b in batches:
            m(torch.from_numpy(b))
    convert(m, inplace=True)
    return m


def batches_for(rng, shape):
    """Two batches of different ranges (the histogram observer rescales between them), one with
    exact zeros and values on a 1/64 grid (ties at the half steps of small scales)."""
    a = (rng.standard_normal((16,) + shape) * 1.5).astype(f32)
    b = (rng.standard_normal((8,) + shape) * 3.0).astype(f32)
    b.reshape(8, -1)[0] = 0
    grid = (np.round(rng.standard_normal((8,) + shape) * 128) / 64).astype(f32)
    return [a, b, grid]


def new_inputs(rng, shape, batches):
    span = max(float(np.abs(b).max()) for b in batches)
    x = (rng.standard_normal((48,) + shape) * span).astype(f32)
    x.reshape(48, -1)[0] = span * 10
    x.reshape(48, -1)[1] = -span * 10
    x.reshape(48, -1)[2] = 0
    x.reshape(48, -1)[3:6] = np.round(x.reshape(48, -1)[3:6] * 32) / 32
    return x


def _bits(a):
    a = np.ascontiguousarray(a)
    return a.view(np.uint8) if a.dtype.itemsize == 1 else a.view("u%d" % a.dtype.itemsize)


def _without_identities(model):
    """[(node, wiring)]: the non-Identity nodes in a canonical order (post-order from the
    outputs, inputs in order: independent of how the model lists its nodes), each with the
    positions of the nodes its inputs come from (-1: a model input), wired through Identity
    nodes (they compute nothing)."""
    maker = {v: n for n in model.nodes for v in n.outputs}

    def real(v):
        while v in maker and isinstance(maker[v].layer, fastq.layers.elementwise.Identity):
            v = maker[v].inputs[0]
        return v

    order, pos = [], {}

    def visit(v):
        v = real(v)
        if v not in maker or v in pos:
            return pos.get(v, -1)
        n = maker[v]
        wiring = [visit(u) for u in n.inputs]
        order.append((n, wiring))
        pos[v] = len(order) - 1
        return pos[v]

    for v in model.outputs:
        visit(v)
    return order


def compare(fq, tm, x):
    """Mismatch counts: nodes whose layer type or settings differ from from_torch(tm)'s (node
    for node, in execution order), array elements that differ bitwise, outputs that differ."""
    ref = fastq.from_torch(tm)
    counts = {"nodes": 0, "settings": 0, "arrays": 0, "outputs": 0}
    # Identity nodes (fuse_modules' leftover nn.Identity, QFunctional's activation_post_process,
    # Dropout) compute nothing: compare the other nodes, wired through them
    mine, theirs = _without_identities(fq), _without_identities(ref)
    counts["nodes"] += abs(len(mine) - len(theirs))
    for (a, wa), (b, wb) in zip(mine, theirs):
        if type(a.layer) is not type(b.layer) or wa != wb:
            counts["nodes"] += 1
            continue
        if a.layer.get_settings() != b.layer.get_settings():
            counts["settings"] += 1
        arr_a, arr_b = a.layer.get_arrays(), b.layer.get_arrays()
        if set(arr_a) != set(arr_b):
            counts["arrays"] += 1
        for k in set(arr_a) & set(arr_b):
            va, vb = np.asarray(arr_a[k]), np.asarray(arr_b[k])
            if va.shape != vb.shape or va.dtype != vb.dtype:
                counts["arrays"] += 1
            else:
                counts["arrays"] += int((_bits(va) != _bits(vb)).sum())
    with torch.no_grad():
        ty = tm(torch.from_numpy(x)).numpy()
    y = fq(x)
    counts["outputs"] += int(y.size != ty.size) or int((y.view(np.uint32) != ty.view(np.uint32)).sum())
    return counts


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: (ctor().eval(), fuse, shape) for name, (ctor, fuse, shape) in FAMILIES.items()}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("qconfig,engine", QCONFIG_ENGINES, ids=["%s-%s" % p for p in QCONFIG_ENGINES])
def test_graph_calibration_equals_prepare_convert(models, qconfig, engine, family):
    if engine not in torch.backends.quantized.supported_engines:
        pytest.skip("engine %s not in this torch build" % engine)
    rng = np.random.default_rng(zlib.crc32(("%s %s %s" % (family, qconfig, engine)).encode()))
    model, fuse, shape = models[family]
    batches = batches_for(rng, shape)
    with pinned_engine(engine):
        fq = quantize_model(model, batches, qconfig=qconfig, engine=engine)
        tm = torch_reference(model, fuse, batches, qconfig)
        counts = compare(fq, tm, new_inputs(rng, shape, batches))
    assert set(counts.values()) == {0}, counts
    # a shared block: one layer object for both calls, as from_torch makes
    if family == "block_twice":
        linears = [n.layer for n in fq.nodes if isinstance(n.layer, fastq.QuantizedLinear)]
        assert len(linears) == 4 and linears[1] is linears[2] and linears[1].relu
    if family == "prefused":
        assert fq.node("fc").layer.relu


def test_shared_observer_sees_both_calls(models):
    """The block's Linear output qparams come from both calls: calibrating on the first call's
    values alone (a model calling the block once) gives other qparams, so the test above could
    fail if the observer were not shared."""
    rng = np.random.default_rng(5)
    model, _, shape = models["block_twice"]
    batches = batches_for(rng, shape)

    class Once(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.inp, self.block, self.head = m.inp, m.block, m.head

        def forward(self, x):
            return self.head(self.block(self.inp(x)))

    twice = quantize_model(model, batches, qconfig="minmax", engine="x86")
    once = quantize_model(Once(model).eval(), batches, qconfig="minmax", engine="x86")
    assert (twice.node("block.fc").layer.scale, twice.node("add").layer.scale) != \
        (once.node("block.fc").layer.scale, once.node("add").layer.scale)


def test_graph_model_survives_save_load(models, tmp_path):
    rng = np.random.default_rng(3)
    model, _, shape = models["cat_branches"]
    batches = batches_for(rng, shape)
    fq = quantize_model(model, batches, qconfig="x86", engine="x86")
    fq.save(tmp_path / "m.npz")
    x = new_inputs(rng, shape, batches)
    assert (fastq.load(tmp_path / "m.npz")(x).view(np.uint32) == fq(x).view(np.uint32)).all()


# --------------------------------------------------------------------------- refusals
class PlainAdd(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        return self.a(x) + self.b(x)


class PlainScalarMul(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x):
        return torch.mul(self.a(x), 2.0)


class MethodAdd(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x):
        return self.a(x).add_(x)


class Matmul(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.ff = nn.Linear(4, 4), FloatFunctional()

    def forward(self, x):
        return self.ff.matmul(self.a(x), x.transpose(0, 1))


class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x):
        y = self.a(x)
        return y, y


class WithStub(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.a = torch.ao.quantization.QuantStub(), nn.Linear(4, 4)

    def forward(self, x):
        return self.a(self.quant(x))


class AddConstant(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.ff = nn.Linear(4, 4), FloatFunctional()

    def forward(self, x):
        return self.ff.add(self.a(x), 1.0)


@pytest.mark.parametrize("model,exc,words", [
    (PlainAdd(), NotImplementedError, r"plain _?operator.add.*fx node 'add'.*FloatFunctional"),
    (PlainScalarMul(), NotImplementedError, r"plain .*mul.*fx node 'mul'.*FloatFunctional"),
    (MethodAdd(), NotImplementedError, r"plain Tensor.add_.*fx node 'add_'.*FloatFunctional"),
    (Matmul(), NotImplementedError, r"FloatFunctional.matmul"),
    (TwoOutputs(), NotImplementedError, r"returning"),
    (WithStub(), NotImplementedError, r"QuantStub.*without stubs"),
    (AddConstant(), NotImplementedError, r"FloatFunctional.add with the constant 1.0"),
    (nn.Sequential(nn.Linear(4, 4), nn.Sigmoid()), NotImplementedError, r"Sigmoid.*quantize_model"),
])
def test_what_eager_mode_cannot_quantize_is_refused(model, exc, words):
    with pytest.raises(exc, match=words):
        quantize_model(model.eval(), [np.ones((2, 4), f32)])


def test_torch_is_imported_by_torch_compat_and_its_fx_helpers_only():
    """The design rule: torch_compat.py and the fx helpers only it imports (fx_convert.py,
    fx_calibrate.py, torch_conv.py) import torch; every other library module (tools/ aside) does not, at
    module level or inside functions."""
    import ast
    import pathlib
    root = pathlib.Path(fastq.__file__).parent
    allowed = {"torch_compat.py", "fx_convert.py", "fx_calibrate.py", "torch_conv.py"}
    found = set()
    for path in root.rglob("*.py"):
        if "tools" in path.relative_to(root).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            if any(n == "torch" or n.startswith("torch.") for n in names):
                found.add(path.name)
    assert found == allowed, found
    importers = {p.name for p in root.rglob("*.py") if "tools" not in p.relative_to(root).parts
                 and any(s in p.read_text() for s in ("import fx_calibrate", ".fx_calibrate import"))}
    assert importers == {"torch_compat.py"}, importers
