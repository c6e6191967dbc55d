"""A model: a graph of nodes (a chain is the special case), float32 in, float32 out; save / load.

    model = fastq.from_torch(converted_torch_model)    # eager-mode torch.ao model, whole
    y = model(x)                                       # float32 [..., N], = torch's output
    model.save("mlp.fq"); model = fastq.load("mlp.fq")

Each Node names the values it reads and makes; the model runs the nodes in topological order and
drops a value once its last reader has run. A node holds any op of the registry
(fastq.layers.LAYER_TYPES: layers/elementwise.py, linear/, dynamic.py, arith.py, shape.py). Values
flow as float32 arrays or QTensors (and Python ints for sizes); each op says which it takes
(`takes`). The output is always float32 (a quantized result is dequantized, exactly as torch's
dequantize does).

Repeated calls: the first call with float32 inputs of a new shape runs every node's checked
call and compiles the run for that input signature (_Compiled: each node's callable bound to its
input's shape, dtype, layout and quantization, layers/_fast.py); later calls of that signature run
the bound callables, and any node whose input no longer matches its binding (a quantization
that depends on the data) is called in full. The integers are the same either way.

Model files: fastq.model_file (a versioned binary format, every setting and array declared in
its header and checked before anything is built; never pickle).
"""
from __future__ import annotations

import heapq

import numpy as np

from ._checks import as_array
from .layers._base import FLOAT as _FLOAT, QUANT as _QUANT
from .layers._fast import ALIAS as _ALIAS, MISS as _MISS
from .qtensor import QTensor, dequantize

_F32 = np.dtype(np.float32)


def _takes(layer):
    """FLOAT, QUANT or ANY: what the op takes (None: not a fastq op)."""
    return getattr(layer, "takes", None)


# --------------------------------------------------------------------------- the graph
class Node:
    """One op of a Model: layer(*values named by inputs) -> the values named by outputs (one
    output: the layer returns one value; several: a tuple of that length)."""

    __slots__ = ("name", "layer", "inputs", "outputs")

    def __init__(self, name, layer, inputs, outputs=None):
        if not isinstance(name, str) or not name:
            raise TypeError("name: expected a non-empty str, got %r" % (name,))
        if _takes(layer) is None:
            raise TypeError("layer: node %r holds %s, which is not a fastq layer" % (name, type(layer).__name__))
        self.name = name
        self.layer = layer
        self.inputs = _names(inputs, "inputs", name)
        self.outputs = (name,) if outputs is None else _names(outputs, "outputs", name)
        if not self.outputs:
            raise ValueError("outputs: node %r has no outputs" % name)

    def __repr__(self):
        return "Node(%r, %r, inputs=%r, outputs=%r)" % (self.name, self.layer, self.inputs, self.outputs)


def _names(v, what, node):
    if isinstance(v, str):
        v = (v,)
    if not isinstance(v, (list, tuple)) or not all(isinstance(n, str) and n for n in v):
        raise TypeError("%s: node %r: expected value names (str), got %r" % (what, node, v))
    return tuple(v)


def _unique(names):
    taken, out = set(names), []
    seen = set()
    for n in names:
        if n in seen:
            k = 1
            while "%s_%d" % (n, k) in taken:
                k += 1
            n = "%s_%d" % (n, k)
            taken.add(n)
        seen.add(n)
        out.append(n)
    return out


def _toposort(nodes, inputs, outputs):
    """Validates a hand-built graph and returns its nodes in a topological order (the given
    order when it is one). ValueError for duplicate names, a value made twice, an input no node
    makes (dangling), a cycle, or a model output nothing makes."""
    seen = set()
    for n in nodes:
        if not isinstance(n, Node):
            raise TypeError("nodes: expected fastq.Node items, got %s" % type(n).__name__)
        if n.name in seen:
            raise ValueError("nodes: two nodes are named %r" % n.name)
        seen.add(n.name)
    if len(set(inputs)) != len(inputs):
        raise ValueError("inputs: a value name appears twice in %r" % (inputs,))
    producer = {v: None for v in inputs}
    for n in nodes:
        for v in n.outputs:
            if v in producer:
                raise ValueError("nodes: value %r is made twice (by %r and %s)"
                                 % (v, n.name, "the model inputs" if producer[v] is None else repr(producer[v].name)))
            producer[v] = n
    for n in nodes:
        for v in n.inputs:
            if v not in producer:
                raise ValueError("nodes: node %r reads value %r, which no node makes (dangling edge)" % (n.name, v))
    for v in outputs:
        if v not in producer:
            raise ValueError("outputs: value %r is made by no node" % v)
    # Kahn with in-degree counts, O(nodes + edges) (a model file may hold many nodes); the
    # smallest index first, so a given topological order is kept as it is
    users, waiting = {}, []
    for i, n in enumerate(nodes):
        deps = {v for v in n.inputs if producer[v] is not None}
        waiting.append(len(deps))
        for v in deps:
            users.setdefault(v, []).append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for v in nodes[i].outputs:
            for j in users.get(v, ()):
                waiting[j] -= 1
                if waiting[j] == 0:
                    heapq.heappush(ready, j)
    if len(order) != len(nodes):
        rest = [n for i, n in enumerate(nodes) if waiting[i]]
        raise ValueError("nodes: the graph has a cycle through %s" % ", ".join(repr(n.name) for n in rest))
    return order


