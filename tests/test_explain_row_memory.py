"""`fastq explain --model M --row R` draws only the row it explains: the peak memory of the
command does not grow with R (it was 42 MB at row 0 and 2.4 GB at row 200 000)."""
import os
import subprocess
import sys

import fastq
from fastq.tools.explain import random_layer

CODE = ("import resource, sys; from fastq.tools.cli import main; rc = main(sys.argv[1:]); "
        "print('peak_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rc)")


def _peak(path, row):
    r = subprocess.run([sys.executable, "-c", CODE, "explain", "--model", path, "--row", str(row)],
                       capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert "row=%d" % row in r.stdout
    _, kib, rc = r.stdout.strip().splitlines()[-1].split()
    assert rc == "0"
    return int(kib) / 1024


def test_memory_does_not_grow_with_the_row(tmp_path):
    layer, _ = random_layer("fbgemm", 1024, 16, 1, seed=1)
    path = str(tmp_path / "m.fq")
    fastq.Model([fastq.layers.Quantize(0.03, 120), layer, fastq.layers.Dequantize()]).save(path)
    low, high = _peak(path, 0), _peak(path, 200_000)
    # 200 001 rows of 1024 floats would be 780 MiB of input alone
    assert high - low < 64, (low, high)
