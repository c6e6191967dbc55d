#!/usr/bin/env bash
# Set up a fresh virtual environment with torch 2.13.0 (CPU) and fastq, then run `fastq demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q ".[torch]"
.venv/bin/fastq demo "$@"
