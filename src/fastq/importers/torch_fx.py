"""A converted eager-mode torch model, traced by torch.fx, as a fastq.Model: the tables from
torch's names (leaf modules, functions, Tensor methods, quantized:: ops) to fastq layer
constructors, and the walk over the fx graph that applies them.

Every fx node becomes at most one fastq Node named like it; values keep fx's names. Each
supported call is one row of MODULES, FUNCTIONS, METHODS or QUANTIZED_OPS; anything else raises
NotImplementedError naming the op, the fx node and the module path. Never a silent identity.
Which arithmetic a layer follows comes from the engine (fastq.engines).
Imported only when a torch model arrives (fastq.importers): it imports torch at its top.
"""
from __future__ import annotations

import operator

import torch
import torch.ao.nn.intrinsic as nni
import torch.ao.nn.intrinsic.quantized as nniq
import torch.ao.nn.intrinsic.quantized.dynamic as nniqd
import torch.ao.nn.quantized as nnq
import torch.ao.nn.quantized.dynamic as nnqd
import torch.ao.quantization as tq
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .. import engines
from ..layers import arith as ar, elementwise as fm, shape as sh
from ..model import Model, Node
from . import torch_conv as tconv
from .torch_fx_args import _bind, _path, _type_name, _unsupported  # noqa: F401 (torch_calibrate reads _path)
from .torch_quantized import dynamic_linear_from_torch, linear_from_torch

TENSOR, INT, TUPLE = "tensor", "int", "tuple"
CHUNKS = "chunks"       # x.chunk(n, dim): no node of its own; each [i] of it becomes a Chunk node


# -------------------------------------------------------------------- leaf modules
EXACT, SUBCLASS = "exact", "subclass"
_TORCH_DTYPES = {torch.quint8: "uint8", torch.qint8: "int8"}


def _quantize(m, path, engine):
    dtype = _TORCH_DTYPES.get(m.dtype)
    if dtype is None:
        raise TypeError("module %r: Quantize to %s is not supported (quint8 or qint8)" % (path, m.dtype))
    return fm.Quantize(float(m.scale.reshape(-1)[0]), int(m.zero_point.reshape(-1)[0]), dtype)


def _identity(m, path, engine):
    return fm.Identity()


def _dropout_module(m, path, engine):
    if m.training and m.p > 0:
        raise ValueError("module %r: Dropout in training mode is random; call model.eval() first" % path)
    return fm.Identity()


def _float_weighted(m, path, engine):
    raise TypeError("module %r: a float %s; quantize the model first (torch.ao.quantization.convert "
                    "or quantize_dynamic)" % (path, type(m).__name__))


# (torch module classes, how a module must match them, constructor(module, path, engine) -> layer).
# The first matching row wins, so a subclass comes before its base: nnqd.Linear subclasses
# nnq.Linear, nnq.ReLU6 nn.ReLU, nnq.Dropout nn.Dropout; nn.ReLU6 subclasses nn.Hardtanh, hence
# EXACT there. A constructor may refuse (raise) with a reason, as _float_weighted does.
MODULES = (
    ((nniqd.LinearReLU, nnqd.Linear), SUBCLASS, lambda m, path, engine: dynamic_linear_from_torch(m, engine)),
    ((nniq.LinearReLU, nnq.Linear), SUBCLASS, lambda m, path, engine: linear_from_torch(m, engine)),
    ((nnq.Quantize,), SUBCLASS, _quantize),
    ((nnq.DeQuantize,), SUBCLASS, lambda m, path, engine: fm.Dequantize()),
    ((tq.QuantStub, tq.DeQuantStub), SUBCLASS, _identity),      # unconverted stubs pass floats through
    ((nnq.ReLU6,), SUBCLASS, lambda m, path, engine: fm.ReLU6()),
    ((nn.ReLU6,), EXACT, lambda m, path, engine: fm.ReLU6()),
    ((nn.ReLU,), EXACT, lambda m, path, engine: fm.ReLU()),
    ((nn.Hardtanh,), EXACT, lambda m, path, engine: fm.Hardtanh(float(m.min_val), float(m.max_val))),
    ((nnq.Dropout,), SUBCLASS, _identity),                      # quantized Dropout: identity
    ((nn.Identity,), EXACT, _identity),
    ((nn.Dropout,), SUBCLASS, _dropout_module),
    ((nn.Flatten,), EXACT, lambda m, path, engine: fm.Flatten(m.start_dim, m.end_dim)),
    ((nn.Linear, nni.LinearReLU), SUBCLASS, _float_weighted),
)

