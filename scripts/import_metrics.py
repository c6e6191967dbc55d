#!/usr/bin/env python3
"""The import graph of the fastq package, read from its source with `ast` (nothing is imported).

    python scripts/import_metrics.py [SRC_DIR]        # default: src/fastq next to this script
    python scripts/import_metrics.py --json

Prints: how many import statements sit inside functions (split into fastq modules, optional
dependencies imported lazily on purpose, and the standard library; of the fastq ones, those
fastq/_layering.py lists as the façade), and the largest import cycle (a strongly connected
component of the module graph) counting those function-level imports, counting them except the
façade, and without them. tests/test_layering.py reads the same graph through `collect` / `edges`.

An edge A -> B means: module A imports module B by name. `from .pkg import name` points at
pkg.name when that is a module, else at pkg. The package __init__ that Python runs before a
submodule is not an edge (a package's modules would otherwise all form one cycle with it), nor
is the package root.
Compiled extensions (_kernels.pyx, ...) are modules with no fastq imports.
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import sys
from dataclasses import dataclass

OPTIONAL = ("torch", "onnx", "onnxruntime", "matplotlib", "rich")     # optional dependencies
FUNCTION_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


@dataclass(frozen=True)
class Import:
    module: str         # the importing module, e.g. "fastq.model"
    target: str         # the imported module, absolute: "fastq.summary", "torch.fx", "inspect"
    line: int
    function: str       # the enclosing function's qualified name ("Model.save"); "" at module level
    kind: str           # "fastq" | "optional" | "stdlib" (anything else that is not fastq)

    @property
    def in_function(self):
        return bool(self.function)


def module_names(src):
    """{module name: file path} for every .py / .pyx / compiled extension under the package
    directory `src` (a source file wins over its compiled twin)."""
    root = os.path.basename(os.path.normpath(src))
    out = {}
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__pycache__")))
        rel = os.path.relpath(dirpath, src)
        parts = [root] + ([] if rel == "." else rel.split(os.sep))
        for f in sorted(filenames):
            stem, ext = os.path.splitext(f)
            compiled = ext in (".so", ".pyd")
            if compiled:
                stem = f.split(".")[0]          # _kernels.cpython-311-x86_64-linux-gnu.so
            elif ext not in (".py", ".pyx"):
                continue
            name = ".".join(parts if stem == "__init__" else parts + [stem])
            if not compiled or name not in out:
                out[name] = os.path.join(dirpath, f)
    return out


def _is_package(modules, name):
    return modules.get(name, "").endswith("__init__.py")


def _resolve(modules, module, level, base):
    """The absolute name of `from <level dots><base> import ...` written in `module`."""
    if level == 0:
        return base or ""
    pkg = module if _is_package(modules, module) else module.rpartition(".")[0]
    for _ in range(level - 1):
        pkg = pkg.rpartition(".")[0]
    return pkg + ("." + base if base else "")


def _kind(root, target):
    top = target.split(".")[0]
    if top == root:
        return "fastq"
    return "optional" if top in OPTIONAL else "stdlib"


class _Walker(ast.NodeVisitor):
    def __init__(self, modules, module, root):
        self.modules, self.module, self.root = modules, module, root
        self.scope, self.functions, self.found = [], [], []

    def _enter(self, node, name, is_function):
        self.scope.append(name)
        self.functions.append(is_function)
        self.generic_visit(node)
        self.scope.pop()
        self.functions.pop()

    def visit_ClassDef(self, node):
        self._enter(node, node.name, False)

    def visit_FunctionDef(self, node):
        self._enter(node, node.name, True)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node):
        self._enter(node, "<lambda>", True)

    def _add(self, target, node):
        function = ".".join(self.scope) if any(self.functions) else ""
        self.found.append(Import(self.module, target, node.lineno, function, _kind(self.root, target)))

    def visit_Import(self, node):
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node):
        base = _resolve(self.modules, self.module, node.level, node.module)
        if base == "__future__":
            return
        for alias in node.names:
            sub = base + "." + alias.name
            self._add(sub if sub in self.modules else base, node)


def collect(src):
    """Every import statement (one Import per imported name's module) of the package at `src`,
    and the module table {name: path}."""
    modules = module_names(src)
    root = os.path.basename(os.path.normpath(src))
    found = []
    for name, path in modules.items():
        if not path.endswith(".py"):
            continue                # Cython sources and compiled extensions import no fastq module
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
        w = _Walker(modules, name, root)
        w.visit(tree)
        found.extend(w.found)
    return found, modules


def edges(imports, modules, with_functions=True):
    """{module: set of fastq modules it imports} (the root package left out)."""
    root = min(modules, key=len)
    graph = {m: set() for m in modules}
    for imp in imports:
        if imp.kind != "fastq" or (imp.in_function and not with_functions):
            continue
        target = imp.target
        while target != root and target not in modules:
            target = target.rpartition(".")[0]          # fastq.x.not_a_module -> fastq.x
        if target not in (imp.module, root):
            graph[imp.module].add(target)
    return graph


def cycles(graph):
    """The strongly connected components with more than one module, largest first (Tarjan,
    iterative: no recursion limit)."""
    index, low, on_stack, stack, comps, counter = {}, {}, set(), [], [], [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        comps.append(sorted(comp))
    return sorted(comps, key=lambda c: (-len(c), c))


def _layering(src):
    """fastq/_layering.py's tables (FACADE, ...) read without importing the package, or None."""
    path = os.path.join(src, "_layering.py")
    if not os.path.isfile(path):
        return None
    spec = importlib.util.spec_from_file_location("_fastq_layering", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def metrics(src):
    imports, modules = collect(src)
    root = min(modules, key=len)
    layering = _layering(src)
    facade = set(layering.FACADE) if layering is not None else set()
    inside = [i for i in imports if i.in_function]
    statements = {}             # one statement may import several names: count statements
    for i in inside:
        statements.setdefault((i.module, i.line), i)
    by_kind = {}
    for i in statements.values():
        by_kind[i.kind] = by_kind.get(i.kind, 0) + 1
    library = [s for s in statements.values() if not s.module.startswith(root + ".tools")]
    is_facade = [s for s in statements.values() if (s.module, s.function, s.target) in facade]
    with_f, without_f = cycles(edges(imports, modules, True)), cycles(edges(imports, modules, False))
    no_facade = [i for i in imports if (i.module, i.function, i.target) not in facade]
    except_facade = cycles(edges(no_facade, modules, True))
    return {
        "modules": len(modules),
        "imports_in_functions": len(statements),
        "imports_in_functions_by_kind": dict(sorted(by_kind.items())),
        "imports_in_functions_outside_tools": len(library),
        "imports_in_functions_outside_tools_by_kind": {
            k: sum(s.kind == k for s in library) for k in sorted({s.kind for s in library})},
        "facade": len(is_facade),
        "facade_lazy_torch": sum(s.target.startswith(root + ".importers.torch") for s in is_facade),
        "fastq_in_functions_not_facade": by_kind.get("fastq", 0) - len(is_facade),
        "largest_cycle_with_function_imports": len(with_f[0]) if with_f else 0,
        "largest_cycle_with_function_imports_except_facade": len(except_facade[0]) if except_facade else 0,
        "largest_cycle_without_function_imports": len(without_f[0]) if without_f else 0,
        "cycle_with_function_imports": with_f[0] if with_f else [],
        "cycle_with_function_imports_except_facade": except_facade[0] if except_facade else [],
        "cycle_without_function_imports": without_f[0] if without_f else [],
        "function_imports": ["%s:%d %s (in %s) [%s%s]" % (s.module, s.line, s.target, s.function, s.kind,
                                                           ", facade" if s in is_facade else "")
                             for s in sorted(statements.values(), key=lambda s: (s.module, s.line))],
    }


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", nargs="?", default=os.path.join(here, "..", "src", "fastq"))
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--list", action="store_true", help="also list every function-level import")
    a = p.parse_args(argv)
    if not os.path.isfile(os.path.join(a.src, "__init__.py")):
        print("import_metrics: %s is not a package directory" % a.src, file=sys.stderr)
        return 2
    m = metrics(a.src)
    if a.json:
        print(json.dumps(m, indent=1))
        return 0
    print("modules: %d" % m["modules"])
    print("import statements inside functions: %d %s" % (m["imports_in_functions"],
                                                          m["imports_in_functions_by_kind"]))
    print("  outside tools/: %d %s" % (m["imports_in_functions_outside_tools"],
                                       m["imports_in_functions_outside_tools_by_kind"]))
    print("  fastq modules: %d facade (%d of them keep torch lazy), %d other"
          % (m["facade"], m["facade_lazy_torch"], m["fastq_in_functions_not_facade"]))
    for label, key in (("counting function-level imports", "cycle_with_function_imports"),
                       ("counting function-level imports except the facade",
                        "cycle_with_function_imports_except_facade"),
                       ("module-level imports only", "cycle_without_function_imports")):
        c = m[key]
        print("largest import cycle, %s: %d modules%s" % (label, len(c), (": " + " ".join(c)) if c else ""))
    if a.list:
        print("\n".join(m["function_imports"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
