#!/usr/bin/env bash
# Set up a fresh virtual environment (torch 2.13.0 CPU first, then fastq with its test extras)
# and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# The firmware tests (tests/test_export.py) compile and run exported models on Cortex-M and
# aarch64 emulators; as root, install the Debian toolchains when some are missing (quick no-op
# when present; without them those tests skip, or fail under CI=1).
firmware_missing() {
    for t in arm-none-eabi-gcc qemu-system-arm qemu-aarch64 aarch64-linux-gnu-gcc; do
        command -v "$t" >/dev/null || return 0
    done
    [ ! -e /usr/lib/arm-none-eabi/newlib/librdimon.a ]      # newlib's semihosting library
}
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && firmware_missing; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm qemu-user gcc-aarch64-linux-gnu; } \
        || echo "firmware toolchains: install failed; tests/test_export.py skips those targets"
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q ".[test,onnx]"
# torchvision's quantizable CNNs are test models only. 0.28.0 is the release for torch 2.13.0;
# --no-deps keeps the CPU torch (its wheel would pull a CUDA torch). pillow is what its import needs.
.venv/bin/python -m pip install -q pillow
.venv/bin/python -m pip install -q --no-deps torchvision==0.28.0
cd tests && ../.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
