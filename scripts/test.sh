#!/usr/bin/env bash
# The whole test suite: install what is missing, build, then every ctest tier
# (labels: unit, torch, numeric, slow, e2e; see tests/CMakeLists.txt). Extra arguments go to
# ctest (e.g. -L unit, or -LE slow for everything but the slow numeric cases).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
cd build
ctest --output-on-failure --timeout 1200 "$@"
