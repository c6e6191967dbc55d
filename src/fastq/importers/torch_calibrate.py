"""The torch calibration importer (fastq.quantize_model of a float torch model): trace a float torch
model with torch.fx, decide what torch's eager prepare observes, run the float model in torch to
give the observers torch's own float activations, and build the fastq graph that torch's convert
of QuantWrapper(model) (Linear + ReLU module pairs fused) becomes.

What eager mode observes (torch/ao/quantization/quantize.py, functional_modules.py): the
QuantStub's input; the output of each Linear (a LinearReLU's: after the relu); the output of each
FloatFunctional add / add_relu / mul / cat (one observer per FloatFunctional module, shared by
all its calls, as a Linear called twice shares its one observer). add_scalar / mul_scalar are
not observed (quantized::add_scalar picks its own output qparams), and relu / relu6 / hardtanh /
flatten / reshape / cat of plain torch.cat / dropout keep their input's qparams.

Fusion (what fuse_modules does to a pair [linear, relu]): a Linear is fused with an nn.ReLU module
when every call of the Linear feeds only that ReLU and every call of the ReLU reads that Linear;
the ReLU then becomes nn.Identity, which needs no node here (from_torch of the fused model
gives an Identity node there, and one for each QFunctional's activation_post_process).

The rules are data (FUSIONS, WEIGHTED, FLOAT_FUNCTIONAL below): a fused pair, an observed weighted
module or a FloatFunctional op is one row. The engine decides the layers' arithmetic
(fastq.engines); the observers and weight quantization are fastq.qconfig's, shared with the
plain numpy calibration. Imported only when a torch model arrives (fastq.importers).
"""
from __future__ import annotations

import copy
import operator

import numpy as np
import torch
import torch.ao.nn.intrinsic as nni
import torch.ao.nn.quantized as nnq
import torch.ao.quantization as tq
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .. import qconfig as qc
from ..layers import arith as ar, elementwise as fm
from ..layers.linear import QuantizedLinear
from ..model import Model, Node
from . import torch_fx as fc

_MARK = "fastq_op"                  # the leaf child each FloatFunctional gets in the traced copy


def _refuse(what, node, hint=""):
    path = fc._path(node)
    where = "fx node %r" % node.name + (", module %r" % path if path else "")
    return NotImplementedError("%s is not supported by fastq.quantize_model (%s)%s" % (what, where, hint))


# --------------------------------------------------------------------------- tracing
class _FloatFunctionalCall(nn.Module):
    """An fx leaf: one FloatFunctional op, computed exactly as FloatFunctional computes it."""

    def forward(self, kind, x, other=None):
        if kind in ("add", "add_scalar"):
            return torch.add(x, other)
        if kind == "add_relu":
            return F.relu(torch.add(x, other))
        if kind in ("mul", "mul_scalar"):
            return torch.mul(x, other)
        if kind == "cat":
            return torch.cat(x, dim=other)
        return torch.matmul(x, other)


class _MarkedFloatFunctional(nnq.FloatFunctional):
    """FloatFunctional whose ops show in the fx graph as one call of its `fastq_op` child."""

    def add(self, x, y):
        return getattr(self, _MARK)("add", x, y)

    def add_scalar(self, x, y):
        return getattr(self, _MARK)("add_scalar", x, y)

    def mul(self, x, y):
        return getattr(self, _MARK)("mul", x, y)

    def mul_scalar(self, x, y):
        return getattr(self, _MARK)("mul_scalar", x, y)

    def add_relu(self, x, y):
        return getattr(self, _MARK)("add_relu", x, y)

    def cat(self, x, dim=0):
        return getattr(self, _MARK)("cat", list(x), dim)

    def matmul(self, x, y):
        return getattr(self, _MARK)("matmul", x, y)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m, qualname):
        return isinstance(m, _FloatFunctionalCall) or super().is_leaf_module(m, qualname)


