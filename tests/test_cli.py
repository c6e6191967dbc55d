"""`fastq demo` and `fastq explain` run as commands (python -m fastq) and report 0 mismatches;
fastq.explain's text holds the numbers fastq.reference computes."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import fastq
from fastq import reference
from fastq.explain import random_layer

# the folder holding the fastq this test imported (installed site-packages, or src/ in a dev tree)
SRC = os.path.dirname(os.path.dirname(os.path.abspath(fastq.__file__)))


def _run(args, code=None, timeout=180):
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "fastq"] + args if code is None else [sys.executable, "-c", code] + args
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def test_demo_reports_zero_mismatches():
    pytest.importorskip("torch")
    r = _run(["demo", "--batch", "64"])
    assert r.returncode == 0, r.stderr
    assert "0 mismatches: fastq's integers are PyTorch's" in r.stdout
    m = re.search(r"outputs identical to torch: (\d+) of (\d+) \((\d+) mismatches\)", r.stdout)
    assert m and m.group(1) == m.group(2) == "640" and m.group(3) == "0"
    assert "total mismatches: 0" in r.stdout


def test_demo_without_torch_runs_the_fastq_half():
    # sys.modules["torch"] = None makes `import torch` raise ImportError, as if not installed
    code = "import sys; sys.modules['torch'] = None; from fastq.tools.cli import main; sys.exit(main(sys.argv[1:]))"
    r = _run(["demo"], code=code)
    assert r.returncode == 0, r.stderr
    assert "pip install torch==2.13.0" in r.stdout
    assert "y_q = [[19, 255], [33, 1]]" in r.stdout        # the 2x2 layer, by fastq alone
    assert "Part 2" not in r.stdout


@pytest.mark.parametrize("requant", ["fbgemm", "qnnpack", "tflite"])
@pytest.mark.parametrize("extra", [[], ["--per-channel", "--relu", "--seed", "3", "--k", "40", "--col", "2"]])
def test_explain_command(requant, extra):
    r = _run(["explain", "--requant", requant] + extra)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "-> all equal" in r.stdout and "(equal)" in r.stdout


def test_explain_numbers_are_the_reference_ones():
    for requant in ("fbgemm", "qnnpack", "tflite"):
        for seed in range(6):
            layer, x_q = random_layer(requant, k=12, n=5, m=3, seed=seed, per_channel=seed % 2 == 1,
                                      relu=seed % 3 == 0, bias=seed != 4,
                                      rounding="single" if seed == 5 else "double")
            m, n = seed % 3, seed % 5
            text = fastq.explain(layer, x_q, m=m, n=n)
            w = layer.weight
            acc = int(reference.qgemm(x_q.values, x_q.zero_point, w.values, w.zero_point)[m, n])
            assert "acc = %d" % acc in text
            q = int(layer(x_q).values[m, n])
            assert "by hand q = %d; fastq.reference q = %d; C kernel" % (q, q) in text
            assert "-> all equal" in text


def test_explain_errors():
    layer, x_q = random_layer()
    with pytest.raises(TypeError, match="layer"):
        fastq.explain(object(), x_q)
    with pytest.raises(TypeError, match="x_q"):
        fastq.explain(layer, x_q.values)
    with pytest.raises(ValueError, match="n"):
        fastq.explain(layer, x_q, n=99)
    with pytest.raises(ValueError, match="x_q"):
        fastq.explain(layer, fastq.QTensor(np.zeros((1, 3), np.uint8), 0.1, 0))
