#!/usr/bin/env bash
# Set up a fresh virtual environment (torch 2.13.0 CPU first, then fastq with its test extras)
# and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q ".[test,onnx]"
cd tests && ../.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
