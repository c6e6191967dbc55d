#!/usr/bin/env bash
# Build the documentation site into build/site/ with mkdocs --strict (a broken link, a page
# missing from the nav or a bad anchor fails). Installs docs/requirements.txt into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -r docs/requirements.txt
# CHANGELOG.md lives at the top of the repository; the site shows it as docs/changelog.md
sed 's|(docs/\([a-zA-Z-]*\.md\))|(\1)|g' CHANGELOG.md > docs/changelog.md
trap 'rm -f docs/changelog.md' EXIT
.venv/bin/python -m mkdocs build --strict -d build/site "$@"
