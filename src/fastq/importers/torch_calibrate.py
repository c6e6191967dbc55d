"""The torch calibration importer (fastq.quantize_model of a float torch model): trace a float torch
model with torch.fx, decide what torch's eager prepare observes, run the float model in torch to
give the observers torch's own float activations, and build the fastq graph that torch's convert
of QuantWrapper(model) (Linear + ReLU module pairs fused) becomes.

What eager mode observes (torch/ao/quantization/quantize.py, functional_modules.py): the
QuantStub's input; the output of each Linear / Conv1d / Conv2d (a fused module's: after its
relu; the weights by the qconfig's weight observer, per channel under x86 / fbgemm); the output of each
FloatFunctional add / add_relu / mul / cat (one observer per FloatFunctional module, shared by
all its calls, as a Linear called twice shares its one observer). add_scalar / mul_scalar are
not observed (quantized::add_scalar picks its own output qparams), and relu / relu6 / hardtanh /
flatten / reshape / cat of plain torch.cat / dropout keep their input's qparams.

Fusion (what fuse_modules does to a list [conv, bn, relu], [conv, bn], [conv, relu],
[linear, bn], [linear, relu]): the modules fuse when every call of the first feeds only the
next, and so on (FUSIONS); a BatchNorm is folded into the weights (fastq.fusion, torch's float32
steps) before calibration, so the observers see the fused model's float values; the later
modules become nn.Identity, which need no node here (from_torch of the fused model gives
Identity nodes there, and one for each QFunctional's activation_post_process). ReLU6 is
observed by prepare but nnq.ReLU6 keeps its input's qparams, so it needs no observer here;
pooling is not observed (it runs on the quantized values).

The rules are data (FUSIONS, WEIGHTED, FLOAT_FUNCTIONAL below): a fused pair, an observed weighted
module or a FloatFunctional op is one row. The engine decides the layers' arithmetic
(fastq.engines); the observers and weight quantization are fastq.qconfig's, shared with the
plain numpy calibration. Imported only when a torch model arrives (fastq.importers).
"""
from __future__ import annotations

import copy
import operator
from typing import NamedTuple

import numpy as np
import torch
import torch.ao.nn.intrinsic as nni
import torch.ao.nn.quantized as nnq
import torch.ao.quantization as tq
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .. import fusion, qconfig as qc
from ..layers import arith as ar, elementwise as fm
from ..layers.batchnorm import QuantizedBatchNorm
from ..layers.conv import QuantizedConv
from ..layers.linear import QuantizedLinear
from ..model import Model, Node
from . import torch_conv as tconv, torch_fx as fc

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
# Fusion, what fuse_modules does to a module list [first, second(, third)] (torch 2.13
# fuser_method_mappings, eval mode): (the module types in call order, how a BatchNorm in the
# list folds into first's weights (a fastq.fusion function) or None, the setting of first's
# fastq layer that a fused ReLU turns on or None). The later modules become nn.Identity (no
# node here); the observer sees the list's output. Longer rows first: a Conv + BatchNorm +
# ReLU chain fuses all three.
FUSIONS = (
    ((nn.Conv1d, nn.BatchNorm1d, nn.ReLU), fusion.fold_conv_bn, "relu"),
    ((nn.Conv2d, nn.BatchNorm2d, nn.ReLU), fusion.fold_conv_bn, "relu"),
    ((nn.Conv1d, nn.BatchNorm1d), fusion.fold_conv_bn, None),
    ((nn.Conv2d, nn.BatchNorm2d), fusion.fold_conv_bn, None),
    ((nn.Conv1d, nn.ReLU), None, "relu"),
    ((nn.Conv2d, nn.ReLU), None, "relu"),
    ((nn.Linear, nn.BatchNorm1d), fusion.fold_linear_bn, None),
    ((nn.Linear, nn.ReLU), None, "relu"),
    ((nn.BatchNorm2d, nn.ReLU), None, "relu"),         # nni.BNReLU2d, converted to nniq.BNReLU2d
)

