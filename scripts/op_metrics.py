"""Counts what issue 15 measures about op knowledge being scattered, for before / after notes.

    python scripts/op_metrics.py [SRC_DIR]        (default: src/fastq next to this script)

1. Source files naming an op (whole word, any file under src/fastq: .py, .pyx, .c, .h, .in).
2. Layer-class dispatch sites in the drivers (summary.py, model.py, model_file*.py,
   _layer_state.py, export/, explain/), found by an AST walk:
   - isinstance / issubclass against a layer class (a name or an attribute ending in one),
   - `type(x) is C` / `type(x) == C`,
   - a comparison with a layer class name as a string, or with a tuple / list of them, or
     with a module-level name bound to such a tuple,
   - a dict literal keyed by layer class names (a lookup table of ops).
The layer class names are read from the source (classes decorated with @register, and the
bases they share), so the script needs no build of the package."""
import ast
import os
import re
import sys

OPS = ("ReLU6", "Hardtanh", "QuantizedAdd")
DRIVERS = ("summary.py", "model.py", "model_file.py", "_layer_state.py",
           "export", "explain")


def _files(root, exts):
    for d, _, names in os.walk(root):
        for n in sorted(names):
            if n.endswith(exts):
                yield os.path.join(d, n)


def files_naming(root, word):
    pat = re.compile(r"\b%s\b" % re.escape(word))
    out = []
    for p in _files(root, (".py", ".pyx", ".pxd", ".c", ".h", ".in")):
        with open(p, encoding="utf-8", errors="replace") as f:
            if pat.search(f.read()):
                out.append(os.path.relpath(p, root))
    return sorted(out)


def layer_classes(root):
    """Names of the classes registered with @register under layers/, and their in-package bases."""
    names, bases = set(), {}
    for p in _files(os.path.join(root, "layers"), (".py",)):
        tree = ast.parse(open(p, encoding="utf-8").read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases[node.name] = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]
                if any(getattr(d, "id", getattr(d, "attr", None)) == "register" for d in node.decorator_list):
                    names.add(node.name)
    for n in list(names):           # WeightLayer, _QBinary ...: bases shared by registered ops
        for b in bases.get(n, ()):
            if b and b not in ("Layer", "object"):
                names.add(b)
    return names


def _name(e):
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Attribute):
        return e.attr
    return None


def _is_name_tuple(e, classes):
    return isinstance(e, (ast.Tuple, ast.List, ast.Set)) and e.elts and all(
        isinstance(x, ast.Constant) and x.value in classes for x in e.elts)


def dispatch_sites(path, classes):
    tree = ast.parse(open(path, encoding="utf-8").read())
    tuples = set()
    for node in ast.walk(tree):          # names bound to tuples of op names, and their sums
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            v = node.value
            parts = [v] if not isinstance(v, ast.BinOp) else [v.left, v.right]
            if any(_is_name_tuple(x, classes) for x in parts):
                tuples.add(node.targets[0].id)
    sites = []
    for node in ast.walk(tree):
        hit = False
        if isinstance(node, ast.Call) and _name(node.func) in ("isinstance", "issubclass") and len(node.args) == 2:
            t = node.args[1]
            elts = t.elts if isinstance(t, ast.Tuple) else [t]
            hit = any(_name(e) in classes for e in elts)
        elif isinstance(node, ast.Compare):
            sides = [node.left] + list(node.comparators)
            for s in sides:
                if isinstance(s, ast.Constant) and s.value in classes:
                    hit = True
                elif _is_name_tuple(s, classes):
                    hit = True
                elif _name(s) in tuples:
                    hit = True
                elif _name(s) in classes and any(isinstance(o, (ast.Is, ast.Eq, ast.IsNot, ast.NotEq)) for o in node.ops):
                    hit = True
        elif isinstance(node, ast.Dict):
            hit = sum(isinstance(k, ast.Constant) and k.value in classes for k in node.keys) >= 2
        if hit:
            sites.append(node.lineno)
    return sites


def driver_files(root):
    for d in DRIVERS:
        p = os.path.join(root, d)
        if os.path.isdir(p):
            yield from _files(p, (".py",))
        elif os.path.exists(p):
            yield p


def main(argv):
    root = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "fastq")
    root = os.path.normpath(root)
    for op in OPS:
        fs = files_naming(root, op)
        print("files naming %-13s %2d  %s" % (op, len(fs), " ".join(fs)))
    classes = layer_classes(root)
    total = 0
    for p in driver_files(root):
        s = dispatch_sites(p, classes)
        if s:
            print("  dispatch %-28s %2d  lines %s" % (os.path.relpath(p, root), len(s), ",".join(map(str, sorted(s)))))
        total += len(s)
    print("layer-class dispatch sites in the drivers: %d" % total)


if __name__ == "__main__":
    main(sys.argv)
