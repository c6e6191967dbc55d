"""Which ISA backend runs the kernels (every family: GEMM, packing, conversions, add / mul, fixed
point), and on how many threads. The backends are the entries of the kernel table
(csrc/runtime/backends.c; `_kernels.backend_table()` lists them with parents and features)."""
from __future__ import annotations

import os
import warnings

from . import _kernels
from ._checks import check_int

_NAMES = _kernels.backend_names()


def backends():
    """Backends of the kernel table this CPU can run, in table order (each preferred over those
    before it), e.g. ['scalar', 'avx2', 'avx512vnni']."""
    return [name for i, name in enumerate(_NAMES) if _kernels.backend_supported(i)]


def get_backend():
    return _NAMES[_kernels.get_backend()]


def set_backend(name):
    """Force one backend of the kernel table (e.g. 'scalar', 'avx2', 'avx512vnni') for every kernel
    family, or 'auto' for the best one."""
    if not isinstance(name, str):
        raise TypeError("name: expected a backend name (%s or 'auto'), got %r" % (", ".join(_NAMES), name))
    if name == "auto":
        name = backends()[-1]
    if name not in _NAMES:
        raise ValueError("name: unknown backend %r; known: %s" % (name, ", ".join(_NAMES)))
    if not _kernels.set_backend(_NAMES.index(name)):
        raise ValueError("name: backend %r is not supported on this CPU; available: %s"
                         % (name, ", ".join(backends())))


MAX_THREADS = 256          # FQ_MAX_THREADS in csrc/runtime/threadpool.c

# The thread count set_num_threads(0) restores: None = the C default (FASTQ_NUM_THREADS or the
# CPU count); an int when FASTQ_NUM_THREADS was invalid and the CPU count is used instead.
_default_threads = None


def get_num_threads():
    return _kernels.get_num_threads()


def set_num_threads(n):
    """Threads per kernel call, 1 to 256 (0 restores the default: FASTQ_NUM_THREADS or all cores)."""
    n = check_int(n, "n", 0, MAX_THREADS, " (0 = the default: FASTQ_NUM_THREADS or all cores)")
    _kernels.set_num_threads(n if n or _default_threads is None else _default_threads)


def _cpu_threads():
    return max(1, min(os.cpu_count() or 1, MAX_THREADS))


def _apply_environment():
    """FASTQ_BACKEND and FASTQ_NUM_THREADS, one rule for both: an invalid value gives a
    RuntimeWarning naming the variable and the value, and the default is used (import never
    fails on them)."""
    global _default_threads
    env = os.environ.get("FASTQ_BACKEND", "").strip()
    if env:
        try:
            set_backend(env)
        except ValueError as e:
            warnings.warn("FASTQ_BACKEND=%r ignored (%s); using the best backend, %r"
                          % (env, e, backends()[-1]), RuntimeWarning, stacklevel=3)
            set_backend("auto")
    env = os.environ.get("FASTQ_NUM_THREADS")
    if env is not None and env.strip():
        text = env.strip()
        if not (text.isdigit() and 1 <= int(text) <= MAX_THREADS):
            _default_threads = _cpu_threads()
            warnings.warn("FASTQ_NUM_THREADS=%r ignored (expected an integer in [1, %d]); using %d threads "
                          "(the CPU count)" % (env, MAX_THREADS, _default_threads), RuntimeWarning, stacklevel=3)
            _kernels.set_num_threads(_default_threads)


_apply_environment()
