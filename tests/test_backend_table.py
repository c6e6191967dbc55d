"""The kernel table (csrc/runtime/backends.c): its shape, what it resolves, and that the selected
backend governs every kernel family, checked through the per-family run counters in C."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastq
from fastq import _kernels, reference

TABLE = _kernels.backend_table()
BY_NAME = {row["name"]: row for row in TABLE}
SITE = os.path.dirname(os.path.dirname(os.path.abspath(fastq.__file__)))


def ancestors(name):
    chain = []
    parent = BY_NAME[name]["parent"]
    while parent is not None:
        assert parent not in chain, "cycle through %s" % parent
        chain.append(parent)
        parent = BY_NAME[parent]["parent"]
    return chain


def test_parents_form_a_tree_rooted_at_scalar():
    names = [row["name"] for row in TABLE]
    assert len(set(names)) == len(names)
    assert [row["name"] for row in TABLE if row["parent"] is None] == ["scalar"]
    assert names[0] == "scalar" and BY_NAME["scalar"]["features"] == []
    for i, row in enumerate(TABLE):
        if row["parent"] is not None:
            # a parent comes first (resolution order), and every chain ends at scalar
            assert row["parent"] in names[:i], row
            assert ancestors(row["name"])[-1] == "scalar"
    assert fastq.backends() == [row["name"] for row in TABLE if row["available"]]
    assert _kernels.backend_names() == names


def test_every_family_resolves_on_every_compiled_backend():
    """Each family's kernels come from the backend itself or an ancestor, and a backend that does
    not fill a family has exactly its parent's kernels of it."""
    assert set(_kernels.FAMILIES) >= {"gemm", "epilogue", "pack", "convert", "elementwise", "fixedpoint",
                                      "conv", "pool"}
    assert fastq.backends()[0] == "scalar"
    for row in TABLE:
        if not row["compiled"]:
            assert not row["available"] and set(row["kernels"].values()) == {None}
            continue
        assert set(row["kernels"]) == set(_kernels.FAMILIES)
        for family, owner in row["kernels"].items():
            assert owner == row["name"] or owner in ancestors(row["name"]), (row["name"], family, owner)
            if owner != row["name"]:
                assert BY_NAME[row["parent"]]["kernels"][family] == owner, (row["name"], family)
    assert set(BY_NAME["scalar"]["kernels"].values()) == {"scalar"}


def test_conv_and_pool_are_table_families():
    """The depthwise tiles and the pooling kernels resolve through the table like every family:
    each ISA row with code of its own owns them (AVX-512 VNNI: vpdpwssd depthwise), and the
    AVX-512 row inherits AVX2's pooling (memory bound, no zmm version)."""
    for row in TABLE:
        if row["compiled"] and row["name"] in ("scalar", "avx2", "avx512vnni"):
            assert row["kernels"]["conv"] == row["name"], row
            assert row["kernels"]["pool"] == ("avx2" if row["name"] == "avx512vnni" else row["name"]), row
    assert set(_kernels.family_backends("conv")) <= {i for i, row in enumerate(TABLE) if row["available"]}


def test_available_means_features_present_and_parent_available():
    have = _kernels.cpu_features()
    for row in TABLE:
        expect = row["compiled"] and all(have[f] for f in row["features"]) and (
            row["parent"] is None or BY_NAME[row["parent"]]["available"])
        assert row["available"] == expect, row


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo") or os.uname().machine != "x86_64",
                    reason="Linux x86-64 only: /proc/cpuinfo lists the flags the kernel enabled")
def test_cpu_detector_agrees_with_the_kernel():
    """The kernel lists a flag only when CPUID has it and the OS state it needs is enabled; the
    detector's CPUID bit and XCR0 bit together must say the same."""
    with open("/proc/cpuinfo") as f:
        flags = set(next(line for line in f if line.startswith("flags")).split(":", 1)[1].split())
    have = _kernels.cpu_features()
    pairs = {"avx2": ("avx2", "os_ymm"), "fma": ("fma", "os_ymm"), "avx512f": ("avx512f", "os_zmm"),
             "avx512bw": ("avx512bw", "os_zmm"), "avx512vl": ("avx512vl", "os_zmm"),
             "avx512_vnni": ("avx512vnni", "os_zmm"), "amx_tile": ("amx_tile", "os_amx"),
             "amx_int8": ("amx_int8", "os_amx")}
    for flag, (feature, state) in pairs.items():
        assert (have[feature] and have[state]) == (flag in flags), flag
    # the permission request never crashes; granted only where the tile state is on
    assert _kernels.cpu_features()["amx_permitted"] in (False, have["amx_tile"] and have["os_amx"])