class Model:
    """A graph of nodes run in topological order; float32 in, float32 out.

    fastq.Model([layer, ...], names=None): a chain; the values are "input", then one per layer
        named like it (names: the torch module paths; default "0", "1", ...).
    fastq.Model(nodes=[Node, ...], inputs=("x",), outputs=("y",)): any DAG.
    model(x) / model(*xs): float (numpy, CPU torch tensor) or QTensor inputs; a quantized result
    is dequantized (exactly as torch's dequantize); several outputs come as a tuple. Intermediate
    values are dropped as soon as their last reader has run."""

    def __init__(self, layers=None, names=None, *, nodes=None, inputs=None, outputs=None):
        if nodes is not None:
            if layers is not None or names is not None:
                raise TypeError("layers: give either layers (a chain) or nodes (a graph), not both")
            inputs = _names(("input",) if inputs is None else inputs, "inputs", "<model>")
            nodes = list(nodes)
            if outputs is None:
                if not nodes:
                    raise ValueError("outputs: required for a graph")
                outputs = nodes[-1].outputs
            outputs = _names(outputs, "outputs", "<model>")
            if not outputs:
                raise ValueError("outputs: a model needs at least one output, got %r" % (outputs,))
        else:
            if inputs is not None or outputs is not None:
                raise TypeError("inputs: a chain has one input; build a graph with nodes= for more")
            layers = list([] if layers is None else layers)
            for i, layer in enumerate(layers):
                if _takes(layer) is None:
                    raise TypeError("layers: item %d (%s) is not a fastq layer" % (i, type(layer).__name__))
            if names is None:
                names = [str(i) for i in range(len(layers))]
            names = [str(n) for n in names]
            if len(names) != len(layers):
                raise ValueError("names: expected %d names, got %d" % (len(layers), len(names)))
            if "input" in names:
                raise ValueError("names: 'input' is the chain's input value; name the layer otherwise")
            names = _unique(names)      # a module used twice in a chain: "relu", "relu_1" (as fx names them)
            inputs, prev, nodes = ("input",), "input", []
            for name, layer in zip(names, layers):
                nodes.append(Node(name, layer, (prev,)))
                prev = name
            outputs = (prev,)
        self.nodes = _toposort(nodes, inputs, outputs)
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self._compiled = None
        self._plan = self._make_plan()
        self.last_shapes = None
        self.last_qparams = {}
        self.last_dtypes = {}

    # -------------------------------------------------------------- plan
    def _make_plan(self):
        """Slot numbers for every value, and after each node the slots read for the last time."""
        slot = {v: i for i, v in enumerate(self.inputs)}
        for n in self.nodes:
            for v in n.outputs:
                slot[v] = len(slot)
        last = {}
        for i, n in enumerate(self.nodes):
            for v in n.inputs:
                last[v] = i
        keep = set(self.outputs)
        plan = []
        for i, n in enumerate(self.nodes):
            frees = tuple(sorted({slot[v] for v in n.inputs if last[v] == i and v not in keep}))
            takes = _takes(n.layer)
            want_q = True if takes == _QUANT else (False if takes == _FLOAT else None)
            plan.append((n.layer, tuple(slot[v] for v in n.inputs), tuple(slot[v] for v in n.outputs),
                         frees, want_q, i))
        self._slots = slot
        self._compiled = None       # the plan is new: so is any compiled run built from the old one
        return plan

    # -------------------------------------------------------------- list-like access (layers)
    @property
    def layers(self):
        return [n.layer for n in self.nodes]

    @property
    def names(self):
        return [n.name for n in self.nodes]

    def __len__(self):
        return len(self.nodes)

    def __getitem__(self, i):
        return self.nodes[i].layer

    def __iter__(self):
        return iter(self.layers)

    def node(self, name):
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError("name: no node named %r" % (name,))

    # -------------------------------------------------------------- running
    def _inputs(self, xs):
        if len(xs) != len(self.inputs):
            raise TypeError("x: the model takes %d input(s) (%s), got %d"
                            % (len(self.inputs), ", ".join(self.inputs), len(xs)))
        out = []
        for name, x in zip(self.inputs, xs):
            if type(x) is np.ndarray and x.dtype is _F32:
                out.append(x)
                continue
            if not isinstance(x, QTensor):
                x = as_array(x, "x")
                if x.dtype.kind not in "fiu" or x.dtype == np.bool_:
                    raise TypeError("x: input %r: expected a float array, got dtype %s" % (name, x.dtype))
                x = np.asarray(x, dtype=np.float32)
            out.append(x)
        return out

    def _call_node(self, layer, args, i):
        """One node in full: the kind check of _run, then the layer's checked call."""
        takes = _takes(layer)
        if takes in (_QUANT, _FLOAT):
            want_q = takes == _QUANT
            for a in args:
                if (type(a) is QTensor) is not want_q and isinstance(a, (QTensor, np.ndarray)):
                    self._fail(i, layer, takes, a)
        return layer(*args)

    def _fail(self, i, layer, takes, v):
        n = self.nodes[i]
        if takes == _QUANT:
            raise TypeError("x: node %r (%s) takes quantized values but receives floats; the model needs a "
                            "Quantize (QuantStub) before it" % (n.name, type(layer).__name__))
        raise TypeError("x: node %r (%s) takes floats but receives quantized values; the model needs a "
                        "Dequantize (DeQuantStub) before it" % (n.name, type(layer).__name__))

    def _run(self, xs, keep_all, binds=None):
        """Runs every node; binds: a list to receive each node's bound callable for inputs of
        this call's signature (layers/_fast.py; None where the op has none)."""
        vals = [None] * len(self._slots)
        vals[:len(xs)] = xs
        for layer, ins, outs, frees, want_q, i in self._plan:
            if len(ins) == 1:                       # the common case, without building a list
                a = vals[ins[0]]
                if want_q is not None and (type(a) is QTensor) is not want_q and isinstance(a, (QTensor, np.ndarray)):
                    self._fail(i, layer, _QUANT if want_q else _FLOAT, a)
                r = layer(a)
                args = (a,)
            else:
                args = [vals[j] for j in ins]
                if want_q is not None:
                    for a in args:
                        if (type(a) is QTensor) is not want_q and isinstance(a, (QTensor, np.ndarray)):
                            self._fail(i, layer, _QUANT if want_q else _FLOAT, a)
                r = layer(*args)
            if binds is not None:
                bind = getattr(layer, "_bind", None)
                binds.append(None if bind is None else bind(*args))
            if len(outs) == 1:
                vals[outs[0]] = r
            else:
                if not isinstance(r, tuple) or len(r) != len(outs):
                    raise ValueError("x: node %r returned %s, expected %d values"
                                     % (self.nodes[i].name, type(r).__name__, len(outs)))
                for j, v in zip(outs, r):
                    vals[j] = v
            if frees and not keep_all:
                for j in frees:
                    vals[j] = None
        return vals

    def __call__(self, *xs):
        c = self._compiled
        if c is not None:
            if c.chain and len(xs) == 1:           # the common case, without the general checks
                x = xs[0]
                if type(x) is np.ndarray and x.dtype is _F32 and x.shape == c.shape0 and x.strides == c.strides0:
                    return _float_out(c.run_chain(self, x))
            outs = c.run(self, xs)
            if outs is not _MISS:
                return outs[0] if len(outs) == 1 else outs
        binds = [] if _Compiled.signature(xs) is not None else None
        xs = self._inputs(xs)
        vals = self._run(xs, False, binds)
        if binds is not None:
            self._compiled = _Compiled(self, xs, binds)
        outs = tuple(_float_out(vals[self._slots[v]]) for v in self.outputs)
        return outs[0] if len(outs) == 1 else outs

    def run_values(self, *xs):
        """Every value by name (inputs, each node's outputs), quantized ones as QTensors; also
        records the shapes model.summary() shows."""
        vals = self._run(self._inputs(xs), True)
        values = {v: vals[i] for v, i in self._slots.items()}
        self.last_shapes = {v: _shape_of(x) for v, x in values.items()}
        self.last_qparams = {v: (x.scale, x.zero_point) for v, x in values.items()
                             if isinstance(x, QTensor) and x.axis is None}
        self.last_dtypes = {v: x.values.dtype.name for v, x in values.items() if isinstance(x, QTensor)}
        return values

    def summary(self, *sample):
        """A table, one row per node: op, input and output shapes, output scale / zero point,
        requantization constants, the torch arithmetic followed, weight bytes; then totals.
        Shapes come from running `sample` (float inputs) when given, else from the last
        run_values() / summary(sample) call, else they read "?"."""
        from .summary import model_summary
        if sample:
            self.run_values(*sample)
        return model_summary(self)

    def __repr__(self):
        if not self.nodes:
            return "fastq.Model()"
        chain = self.inputs == ("input",) and all(
            n.inputs == ((self.nodes[i - 1].name,) if i else ("input",)) and n.outputs == (n.name,)
            for i, n in enumerate(self.nodes)) and self.outputs == (self.nodes[-1].name,)
        lines = ["fastq.Model("]
        if chain:
            lines += ["  (%s): %r" % (n.name, n.layer) for n in self.nodes]
        else:
            lines.append("  inputs=%r," % (self.inputs,))
            lines += ["  %s = %r(%s)%s" % (", ".join(n.outputs), n.layer, ", ".join(n.inputs),
                                           "" if n.outputs == (n.name,) else "  # node %s" % n.name)
                      for n in self.nodes]
            lines.append("  outputs=%r," % (self.outputs,))
        lines.append(")")
        return "\n".join(lines)

    # ---------------------------------------------------------------- save / load
    def save(self, path):
        """Writes the model to `path` (fastq model file format 3, atomically; see model_file)."""
        from .model_file import save
        save(self, path)

    @classmethod
    def load(cls, path):
        """Reads a model file (format 3, or the .npz of formats 1 and 2); ValueError on any defect."""
        from .model_file import load
        return load(path)

    def export_c(self, directory, name="net", input_size=None, input_shape=None, overwrite=True):
        """Writes <directory>/<name>.h and <name>.c, standalone C99 bit-exact with this model
        (fastq.export.export_c, which documents the arguments). input_shape: one sample's
        (C, H, W) or (C, L), required for models with convolutions or pooling."""
        from .export import export_c
        return export_c(self, directory, name=name, input_size=input_size, input_shape=input_shape,
                        overwrite=overwrite)

    def explain(self, x, node, row=0, col=0):
        """Output element [row, col] of `node` (a name or an index) on model input x: a
        fastq.explain.Trace, the node's input computed by the model."""
        from .explain import explain_node
        return explain_node(self, x, node, row, col)


