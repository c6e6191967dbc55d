"""The documentation runs: every ```python block of README.md and docs/*.md, in order, one
fresh interpreter per file with a temporary folder as its working directory (doc_blocks.py says
how blocks are marked); and docs/ops-table.md equals what scripts/gen_ops_table.py generates."""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

import fastq
from doc_blocks import ROOT, blocks, doc_files, missing

# Runs the blocks one by one in one namespace; the first error names the file and the block's line.
_RUNNER = textwrap.dedent('''
    import json, sys, traceback
    spec = json.load(open(sys.argv[1], encoding="utf-8"))
    ns = {"__name__": "__main__"}
    for line, code in spec["blocks"]:
        where = "%s, python block at line %d" % (spec["file"], line)
        try:
            exec(compile(code, where, "exec"), ns)
        except BaseException:
            traceback.print_exc()
            print("FAILED: " + where, file=sys.stderr)
            sys.exit(1)
        print("ran: " + where, flush=True)
''')

FILES = [f for f in doc_files() if blocks(f)]


def _runnable(path):
    """The blocks to run, up to the first whose requirement is absent, and that requirement."""
    run = []
    for line, code, needs in blocks(path):
        absent = missing(needs)
        if absent:
            return run, "%s:%d needs %s" % (path.name, line, ", ".join(absent))
        run.append((line, code))
    return run, None


@pytest.mark.parametrize("path", FILES, ids=[str(f.relative_to(ROOT)) for f in FILES])
def test_doc_blocks_run(path, tmp_path):
    run, skipped = _runnable(path)
    spec = tmp_path / "blocks.json"
    spec.write_text(json.dumps({"file": str(path.relative_to(ROOT)), "blocks": run}), encoding="utf-8")
    runner = tmp_path / "run_blocks.py"
    runner.write_text(_RUNNER, encoding="utf-8")
    work = tmp_path / "cwd"
    work.mkdir()
    env = dict(os.environ)
    # the fastq the tests import (an in-place build under PYTHONPATH=../src, or the installed one)
    env["PYTHONPATH"] = os.pathsep.join([str(pathlib.Path(fastq.__file__).parents[1])]
                                        + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("FASTQ_NUM_THREADS", "1")
    proc = subprocess.run([sys.executable, str(runner), str(spec)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, "%s\n%s" % (proc.stdout[-4000:], proc.stderr[-8000:])
    assert proc.stdout.count("ran: ") == len(run)
    if skipped:
        pytest.skip("ran %d blocks; the rest skipped: %s" % (len(run), skipped))


def test_every_page_is_collected():
    """README.md and the pages hold python blocks (a fence typo would silently drop them)."""
    assert sum(len(blocks(f)) for f in doc_files()) >= 15
    assert blocks(ROOT / "README.md")


def test_fragments_are_rare():
    """No ```py / ```python3 fences: they would look like code and never run."""
    for f in doc_files():
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            s = line.strip()
            assert not (s.startswith("```py") and s != "```python"), "%s:%d: use ```python" % (f.name, i)


def test_ops_table_is_generated():
    pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_ops_table
    finally:
        sys.path.pop(0)
    text = gen_ops_table.generate()
    page = ROOT / "docs" / "ops-table.md"
    assert page.read_text(encoding="utf-8") == text, \
        "docs/ops-table.md differs from the op registry and importer tables: run python scripts/gen_ops_table.py"