def test_family_backends_are_the_ones_whose_own_kernels_run_here():
    for family in _kernels.FAMILIES:
        ids = _kernels.family_backends(family)
        assert 0 in ids
        for b in ids:
            row = TABLE[b]
            assert row["compiled"] and (row["available"] or family == "convert"), (family, row["name"])
    for b, row in enumerate(TABLE):
        if row["available"]:
            assert all(b in _kernels.family_backends(f) for f in _kernels.FAMILIES)
    with pytest.raises(ValueError, match="family: unknown kernel family 'conv9'"):
        _kernels.family_backends("conv9")


def _run_every_family(rng):
    """One call of each kernel family through the public paths (not forcing an ISA)."""
    x = rng.standard_normal(300).astype(np.float32)
    q = fastq.quantize(x, 0.05, 128)                                           # convert
    fastq.dequantize(q)                                                        # convert
    a = rng.integers(0, 256, (9, 40), dtype=np.uint8)
    w = rng.integers(-128, 128, (70, 40), dtype=np.int8)
    assert np.array_equal(fastq.qgemm(a, 7, w, 3), reference.qgemm(a, 7, w, 3))   # pack, gemm, epilogue
    pw = _kernels.PackedWeights(w, np.zeros(70, np.int32))
    scale = np.full(pw.n_padded, 1e-3, np.float32)
    ep = _kernels.Epilogue(pw, _kernels.EPI_QNNPACK, pw.col_offsets(7), scale=scale, out_zero_point=9)
    expect = np.clip(np.rint((reference.qgemm(a, 7, w, 0).astype(np.float32) * np.float32(1e-3))) + 9, 0, 255)
    assert np.array_equal(_kernels.gemm(pw, ep, a), expect.astype(np.uint8))  # gemm_fused (byte output)
    acc = rng.integers(-2**20, 2**20, 64).astype(np.int32)
    fastq.multiply_by_quantized_multiplier(acc, 1 << 30, -3)                   # fixedpoint
    va, vb = rng.integers(0, 256, 150, dtype=np.uint8), rng.integers(0, 256, 150, dtype=np.uint8)
    _kernels.qadd_fbgemm(va, vb, 128, 0.05, 120, 0.04, 130, 1 / 0.07, 128, False)   # elementwise
    _kernels.qmul(va, vb, 128, 120, 130, 0.03, 128, False)
    x = rng.integers(0, 256, (1, 8, 5, 5), dtype=np.uint8)
    cw = _kernels.ConvWeights(rng.integers(-128, 128, (8, 1, 3, 3), dtype=np.int8), 0, 8)
    _kernels.conv2d_acc(x, 3, cw, 1, 1, 1, path="depthwise")                   # conv, epilogue
    _kernels.conv2d_acc(x, 3, cw, 1, 1, 1, path="depthwise_saturate")          # conv, epilogue
    _kernels.max_pool2d(x, 2)                                                  # pool
    _kernels.plane_sums(x, 3)                                                  # pool


def test_selected_backend_governs_every_family(backend, rng):
    """Each family runs the kernels the table names for the selected backend (its own or an
    ancestor's), and no other backend's."""
    before = _kernels.kernel_runs()
    _run_every_family(rng)
    after = _kernels.kernel_runs()
    owners = BY_NAME[backend]["kernels"]
    for family in _kernels.FAMILIES:
        delta = {b: after[family][b] - before[family][b] for b in after[family]}
        ran = {b for b, n in delta.items() if n}
        assert ran == {owners[family]}, (backend, family, delta)


