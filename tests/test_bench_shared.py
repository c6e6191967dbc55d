"""The measurement code `fastq bench` and bench/ share (fastq.tools.bench.measure, peers,
report): settings come back, the peers compute the same integers, the peer table adds up."""
import numpy as np
import pytest

import fastq
from fastq.tools.bench import measure, peers
from fastq.tools.bench.report import peers_markdown


def test_threads_and_backend_come_back():
    before = (fastq.get_num_threads(), fastq.get_backend())
    with measure.threads(1):
        assert fastq.get_num_threads() == 1
        with measure.backend("scalar"):
            assert fastq.get_backend() == "scalar"
        assert fastq.get_backend() == before[1]
    assert (fastq.get_num_threads(), fastq.get_backend()) == before
    with pytest.raises(ValueError):
        with measure.backend("sse1"):
            pass
    assert fastq.get_backend() == before[1]


def test_counts():
    assert measure.matmul_ops(2, 3, 5) == 60
    assert measure.gops(2e9, 0.5) == 4.0
    assert measure.pct_of_peak(50.0, 200.0) == 25.0 and measure.pct_of_peak(1.0, None) is None
    assert measure.rounds_for(1e6, 1e9, 3, 500) == 500 and measure.rounds_for(1e9, 1e9, 3, 500) == 3
    calls = []
    assert measure.best_seconds(lambda: calls.append(1), min_time=0.0, repeats=2) > 0 and len(calls) == 3


def test_fastq_and_torch_peers_compute_the_same_layer():
    """A speed ratio means something only when both sides compute the same integers."""
    pytest.importorskip("torch")
    m, k, n = 3, 64, 70
    ours = peers.fastq_linear(m, k, n, np.random.default_rng(4))()
    theirs = peers.torch_qlinear(m, k, n, np.random.default_rng(4))()
    assert np.array_equal(ours.values, theirs.int_repr().numpy())
    acc = peers.fastq_qgemm(m, k, n, np.random.default_rng(4))()
    assert acc.shape == (m, n) and acc.dtype == np.int32


def test_peer_table_from_a_benchmark_json():
    def bench(impl, seconds, m=1, k=64, n=64):
        return {"extra_info": {"impl": impl, "m": m, "k": k, "n": n}, "stats": {"min": seconds}}
    data = {"machine_info": {"cpu": {"brand_raw": "test CPU"}}, "benchmarks": [
        bench("fastq_linear", 1e-6), bench("torch_qlinear", 4e-6), bench("ort_qlinear", 2e-6),
        bench("torch_f32", 8e-6), {"extra_info": {"impl": "fastq"}, "stats": {"min": 1.0}},
        bench("fastq_linear_1t", 2.0, 256, 1024, 1024), bench("fastq_linear_2t", 1.0, 256, 1024, 1024)]}
    table = peers_markdown(data, 100.0)
    assert "test CPU" in table
    row = [line for line in table.splitlines() if line.startswith("| 1×64×64")][0].split(" | ")
    assert row[1:5] == ["1.0", "4.0", "2.0", "2.00×"]        # the faster peer is 2x slower
    assert row[5:8] == ["8", "8 %", "8.00×"]                  # 8192 ops in 1 us = 8.2 GOPS
    assert "2 threads vs 1 at 256×1024×1024: 2.00×" in table
