"""The floors of fastq (fastq/_layering.py), held to the source: an AST walk of every module of
the fastq under test (scripts/import_metrics.py reads the imports; nothing is executed).

Fails on: a module without a floor; an import pointing up a floor that is not a listed façade;
a cycle of imports (module level, or inside a function other than a façade); an import inside
a function that is neither a façade nor an optional dependency; a façade entry that no longer
matches an import, or that does not point up; importlib outside the importer registry.
The tests on a synthetic package show each of these failing.
"""
import importlib.util
import pathlib
import re
import sys
import textwrap

import pytest

import fastq
from fastq import _layering, importers

_SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "import_metrics.py"
_spec = importlib.util.spec_from_file_location("import_metrics", _SCRIPT)
import_metrics = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("import_metrics", import_metrics)     # dataclasses look their module up
_spec.loader.exec_module(import_metrics)

# Imports a branch in flight may keep for a while (module, function, imported module); empty on
# main. An entry that no longer matches an import fails, so the list can only shrink.
TEMPORARY = ()


def floor_of(module, floors, root):
    """(index, name) of the floor of `module`: its longest entry (a package entry covers the
    modules under it, the root package only itself), or None."""
    best = None
    for i, (name, entries) in enumerate(floors):
        for e in entries:
            if module == e or (e != root and module.startswith(e + ".")):
                if best is None or len(e) > best[2]:
                    best = (i, name, len(e))
    return None if best is None else best[:2]


def check(src, floors, facade=(), optional=(), temporary=(), dynamic_loaders=()):
    """Every breach of the floors by the package at `src`, one line each (empty: none)."""
    imports, modules = import_metrics.collect(str(src))
    root = min(modules, key=len)
    bad = []
    floor = {}
    for m in sorted(modules):
        floor[m] = floor_of(m, floors, root)
        if floor[m] is None:
            bad.append("%s: has no floor (add it to FLOORS)" % m)
    facade, temporary = set(facade), set(temporary)
    used = set()
    graph = {m: set() for m in modules}
    for imp in imports:
        where = "%s:%d" % (imp.module, imp.line) + (" (in %s)" % imp.function if imp.in_function else "")
        if imp.kind != "fastq":
            if imp.target.split(".")[0] == "importlib" and imp.module not in dynamic_loaders:
                bad.append("%s imports importlib: only the modules of DYNAMIC_LOADERS (%s) load "
                           "modules by name" % (where, ", ".join(dynamic_loaders)))
            if imp.in_function and imp.target.split(".")[0] not in optional:
                bad.append("%s imports %s inside a function: import it at the top" % (where, imp.target))
            continue
        target = imp.target
        while target and target not in modules:
            target = target.rpartition(".")[0]      # pkg.mod.name -> pkg.mod
        if not target or target == imp.module:
            continue
        key = (imp.module, imp.function, target)
        allowed = key in facade or key in temporary
        used.add(key)
        if imp.in_function and not allowed:
            bad.append("%s imports %s inside a function: import it at the top, or list it as a façade"
                       % (where, target))
        here, there = floor[imp.module], floor.get(target)
        if here is not None and there is not None and there[0] > here[0] and key not in facade:
            bad.append("%s (floor %s) imports %s (floor %s): upward" % (where, here[1], target, there[1]))
        if key in facade and here is not None and there is not None and there[0] <= here[0]:
            bad.append("%s: façade entry %s -> %s does not point up; import it at the top"
                       % (where, imp.module, target))
        if not allowed:
            graph[imp.module].add(target)
    for entry in sorted((facade | temporary) - used):
        bad.append("stale entry %r: no such import any more; remove it" % (entry,))
    for cycle in import_metrics.cycles(graph):
        bad.append("import cycle: %s" % " <-> ".join(cycle))
    return list(dict.fromkeys(bad))         # `from m import a, b` is one statement: one line


def _check_fastq():
    return check(pathlib.Path(fastq.__file__).parent, _layering.FLOORS, _layering.FACADE,
                 _layering.OPTIONAL, TEMPORARY, _layering.DYNAMIC_LOADERS)