# BatchNorms that eager convert quantizes where no fusion folded them (nnq.BatchNorm2d: its output
# observed, the float statistics kept as they are). BatchNorm1d has no quantized module in torch
# 2.13's mappings: left unfused, torch's converted model fails on it, so fastq refuses it.
UNFUSED_NORMS = {nn.BatchNorm2d: "bn"}

# The float modules eager convert replaces by a quantized weighted module: the output of each
# call is observed (after the modules fused into it), the weight by the qconfig's weight
# observer, and the builder makes the layer. type -> (observer key kind, builder method name)
WEIGHTED = {
    nn.Linear: ("linear", "_linear"),
    nn.Conv1d: ("conv", "_conv"),
    nn.Conv2d: ("conv", "_conv"),
}

# FloatFunctional ops: (observed: one observer per FloatFunctional module, shared by its calls;
# builder method name). add_scalar / mul_scalar are not observed: quantized::add_scalar picks
# its own output qparams. matmul is absent: a quantized matmul is not reproduced.
FLOAT_FUNCTIONAL = {
    "add": (True, "_ff_binary"), "add_relu": (True, "_ff_binary"), "mul": (True, "_ff_binary"),
    "cat": (True, "_ff_cat"),
    "add_scalar": (False, "_ff_scalar"), "mul_scalar": (False, "_ff_scalar"),
}


# --------------------------------------------------------------------------- fusion
class Fused(NamedTuple):
    """One fused module list at one call: its fx call nodes in order and its FUSIONS row."""
    nodes: tuple
    fold: object            # a fastq.fusion function or None
    activation: str         # the fused activation setting or None


def _ff_path(node):
    """The FloatFunctional's path when `node` is one of its ops, else None."""
    if node.op == "call_module" and str(node.target).rsplit(".", 1)[-1] == _MARK:
        return str(node.target)[:-len(_MARK) - 1]
    return None


def _module_type(gm, node):
    if node.op != "call_module" or _ff_path(node) is not None:
        return None
    return type(gm.get_submodule(str(node.target)))


def _chain(gm, n, types):
    """The call nodes n, then its only user, then that one's only user, ... when their modules
    have `types` and each reads only the one before; else None."""
    chain = [n]
    for t in types[1:]:
        users = list(chain[-1].users)
        u = users[0] if len(users) == 1 else None
        if u is None or _module_type(gm, u) is not t or u.args != (chain[-1],) or u.kwargs:
            return None
        chain.append(u)
    return chain


def _fusion(gm, calls):
    """{first call node: Fused}: a FUSIONS row fuses a module list when, at every call of its
    first module, the later modules follow in a chain (each reading only the one before, the
    ones before the last read by nothing else), each later module is called only there, and
    no module is in two lists (fuse_modules replaces each module once)."""
    fused, claimed = {}, set()
    for types, fold, activation in FUSIONS:
        for path, ns in calls.items():
            if path in claimed or _module_type(gm, ns[0]) is not types[0]:
                continue
            chains = [_chain(gm, n, types) for n in ns]
            if any(c is None for c in chains):
                continue
            later = [{str(c[i].target) for c in chains} for i in range(1, len(types))]
            if any(len(p) != 1 or len(calls[next(iter(p))]) != len(ns) or p & claimed for p in later):
                continue
            claimed.add(path)
            claimed.update(next(iter(p)) for p in later)
            fused.update((c[0], Fused(tuple(c), fold, activation)) for c in chains)
    return fused


def _set_submodule(gm, path, module):
    parent, _, name = path.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, name, module)


