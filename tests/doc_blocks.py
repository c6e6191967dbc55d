"""The fenced ```python blocks of README.md and docs/*.md, as tests/test_docs.py runs them.

A block runs as written, after the earlier blocks of the same file, in one fresh interpreter per
file. An HTML comment on the line before a block names what it needs:

    <!-- requires: torch -->          (also: torchvision, gcc; several: "torch, gcc")

Where a requirement is absent that block and every later block of the file are skipped (they
may build on it). Fragments that are not meant to run use another fence language (```text).

    python tests/doc_blocks.py         # list the files, their blocks and what each needs
"""
from __future__ import annotations

import importlib.util
import pathlib
import re
import shutil

ROOT = pathlib.Path(__file__).resolve().parents[1]
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
_REQUIRES = re.compile(r"^\s*<!--\s*requires:\s*([\w,\s-]+?)\s*-->\s*$")

REQUIREMENTS = {
    "torch": lambda: importlib.util.find_spec("torch") is not None,
    "torchvision": lambda: importlib.util.find_spec("torchvision") is not None,
    "gcc": lambda: shutil.which("gcc") is not None,
}


def doc_files():
    """README.md and every page under docs/ (sorted), as paths."""
    return [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def blocks(path):
    """[(line of the opening fence, code, requirements)] of the ```python blocks of one file."""
    lines = pathlib.Path(path).read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        if lang != "python":
            continue
        needs = ()
        if start > 0:
            r = _REQUIRES.match(lines[start - 1])
            if r:
                needs = tuple(n.strip() for n in r.group(1).split(",") if n.strip())
        for n in needs:
            if n not in REQUIREMENTS:
                raise ValueError("%s:%d: unknown requirement %r (known: %s)"
                                 % (path, start + 1, n, ", ".join(REQUIREMENTS)))
        out.append((start + 1, "\n".join(body) + "\n", needs))
    return out


def missing(needs):
    """The requirements of `needs` absent on this machine."""
    return [n for n in needs if not REQUIREMENTS[n]()]


if __name__ == "__main__":
    total = 0
    for f in doc_files():
        bs = blocks(f)
        total += len(bs)
        for line, code, needs in bs:
            print("%s:%d  %d lines  %s" % (f.relative_to(ROOT), line, code.count("\n"), ", ".join(needs) or "-"))
    print("%d python blocks" % total)