def test_environment_scalar_governs_every_family():
    """FASTQ_BACKEND=scalar at import: add, mul, quantize, dequantize, gemm, pack, fixed point,
    depthwise and pooling all run the scalar kernels, and nothing else runs."""
    probe = ("import numpy as np, fastq; from fastq import _kernels; import test_backend_table as t;"
             "t._run_every_family(np.random.default_rng(1)); r = _kernels.kernel_runs();"
             "print(fastq.get_backend()); print(sorted((f, b) for f in r for b in r[f] if r[f][b]))")
    env = dict(os.environ, FASTQ_BACKEND="scalar",
               PYTHONPATH=os.pathsep.join([SITE, os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    name, ran = r.stdout.strip().splitlines()
    assert name == "scalar"
    assert eval(ran) == sorted((f, "scalar") for f in _kernels.FAMILIES)


@pytest.mark.parametrize("mr", [1, 5, 8, 9, 15, 16])
def test_gemm_driver_takes_row_tiles_up_to_16(mr):
    """The driver's tile bookkeeping with tiles of mr rows (the scalar kernels take any count),
    on every M around the tile edges, one and several threads, zero points that need row sums."""
    assert _kernels.MR_MAX == 16
    previous = fastq.get_backend()
    fastq.set_backend("scalar")
    old = _kernels.scalar_set_mr(mr)
    try:
        rng = np.random.default_rng(mr)
        w = rng.integers(-128, 128, (130, 260), dtype=np.int8)   # M = 40: enough work for threads
        for m in sorted({1, 2, mr - 1, mr, mr + 1, 2 * mr + 3, 3 * mr, 40}):
            if m < 1:
                continue
            a = rng.integers(0, 256, (m, 260), dtype=np.uint8)
            for threads in (1, 3):
                pw = _kernels.PackedWeights(w, rng.integers(-5, 5, 130).astype(np.int32))
                za = int(rng.integers(0, 256))
                ep = _kernels.Epilogue(pw, _kernels.EPI_INT32, pw.col_offsets(za))
                got = _kernels.gemm(pw, ep, a, num_threads=threads)
                assert np.array_equal(got, reference.qgemm(a, za, w, pw.w_zero_point)), (mr, m, threads)
    finally:
        assert _kernels.scalar_set_mr(old) == mr
        fastq.set_backend(previous)
    with pytest.raises(ValueError, match="mr: expected 1..16"):
        _kernels.scalar_set_mr(17)


def _suite_conftest(config):
    """tests/conftest.py as pytest loaded it (a plain import could find tests/ops/conftest.py)."""
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conftest.py")
    for plugin in config.pluginmanager.get_plugins():
        if os.path.abspath(getattr(plugin, "__file__", "") or "") == here:
            return plugin
    raise AssertionError("tests/conftest.py is not loaded")


def test_covered_paths_guard_names_every_family_left_out(request):
    """The conftest guard: after running every family on the scalar backend only, it names each
    family's own kernels of every other available backend, and nothing of scalar's."""
    from types import SimpleNamespace
    _missed_paths = _suite_conftest(request.config)._missed_paths
    config = SimpleNamespace(_fastq_runs_at_start=_kernels.kernel_runs(),
                             _fastq_backends_selected=set(fastq.backends()))
    assert _missed_paths(config) == []          # nothing ran: nothing owed
    previous = fastq.get_backend()
    fastq.set_backend("scalar")
    try:
        _run_every_family(np.random.default_rng(2))
    finally:
        fastq.set_backend(previous)
    expect = sorted((f, b) for b in fastq.backends() if b != "scalar"
                    for f, owner in BY_NAME[b]["kernels"].items() if owner == b)
    assert sorted(_missed_paths(config)) == expect


def test_unknown_environment_backend_warns_and_falls_back_to_the_best_row():
    """A name the table does not have (here the next ISA's, not yet a row) gives a RuntimeWarning
    naming it, and every family runs the best available row's kernels."""
    assert "amx" not in BY_NAME
    probe = ("import numpy as np, fastq; from fastq import _kernels; import test_backend_table as t;"
             "t._run_every_family(np.random.default_rng(1)); r = _kernels.kernel_runs();"
             "print(fastq.get_backend()); print(sorted((f, b) for f in r for b in r[f] if r[f][b]))")
    env = dict(os.environ, FASTQ_BACKEND="amx",
               PYTHONPATH=os.pathsep.join([SITE, os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-W", "always::RuntimeWarning", "-c", probe], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "RuntimeWarning" in r.stderr and "FASTQ_BACKEND='amx'" in r.stderr
    name, ran = r.stdout.strip().splitlines()
    best = fastq.backends()[-1]
    assert name == best
    assert eval(ran) == sorted((f, owner) for f, owner in BY_NAME[best]["kernels"].items())