_REBINDS = 4    # a node whose input quantization keeps changing stops being bound again


class _Compiled:
    """The model's run for one input signature (shapes, dtypes, strides of float32 inputs):
    each node's bound callable (layers/_fast.py) in order, Identity nodes read through, and the
    slots dropped after their last reader. A node whose callable answers MISS (its input's
    quantization changed: a value whose scale depends on the data) is called in full; inputs of
    another signature run the model's full path, which compiles for them instead."""

    __slots__ = ("sig", "steps", "n", "out_slots", "chain", "shape0", "strides0")

    def __init__(self, model, xs, binds):
        self.sig = self.signature(xs)
        alias = {}

        def at(j):
            return alias.get(j, j)

        steps = []
        for (layer, ins, outs, frees, want_q, i), fn in zip(model._plan, binds):
            ins = tuple(at(j) for j in ins)
            if fn is _ALIAS and len(ins) == 1 and len(outs) == 1:
                alias[outs[0]] = ins[0]
                continue
            steps.append([fn if fn is not None and fn is not _ALIAS else None, layer, ins, outs, i])
        self.out_slots = tuple(at(model._slots[v]) for v in model.outputs)
        # frees: after a slot's last reader, unless the model returns it
        last = {}
        for k, (fn, layer, ins, outs, i) in enumerate(steps):
            for j in ins:
                last[j] = k
        keep = set(self.out_slots)
        frees = [[] for _ in steps]
        for j, k in last.items():
            if j not in keep:
                frees[k].append(j)
        # lists: a step whose callable misses is bound again (up to _REBINDS times): the first,
        # full run may hand a node another layout than the bound run does (an add keeps its
        # inputs' channels-last layout only when bound), so the node's first binding can miss
        self.steps = [[fn, layer, ins[0] if len(ins) == 1 else None, ins, outs[0] if len(outs) == 1 else None,
                       outs, tuple(f), i, 0] for (fn, layer, ins, outs, i), f in zip(steps, frees)]
        self.n = len(model._slots)
        # a chain (one model input, each step reading the one value the step before made, the
        # last one's the model output): run without the slot list (run_chain)
        slot = model._slots[model.inputs[0]] if len(model.inputs) == 1 else None
        chain = slot is not None and bool(self.steps)
        for st in self.steps:
            if st[2] != slot or st[4] is None:
                chain = False
                break
            slot = st[4]
        self.chain = chain and self.out_slots == (slot,)
        self.shape0, self.strides0 = self.sig[0] if self.sig else (None, None)

    @staticmethod
    def signature(xs):
        """The inputs' signature, or None where the compiled run does not apply (inputs other
        than float32 arrays: QTensors, ints, ... take the full path every time)."""
        sig = []
        for x in xs:
            if type(x) is not np.ndarray or x.dtype is not _F32:
                return None
            sig.append((x.shape, x.strides))
        return tuple(sig)

    def run(self, model, xs):
        sig = self.sig
        if len(xs) != len(sig):
            return _MISS
        for x, (shape, strides) in zip(xs, sig):
            if type(x) is not np.ndarray or x.dtype is not _F32 or x.shape != shape or x.strides != strides:
                return _MISS
        if self.chain:
            return (_float_out(self.run_chain(model, xs[0])),)
        vals = [None] * self.n
        vals[:len(xs)] = xs
        for step in self.steps:
            fn, layer, a, ins, o, outs, frees, i, rebinds = step
            if fn is None:
                r = _MISS
            elif a is not None:                     # one input: called without building a tuple
                r = fn(vals[a])
            else:
                r = fn(*[vals[j] for j in ins])
            if r is _MISS:
                r = self.full(model, step, (vals[a],) if a is not None else [vals[j] for j in ins])
            if o is not None:
                vals[o] = r
            else:
                if not isinstance(r, tuple) or len(r) != len(outs):
                    raise ValueError("x: node %r returned %s, expected %d values"
                                     % (model.nodes[i].name, type(r).__name__, len(outs)))
                for j, v in zip(outs, r):
                    vals[j] = v
            for j in frees:
                vals[j] = None
        return tuple(_float_out(vals[j]) for j in self.out_slots)

    def run_chain(self, model, x):
        """run for a chain: each step's output is the next one's input, nothing else is kept."""
        for step in self.steps:
            fn = step[0]
            r = _MISS if fn is None else fn(x)
            x = self.full(model, step, (x,)) if r is _MISS else r
        return x

    @staticmethod
    def full(model, step, args):
        """The step's node called in full (its binding missed, or it has none); a step whose
        callable missed is bound again for this input (up to _REBINDS times)."""
        fn, layer, i, rebinds = step[0], step[1], step[7], step[8]
        r = model._call_node(layer, args, i)
        if fn is not None and rebinds < _REBINDS:
            nb = layer._bind(*args)
            step[0], step[8] = (nb if nb is not None and nb is not _ALIAS else None), rebinds + 1
        return r


