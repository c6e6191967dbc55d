"""The command line as a careless user meets it: every subcommand with bad arguments (missing,
directory, garbage and unreadable files; output folders that cannot be written; negative and
huge numbers; unknown flags) must answer with exactly one line on stderr naming the option and
the problem, exit status 2 (argparse's convention), and never a traceback."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastq
from fastq.layers import shape as sh
from fastq.tools.cli import main
from fastq.tools.explain import random_layer


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    l1, _ = random_layer("fbgemm", 6, 5, 1, seed=1)
    model = fastq.Model([fastq.layers.Quantize(0.03, 120), l1, fastq.layers.Dequantize()], ["quant", "fc", "dequant"])
    good = str(d / "good.fq")
    model.save(good)
    odd = fastq.Model([fastq.layers.Quantize(0.03, 120), l1, fastq.layers.Dequantize(), sh.Transpose(0, 1)],
                      ["quant", "fc", "dequant", "swap"])
    unsupported = str(d / "transpose.fq")
    odd.save(unsupported)
    garbage = str(d / "garbage.fq")
    with open(garbage, "wb") as f:
        f.write(np.random.default_rng(0).bytes(300))
    fifo = str(d / "fifo.fq")
    os.mkfifo(fifo)                          # opening it for reading would wait for a writer forever
    x3 = str(d / "x3.npy")
    np.save(x3, np.zeros((3, 6), np.float32))
    return {"good": good, "unsupported": unsupported, "garbage": garbage, "fifo": fifo, "dir": str(d),
            "missing": str(d / "missing.fq"), "under_file": os.path.join(good, "sub"), "x3": x3,
            "out": str(d / "out"), "proc": "/proc/fastq-cli-test"}


# (case id, argv with {placeholders}, a fragment the one line must contain). Tests run as root,
# which ignores permission bits: "unreadable" is a FIFO or a path through a regular file, and an
# unwritable folder is one under /proc or under a regular file.
CASES = [
    ("no command", [], "required"),
    ("unknown command", ["frobnicate"], "invalid choice"),
    ("info unknown flag", ["info", "--verbose"], "unrecognized"),
    ("demo batch -1", ["demo", "--batch", "-1"], "--batch"),
    ("demo batch text", ["demo", "--batch", "many"], "--batch"),
    ("demo batch huge", ["demo", "--batch", "100000000"], "--batch"),
    ("bench threads 0", ["bench", "--threads", "0"], "--threads"),
    ("bench unknown flag", ["bench", "--fast"], "unrecognized"),
    ("summary missing", ["summary", "{missing}"], "No such file"),
    ("summary directory", ["summary", "{dir}"], "directory"),
    ("summary garbage", ["summary", "{garbage}"], "not a fastq model file"),
    ("summary fifo", ["summary", "{fifo}"], "not a regular file"),
    ("summary under a file", ["summary", "{under_file}"], "Not a directory"),
    ("summary shape -1", ["summary", "{good}", "--shape", "-1"], "--shape"),
    ("summary shape 0", ["summary", "{good}", "--shape", "0", "6"], "--shape"),
    ("summary shape huge", ["summary", "{good}", "--shape", "100000", "100000"], "--shape"),
    ("summary shape wrong width", ["summary", "{good}", "--shape", "1", "7"], "7"),
    ("summary seed -1", ["summary", "{good}", "--shape", "1", "6", "--seed", "-1"], "--seed"),
    ("summary no file", ["summary"], "required"),
    ("export missing", ["export-c", "{missing}", "--out", "{out}"], "No such file"),
    ("export directory", ["export-c", "{dir}", "--out", "{out}"], "directory"),
    ("export garbage", ["export-c", "{garbage}", "--out", "{out}"], "not a fastq model file"),
    ("export fifo", ["export-c", "{fifo}", "--out", "{out}"], "not a regular file"),
    ("export under a file", ["export-c", "{under_file}", "--out", "{out}"], "Not a directory"),
    ("export out is a file", ["export-c", "{good}", "--out", "{good}"], "--out"),
    ("export out under a file", ["export-c", "{good}", "--out", "{under_file}"], "--out"),
    ("export out in /proc", ["export-c", "{good}", "--out", "{proc}"], "--out"),
    ("export bad name", ["export-c", "{good}", "--out", "{out}", "--name", "9lives"], "name"),
    ("export name with a dash", ["export-c", "{good}", "--out", "{out}", "--name", "my-net"], "name"),
    ("export input size -1", ["export-c", "{good}", "--out", "{out}", "--input-size", "-1"], "--input-size"),
    ("export input size text", ["export-c", "{good}", "--out", "{out}", "--input-size", "six"], "--input-size"),
    ("export input size wrong", ["export-c", "{good}", "--out", "{out}", "--input-size", "7"], "input_size"),
    ("export unsupported node", ["export-c", "{unsupported}", "--out", "{out}"], "swap"),
    ("export no out", ["export-c", "{good}"], "--out"),
    ("explain huge k n", ["explain", "--k", "100000", "--n", "100000"], "--k"),
    ("explain m 0", ["explain", "--m", "0"], "--m"),
    ("explain row -1", ["explain", "--row", "-1"], "--row"),
    ("explain col -1", ["explain", "--col", "-1"], "--col"),
    ("explain col beyond", ["explain", "--random", "--col", "99"], "col"),
    ("explain seed -1", ["explain", "--seed", "-1"], "--seed"),
    ("explain model missing", ["explain", "--model", "{missing}"], "--model"),
    ("explain model directory", ["explain", "--model", "{dir}"], "--model"),
    ("explain model garbage", ["explain", "--model", "{garbage}"], "--model"),
    ("explain model fifo", ["explain", "--model", "{fifo}"], "--model"),
    ("explain no such node", ["explain", "--model", "{good}", "--node", "nosuch"], "nosuch"),
    ("explain input missing", ["explain", "--model", "{good}", "--input", "{missing}"], "--input"),
    ("explain input garbage", ["explain", "--model", "{good}", "--input", "{garbage}"], "--input"),
    ("explain input fifo", ["explain", "--model", "{good}", "--input", "{fifo}"], "--input"),
    ("explain row beyond input", ["explain", "--model", "{good}", "--input", "{x3}", "--row", "5"], "row"),
    ("explain bad compare", ["explain", "--compare", "fast", "slow"], "--compare"),
    ("explain node without model", ["explain", "--node", "fc"], "--node"),
    ("explain values none finite", ["explain", "--values", "nan"], "values"),
    ("model convert missing", ["model", "convert", "{missing}", "{out}/m.fq"], "OLD"),
    ("model convert garbage", ["model", "convert", "{garbage}", "{out}/m.fq"], "OLD"),
    ("model convert fifo", ["model", "convert", "{fifo}", "{out}/m.fq"], "OLD"),
    ("model convert target in /proc", ["model", "convert", "{good}", "{proc}/m.fq"], "NEW"),
    ("model convert target under a file", ["model", "convert", "{good}", "{under_file}"], "NEW"),
    ("model convert target a directory", ["model", "convert", "{good}", "{dir}"], "NEW"),
    ("model no subcommand", ["model"], "required"),
]


def _argv(case, files):
    return [a.format(**files) for a in case[1]]


def _one_line(stderr):
    lines = stderr.splitlines()
    return len(lines) == 1 and lines[0].strip() != "" and "Traceback" not in stderr


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_user_error_is_one_line_and_status_2(case, files, capsys):
    try:
        code = main(_argv(case, files))
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, (code, err)
    assert _one_line(err), err
    assert case[2] in err, err


@pytest.mark.parametrize("which", ["missing", "dir", "garbage", "fifo", "under_file"])
def test_model_check_reports_each_refused_file_in_one_line(which, files, capsys):
    """`model check` is a report, not a usage error: one REFUSED line per file, exit 1."""
    code = main(["model", "check", files["good"], files[which]])
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert code == 1 and out.err == ""
    assert lines[0].startswith("ok ") and lines[1].startswith("REFUSED ") and len(lines) == 2, lines


def test_through_python_m_fastq(files):
    """Two cases through the real entry point (python -m fastq), as a shell runs them."""
    for argv in (["export-c", files["garbage"], "--out", files["out"]],
                 ["summary", files["good"], "--shape", "-1"]):
        r = subprocess.run([sys.executable, "-m", "fastq"] + argv, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and _one_line(r.stderr), r.stderr


def test_a_good_command_still_works(files, capsys):
    assert main(["summary", files["good"], "--shape", "2", "6"]) == 0
    assert main(["export-c", files["good"], "--out", files["out"]]) == 0
    assert os.path.exists(os.path.join(files["out"], "net.c"))
    capsys.readouterr()
