"""Smoke test of the benchmark machinery (a few seconds): every C microbenchmark once with
small counts, results sane; and `fastq bench --quick` end to end, writing JSON and PNG.

Sanity bounds are physical, so a loop the compiler optimized away fails them: a dependent
multiply chain cannot finish a multiply in under one core cycle, and no x86 core issues 10
scalar multiplies or 8 SIMD multiply instructions per cycle.
"""
import json
import math

import pytest

import fastq

_bench = pytest.importorskip("fastq._bench", reason="fastq._bench extension not built")


@pytest.fixture(scope="module")
def ghz():
    return _bench.core_ghz(n=200_000, repeats=1, refresh=True)


def _sane(x):
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_core_clock_is_plausible(ghz):
    assert _sane(ghz)
    assert 0.2 < ghz < 10.0, "an add chain implies a %.2f GHz core: the loop is not what it seems" % ghz


@pytest.mark.parametrize("dtype", _bench.DTYPES)
def test_scalar_multiply_sane(ghz, dtype):
    lat = _bench.scalar_mul_ns(dtype, "latency", n=20_000, repeats=1)
    thr = _bench.scalar_mul_ns(dtype, "throughput", n=20_000, repeats=1)
    assert _sane(lat) and _sane(thr)
    assert lat * ghz >= 1.0, "%s multiply chain: %.2f cycles per dependent multiply" % (dtype, lat * ghz)
    assert thr * ghz >= 0.1, "%s: %.3f cycles per multiply" % (dtype, thr * ghz)


def test_simd_microbenchmarks_sane(ghz):
    available = _bench.simd_available()
    for instr, bits in available:
        ns = _bench.simd_ns(instr, bits, n=2_000, repeats=1)
        assert _sane(ns), (instr, bits)
        assert 1.0 / (ns * ghz) < 8.0, "%s/%d: %.1f instructions per cycle" % (instr, bits, 1 / (ns * ghz))
        assert _bench.simd_products(instr, bits) == {"vpdpbusd": 4, "vpmaddwd": 2}.get(instr, 1) * (
            bits // (64 if instr == "vfmadd231pd" else 32))
    peak = _bench.peak_int8_gops(n=2_000, repeats=1)
    if any(instr == "vpdpbusd" for instr, _ in available):
        assert _sane(peak)
    else:
        assert peak is None


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="dtype"):
        _bench.scalar_mul_ns("int4")
    with pytest.raises(ValueError, match="mode"):
        _bench.scalar_mul_ns("int8", "sideways")
    with pytest.raises(ValueError, match="n"):
        _bench.scalar_mul_ns("int8", "latency", n=0)
    with pytest.raises(TypeError, match="n"):
        _bench.scalar_mul_ns("int8", "latency", n=1.5)
    with pytest.raises(ValueError, match="instr"):
        _bench.simd_ns("vpmulhrsw", 512)
    with pytest.raises(ValueError, match="bits"):
        _bench.simd_ns("vpdpbusd", 128)


def test_fastq_bench_quick_writes_json_and_png(tmp_path, capsys):
    from fastq.tools import cli
    json_path, png_path = tmp_path / "out" / "bench.json", tmp_path / "out" / "bench.png"
    rc = cli.main(["bench", "--quick", "--plain", "--json", str(json_path), "--png", str(png_path)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Scalar multiply" in printed
    results = json.loads(json_path.read_text())
    assert results["level"] == "quick" and results["threads"] == 1
    assert {r["dtype"] for r in results["scalar"]} == set(_bench.DTYPES)
    for r in results["scalar"]:
        assert r["ns"] > 0 and r["cycles"] > 0
    assert len(results["simd"]) == len(_bench.simd_available())
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    if have_torch:
        rows = results["layer"]["rows"]
        assert {"fastq int8", "torch quantized", "torch float32"} <= {r["impl"] for r in rows}
        assert all(r["gops"] > 0 for r in rows)
        mlp = results["mlp"]
        # the fastq MLP is built from the torch quantized one: its integers must equal torch's
        assert mlp["fastq_vs_torch_mismatches"] == 0
        assert all(v > 0 for v in mlp["weights_bytes"].values())
    else:
        assert any("torch" in note for note in results["skipped"])
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not png_path.exists()
        assert any("matplotlib" in note for note in results["skipped"])
        return
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plain_tables_without_rich():
    from fastq.tools.bench.report import print_tables
    import io
    results = {"core_ghz": 4.0, "threads": 1, "skipped": ["x: y"],
               "scalar": [{"dtype": "int8", "mode": "latency", "ns": 0.75, "cycles": 3.0, "ops_per_s": 1.3e9}],
               "simd": [], "layer": None, "mlp": None}
    out = io.StringIO()
    print_tables(results, file=out, use_rich=False)
    text = out.getvalue()
    assert "int8" in text and "3.00" in text and "skipped: x: y" in text
    from fastq.tools.bench.report import markdown
    md = markdown(results)
    assert "| int8 | 0.750 | 3.00 |" in md


def test_bench_levels_reject_bad_input():
    from fastq.tools.bench.suite import Bench
    with pytest.raises(ValueError, match="level"):
        Bench("enormous")
    with pytest.raises(ValueError, match="threads"):
        Bench("quick", threads=0)


def test_bench_restores_thread_settings():
    from fastq.tools.bench.suite import Bench
    before = fastq.get_num_threads()
    fastq.set_num_threads(2)
    try:
        bench = Bench("quick", threads=1)
        with bench.thread_settings():
            assert fastq.get_num_threads() == 1
        assert fastq.get_num_threads() == 2
    finally:
        fastq.set_num_threads(before)