def test_fastq_keeps_its_floors():
    assert _check_fastq() == []


def test_every_registered_importer_module_is_an_importers_module():
    """The registry loads its modules by name (no import statement the walk could see): each
    named module exists and sits on the drivers floor."""
    _, modules = import_metrics.collect(str(pathlib.Path(fastq.__file__).parent))
    for imp in importers.IMPORTERS.values():
        for capability in ("convert", "calibrate"):
            name = getattr(imp, capability)
            if name is None:
                continue
            full = "%s.%s" % (importers.__name__, name)
            assert full in modules, (imp.format, capability, full)
            assert floor_of(full, _layering.FLOORS, "fastq")[1] == "drivers", full


def test_the_facade_is_short():
    """Issue 15: at most 15 imports point up, all of them listed in fastq._layering."""
    assert len(_layering.FACADE) <= 15


# --------------------------------------------------------------------------- the checker fails
FLOORS = (("low", ("pkg.a", "pkg.b", "pkg.c")), ("high", ("pkg.h",)), ("face", ("pkg",)))


def _package(tmp_path, files):
    root = tmp_path / "pkg"
    root.mkdir()
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text))
    return root


GOOD = {
    "__init__.py": "from .h import run\n",
    "a.py": "import os\n\ndef f():\n    import torch\n    from .h import run\n    return run\n",
    "b.py": "from . import a\n",
    "c.py": "from .b import a\n",
    "h.py": "from . import a, c\n\ndef run():\n    return a.f()\n",
}
FACADE = (("pkg.a", "f", "pkg.h"),)


def test_a_clean_synthetic_package_passes(tmp_path):
    assert check(_package(tmp_path, GOOD), FLOORS, FACADE, ("torch",)) == []


@pytest.mark.parametrize("change,words", [
    ({"a.py": "from .h import run\n"}, r"pkg.a:1 \(floor low\) imports pkg.h \(floor high\): upward"),
    ({"b.py": "from . import a, c\n"}, r"import cycle: pkg.b <-> pkg.c"),
    ({"b.py": "def g():\n    from . import c\n"}, r"pkg.b:2 \(in g\) imports pkg.c inside a function"),
    ({"b.py": "class K:\n    def g(self):\n        import json\n"}, r"pkg.b:3 \(in K.g\) imports json inside a function"),
    ({"d.py": "x = 1\n"}, r"pkg.d: has no floor"),
    ({"a.py": "import os\n\ndef f():\n    import torch\n"}, r"stale entry \('pkg.a', 'f', 'pkg.h'\)"),
    ({"a.py": "import importlib\n\ndef f():\n    import torch\n    from .h import run\n"}, r"imports importlib"),
    ({"__init__.py": "def f():\n    from . import a\n"}, r"pkg:2 \(in f\) imports pkg.a inside a function"),
])
def test_the_checker_catches(tmp_path, change, words):
    bad = check(_package(tmp_path, dict(GOOD, **change)), FLOORS, FACADE, ("torch",))
    assert any(re.search(words, line) for line in bad), bad


def test_a_facade_entry_must_point_up(tmp_path):
    files = dict(GOOD, **{"b.py": "def g():\n    from . import a\n"})
    bad = check(_package(tmp_path, files), FLOORS, FACADE + (("pkg.b", "g", "pkg.a"),), ("torch",))
    assert bad == ["pkg.b:2 (in g): façade entry pkg.b -> pkg.a does not point up; import it at the top"]


def test_a_temporary_entry_does_not_excuse_an_upward_import(tmp_path):
    """A temporary entry silences the function-level rule, never the floors: listed, the
    upward import still fails."""
    files = dict(GOOD, **{"b.py": "def g():\n    from . import h\n"})
    bad = check(_package(tmp_path, files), FLOORS, FACADE, ("torch",), temporary=(("pkg.b", "g", "pkg.h"),))
    assert bad == ["pkg.b:2 (in g) (floor low) imports pkg.h (floor high): upward"]