def _traced_copy(model):
    if model.training:
        raise ValueError("model: is in training mode; call model.eval() before calibrating "
                         "(torch's post-training quantization calibrates an eval-mode model)")
    for path, m in model.named_modules():
        if isinstance(m, (tq.QuantStub, tq.DeQuantStub, nnq.Quantize, nnq.DeQuantize)):
            raise NotImplementedError("model: module %r is a %s; quantize_model wraps the float model in "
                                      "QuantWrapper itself: give it without stubs" % (path, type(m).__name__))
        if isinstance(m, nnq.FloatFunctional) and type(m) is not nnq.FloatFunctional:
            raise NotImplementedError("model: module %r is a subclass of FloatFunctional (%s); only "
                                      "FloatFunctional itself is reproduced" % (path, type(m).__name__))
        if type(m).__module__.startswith(("torch.ao.nn.quantized", "torch.nn.quantized", "torch.ao.nn.qat")) \
                and type(m) is not nnq.FloatFunctional:
            raise NotImplementedError("model: module %r (%s) is already quantized; quantize_model takes the "
                                      "float model" % (path, type(m).__name__))
    model = copy.deepcopy(model)
    for m in model.modules():
        if type(m) is nnq.FloatFunctional:
            m.__class__ = _MarkedFloatFunctional
            m.add_module(_MARK, _FloatFunctionalCall())
    try:
        graph = _Tracer().trace(model)
    except Exception as e:
        raise NotImplementedError("model: torch.fx cannot trace %s (%s: %s); quantize_model needs a forward "
                                  "without data-dependent Python control flow"
                                  % (type(model).__name__, type(e).__name__, e)) from e
    gm = fx.GraphModule(model, graph)
    gm.__dict__["fastq_source"] = model     # not a submodule; GraphModule keeps only the called modules, not their parents
    return gm


# --------------------------------------------------------------------------- the rules, as data
# Fusion, what fuse_modules does to a [first, second] module pair: (first's type, second's type,
# the setting of first's fastq layer that the fused second turns on). The second module becomes
# nn.Identity (no node here); the observer sees the pair's output.
FUSIONS = (
    (nn.Linear, nn.ReLU, "relu"),
)

# The float modules eager convert replaces by a quantized weighted module: the output of each
# call is observed (after a fused second module), and the builder makes the layer.
# type -> (observer key kind, builder method name)
WEIGHTED = {
    nn.Linear: ("linear", "_linear"),
}

# FloatFunctional ops: (observed: one observer per FloatFunctional module, shared by its calls;
# builder method name). add_scalar / mul_scalar are not observed: quantized::add_scalar picks
# its own output qparams. matmul is absent: a quantized matmul is not reproduced.
FLOAT_FUNCTIONAL = {
    "add": (True, "_ff_binary"), "add_relu": (True, "_ff_binary"), "mul": (True, "_ff_binary"),
    "cat": (True, "_ff_cat"),
    "add_scalar": (False, "_ff_scalar"), "mul_scalar": (False, "_ff_scalar"),
}


# --------------------------------------------------------------------------- what is observed
def _ff_path(node):
    """The FloatFunctional's path when `node` is one of its ops, else None."""
    if node.op == "call_module" and str(node.target).rsplit(".", 1)[-1] == _MARK:
        return str(node.target)[:-len(_MARK) - 1]
    return None


def _fusion(gm, calls):
    """{first call node: (the second call node fused into it, the setting it turns on)}: a pair
    of FUSIONS fuses when every call of the first module feeds only the second module, and every
    call of the second reads the first."""
    fused = {}
    for path, ns in calls.items():
        rules = {second: setting for first, second, setting in FUSIONS if type(gm.get_submodule(path)) is first}
        if not rules:
            continue
        seconds = []
        for n in ns:
            users = list(n.users)
            u = users[0] if len(users) == 1 else None
            if u is None or u.op != "call_module" or type(gm.get_submodule(u.target)) not in rules \
                    or u.args != (n,) or u.kwargs:
                break
            seconds.append(u)
        else:
            targets = {u.target for u in seconds}
            if len(targets) == 1 and len(calls[next(iter(targets))]) == len(ns):
                setting = rules[type(gm.get_submodule(seconds[0].target))]
                fused.update((n, (u, setting)) for n, u in zip(ns, seconds))
    return fused