_SUPPORTED = ", ".join(dict.fromkeys(c.__name__ for classes, _, make in MODULES if make is not _float_weighted
                                     for c in classes))
_SUPPORTED += ", quantized Conv1d / Conv2d / ConvReLU1d / ConvReLU2d, MaxPool1d / MaxPool2d, AvgPool1d / AvgPool2d, "\
    "AdaptiveAvgPool1d / AdaptiveAvgPool2d, quantized Hardswish, Hardsigmoid, quantized BatchNorm2d / BatchNorm3d / "\
    "BNReLU2d / BNReLU3d"


def leaf_layer(module, path, engine, node=None):
    """The fastq layer for one torch leaf module called by fx node `node` (a MODULES row)."""
    for classes, match, make in MODULES:
        if type(module) in classes if match == EXACT else isinstance(module, classes):
            return make(module, path, engine)
    if node is None:
        node = type("N", (), {"name": "?"})()
    layer = tconv.cnn_leaf(module, path, engine, node)     # convolutions and pooling: they read the fx node
    if layer is not None:
        return layer
    if "Conv" in type(module).__name__:
        raise _unsupported("module %s" % _type_name(module), node, path,
                           ": fastq reproduces quantized Conv1d / Conv2d / ConvReLU1d / ConvReLU2d (not transposed, "
                           "3-D or float convolutions)")
    raise _unsupported("module %s" % _type_name(module), node, path, "; supported modules: " + _SUPPORTED)


