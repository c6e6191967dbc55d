"""Shared setup of the benchmark suites.

    pytest bench --benchmark-only --benchmark-group-by=group            # full sizes
    pytest bench --benchmark-only --benchmark-group-by=group --quick    # CI-sized (seconds)
    pytest bench/test_multiply_*.py --benchmark-only --benchmark-save=mul   # then --benchmark-compare

--quick (or FASTQ_BENCH_QUICK=1) shrinks counts and shapes. Everything runs on one thread
(fastq, torch, OpenBLAS, onnxruntime), so figures compare with the one-core peaks of
fastq._bench. pytest-benchmark's table shows seconds per call; the figures that matter
(ns and cycles per multiply, GOPS, % of peak) go into each benchmark's extra_info (saved
with --benchmark-save / --benchmark-json) and into the "what a multiply costs" summary
printed at the end. The measurement code (threads, backend, operation counts, the peers and
the models) is fastq.tools.bench's, the same that `fastq bench` runs.
"""
import os
import sys

# One BLAS thread: must be set before numpy loads OpenBLAS (best effort under pytest).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, os.path.dirname(__file__))

import pytest  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true", default=False,
                     help="fastq benchmarks: small counts and shapes (CI-friendly, seconds)")


def pytest_configure(config):
    config._fastq_costs = []


def is_quick(config):
    """--quick on the command line, or FASTQ_BENCH_QUICK=1 in the environment."""
    return bool(config.getoption("--quick", default=False)) or \
        os.environ.get("FASTQ_BENCH_QUICK", "") not in ("", "0")


def pytest_collection_modifyitems(config, items):
    """Under --quick, only modules that size themselves for it (QUICK_SIZES = True) run."""
    if not is_quick(config):
        return
    skip = pytest.mark.skip(reason="full sizes only (no QUICK_SIZES in this module): run without --quick")
    for item in items:
        if not getattr(item.module, "QUICK_SIZES", False):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def quick(request):
    return is_quick(request.config)


@pytest.fixture(scope="session")
def core_ghz():
    """Core clock estimate (GHz) from a dependent add chain, measured once per session."""
    from fastq import _bench
    return _bench.core_ghz(refresh=True)


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    from fastq.tools.bench import measure
    with measure.threads(1):
        yield


def _table_backends():
    """Every backend name of the kernel table (csrc/runtime/backends.c)."""
    from fastq import _kernels
    return [row["name"] for row in _kernels.backend_table()]


@pytest.fixture(params=_table_backends())
def backend(request):
    """Runs a benchmark once per ISA backend this CPU supports (one thread, as the session)."""
    import fastq
    from fastq.tools.bench import measure
    if request.param not in fastq.backends():
        pytest.skip("backend %s not supported on this CPU" % request.param)
    with measure.backend(request.param):
        yield request.param


@pytest.fixture
def cost(request, benchmark):
    """cost(seconds_to_metrics): after the benchmark ran, turns its best (min) seconds per
    call into derived metrics, stores them in extra_info and the end-of-run summary.
    Does nothing when benchmarks are disabled (no timings)."""
    def record(to_metrics):
        stats = getattr(benchmark, "stats", None)
        if stats is None or getattr(benchmark, "disabled", False):
            return None
        metrics = to_metrics(stats.stats.min)
        benchmark.extra_info.update(metrics)
        request.config._fastq_costs.append((benchmark.group or "", request.node.name, metrics))
        return metrics
    return record


def _fmt(v):
    if isinstance(v, float):
        return "%.4g" % v
    return str(v)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rows = getattr(config, "_fastq_costs", [])
    if not rows:
        return
    tr = terminalreporter
    tr.section("what a multiply costs (best of rounds, one thread)")
    groups = {}
    for group, name, metrics in rows:
        groups.setdefault(group, []).append((name, metrics))
    for group, items in groups.items():
        keys = []
        for _, m in items:
            keys += [k for k in m if k not in keys]
        header = ["name"] + keys
        table = [[name] + [_fmt(m.get(k, "")) for k in keys] for name, m in items]
        widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]
        tr.write_line("")
        tr.write_line(group)
        tr.write_line("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        for r in table:
            tr.write_line("  ".join(c.ljust(w) for c, w in zip(r, widths)))