def _observation_points(gm):
    """(observed, fused, placeholder): observed maps an fx node to the key of the observer that
    sees its output: "input", (WEIGHTED kind, path) or ("ff", path)."""
    nodes = list(gm.graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise NotImplementedError("model: forward takes %d inputs; quantize_model takes a model with one "
                                  "input (QuantWrapper quantizes one)" % len(placeholders))
    calls = {}
    for n in nodes:
        if n.op == "call_module":
            calls.setdefault(str(n.target), []).append(n)
    fused = _fusion(gm, calls)
    observed = {placeholders[0]: "input"}
    for n in nodes:
        if n.op != "call_module":
            continue
        ff = _ff_path(n)
        if ff is not None:
            if FLOAT_FUNCTIONAL.get(n.args[0], (False,))[0]:
                observed[n] = ("ff", ff)
            continue
        rule = WEIGHTED.get(type(gm.get_submodule(n.target)))
        if rule is not None:
            observed[fused[n][0] if n in fused else n] = (rule[0], str(n.target))
    return observed, fused, placeholders[0]


def float_runner(gm, observed):
    """run(x, where) -> [(key, label, float32 ndarray the observer sees)] in execution order."""

    def run(x, where):
        captured = []

        class Capture(fx.Interpreter):
            def run_node(self, node):
                out = super().run_node(node)
                key = observed.get(node)
                if key is not None:     # copied now: an in-place op may follow
                    captured.append((key, "the output of %s" % _label(node),
                                     out.detach().cpu().numpy().copy()))
                return out

        with torch.no_grad():
            try:
                Capture(gm).run(torch.from_numpy(np.ascontiguousarray(x)))
            except Exception as e:
                raise ValueError("%s: the model rejects an input of shape %s (%s: %s)"
                                 % (where, tuple(x.shape), type(e).__name__, e)) from e
        return captured

    return run


def _label(node):
    if node.op == "call_module":
        return "module %s (fx node %r)" % (node.target, node.name)
    return "fx node %r" % node.name


# --------------------------------------------------------------------------- the fastq graph
_PLAIN_ARITH = {operator.add, operator.iadd, torch.add, operator.mul, operator.imul, torch.mul,
                operator.sub, operator.isub, torch.sub, operator.truediv, torch.div,
                operator.matmul, torch.matmul}
_PLAIN_ARITH_METHODS = {"add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_", "matmul"}
_FF_HINT = ("; torch's eager convert cannot run it on quantized tensors: write it with "
            "torch.ao.nn.quantized.FloatFunctional (add, add_relu, mul, add_scalar, mul_scalar, cat)")


class _Builder(fc.GraphBuilder):
    """torch_fx's builder over the float graph: shape ops, relu, flatten, ... convert as in
    from_torch; WEIGHTED modules, FloatFunctional ops and the stubs get the calibrated qparams."""

    def __init__(self, gm, engine, qparams, weight_qtensor, fused):
        super().__init__(gm, gm.graph, engine)
        self.qparams, self.weight_qtensor = qparams, weight_qtensor
        self.fused = fused
        self.fused_seconds = {second for second, _ in fused.values()}
        self.taken = {n.name for n in gm.graph.nodes}
        self.named_paths = set()

    def fresh(self, name):
        k, base = 0, name
        while name in self.taken:
            k += 1
            name = "%s_%d" % (base, k)
        self.taken.add(name)
        return name

    def put(self, name, layer, inputs, node=None):
        self.nodes.append(Node(name, layer, tuple(inputs)))
        self.kind[name] = fc.TENSOR
        if node is not None:
            self.env[node] = name
        return name

    def _placeholder(self, node):
        super()._placeholder(node)
        scale, zero_point = self.qparams["input"]
        self.put(self.fresh("quant"), fm.Quantize(scale, zero_point), [node.name], node)

    def _output(self, node):
        out = node.args[0]
        if not isinstance(out, fx.Node) or self.kind.get(self.env.get(out)) != fc.TENSOR:
            raise _refuse("a forward returning %r" % (out,), node,
                          " (QuantWrapper's DeQuantStub takes one tensor: return one tensor)")
        self.outputs = (self.put(self.fresh("dequant"), fm.Dequantize(), [self.env[out]]),)

    def _call_module(self, node):
        ff = _ff_path(node)
        if ff is not None:
            return self._float_functional(node, ff)
        path = str(node.target)
        module = self.root.get_submodule(path)
        if node in self.fused_seconds:          # fuse_modules left an nn.Identity here: no node
            self.env[node] = self.env[node.args[0]]
            return self.env[node]
        for cls, (kind, method) in WEIGHTED.items():
            if isinstance(module, cls):
                if type(module) is not cls:
                    raise _refuse("module %s (a subclass of nn.%s)" % (type(module).__name__, cls.__name__), node)
                return getattr(self, method)(node, path, module, kind)
        return super()._call_module(node)

    def _fused_settings(self, node):
        return {self.fused[node][1]: True} if node in self.fused else {}

    def _linear(self, node, path, module, kind):
        if node.kwargs or len(node.args) != 1:
            raise _refuse("calling Linear %r with %d arguments" % (path, len(node.args)), node)
        if module.weight.dtype != torch.float32:
            raise TypeError("model: Linear %r has %s weights; expected float32" % (path, module.weight.dtype))
        layer = self.layers.get(path)
        if layer is None:
            scale, zero_point = self.qparams[(kind, path)]
            w = module.weight.detach().cpu().numpy().copy()
            b = None if module.bias is None else module.bias.detach().cpu().numpy().copy()
            layer = self.layers[path] = QuantizedLinear(
                self.weight_qtensor(w), b, scale, zero_point, requant=self.rules.requant,
                bias_rounding=self.rules.bias_rounding, **self._fused_settings(node))
        # the node is named by the module path at its first call (as the chain models are), later
        # calls by their fx names
        name, parent = node.name, path.rpartition(".")[0]
        if parent and isinstance(self.root.fastq_source.get_submodule(parent), nni.LinearReLU):
            path = parent                   # a float model fused already: named as torch names it
        if path not in self.named_paths and (path == node.name or path not in self.taken):
            name = path
            self.taken.add(path)
        self.named_paths.add(path)
        return self.put(name, layer, [self.tensor(node, node.args[0])], node)

    def _float_functional(self, node, path):
        kind, x = node.args[0], node.args[1]
        other = node.args[2] if len(node.args) > 2 else None
        rule = FLOAT_FUNCTIONAL.get(kind)
        if rule is None:
            raise _refuse("FloatFunctional.%s" % kind, node, " (quantized matmul is not reproduced)")
        layer, inputs = getattr(self, rule[1])(node, path, kind, x, other)
        return self.put(self.fresh(kind), layer, inputs, node)

    def _ff_binary(self, node, path, kind, x, other):
        if not isinstance(other, fx.Node):
            raise _refuse("FloatFunctional.%s with the constant %r" % (kind, other), node,
                          " (use add_scalar / mul_scalar for a scalar)")
        scale, zero_point = self.qparams[("ff", path)]
        if kind == "mul":
            layer = ar.QuantizedMul(scale, zero_point, relu=False, torch_threads=torch.get_num_threads())
        else:
            layer = ar.QuantizedAdd(scale, zero_point, relu=kind == "add_relu",
                                    arithmetic=self.rules.add_arithmetic, torch_threads=torch.get_num_threads())
        return layer, [self.tensor(node, x), self.tensor(node, other)]

    def _ff_scalar(self, node, path, kind, x, other):
        c = float(self.const(node, other, (int, float), "scalar"))
        cls = ar.QuantizedAddScalar if kind == "add_scalar" else ar.QuantizedMulScalar
        return cls(c), [self.tensor(node, x)]

    def _ff_cat(self, node, path, kind, x, other):
        scale, zero_point = self.qparams[("ff", path)]
        dim = self.const(node, other, (int,), "dim")
        return ar.QuantizedCat(scale, zero_point, dim), [self.tensor(node, t) for t in x]

    def _plain_arith(self, node, name):
        tensors = [a for a in list(node.args) + list(node.kwargs.values())
                   if isinstance(a, fx.Node) and self.kind.get(self.env.get(a)) == fc.TENSOR]
        if tensors:
            raise _refuse("a plain %s" % name, node, _FF_HINT)

    def _call_function(self, node):
        if node.target in _PLAIN_ARITH:
            self._plain_arith(node, self.op_name(node))
        return super()._call_function(node)

    def _call_method(self, node):
        if node.target in _PLAIN_ARITH_METHODS:
            self._plain_arith(node, "Tensor.%s" % node.target)
        return super()._call_method(node)

    def build(self):
        try:
            for node in self.graph.nodes:
                getattr(self, "_" + node.op)(node)
        except NotImplementedError as e:
            raise NotImplementedError(str(e).replace("fastq.from_torch", "fastq.quantize_model")) from e
        return Model(nodes=self.nodes, inputs=tuple(self.inputs), outputs=self.outputs)


# --------------------------------------------------------------------------- entry
def calibrate(model, calibration_batches, qconfig, engine):
    """fastq.Model for a float torch model (see fastq.calibrate.quantize_model): qconfig a
    fastq.qconfig.QConfig, engine a name in fastq.engines."""
    gm = _traced_copy(model)
    observed, fused, _ = _observation_points(gm)
    keys = list(dict.fromkeys(observed.values()))
    if not any(isinstance(k, tuple) for k in keys):
        raise ValueError("model: has no Linear layer (nor FloatFunctional add / mul / cat) to quantize")
    observers = {k: qc.activation_observer(qconfig) for k in keys}
    qc.calibrate(calibration_batches, float_runner(gm, observed), observers)
    qparams = {k: obs.calculate_qparams() for k, obs in observers.items()}
    qparams = {k: (float(s), int(z)) for k, (s, z) in qparams.items()}
    builder = _Builder(gm, engine, qparams, lambda w: qc.weight_qtensor(qconfig, w), fused)
    return builder.build()