class GraphBuilder:
    def __init__(self, root, graph, engine):
        self.root, self.graph, self.engine = root, graph, engine
        self.rules = engines.engine(engine)     # which fastq arithmetic this engine means
        self.env = {}           # fx node -> fastq value name
        self.kind = {}          # fastq value name -> TENSOR / INT / TUPLE
        self.nodes, self.inputs, self.outputs = [], [], ()
        self.layers = {}        # module path -> layer (a module called twice: one layer, two nodes)
        self.chunked = {}       # CHUNKS value -> (input value, chunks, dim)

    # ---------------------------------------------------------------- helpers
    def add(self, node, layer, inputs, kind=TENSOR):
        self.nodes.append(Node(node.name, layer, tuple(inputs)))
        self.env[node] = node.name
        self.kind[node.name] = kind
        return node.name

    def value(self, node, arg, what="input"):
        """The fastq value an fx argument refers to (an fx Node computed earlier)."""
        if not isinstance(arg, fx.Node) or arg not in self.env:
            raise _unsupported("a constant %s %r" % (what, arg), node, _path(node),
                               " (fastq takes tensors computed from the model inputs here)")
        return self.env[arg]

    def tensor(self, node, arg):
        v = self.value(node, arg)
        if self.kind[v] != TENSOR:
            raise _unsupported("%s on a %s value" % (self.op_name(node), self.kind[v]), node, _path(node))
        return v

    def const(self, node, arg, types, what):
        if isinstance(arg, fx.Node) or isinstance(arg, bool) and bool not in types or not isinstance(arg, types):
            raise _unsupported("%s with a computed or unexpected %s %r" % (self.op_name(node), what, arg),
                               node, _path(node))
        return arg

    def op_name(self, node):
        t = node.target
        if node.op == "call_method":
            return "Tensor.%s" % t
        if node.op == "call_module":
            return "module %s" % t
        q = getattr(t, "_qualified_op_name", None)
        if q:
            return q
        return "%s.%s" % (getattr(t, "__module__", None) or "", getattr(t, "__name__", repr(t)))

    def inplace(self, node, src):
        """torch's in-place op changed `src` itself: later readers of src see the result."""
        if isinstance(src, fx.Node):
            self.env[src] = self.env[node]

    # ---------------------------------------------------------------- the walk
    def build(self):
        for node in self.graph.nodes:
            getattr(self, "_" + node.op)(node)
        return Model(nodes=self.nodes, inputs=tuple(self.inputs), outputs=self.outputs)

    def _placeholder(self, node):
        self.inputs.append(node.name)
        self.env[node] = node.name
        self.kind[node.name] = TENSOR

    def _get_attr(self, node):
        raise _unsupported("reading the tensor attribute %r in forward" % node.target, node, _path(node),
                           " (fastq takes weights from supported modules only)")

    def _output(self, node):
        out = node.args[0]
        items = out if isinstance(out, (tuple, list)) else (out,)
        if not all(isinstance(o, fx.Node) for o in items):
            raise _unsupported("a forward returning %r" % (out,), node, "",
                               " (return a tensor or a tuple of tensors)")
        self.outputs = tuple(self.value(node, o, "output") for o in items)

    def _call_module(self, node):
        path = str(node.target)
        module = self.root.get_submodule(path)
        if node.kwargs or len(node.args) != 1:
            raise _unsupported("calling module %s with %d arguments" % (type(module).__name__, len(node.args)),
                               node, path)
        layer = self.layers.get(path)
        if layer is None or getattr(layer, "layout_dependent", False):     # torch_conv: one per call
            layer = self.layers[path] = leaf_layer(module, path, self.engine, node)
        self.add(node, layer, [self.tensor(node, node.args[0])])
        if getattr(module, "inplace", False):
            self.inplace(node, node.args[0])

    def _call_function(self, node):
        key = getattr(node.target, "_qualified_op_name", None) or node.target
        handler = FUNCTIONS.get(key) if not isinstance(key, str) else QUANTIZED_OPS.get(key)
        if handler is None:
            raise _unsupported("function %s" % self.op_name(node), node, _path(node))
        handler(self, node)

    def _call_method(self, node):
        handler = METHODS.get(node.target)
        if handler is None:
            raise _unsupported("method Tensor.%s" % node.target, node, _path(node))
        handler(self, node)


# -------------------------------------------------------------------- handlers
def _activation(make, names, defaults):
    def h(b, node):
        a = _bind(b, node, names, defaults)
        layer = make(b, node, a)
        b.add(node, layer, [b.tensor(node, a[names[0]])])
        if a.get("inplace") or (node.op == "call_method" and str(node.target).endswith("_")) \
                or getattr(node.target, "__name__", "").endswith("_"):
            b.inplace(node, a[names[0]])
    return h


def _hardtanh(b, node, a):
    return fm.Hardtanh(float(b.const(node, a["min_val"], (int, float), "min_val")),
                       float(b.const(node, a["max_val"], (int, float), "max_val")))


def _dropout(b, node, a):
    if b.const(node, a["training"], (bool,), "training") and a["p"] > 0:
        raise ValueError("module %r: dropout with training=True is random; call model.eval() first" % _path(node))
    return fm.Identity()


relu = _activation(lambda b, n, a: fm.ReLU(), ("input", "inplace"), {"inplace": False})
relu6 = _activation(lambda b, n, a: fm.ReLU6(), ("input", "inplace"), {"inplace": False})
hardtanh = _activation(_hardtanh, ("input", "min_val", "max_val", "inplace"),
                       {"min_val": -1.0, "max_val": 1.0, "inplace": False})
dropout = _activation(_dropout, ("input", "p", "training", "inplace"),
                      {"p": 0.5, "training": True, "inplace": False})
dequantize = _activation(lambda b, n, a: fm.Dequantize(), ("input",), {})
contiguous = _activation(lambda b, n, a: sh.Contiguous(), ("input", "memory_format"), {"memory_format": None})


