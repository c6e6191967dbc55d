#!/usr/bin/env bash
# Builds the compiled core with AddressSanitizer + UndefinedBehaviorSanitizer in a copy of the
# tree (its own venv and build directory; the checkout is not touched) and runs the kernel and
# layer tests under it. Any report fails the run (-fno-sanitize-recover, halt_on_error).
#
#   scripts/sanitize.sh [pytest args...]          e.g. scripts/sanitize.sh -k tflite
#   PYTHON=/path/to/python scripts/sanitize.sh     the interpreter whose packages (numpy, Cython,
#                                                  pytest, torch, ...) the venv sees
#   FASTQ_SANITIZE_KEEP=1                          keep the temporary copy (its path is printed)
#
# Python itself is not instrumented: libasan is LD_PRELOADed so the extension's interceptors
# exist from the start, and leak detection is off (the interpreter keeps memory at exit).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=$(command -v python3)
CC=${CC:-gcc}
# the build needs Cython and setuptools beside numpy (pip's isolated build env of test.sh is gone)
"$PYTHON" -c "import Cython, setuptools" 2>/dev/null || "$PYTHON" -m pip install -q "Cython>=3.0" setuptools wheel
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fastq-sanitize.XXXXXX")
if [ -z "${FASTQ_SANITIZE_KEEP:-}" ]; then trap 'rm -rf "$WORK"' EXIT; else echo "sanitize: keeping $WORK"; fi

# the tree as git sees it (tracked and untracked, not ignored): no build outputs, no .so
(cd "$ROOT" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$WORK")

# own venv, seeing the packages of $PYTHON (a .pth file: a venv made from a venv would not)
"$PYTHON" -m venv --without-pip "$WORK/venv"
SITE=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
VSITE=$("$WORK/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$SITE" > "$VSITE/fastq-sanitize-parent.pth"
VPY="$WORK/venv/bin/python"

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
echo "sanitize: building in $WORK with $SAN"
(cd "$WORK" && CC="$CC" CFLAGS="$SAN" LDFLAGS="$SAN" "$VPY" setup.py -q build_ext --inplace -j 2 >/dev/null)

LIBASAN=$("$CC" -print-file-name=libasan.so)
LIBUBSAN=$("$CC" -print-file-name=libubsan.so)
TESTS=(test_kernels.py test_quantize_kernels.py test_fixedpoint.py test_backend_table.py test_graph_ops.py test_tflite_linear.py
       test_threadpool.py test_threads.py test_qgemm.py test_dynamic.py test_torch_linear.py
       test_bench_smoke.py test_arith_extremes.py test_conv_kernels.py)
cd "$WORK/tests"
LD_PRELOAD="$LIBASAN:$LIBUBSAN" \
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
PYTHONPATH="$WORK/src" \
    "$VPY" -m pytest -q -p no:cacheprovider "${TESTS[@]}" "$@"
echo "sanitize: clean (no AddressSanitizer / UndefinedBehaviorSanitizer report)"
