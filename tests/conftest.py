import os
import warnings

import numpy as np
import pytest

import fastq
from fastq import _kernels

# torch 2.13 warns on every quantized tensor creation (deprecation); tests use them on purpose.
warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch")

# Every backend of the kernel table (csrc/runtime/backends.c); those this CPU cannot run (or
# this build did not compile) are skipped, so a report shows which ran.
BACKEND_TABLE = _kernels.backend_table()
ALL_BACKENDS = [row["name"] for row in BACKEND_TABLE]


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


# ---- covered paths (ruy's test.h check): a run that used the backend fixture must have run, for
# every kernel family the run exercised at all, the family's own kernels of every backend this
# CPU supports and this build compiled (a backend that inherits a family from its parent owes
# nothing there). Counted in C per family under the backend whose kernels ran.
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


def _runs_since_start(config):
    start, now = config._fastq_runs_at_start, _kernels.kernel_runs()
    return {f: {b: now[f][b] - start[f][b] for b in now[f]} for f in now}


def _missed_paths(config):
    """(family, backend) pairs the run should have covered and did not."""
    delta = _runs_since_start(config)
    selected = getattr(config, "_fastq_backends_selected", set())
    owners = {row["name"]: row["kernels"] for row in _kernels.backend_table()}
    missed = []
    for family, runs in delta.items():
        if not any(runs.values()):
            continue                      # this run did not exercise the family at all
        for b in fastq.backends():
            if b in selected and owners[b][family] == b and runs[b] == 0:
                missed.append((family, b))
    return missed


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if not getattr(config, "_fastq_backend_tests", 0) or exitstatus != 0:
        return
    missed = _missed_paths(config)
    if missed:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("fastq covered paths: these kernels ran in no test, though this CPU supports "
                                "their backend and this build compiled them: " +
                                ", ".join("%s of %s" % fb for fb in missed), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if getattr(config, "_fastq_backend_tests", 0):
        delta = _runs_since_start(config)
        terminalreporter.write_line("fastq kernel calls per family and backend: " + "; ".join(
            "%s %s" % (f, ", ".join("%s %d" % (b, n) for b, n in runs.items()))
            for f, runs in delta.items()))
