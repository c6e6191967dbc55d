import os
import warnings

import numpy as np
import pytest

import fastq
from fastq import _kernels

# torch 2.13 warns on every quantized tensor creation (deprecation); tests use them on purpose.
warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch")

# Every backend name the library knows; those this CPU cannot run (or this build did not
# compile) are skipped, so a report shows which ran.
ALL_BACKENDS = ["scalar", "avx2", "avx512vnni"]


@pytest.fixture(params=ALL_BACKENDS)
def backend(request):
    """Runs a test once per ISA backend, restoring the previous one afterwards (the one
    backend fixture of the suite)."""
    name = request.param
    if name not in fastq.backends():
        pytest.skip("backend %s not supported on this CPU or not compiled in" % name)
    previous = fastq.get_backend()
    fastq.set_backend(name)
    assert fastq.get_backend() == name
    request.config._fastq_backend_tests = getattr(request.config, "_fastq_backend_tests", 0) + 1
    yield name
    fastq.set_backend(previous)


@pytest.fixture
def rng(request):
    seed = int(os.environ.get("FASTQ_TEST_SEED", "0"))
    return np.random.default_rng([seed, abs(hash(request.node.name)) % 2**31])


# ---- covered paths (ruy's test.h check): a run that used the backend fixture must have run the
# kernels of every backend this CPU supports and this build compiled, counted in C by fq_gemm.
def pytest_sessionstart(session):
    session.config._fastq_runs_at_start = _kernels.kernel_runs()


def pytest_collection_finish(session):
    """The backends the selected tests ask for (a run narrowed with -k to one backend checks
    that one only)."""
    wanted = set()
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "backend" in callspec.params:
            wanted.add(callspec.params["backend"])
    session.config._fastq_backends_selected = wanted


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if not getattr(config, "_fastq_backend_tests", 0) or exitstatus != 0:
        return
    start = config._fastq_runs_at_start
    now = _kernels.kernel_runs()
    selected = getattr(config, "_fastq_backends_selected", set())
    missed = [b for b in fastq.backends() if b in selected and now[b] - start.get(b, 0) == 0]
    if missed:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("fastq covered paths: no kernel test ran on backend(s) %s, which this CPU "
                                "supports and this build compiled" % ", ".join(missed), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if getattr(config, "_fastq_backend_tests", 0):
        now = _kernels.kernel_runs()
        start = config._fastq_runs_at_start
        terminalreporter.write_line("fastq kernel calls per backend: " + ", ".join(
            "%s %d" % (b, now[b] - start.get(b, 0)) for b in ALL_BACKENDS))
