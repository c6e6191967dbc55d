"""`fastq demo` and `fastq explain` run as commands (python -m fastq) and report 0 mismatches;
fastq.explain's text holds the numbers fastq.reference computes; explain's compare, model and
price-tag commands."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import fastq
from fastq import reference
from fastq.tools.explain import random_layer

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


def test_explain_default_is_the_classic_2x2():
    r = _run(["explain"])
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "x_q = [[90, 255]]" in out and "z_y = 136" in out
    assert "-0.788612 (-0.7886)" in out and "-0.790698 (-0.7907)" in out     # by hand vs the integer path
    assert "-> all equal" in out and "(equal)" in out
    if "torch 2." in out:
        assert "fastq identical to both" in out


class _Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _explain(args, capsys):
    """`fastq explain ARGS` in this process (the command-line parsing and text, without the
    interpreter start-up of a subprocess; test_explain_default_is_the_classic_2x2 runs one)."""
    from fastq.tools.cli import main
    capsys.readouterr()
    code = main(["explain"] + list(args))
    out = capsys.readouterr()
    return _Result(code, out.out, out.err)


@pytest.mark.parametrize("args", [
    ["--requant", "qnnpack", "--col", "1"],
    ["--requant", "tflite", "--rounding", "single"],
    ["--random", "--requant", "tflite", "--rounding", "double_up", "--per-channel", "--relu", "--seed", "3",
     "--k", "40", "--col", "2", "--in-dtype", "int8", "--out-dtype", "int8", "--w-zero-point"],
    ["--seed", "1", "--requant", "qnnpack", "--out-dtype", "int8"],
    ["--dynamic", "--random", "--requant", "qnnpack", "--per-channel"],
])
def test_explain_command(args, capsys):
    r = _explain(args, capsys)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "-> all equal" in r.stdout and "(equal)" in r.stdout and "The hand computation" in r.stdout


def test_explain_numbers_are_the_reference_ones():
    for requant in ("fbgemm", "qnnpack", "tflite"):
        for seed in range(6):
            layer, x_q = random_layer(requant, k=12, n=5, m=3, seed=seed, per_channel=seed % 2 == 1,
                                      relu=seed % 3 == 0, bias=seed != 4,
                                      rounding="single" if seed == 5 else "double",
                                      out_dtype="int8" if seed % 2 else "uint8")
            m, n = seed % 3, seed % 5
            text = str(fastq.explain(layer, x_q, m, n))
            w = layer.weight
            acc = int(reference.qgemm(x_q.values, x_q.zero_point, w.values, w.zero_point)[m, n])
            assert "acc = %d" % acc in text
            q = int(layer(x_q).values[m, n])
            assert "by hand q = %d; fastq.reference q = %d; C kernel" % (q, q) in text
            assert "-> all equal" in text


def test_explain_compare_command(capsys):
    r = _explain(["--random", "--seed", "2", "--compare", "fbgemm", "qnnpack"], capsys)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "They part at the bias stage" in r.stdout
    assert "bias rounded to int32 first" in r.stdout
    r = _explain(["--compare", "double", "double_up", "--json"], capsys)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["compare"]["parts_at"] == "round" and d["a"]["acc"] == d["b"]["acc"] == -30630


def test_explain_model_command(tmp_path, capsys):
    l1, _ = random_layer("fbgemm", 6, 5, 1, seed=1, relu=True)
    l2, _ = random_layer("tflite", 5, 3, 1, seed=2, out_dtype="int8")
    model = fastq.Model([fastq.layers.Quantize(0.03, 120), l1, l2, fastq.layers.Dequantize()],
                        ["quant", "fc1", "fc2", "dequant"])
    path = str(tmp_path / "m.npz")
    model.save(path)
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    np.save(str(tmp_path / "x.npy"), x)
    r = _explain(["--model", path, "--node", "fc1", "--row", "2", "--col", "4",
              "--input", str(tmp_path / "x.npy"), "--json"], capsys)
    assert r.returncode == 0, r.stdout + r.stderr
    d = json.loads(r.stdout)["trace"]
    assert d["output"] == int(l1(model.layers[0](x)).values[2, 4])
    r = _explain(["--model", path, "--node", "2", "--col", "1"], capsys)
    assert r.returncode == 0 and "-> all equal" in r.stdout, r.stdout + r.stderr
    r = _explain(["--model", path, "--input", str(tmp_path / "x.npy")], capsys)       # the first Linear: fc1
    assert r.returncode == 0 and "output element [row=0, col=0]" in r.stdout and "in_features=6" in r.stdout
    r = _explain(["--model", path, "--node", "dequant"], capsys)
    assert r.returncode == 2 and "node" in r.stderr


def test_explain_price_tags_command(capsys):
    r = _explain(["--values", "1.99", "2.00", "0.59", "12.30", "8.50", "8.99", "--bits", "2"], capsys)
    assert r.returncode == 0, r.stderr
    assert "4 levels [0, 3]" in r.stdout and "observer minmax (torch MinMaxObserver)" in r.stdout
    assert "|      12.3 |     3 |     12.3000 |" in r.stdout
    r = _explain(["--values", "1.99", "2.00", "0.59", "12.30", "8.50", "8.99", "--observer", "tight",
              "--dtype", "int8", "--qrange", "-1", "2"], capsys)
    assert "scale = 3.90333343, zero_point = -1" in r.stdout
    r = _explain(["--values", "1", "--bits", "12"], capsys)
    assert r.returncode == 2 and "bits" in r.stderr


def test_explain_errors():
    layer, x_q = random_layer()
    with pytest.raises(TypeError, match="layer"):
        fastq.explain(object(), x_q)
    with pytest.raises(TypeError, match="x"):
        fastq.explain(layer, x_q.values)
    with pytest.raises(ValueError, match="col"):
        fastq.explain(layer, x_q, col=99)
    with pytest.raises(ValueError, match="x"):
        fastq.explain(layer, fastq.QTensor(np.zeros((1, 3), np.uint8), 0.1, 0))