def _flatten(start_default):
    def make(b, node, a):
        return fm.Flatten(b.const(node, a["start_dim"], (int,), "start_dim"),
                          b.const(node, a["end_dim"], (int,), "end_dim"))
    return _activation(make, ("input", "start_dim", "end_dim"), {"start_dim": start_default, "end_dim": -1})


def _squeeze(b, node, a):
    d = a["dim"]
    return sh.Squeeze(None if d is None else b.const(node, d, (int,), "dim"))


def _reshape(b, node):
    a = _bind(b, node, ("input", "shape"), method_varargs=node.op == "call_method")
    shape = a["shape"]
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    template, extra = [], []
    for s in shape:
        if isinstance(s, fx.Node):
            v = b.value(node, s)
            if b.kind[v] != INT:
                raise _unsupported("%s with a shape computed as %s" % (b.op_name(node), b.kind[v]), node, _path(node))
            template.append(None)
            extra.append(v)
        else:
            template.append(b.const(node, s, (int,), "shape entry"))
    b.add(node, sh.Reshape(template), [b.tensor(node, a["input"])] + extra)


def _transpose(b, node):
    a = _bind(b, node, ("input", "dim0", "dim1"))
    b.add(node, sh.Transpose(b.const(node, a["dim0"], (int,), "dim0"), b.const(node, a["dim1"], (int,), "dim1")),
          [b.tensor(node, a["input"])])


def _permute(b, node):
    a = _bind(b, node, ("input", "dims"), method_varargs=node.op == "call_method")
    dims = a["dims"] if isinstance(a["dims"], (tuple, list)) else (a["dims"],)
    b.add(node, sh.Permute([b.const(node, d, (int,), "dim") for d in dims]), [b.tensor(node, a["input"])])


def _size(b, node):
    a = _bind(b, node, ("input", "dim"), {"dim": None})
    dim = None if a["dim"] is None else b.const(node, a["dim"], (int,), "dim")
    b.add(node, sh.Size(dim), [b.tensor(node, a["input"])], INT if dim is not None else TUPLE)


def _getattr(b, node):
    x, attr = node.args
    if attr != "shape":
        raise _unsupported("reading Tensor.%s" % attr, node, _path(node))
    b.add(node, sh.Size(None), [b.tensor(node, x)], TUPLE)


def _chunk(b, node):
    a = _bind(b, node, ("input", "chunks", "dim"), {"dim": 0})
    src = b.tensor(node, a["input"])
    chunks = b.const(node, a["chunks"], (int,), "chunks")
    dim = b.const(node, a["dim"], (int,), "dim")
    b.env[node] = node.name
    b.kind[node.name] = CHUNKS
    b.chunked[node.name] = (src, chunks, dim)


def _floordiv(b, node):
    x, d = node.args
    v = b.value(node, x, "dividend")
    if b.kind[v] != INT:
        raise _unsupported("// on a %s value" % b.kind[v], node, _path(node))
    b.add(node, sh.FloorDiv(b.const(node, d, (int,), "divisor")), [v], INT)


def _getitem(b, node):
    x, idx = node.args
    v = b.value(node, x)
    if b.kind[v] == CHUNKS and isinstance(idx, int) and not isinstance(idx, bool):
        src, chunks, dim = b.chunked[v]
        if not 0 <= idx < chunks:
            raise _unsupported("piece %r of chunk(%d)" % (idx, chunks), node, _path(node))
        b.add(node, sh.Chunk(chunks, dim, idx), [src])
        return
    if b.kind[v] != TUPLE or isinstance(idx, bool) or not isinstance(idx, int):
        raise _unsupported("indexing a %s value with %r (slicing tensors is not reproduced)" % (b.kind[v], idx),
                           node, _path(node))
    b.add(node, sh.GetItem(idx), [v], INT if b.kind[v] == TUPLE else TENSOR)


