"""Writes docs/ops-table.md: the ops fastq runs and the torch names it imports, generated from
the op registry (fastq.layers.LAYER_TYPES) and the importer tables (fastq.importers.torch_fx
MODULES / FUNCTIONS / METHODS / QUANTIZED_OPS, torch_conv's CNN modules, torch_calibrate
FUSIONS / WEIGHTED / FLOAT_FUNCTIONAL).

    python scripts/gen_ops_table.py            # rewrite docs/ops-table.md
    python scripts/gen_ops_table.py --check    # exit 1 when the committed page differs

tests/test_docs.py runs the check, so the page cannot drift from the code. Which fastq ops a
torch row builds is read from its constructor's code (the layer classes its bytecode and
closures name, following the importer's helper functions), not written by hand.
"""
from __future__ import annotations

import argparse
import ast
import inspect
import pathlib
import sys
import textwrap
import types

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "ops-table.md"
_FOLLOW = ("fastq.importers.",)          # helper functions followed when looking for layer classes


def _layer_names(obj, registry, seen=None, depth=0):
    """The registered layer class names a constructor `obj` may build: names in its code (and
    nested code), layer classes in its closure, and the same for the importer functions it calls."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 6:
        return set()
    seen.add(id(obj))
    found = set()
    if isinstance(obj, type):
        return {obj.__name__} if registry.get(obj.__name__) is obj else set()
    if isinstance(obj, types.MethodType):
        obj = obj.__func__
    if not isinstance(obj, types.FunctionType):
        return found
    glb = obj.__globals__

    def walk(code):
        for name in code.co_names:
            if name in registry:
                found.add(name)
            target = glb.get(name)
            if isinstance(target, types.FunctionType) and target.__module__.startswith(_FOLLOW):
                found.update(_layer_names(target, registry, seen, depth + 1))
        for c in code.co_consts:
            if isinstance(c, types.CodeType):
                walk(c)

    walk(obj.__code__)
    for cell in obj.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:          # an empty cell
            continue
        found.update(_layer_names(value, registry, seen, depth + 1))
    return found


def _branches(func, registry):
    """[(classes, fastq op names)] for each `if type(x) in (A, B, ...):` branch of func: the
    classes tested and the layers its body may build (names it uses, followed as above)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        test = node.test
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.In)
                and isinstance(test.comparators[0], ast.Tuple)):
            continue
        classes = [eval(compile(ast.Expression(e), "<gen_ops_table>", "eval"), func.__globals__)
                   for e in test.comparators[0].elts]
        ops = set()
        for sub in node.body:
            for n in ast.walk(sub):
                name = n.id if isinstance(n, ast.Name) else n.attr if isinstance(n, ast.Attribute) else None
                if name in registry:
                    ops.add(name)
                target = func.__globals__.get(name) if name else None
                if isinstance(target, types.FunctionType):
                    ops |= _layer_names(target, registry)
        out.append(([c for c in classes if isinstance(c, type)], ops))
    return out


def _narrow(make, ops):
    """A constructor that builds one of several layers by a string it closes over (_qbinary("add",
    ...)): keep the layers whose name holds that string."""
    words = [c.cell_contents for c in (getattr(make, "__closure__", None) or ())
             if isinstance(c.cell_contents, str)]
    for w in words:
        kept = {o for o in ops if w.lower() in o.lower()}
        if kept:
            ops = kept
    return ops


def _torch_name(obj):
    """A torch callable or class as users write it (nnq.Linear, F.relu, torch.cat, operator.add)."""
    import torch.nn.functional as F
    mod = getattr(obj, "__module__", None) or ""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or repr(obj)
    if isinstance(obj, type):
        prefixes = (("torch.ao.nn.intrinsic.quantized.dynamic", "nniqd"), ("torch.ao.nn.intrinsic.quantized", "nniq"),
                    ("torch.ao.nn.intrinsic", "nni"), ("torch.ao.nn.quantized.dynamic", "nnqd"),
                    ("torch.ao.nn.quantized", "nnq"), ("torch.ao.quantization", "tq"), ("torch.nn", "nn"))
        for prefix, short in prefixes:
            if mod.startswith(prefix):
                return "%s.%s" % (short, name)
        return "%s.%s" % (mod, name)
    if getattr(F, getattr(obj, "__name__", ""), None) is obj:
        return "F." + obj.__name__
    if mod in ("_operator", "operator"):
        return "operator." + obj.__name__
    if name == "getattr" and obj is getattr:
        return "getattr"
    return "torch." + getattr(obj, "__name__", name)


def _ops(names):
    return ", ".join("`%s`" % n for n in sorted(names)) if names else "(refused: says why)"


def _doc_line(cls):
    doc = inspect.getdoc(cls) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    return first.replace("|", "\\|")


def _capability(cls, method):
    from fastq.layers import Layer
    return "yes" if getattr(cls, method) is not getattr(Layer, method) else "—"


