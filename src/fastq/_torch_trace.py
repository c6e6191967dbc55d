"""The torch side of fastq.calibrate (imports torch lazily, like torch_compat): trace a float
torch model with torch.fx into a chain of Linear / ReLU / Flatten steps, and run it in torch to
give the observers torch's own float activations."""
from __future__ import annotations

import numpy as np


def _torch():
    try:
        import torch
        import torch.fx  # noqa: F401
    except ImportError as e:  # pragma: no cover - exercised only without torch
        raise ImportError("a torch model needs PyTorch: pip install torch==2.13.0") from e
    return torch


def _describe(node):
    return "fx node %r (%s %s)" % (node.name, node.op, getattr(node.target, "__name__", node.target))


def traced_float_chain(model, Linear, Op):
    """(steps, run): steps a list of Linear / Op records in call order; run(x, where) yields
    (Linear step, float32 ndarray its output observer sees) for each Linear, per batch."""
    torch = _torch()
    F = torch.nn.functional
    if model.training:
        raise ValueError("model: is in training mode; call model.eval() before calibrating "
                         "(torch's post-training quantization calibrates an eval-mode model)")
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as e:
        raise NotImplementedError("model: torch.fx cannot trace %s (%s: %s); quantize_model needs "
                                  "a forward without data-dependent Python control flow"
                                  % (type(model).__name__, type(e).__name__, e)) from e
    nodes = list(gm.graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise NotImplementedError("model: forward takes %d inputs; quantize_model takes a model "
                                  "with one input" % len(placeholders))
    calls = {}
    for n in nodes:
        if n.op == "call_module":
            calls[n.target] = calls.get(n.target, 0) + 1

    relu_functions = {torch.relu, F.relu, torch.relu_}
    steps, kinds = [], []            # kinds[i]: (node, "linear" | "relu_module" | "relu" | "flatten")
    current = placeholders[0]
    for n in nodes:
        if n is placeholders[0]:
            continue
        if n.op == "output":
            if n.args[0] is not current:
                raise NotImplementedError("model: returns %r, not the end of one chain; graphs "
                                          "(branches, several outputs) are not supported by "
                                          "quantize_model yet" % (n.args[0],))
            break
        args = [a for a in list(n.args) + list(n.kwargs.values()) if isinstance(a, torch.fx.Node)]
        if args != [current] or (n.args and n.args[0] is not current):
            raise NotImplementedError("model: %s does not take the previous step's output alone; "
                                      "quantize_model supports chains only (graphs are not "
                                      "supported yet)" % _describe(n))
        if len(current.users) != 1:
            raise NotImplementedError("model: the output of %r is used %d times; quantize_model "
                                      "supports chains only" % (current.name, len(current.users)))
        step = _step(torch, gm, n, relu_functions, calls, Linear, Op)
        if step is not None:
            steps.append(step)
            kinds.append(n)
        current = n

    # fuse_modules: a Linear directly followed by an nn.ReLU module called once becomes
    # LinearReLU, whose observer sees the relu's output.
    observed = {}                    # fx node name -> Linear step
    fused = []
    i = 0
    while i < len(steps):
        s = steps[i]
        if isinstance(s, Linear):
            nxt = steps[i + 1] if i + 1 < len(steps) else None
            if (isinstance(nxt, Op) and nxt.kind == "relu" and nxt.module
                    and calls[nxt.name] == 1 and kinds[i + 1].args[0] is kinds[i]):
                s.relu = True
                observed[kinds[i + 1].name] = s
                fused.append(s)
                i += 2
                continue
            observed[kinds[i].name] = s
        fused.append(s)
        i += 1

    def run(x, where):
        captured = []

        class Capture(torch.fx.Interpreter):
            def run_node(self, node):
                out = super().run_node(node)
                if node.name in observed:     # copied now: an in-place relu may follow
                    captured.append((observed[node.name], out.detach().cpu().numpy().copy()))
                return out

        with torch.no_grad():
            try:
                Capture(gm).run(torch.from_numpy(np.ascontiguousarray(x)))
            except Exception as e:
                raise ValueError("%s: the model rejects an input of shape %s (%s: %s)"
                                 % (where, tuple(x.shape), type(e).__name__, e)) from e
        return captured

    return fused, run


def _step(torch, gm, n, relu_functions, calls, Linear, Op):
    nn = torch.nn
    if n.op == "call_module":
        mod = gm.get_submodule(n.target)
        kind = type(mod)
        if kind is nn.Linear:
            if calls[n.target] != 1:
                raise NotImplementedError("model: Linear %r is called %d times; quantize_model "
                                          "supports each Linear once" % (n.target, calls[n.target]))
            if mod.weight.dtype != torch.float32:
                raise TypeError("model: Linear %r has %s weights; expected float32"
                                % (n.target, mod.weight.dtype))
            w = mod.weight.detach().cpu().numpy().copy()
            b = None if mod.bias is None else mod.bias.detach().cpu().numpy().copy()
            return Linear(n.target, w, b, False)
        if kind is nn.ReLU:
            op = Op(n.target, "relu")
            op.module = True
            return op
        if kind is nn.Flatten:
            return _flatten(Op, n.target, mod.start_dim, mod.end_dim)
        if kind in (nn.Identity, nn.Dropout):
            return None
        raise NotImplementedError("model: module %r (%s.%s) at %s is not supported by "
                                  "quantize_model (Linear, ReLU, Flatten, Identity, Dropout)"
                                  % (n.target, kind.__module__, kind.__name__, _describe(n)))
    if n.op == "call_function" and n.target in relu_functions:
        return _plain_relu(Op, n.name)
    if n.op == "call_method" and n.target in ("relu", "relu_"):
        return _plain_relu(Op, n.name)
    if (n.op == "call_function" and n.target is torch.flatten) or \
            (n.op == "call_method" and n.target == "flatten"):
        start = n.args[1] if len(n.args) > 1 else n.kwargs.get("start_dim", 0)
        end = n.args[2] if len(n.args) > 2 else n.kwargs.get("end_dim", -1)
        return _flatten(Op, n.name, start, end)
    raise NotImplementedError("model: %s is not supported by quantize_model (Linear, ReLU, "
                              "relu, Flatten, flatten, Identity, Dropout)" % _describe(n))


def _plain_relu(Op, name):
    op = Op(name, "relu")
    op.module = False
    return op


def _flatten(Op, name, start, end):
    for v in (start, end):
        if isinstance(v, bool) or not isinstance(v, int):
            raise NotImplementedError("model: flatten %r with non-constant dims %r" % (name, v))
    op = Op(name, "flatten", (start, end))
    op.module = False
    return op