def _binary(float_layer, scalar_layer):
    def h(b, node):
        a = _bind(b, node, ("input", "other", "alpha"), {"alpha": 1})
        if a["alpha"] != 1:
            raise _unsupported("%s with alpha=%r" % (b.op_name(node), a["alpha"]), node, _path(node))
        x, y = a["input"], a["other"]
        if isinstance(x, fx.Node) and isinstance(y, fx.Node):
            b.add(node, float_layer(), [b.tensor(node, x), b.tensor(node, y)])
        else:
            t, c = (x, y) if isinstance(x, fx.Node) else (y, x)
            b.add(node, scalar_layer(float(b.const(node, c, (int, float), "scalar"))), [b.tensor(node, t)])
        if (node.op == "call_method" and str(node.target).endswith("_")) or node.target in (operator.iadd,
                                                                                            operator.imul):
            b.inplace(node, x)          # x += y changes x: later readers of x see the sum
    return h


def _cat(b, node):
    a = _bind(b, node, ("tensors", "dim"), {"dim": 0})
    xs = a["tensors"]
    if not isinstance(xs, (tuple, list)):
        raise _unsupported("cat of %r" % (xs,), node, _path(node))
    b.add(node, ar.Cat(b.const(node, a["dim"], (int,), "dim")), [b.tensor(node, x) for x in xs])


def _qbinary(kind, relu):
    def h(b, node):
        a = _bind(b, node, ("qa", "qb", "scale", "zero_point"))
        scale = float(b.const(node, a["scale"], (int, float), "scale"))
        zp = b.const(node, a["zero_point"], (int,), "zero_point")
        if kind == "add":
            layer = ar.QuantizedAdd(scale, zp, relu=relu, arithmetic=b.rules.add_arithmetic,
                                    torch_threads=torch.get_num_threads())
        else:
            layer = ar.QuantizedMul(scale, zp, relu=relu, torch_threads=torch.get_num_threads())
        b.add(node, layer, [b.tensor(node, a["qa"]), b.tensor(node, a["qb"])])
    return h


def _qscalar(cls):
    def h(b, node):
        a = _bind(b, node, ("qa", "b"))
        b.add(node, cls(float(b.const(node, a["b"], (int, float), "scalar"))), [b.tensor(node, a["qa"])])
    return h


def _qcat(b, node):
    a = _bind(b, node, ("qx", "dim", "scale", "zero_point"), {"dim": 0, "scale": None, "zero_point": None})
    if a["scale"] is None or a["zero_point"] is None:
        raise _unsupported("quantized::cat without output scale / zero point", node, _path(node))
    b.add(node, ar.QuantizedCat(float(b.const(node, a["scale"], (int, float), "scale")),
                                b.const(node, a["zero_point"], (int,), "zero_point"),
                                b.const(node, a["dim"], (int,), "dim")),
          [b.tensor(node, x) for x in a["qx"]])


