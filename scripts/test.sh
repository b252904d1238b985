#!/usr/bin/env bash
# The whole test suite: install what is missing, build, then every ctest tier
# (labels: unit, numeric, e2e). Extra arguments go to ctest (e.g. -L unit).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
cd build
ctest --output-on-failure --timeout 1200 "$@"
