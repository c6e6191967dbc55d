"""Build of the compiled core: one extension carries every ISA path (scalar, AVX2,
AVX-512 VNNI, each file compiles its own target with #pragma GCC target), chosen at run time."""
import glob
import os
import platform

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

csrc = sorted(c for c in glob.glob("src/fastq/csrc/*.c") if not c.endswith("elementwise.c"))
# the conv and pool kernel families (one folder each)
csrc += sorted(glob.glob("src/fastq/csrc/conv/*.c") + glob.glob("src/fastq/csrc/pool/*.c"))
bench_csrc = sorted(glob.glob("src/fastq/csrc/bench/*.c"))

# -ffp-contract=off: no fused multiply-add unless written as fmaf (bit-exactness, docs/ARITHMETIC.md §1).
compile_args = ["-O3", "-ffp-contract=off", "-std=gnu11", "-fno-strict-aliasing"]
if os.name == "nt":
    compile_args = ["/O2", "/fp:precise"]
link_args = ["-pthread"] if os.name != "nt" else []
if platform.machine().lower() in ("x86_64", "amd64") and os.name != "nt":
    compile_args.append("-pthread")

macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
extensions = [
    Extension(
        "fastq._kernels",
        sources=["src/fastq/_kernels.pyx"] + [c for c in csrc],
        include_dirs=[np.get_include(), "src/fastq"],
        define_macros=macros,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    ),
]
extensions.append(Extension("fastq._elementwise", sources=["src/fastq/_elementwise.pyx", "src/fastq/csrc/elementwise.c"],
                            include_dirs=[np.get_include(), "src/fastq"], define_macros=macros,
                            extra_compile_args=compile_args, extra_link_args=link_args))
if os.path.exists("src/fastq/_bench.pyx"):
    extensions.append(
        Extension(
            "fastq._bench",
            sources=["src/fastq/_bench.pyx"] + bench_csrc,
            include_dirs=[np.get_include(), "src/fastq"],
            define_macros=macros,
            extra_compile_args=compile_args,
            extra_link_args=link_args,
        )
    )

setup(ext_modules=cythonize(extensions, compiler_directives={"language_level": "3"}))
