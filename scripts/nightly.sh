#!/usr/bin/env bash
# The nightly regression run: installs what is missing, builds if needed, runs
# experiments/nightly.yaml from scratch (fresh store and checkpoint cache), renders the HTML and
# markdown reports, and ends with `qbench compare` against the committed baseline.
#   bash scripts/nightly.sh
# Outputs in $NIGHTLY_OUT (default results/nightly): report.html, report.md, compare.txt,
# run.log, nightly.db. Exit code: that of the compare (0 pass, 1 a cell regressed, failed or is
# missing), or the run's when it could not run at all (2 configuration error, 130 interrupted).
# Environment: QBENCH_BUILD_DIR (default build, via scripts/build.sh), NIGHTLY_OUT,
# NIGHTLY_BASELINE (default results/baselines/nightly.json), QBENCH_SKIP_DEPS=1 (no apt-get),
# QBENCH_JOBS (parallel compile jobs, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${QBENCH_BUILD_DIR:-build}
OUT=${NIGHTLY_OUT:-results/nightly}
BASELINE=${NIGHTLY_BASELINE:-results/baselines/nightly.json}

[ "${QBENCH_SKIP_DEPS:-0}" = 1 ] || bash scripts/install-deps.sh
if [ "$BUILD" = build ]; then
  bash scripts/build.sh
else
  [ -f "$BUILD/build.ninja" ] || cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release
  cmake --build "$BUILD" -j "${QBENCH_JOBS:-2}" --target qbench
fi
QB=$BUILD/bin/qbench

rm -rf "$OUT"
mkdir -p "$OUT"
start=$(date +%s)
set +e
"$QB" run experiments/nightly.yaml --db "$OUT/nightly.db" --cache-dir "$OUT/cache" --no-progress 2>&1 | tee "$OUT/run.log" >&2
run_rc=${PIPESTATUS[0]}
set -e
echo "nightly: qbench run took $(( $(date +%s) - start )) s and exited $run_rc" >&2
# 2: the matrix did not validate; 130: interrupted. Nothing worth comparing.
if [ "$run_rc" -eq 2 ] || [ "$run_rc" -eq 130 ]; then exit "$run_rc"; fi

"$QB" report --db "$OUT/nightly.db" --format html --out "$OUT/report.html"
"$QB" report --db "$OUT/nightly.db" --format markdown --out "$OUT/report.md"
echo "nightly: reports in $OUT/report.html and $OUT/report.md" >&2
set +e
"$QB" compare --baseline "$BASELINE" --db "$OUT/nightly.db" | tee "$OUT/compare.txt"
rc=${PIPESTATUS[0]}
set -e
exit "$rc"