def _apply_fusion(gm, fused):
    """Folds each fused BatchNorm into the weights of the module before it (as fuse_modules
    does, by fastq.fusion's arithmetic) and makes the BatchNorm nn.Identity in `gm`, so that the
    float activations the observers see are those of torch's fused model."""
    done = set()
    for f in fused.values():
        first = str(f.nodes[0].target)
        if first in done:
            continue
        done.add(first)
        module = gm.get_submodule(first)
        if f.fold is not None:
            bn_path = str(f.nodes[1].target)
            bn = gm.get_submodule(bn_path)
            if bn.running_mean is None or bn.running_var is None:
                raise ValueError("model: BatchNorm %r has no running statistics (track_running_stats="
                                 "False); torch's fuse_modules cannot fold it into %r" % (bn_path, first))
            out_channels = module.weight.shape[0]
            if bn.num_features != out_channels:
                raise ValueError("model: BatchNorm %r has %d features, %r gives %d channels"
                                 % (bn_path, bn.num_features, first, out_channels))

            def arr(t):
                return None if t is None else t.detach().cpu().numpy()
            w, b = f.fold(arr(module.weight), arr(module.bias), arr(bn.running_mean), arr(bn.running_var),
                          float(bn.eps), arr(bn.weight), arr(bn.bias))
            module.weight = nn.Parameter(torch.from_numpy(w), requires_grad=False)
            module.bias = nn.Parameter(torch.from_numpy(b), requires_grad=False)
            _set_submodule(gm, bn_path, nn.Identity())    # a fused ReLU still runs: it is observed after


# --------------------------------------------------------------------------- what is observed
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
    seconds = {m for f in fused.values() for m in f.nodes[1:]}
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
        if rule is None and n not in seconds:
            kind = UNFUSED_NORMS.get(type(gm.get_submodule(n.target)))
            rule = None if kind is None else (kind,)
        if rule is not None:
            observed[fused[n].nodes[-1] if n in fused else n] = (rule[0], str(n.target))
    return observed, fused, placeholders[0]


def float_runner(gm, observed):
    """run(x, where) -> [(key, label, float32 ndarray the observer sees)] in execution order."""

    def run(x, where):
        captured = []

        running = []

        class Capture(fx.Interpreter):
            def run_node(self, node):
                running[:] = [node]
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
                # name the op that failed (an Embedding fed float values, say): torch's own
                # message ends in a long fx dump, so only its first line is kept
                at = ""
                if running:
                    n = running[0]
                    what = type(gm.get_submodule(n.target)).__name__ if n.op == "call_module" else str(n.target)
                    at = " at fx node %r (%s)" % (n.name, what)
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                raise ValueError("%s: the model rejects an input of shape %s%s (%s: %s)"
                                 % (where, tuple(x.shape), at, type(e).__name__, first)) from e
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
_AVG_POOL_FUNCTIONS = {F.avg_pool1d: 1, torch.avg_pool1d: 1, F.avg_pool2d: 2}
_PREFUSED = (nni.LinearReLU, nni.ConvReLU1d, nni.ConvReLU2d)
CONVS = (nn.Conv1d, nn.Conv2d)
_FF_HINT = ("; torch's eager convert cannot run it on quantized tensors: write it with "
            "torch.ao.nn.quantized.FloatFunctional (add, add_relu, mul, add_scalar, mul_scalar, cat)")