def _float_out(x):
    if type(x) is np.ndarray and x.dtype is _F32:
        return x
    if isinstance(x, QTensor):
        return dequantize(x)
    if isinstance(x, np.ndarray):
        return np.asarray(x, dtype=np.float32)
    return x


def _shape_of(x):
    if isinstance(x, QTensor):
        return tuple(x.values.shape)
    if isinstance(x, np.ndarray):
        return tuple(x.shape)
    return None


def load(path):
    """fastq.load(path): a Model written by Model.save (see model_file)."""
    from .model_file import load as _load
    return _load(path)


def from_torch(module, engine=None):
    """A whole eager-mode torch.ao quantized model (after convert or quantize_dynamic) as a Model.

    The model's forward is traced with torch.fx (quantized modules, stubs and Functional holders
    as leaves), so the graph is the one torch runs: any call order, functional relu / flatten /
    view, residual QFunctional add, cat of branches, a module called twice, tuple outputs.
    An op or module fastq does not reproduce raises NotImplementedError naming it, its fx node
    and module path; Python control flow on tensor values (which fx cannot trace) raises
    NotImplementedError saying so. engine: the torch quantized engine whose numerics to
    reproduce (default: torch.backends.quantized.engine, which should be the engine the model
    was converted under)."""
    from .importers.torch_fx import convert as model_from_torch
    return model_from_torch(module, engine=engine)
