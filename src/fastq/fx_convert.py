"""torch.fx graph of a converted eager-mode model -> fastq graph (used by torch_compat only).

Every fx node becomes at most one fastq Node named like it; values keep fx's names. Each
supported call is listed once in the tables at the end; anything else raises
NotImplementedError naming the op, the fx node and the module path. Never a silent identity."""
from __future__ import annotations

import operator

from .layers import arith as ar, elementwise as fm, shape as sh
from .torch_compat import _convert_leaf, _unsupported

TENSOR, INT, TUPLE = "tensor", "int", "tuple"


def _path(node):
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack)[-1] if stack else ""


class GraphBuilder:
    def __init__(self, root, graph, engine):
        import torch
        self.torch = torch
        self.root, self.graph, self.engine = root, graph, engine
        self.env = {}           # fx node -> fastq value name
        self.kind = {}          # fastq value name -> TENSOR / INT / TUPLE
        self.nodes, self.inputs, self.outputs = [], [], ()
        self.layers = {}        # module path -> layer (a module called twice: one layer, two nodes)

    # ---------------------------------------------------------------- helpers
    def add(self, node, layer, inputs, kind=TENSOR):
        from .model import Node
        self.nodes.append(Node(node.name, layer, tuple(inputs)))
        self.env[node] = node.name
        self.kind[node.name] = kind
        return node.name

    def value(self, node, arg, what="input"):
        """The fastq value an fx argument refers to (an fx Node computed earlier)."""
        import torch.fx as fx
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
        import torch.fx as fx
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
        import torch.fx as fx
        if isinstance(src, fx.Node):
            self.env[src] = self.env[node]

    # ---------------------------------------------------------------- the walk
    def build(self):
        from .model import Model
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
        import torch.fx as fx
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
        if layer is None or getattr(layer, "layout_dependent", False):     # torch_conv: per call
            layer = self.layers[path] = _convert_leaf(module, path, self.engine, node)
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


# -------------------------------------------------------------------- argument binding
def _bind(b, node, names, defaults=None, method_varargs=False):
    """fx args / kwargs -> dict by parameter name (names[0] is the tensor)."""
    args = list(node.args)
    out = dict(defaults or {})
    if method_varargs and len(args) > 2 or (method_varargs and len(args) == 2
                                           and not isinstance(args[1], (tuple, list))):
        out[names[0]], out[names[1]] = args[0], tuple(args[1:])      # x.view(a, b, c)
        args = []
    for n, a in zip(names, args):
        out[n] = a
    for k, v in node.kwargs.items():
        if k not in names:
            raise _unsupported("%s with argument %s=%r" % (b.op_name(node), k, v), node, _path(node))
        out[k] = v
    missing = [n for n in names if n not in out]
    if missing:
        raise _unsupported("%s without %s" % (b.op_name(node), ", ".join(missing)), node, _path(node))
    return out


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
    import torch.fx as fx
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


def _getitem(b, node):
    x, idx = node.args
    v = b.value(node, x)
    if b.kind[v] != TUPLE or isinstance(idx, bool) or not isinstance(idx, int):
        raise _unsupported("indexing a %s value with %r (slicing tensors is not reproduced)" % (b.kind[v], idx),
                           node, _path(node))
    b.add(node, sh.GetItem(idx), [v], INT if b.kind[v] == TUPLE else TENSOR)


def _binary(float_layer, scalar_layer):
    def h(b, node):
        import torch.fx as fx
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


def _engine_add_arithmetic(engine):
    return "qnnpack" if engine == "qnnpack" else "fbgemm"


def _qbinary(kind, relu):
    def h(b, node):
        a = _bind(b, node, ("qa", "qb", "scale", "zero_point"))
        scale = float(b.const(node, a["scale"], (int, float), "scale"))
        zp = b.const(node, a["zero_point"], (int,), "zero_point")
        if kind == "add":
            layer = ar.QuantizedAdd(scale, zp, relu=relu, arithmetic=_engine_add_arithmetic(b.engine),
                                    torch_threads=b.torch.get_num_threads())
        else:
            layer = ar.QuantizedMul(scale, zp, relu=relu)
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


def _tables():
    import torch
    import torch.nn.functional as F
    functions = {
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
    }
    from . import torch_conv as tc                  # pooling on quantized tensors (torch_conv.py)
    functions.update({
        F.max_pool1d: tc.fx_max_pool(1), F.max_pool2d: tc.fx_max_pool(2),
        torch.max_pool1d: tc.fx_max_pool(1), torch.max_pool2d: tc.fx_max_pool(2),
        F.avg_pool1d: tc.fx_avg_pool(1), F.avg_pool2d: tc.fx_avg_pool(2),
        torch.avg_pool1d: tc.fx_avg_pool(1),
    })
    methods = {
        "relu": relu, "relu_": relu, "flatten": _flatten(0), "view": _reshape, "reshape": _reshape,
        "squeeze": functions[torch.squeeze], "unsqueeze": functions[torch.unsqueeze],
        "transpose": _transpose, "permute": _permute, "contiguous": contiguous, "size": _size,
        "dequantize": dequantize, "add": functions[torch.add], "add_": functions[torch.add],
        "mul": functions[torch.mul], "mul_": functions[torch.mul],
    }
    quantized = {
        "quantized::add": _qbinary("add", False), "quantized::add_relu": _qbinary("add", True),
        "quantized::mul": _qbinary("mul", False), "quantized::mul_relu": _qbinary("mul", True),
        "quantized::add_scalar": _qscalar(ar.QuantizedAddScalar),
        "quantized::mul_scalar": _qscalar(ar.QuantizedMulScalar),
        "quantized::cat": _qcat,
    }
    return functions, methods, quantized


FUNCTIONS, METHODS, QUANTIZED_OPS = _tables()