def generate():
    """The page's text."""
    import fastq  # noqa: F401  (registers every op)
    from fastq.layers import LAYER_TYPES
    from fastq.importers import torch_calibrate as tc, torch_conv as tconv, torch_fx as tfx

    registry = dict(LAYER_TYPES)
    torch_rows = []                     # (torch name, kind, fastq op names)
    for classes, match, make in tfx.MODULES:
        ops = _layer_names(make, registry)
        for c in classes:
            torch_rows.append((_torch_name(c), "module" + (" (exact type)" if match == tfx.EXACT else ""), ops))
    cnn = getattr(tconv, "CNN_MODULES", None)
    if cnn is None:                     # cnn_leaf tests module types in code: read the classes it tests
        for classes, ops in _branches(tconv.cnn_leaf, registry):
            for c in classes:
                torch_rows.append((_torch_name(c), "module (exact type)", ops))
    else:
        for classes, make in cnn:
            for c in classes:
                torch_rows.append((_torch_name(c), "module (exact type)", _layer_names(make, registry)))
    for f, h in tfx.FUNCTIONS.items():
        torch_rows.append((_torch_name(f), "function", _layer_names(h, registry)))
    for m, h in tfx.METHODS.items():
        torch_rows.append(("Tensor." + m, "method", _layer_names(h, registry)))
    for q, h in getattr(tfx, "QUANTIZED_OPS", {}).items():
        torch_rows.append(("torch.ops." + q.replace("::", "."), "op (what `QFunctional` calls)",
                           _narrow(h, _layer_names(h, registry))))

    by_op = {name: [] for name in registry}
    for tname, _, ops in torch_rows:
        for o in ops:
            by_op.setdefault(o, []).append(tname)

    out = ["# Supported ops", "",
           "<!-- generated by scripts/gen_ops_table.py from fastq.layers.LAYER_TYPES and the tables of",
           "     fastq/importers/; do not edit: run `python scripts/gen_ops_table.py` -->", "",
           "## fastq ops", "",
           "Every op a `fastq.Model` (and a model file) can hold, from the registry "
           "`fastq.layers.LAYER_TYPES`. *Takes*: float values, quantized values (`QTensor`) or either. "
           "*C export* and *explain*: whether the op has that capability; one without it raises "
           "`NotImplementedError` naming the op, the capability and the node.", "",
           "| op | takes | C export | explain | torch names imported as it | what it computes |",
           "|---|---|---|---|---|---|"]
    for name in sorted(registry, key=lambda n: (registry[n].__module__, n)):
        cls = registry[name]
        tnames = ", ".join("`%s`" % t for t in dict.fromkeys(by_op.get(name, []))) or "—"
        out.append("| `%s` | %s | %s | %s | %s | %s |" % (
            name, getattr(cls, "takes", "?"), _capability(cls, "emit_c"), _capability(cls, "explain"),
            tnames, _doc_line(cls)))

    out += ["", "## `fastq.from_torch`: torch names", "",
            "Each row of the importer's tables (`fastq/importers/torch_fx.py` MODULES, FUNCTIONS, "
            "METHODS, QUANTIZED_OPS; convolution and pooling modules in `torch_conv.py`) and the fastq "
            "ops it may build. A row may still refuse an argument it cannot reproduce (the error names "
            "the op, the fx node and the module path); a name in no row is refused the same way.", "",
            "| torch | kind | fastq ops |", "|---|---|---|"]
    for tname, kind, ops in torch_rows:
        out.append("| `%s` | %s | %s |" % (tname, kind, _ops(ops)))

    out += ["", "## `fastq.quantize_model`: what calibration fuses and observes", "",
            "Module chains fused as `torch.ao.quantization.fuse_modules` fuses them "
            "(`torch_calibrate.FUSIONS`, longest first):", "",
            "| modules, in call order | BatchNorm folded by | fused activation |", "|---|---|---|"]
    for chain, fold, act in tc.FUSIONS:
        out.append("| %s | %s | %s |" % (" → ".join("`%s`" % _torch_name(c) for c in chain),
                                          "`fastq.fusion.%s`" % fold.__name__ if fold else "—",
                                          "`%s`" % act if act else "—"))
    out += ["", "Float modules replaced by a quantized weighted layer, their output observed "
            "(`torch_calibrate.WEIGHTED`):", "", "| module | observed as |", "|---|---|"]
    for cls, (kind, _) in tc.WEIGHTED.items():
        out.append("| `%s` | %s |" % (_torch_name(cls), kind))
    ff = getattr(tc, "FLOAT_FUNCTIONAL", {})
    if ff:
        out += ["", "`FloatFunctional` ops (`torch_calibrate.FLOAT_FUNCTIONAL`):", "",
                "| op | output observed |", "|---|---|"]
        for op, (observed, _) in ff.items():
            out.append("| `FloatFunctional.%s` | %s |" % (op, "yes" if observed else
                                                           "no (the op chooses its output qparams)"))
    return "\n".join(out) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when docs/ops-table.md differs from the code")
    args = p.parse_args(argv)
    text = generate()
    if args.check:
        if not PAGE.exists() or PAGE.read_text(encoding="utf-8") != text:
            print("docs/ops-table.md differs from the code; run: python scripts/gen_ops_table.py", file=sys.stderr)
            return 1
        print("docs/ops-table.md is up to date")
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print("wrote %s" % PAGE.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
