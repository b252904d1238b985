#!/usr/bin/env bash
# The quick start: install the Debian packages, build, run experiments/quickstart.yaml and print
# its markdown report. Exit code: that of `qbench run` (0 all cells ok, 1 a cell failed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
set +e
./build/bin/qbench run experiments/quickstart.yaml --progress
rc=$?
set -e
./build/bin/qbench report --format markdown
exit $rc