class _Builder(fc.GraphBuilder):
    """torch_fx's builder over the float graph: shape ops, relu, flatten, ... convert as in
    from_torch; WEIGHTED modules, FloatFunctional ops and the stubs get the calibrated qparams."""

    def __init__(self, gm, engine, qparams, weight_qtensor, fused):
        super().__init__(gm, gm.graph, engine)
        self.qparams, self.weight_qtensor = qparams, weight_qtensor
        self.fused = fused
        self.fused_seconds = {n for f in fused.values() for n in f.nodes[1:]}
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
        if type(module) in (nn.AvgPool1d, nn.AvgPool2d):
            return self._avg_pool(node, path, module)
        if type(module) in UNFUSED_NORMS:
            return self._batch_norm(node, path, module)
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            raise _refuse("an unfused %s" % type(module).__name__, node,
                          " (fastq folds a BatchNorm into the Conv / Linear module right before it, as "
                          "fuse_modules does; torch's eager convert quantizes an unfused BatchNorm2d only)")
        return super()._call_module(node)

    def _fused_settings(self, node):
        f = self.fused.get(node)
        return {f.activation: True} if f is not None and f.activation else {}

    def _linear(self, node, path, module, kind):
        if node.kwargs or len(node.args) != 1:
            raise _refuse("calling Linear %r with %d arguments" % (path, len(node.args)), node)
        if module.weight.dtype != torch.float32:
            raise TypeError("model: Linear %r has %s weights; expected float32" % (path, module.weight.dtype))
        layer = self.layers.get(path)
        if layer is None:
            scale, zero_point = self.qparams[(kind, path)]
            w = module.weight.detach().cpu().numpy().copy()
            layer = self.layers[path] = QuantizedLinear(
                self.weight_qtensor(w), self._bias(module), scale, zero_point, requant=self.rules.requant,
                bias_rounding=self.rules.bias_rounding, **self._fused_settings(node))
        return self.put(self._module_node_name(node, path), layer, [self.tensor(node, node.args[0])], node)

    def _batch_norm(self, node, path, module):
        """An unfused BatchNorm2d: what nnq.BatchNorm2d.from_float keeps (the float statistics,
        the observed output qparams), BNReLU2d when fused with the ReLU after it."""
        if node.kwargs or len(node.args) != 1:
            raise _refuse("calling BatchNorm2d %r with %d arguments" % (path, len(node.args)), node)
        if module.running_mean is None or module.running_var is None or module.weight is None \
                or module.bias is None:
            raise _refuse("an unfused BatchNorm2d without running statistics or affine weights", node,
                          " (torch's quantized batch norm needs all four arrays)")
        scale, zero_point = self.qparams[("bn", path)]

        def arr(t):
            return t.detach().cpu().float().numpy().copy()
        layer = QuantizedBatchNorm(arr(module.weight), arr(module.bias), arr(module.running_mean),
                                   arr(module.running_var), scale, zero_point, eps=float(module.eps),
                                   vector_block=tconv._vector_block(), **self._fused_settings(node))
        return self.put(self._module_node_name(node, path), layer, [self.tensor(node, node.args[0])], node)

    def _module_node_name(self, node, path):
        """A weighted module's node is named by its module path at its first call (as the chain
        models are), later calls by their fx names."""
        name, parent = node.name, path.rpartition(".")[0]
        if parent and isinstance(self.root.fastq_source.get_submodule(parent), _PREFUSED):
            path = parent                   # a float model fused already: named as torch names it
        if path not in self.named_paths and (path == node.name or path not in self.taken):
            name = path
            self.taken.add(path)
        self.named_paths.add(path)
        return name

    def _bias(self, module):
        b = None if module.bias is None else module.bias.detach().cpu().numpy().copy()
        if b is None and self.rules.zero_bias_when_none:
            b = np.zeros(module.weight.shape[0], np.float32)   # what torch's packed module then holds
        return b

    def _conv(self, node, path, module, kind):
        if node.kwargs or len(node.args) != 1:
            raise _refuse("calling %s %r with %d arguments" % (type(module).__name__, path, len(node.args)), node)
        if module.weight.dtype != torch.float32:
            raise TypeError("model: %s %r has %s weights; expected float32" % (type(module).__name__, path,
                                                                              module.weight.dtype))
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise _refuse("%s %r with padding %r, padding_mode %r" % (type(module).__name__, path, module.padding,
                                                                      module.padding_mode), node,
                          " (torch's quantized convolution pads with zeros by integer amounts)")
        layer = self.layers.get(path)
        if layer is None:
            scale, zero_point = self.qparams[(kind, path)]
            w = self.weight_qtensor(module.weight.detach().cpu().numpy().copy())
            zw = np.atleast_1d(np.asarray(w.zero_point))
            layer = self.layers[path] = QuantizedConv(
                w, self._bias(module), scale, zero_point, stride=list(module.stride), padding=list(module.padding),
                dilation=list(module.dilation), groups=int(module.groups),
                arithmetic=tconv.conv_arithmetic(self.engine, zw, module.groups), **self._fused_settings(node))
        return self.put(self._module_node_name(node, path), layer, [self.tensor(node, node.args[0])], node)

    def _is_conv(self, node):
        return node.op == "call_module" and _ff_path(node) is None \
            and (type(self.root.get_submodule(str(node.target))) in CONVS
                 or type(self.root.get_submodule(str(node.target))) in UNFUSED_NORMS)   # channels-last too

    def _avg_pool(self, node, path, module):
        """AvgPool: torch's path depends on whether its input is a quantized conv's channels-last
        output (torch_conv), here the float conv that convert will quantize."""
        dims = 1 if isinstance(module, nn.AvgPool1d) else 2
        channels_last = tconv.torch_channels_last(node, self._is_conv)
        layer = tconv.avg_pool_layer(dims, module.kernel_size, module.stride, module.padding, module.ceil_mode,
                                     module.count_include_pad, getattr(module, "divisor_override", None),
                                     self.engine, channels_last, node, path)
        return self.put(node.name, layer, [self.tensor(node, node.args[0])], node)

    def _avg_pool_function(self, node, dims):
        names = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad") \
            + (("divisor_override",) if dims == 2 else ())
        a = fc._bind(self, node, names, {"stride": None, "padding": 0, "ceil_mode": False,
                                         "count_include_pad": True, "divisor_override": None})
        for k in names[1:]:
            self.const(node, a[k], (int, tuple, list, bool, type(None)), k)
        layer = tconv.avg_pool_layer(dims, a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"],
                                     a["count_include_pad"], a.get("divisor_override"), self.engine,
                                     tconv.torch_channels_last(node, self._is_conv), node, fc._path(node))
        return self.put(node.name, layer, [self.tensor(node, a["input"])], node)

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
        if node.target in _AVG_POOL_FUNCTIONS:
            return self._avg_pool_function(node, _AVG_POOL_FUNCTIONS[node.target])
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
class Calibrated(NamedTuple):
    """What prepare / convert decide, before any fastq layer is made: the traced float model with
    the fusions applied (BatchNorm folded), the fused lists, and the qparams of every observer:
    "input" (the QuantStub), (WEIGHTED kind, module path) and ("ff", FloatFunctional path) ->
    (scale, zero_point)."""
    gm: object
    fused: dict
    qparams: dict

    def weighted(self, qconfig):
        """{module path: (weight QTensor, float32 bias or None, scale, zero_point)} of every
        WEIGHTED module: what eager convert's from_float stores (the weight observed and
        quantized by the qconfig's weight observer, the folded float bias as is)."""
        out = {}
        for key, (scale, zero_point) in self.qparams.items():
            if not isinstance(key, tuple) or key[0] not in {k for k, _ in WEIGHTED.values()}:
                continue
            m = self.gm.get_submodule(key[1])
            w = m.weight.detach().cpu().numpy().copy()
            b = None if m.bias is None else m.bias.detach().cpu().numpy().copy()
            out[key[1]] = (qc.weight_qtensor(qconfig, w), b, scale, zero_point)
        return out


