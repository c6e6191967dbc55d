"""Build of the compiled core: one extension, fastq._kernels, carries every kernel family and
every ISA path (scalar, AVX2, AVX-512 VNNI; each file compiles its own target with #pragma GCC
target or target attributes), chosen at run time through the backend table; plus the optional
microbenchmarks, fastq._bench."""
import glob
import os
import platform

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

# csrc/ holds one folder per kernel family (gemm/, convert/, fixedpoint/, elementwise/, conv/,
# pool/, runtime/); every .c below it except the microbenchmarks of csrc/bench/ is the core.
csrc = sorted(c for c in glob.glob("src/fastq/csrc/**/*.c", recursive=True)
              if "bench" not in os.path.relpath(c, "src/fastq/csrc").split(os.sep)[:-1])
bench_csrc = sorted(glob.glob("src/fastq/csrc/bench/*.c"))
# the C files include "fastq.h" and family headers as "gemm/requant.h" from csrc/
include_dirs = [np.get_include(), "src/fastq", "src/fastq/csrc"]

# -ffp-contract=off: no fused multiply-add unless written as fmaf (bit-exactness, docs/ARITHMETIC.md §1).
compile_args = ["-O3", "-ffp-contract=off", "-std=gnu11", "-fno-strict-aliasing"]
if os.name == "nt":
    compile_args = ["/O2", "/fp:precise"]
link_args = ["-pthread"] if os.name != "nt" else []
if platform.machine().lower() in ("x86_64", "amd64") and os.name != "nt":
    compile_args.append("-pthread")
# Calls between the C files stay direct (no PLT): each kernel call goes through the backend
# table's functions, a few ns apiece through the PLT on a 0.5 us layer call. Only the module's
# init function is exported (Python's PyMODINIT_FUNC marks it visible).
if os.name != "nt":
    compile_args.append("-fvisibility=hidden")

macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
extensions = [
    Extension(
        "fastq._kernels",
        sources=["src/fastq/_kernels.pyx"] + [c for c in csrc],
        include_dirs=include_dirs,
        define_macros=macros,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    ),
]
if os.path.exists("src/fastq/_bench.pyx"):
    extensions.append(
        Extension(
            "fastq._bench",
            sources=["src/fastq/_bench.pyx"] + bench_csrc,
            include_dirs=include_dirs,
            define_macros=macros,
            extra_compile_args=compile_args,
            extra_link_args=link_args,
        )
    )

setup(ext_modules=cythonize(extensions, compiler_directives={"language_level": "3"}))
