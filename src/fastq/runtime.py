"""Which ISA backend runs the kernels, and on how many threads."""
from __future__ import annotations

import os

from . import _kernels

_NAMES = _kernels.backend_names()


def backends():
    """Backends this CPU can run, slowest first, e.g. ['scalar', 'avx2', 'avx512vnni']."""
    return [name for i, name in enumerate(_NAMES) if _kernels.backend_supported(i)]


def get_backend():
    return _NAMES[_kernels.get_backend()]


def set_backend(name):
    """Force one backend ('scalar', 'avx2', 'avx512vnni'), or 'auto' for the best one."""
    if not isinstance(name, str):
        raise TypeError("name: expected a backend name, got %r" % type(name).__name__)
    if name == "auto":
        name = backends()[-1]
    if name not in _NAMES:
        raise ValueError("name: unknown backend %r; known: %s" % (name, ", ".join(_NAMES)))
    if not _kernels.set_backend(_NAMES.index(name)):
        raise ValueError("name: backend %r is not supported on this CPU; available: %s"
                         % (name, ", ".join(backends())))


def get_num_threads():
    return _kernels.get_num_threads()


def set_num_threads(n):
    """Threads per kernel call (0 restores the default: FASTQ_NUM_THREADS or all cores)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError("n: expected an int, got %r" % type(n).__name__)
    if n < 0:
        raise ValueError("n: expected >= 0, got %d" % n)
    _kernels.set_num_threads(n)


def _apply_environment():
    env = os.environ.get("FASTQ_BACKEND", "").strip()
    if env:
        try:
            set_backend(env)
        except ValueError as e:
            raise ValueError("FASTQ_BACKEND: %s" % e) from None


_apply_environment()