def observe(model, calibration_batches, qconfig):
    """Calibrated for a float torch model: fuse as fuse_modules does, then run the batches
    through torch's float model, feeding the observers prepare would insert."""
    gm = _traced_copy(model)
    observed, fused, _ = _observation_points(gm)
    _apply_fusion(gm, fused)
    keys = list(dict.fromkeys(observed.values()))
    if not any(isinstance(k, tuple) for k in keys):
        raise ValueError("model: has no Linear or Conv layer (nor FloatFunctional add / mul / cat) to quantize")
    observers = {k: qc.activation_observer(qconfig) for k in keys}
    qc.calibrate(calibration_batches, float_runner(gm, observed), observers)
    qparams = {k: obs.calculate_qparams() for k, obs in observers.items()}
    qparams = {k: (float(s), int(z)) for k, (s, z) in qparams.items()}
    return Calibrated(gm, fused, qparams)


def calibrate(model, calibration_batches, qconfig, engine):
    """fastq.Model for a float torch model (see fastq.calibrate.quantize_model): qconfig a
    fastq.qconfig.QConfig, engine a name in fastq.engines."""
    c = observe(model, calibration_batches, qconfig)
    builder = _Builder(c.gm, engine, c.qparams, lambda w: qc.weight_qtensor(qconfig, w), c.fused)
    return builder.build()