# -------------------------------------------------------------------- the call tables
FUNCTIONS = {
    torch.relu: relu, torch.relu_: relu, F.relu: relu, F.relu6: relu6, F.hardtanh: hardtanh,
    F.dropout: dropout, torch.flatten: _flatten(0), torch.reshape: _reshape,
    torch.squeeze: _activation(_squeeze, ("input", "dim"), {"dim": None}),
    torch.unsqueeze: _activation(lambda b, n, a: sh.Unsqueeze(b.const(n, a["dim"], (int,), "dim")),
                                 ("input", "dim"), {}),
    torch.transpose: _transpose, torch.permute: _permute, torch.dequantize: dequantize,
    operator.getitem: _getitem, getattr: _getattr,
    operator.add: _binary(ar.Add, ar.AddScalar), torch.add: _binary(ar.Add, ar.AddScalar),
    operator.mul: _binary(ar.Mul, ar.MulScalar), torch.mul: _binary(ar.Mul, ar.MulScalar),
    operator.iadd: _binary(ar.Add, ar.AddScalar), operator.imul: _binary(ar.Mul, ar.MulScalar),
    torch.cat: _cat, torch.concat: _cat,
    # pooling on quantized tensors (torch_conv)
    F.max_pool1d: tconv.fx_max_pool(1), F.max_pool2d: tconv.fx_max_pool(2),
    torch.max_pool1d: tconv.fx_max_pool(1), torch.max_pool2d: tconv.fx_max_pool(2),
    F.avg_pool1d: tconv.fx_avg_pool(1), F.avg_pool2d: tconv.fx_avg_pool(2),
    torch.avg_pool1d: tconv.fx_avg_pool(1),
    F.adaptive_avg_pool1d: tconv.fx_adaptive_avg_pool(1), F.adaptive_avg_pool2d: tconv.fx_adaptive_avg_pool(2),
    torch.adaptive_avg_pool1d: tconv.fx_adaptive_avg_pool(1),
    F.hardsigmoid: tconv.fx_hardsigmoid,
    torch.mean: tconv.fx_mean,
    torch.chunk: _chunk, operator.floordiv: _floordiv,
}
METHODS = {
    "relu": relu, "relu_": relu, "flatten": _flatten(0), "view": _reshape, "reshape": _reshape,
    "squeeze": FUNCTIONS[torch.squeeze], "unsqueeze": FUNCTIONS[torch.unsqueeze],
    "transpose": _transpose, "permute": _permute, "contiguous": contiguous, "size": _size,
    "dequantize": dequantize, "add": FUNCTIONS[torch.add], "add_": FUNCTIONS[torch.add],
    "mul": FUNCTIONS[torch.mul], "mul_": FUNCTIONS[torch.mul], "mean": tconv.fx_mean,
    "chunk": _chunk,
}
QUANTIZED_OPS = {
    "quantized::add": _qbinary("add", False), "quantized::add_relu": _qbinary("add", True),
    "quantized::mul": _qbinary("mul", False), "quantized::mul_relu": _qbinary("mul", True),
    "quantized::add_scalar": _qscalar(ar.QuantizedAddScalar),
    "quantized::mul_scalar": _qscalar(ar.QuantizedMulScalar),
    "quantized::cat": _qcat,
}


# -------------------------------------------------------------------- tracing
def _is_quant_leaf(m):
    """Modules fx must not trace into: every torch.ao quantized / intrinsic module, the stubs,
    QuantWrapper's pieces and the (Q|Float)Functional holders."""
    mod = type(m).__module__
    if mod.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic", "torch.nn.quantized",
                       "torch.nn.intrinsic", "torch.ao.nn.qat")):
        return True
    return isinstance(m, (tq.QuantStub, tq.DeQuantStub, nnq.Quantize, nnq.DeQuantize,
                          nnq.QFunctional, nnq.FloatFunctional))


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m, qualname):
        return _is_quant_leaf(m) or super().is_leaf_module(m, qualname)


def trace(module):
    """(torch.fx graph of `module` with quantized modules as leaves, torch)."""
    try:
        graph = _Tracer().trace(module)
    except fx.proxy.TraceError as e:
        raise NotImplementedError(
            "module: torch.fx cannot trace %s.forward: it uses Python control flow (if / for / while) "
            "on tensor values, which has no graph form. fastq.from_torch needs a forward whose ops do "
            "not depend on the input values; rewrite that branch or convert the parts separately. "
            "(torch.fx: %s)" % (type(module).__name__, e)) from e
    except (RuntimeError, TypeError, AttributeError) as e:
        raise NotImplementedError("module: torch.fx cannot trace %s.forward (%s: %s)"
                                  % (type(module).__name__, type(e).__name__, e)) from e
    return graph, torch


def convert(module, engine=None):
    """A converted eager-mode torch model -> fastq.Model (see fastq.model.from_torch)."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError("module: expected a torch.nn.Module, got %s" % type(module).__name__)
    engine_name = engine if engine is not None else torch.backends.quantized.engine
    engines.engine(engine_name)             # refuse engines fastq does not reproduce, early
    if module.training and any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in module.modules()):
        raise ValueError("module: Dropout in training mode is random; call model.eval() first")
    graph, _ = trace(module)
    return GraphBuilder(module, graph, engine_name).build()
