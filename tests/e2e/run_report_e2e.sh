#!/usr/bin/env bash
# End-to-end checks of `qbench report`, `qbench baseline write` and `qbench compare` on the built
# binary: one tiny real run, then regressions planted by editing its store with sqlite3. Each
# problem must exit 1 with a clear line; an unchanged run exits 0; bad input exits 2.
# usage: run_report_e2e.sh QBENCH_BINARY E2E_DIR WORK_DIR
set -u
QB=$1; HERE=$2; WORK=$3
DB=$WORK/report.db; CACHE=$WORK/cache
source "$(dirname "$0")/harness.sh"
W8="fashion-mnist/resnet8-w0.5/minmax/academic/w8a8/seed0"
W4="fashion-mnist/resnet8-w0.5/minmax/academic/w4a4/seed0"

"$QB" run "$HERE/report_tiny.yaml" --db "$DB" --cache-dir "$WORK/cache" --no-progress 2>run.log
check "the tiny run exits 0" test $? -eq 0

# Every format through the CLI.
for f in markdown html latex csv json; do
  "$QB" report --db "$DB" --format $f --out "report.$f" 2>err.log; rc=$?
  check "report --format $f exits 0 and writes a file" bash -c "[ $rc -eq 0 ] && [ -s report.$f ]"
done
check "html is self-contained (no external script or stylesheet)" bash -c "! grep -q '<script src\|<link' report.html"
check "markdown has the academic track with the run's numbers" grep -q "## Academic track: fashion-mnist / academic" report.markdown
out=$("$QB" report --db "$DB" --format csv --filter bits=w4a4); rc=$?
check "--filter bits=w4a4 keeps w4a4 and its FP32 reference (3 lines)" bash -c "[ $rc -eq 0 ] && [ \$(wc -l <<<'$out') -eq 3 ] && grep -q w4a4 <<<'$out' && ! grep -q w8a8 <<<'$out'"
err=$("$QB" report --db "$DB" --filter arch=resnt8 2>&1 >/dev/null); rc=$?
check "a filter value no cell has exits 2" test $rc -eq 2
check "... and names the values the run has" grep -qF "no cell of this run has arch 'resnt8' (known: resnet8-w0.5)" <<<"$err"
"$QB" report --db "$DB" --group-by colour >/dev/null 2>&1; check "unknown --group-by axis exits 2" test $? -eq 2
out=$("$QB" report --db "$DB" --format csv --table accuracy); rc=$?
check "--format csv --table accuracy: the academic track as CSV" bash -c "[ $rc -eq 0 ] && [ \"\$(head -1 <<<'$out')\" = dataset,profile,arch,algorithm,FP32,w8a8,w4a4 ] && [ \$(wc -l <<<'$out') -eq 2 ]"
"$QB" report --db "$DB" --table nope >/dev/null 2>&1; check "unknown --table exits 2" test $? -eq 2

# Baseline from the run, then an unchanged run passes.
"$QB" baseline write --db "$DB" --out base.json 2>bw.log; rc=$?
check "baseline write exits 0" test $rc -eq 0
check "baseline has 3 cells, one line each" test "$(grep -c '"cell":' base.json)" -eq 3
out=$("$QB" compare --baseline base.json --db "$DB"); rc=$?
check "unchanged run: compare exits 0" test $rc -eq 0
check "unchanged run: summary says PASS" grep -q "3 cells: 3 ok, .*: PASS" <<<"$out"

# A planted regression: w8a8 lowered by 1.5 points against the default tolerance of 1.0.
w8=$(sql "select top1 from results where w_bits=8")
sql "update results set top1 = top1 - 1.5 where w_bits=8"
out=$("$QB" compare --baseline base.json --db "$DB"); rc=$?
check "planted regression: compare exits 1" test $rc -eq 1
check "planted regression: a REGRESSED line for w8a8 with delta -1.50" grep -qE "^REGRESSED +$W8 .* -1\.50 +1\.00" <<<"$out"
# A per-cell tolerance in the baseline file lets it pass.
sed "s#\"cell\":\"$W8\",#\"cell\":\"$W8\",\"tolerance\":2.0,#" base.json >tol.json
"$QB" compare --baseline tol.json --db "$DB" >/dev/null; check "a per-cell tolerance of 2.0 accepts the 1.5 drop" test $? -eq 0
sql "update results set top1 = $w8 where w_bits=8"

# A failed cell.
sql "update results set status='failed', top1=NULL, error='NaN loss at epoch 1, step 3' where w_bits=4"
out=$("$QB" compare --baseline base.json --db "$DB"); rc=$?
check "failed cell: compare exits 1" test $rc -eq 1
check "failed cell: a FAILED line with the error" grep -qE "^FAILED +$W4 .*error: NaN loss at epoch 1, step 3" <<<"$out"

err=$("$QB" baseline write --db "$DB" --out base2.json 2>&1); rc=$?
check "baseline write refuses a run with a failed cell (exit 2)" bash -c "[ $rc -eq 2 ] && grep -q 'did not finish ok' <<<'$err'"

# A missing cell: the run's plan loses the w4a4 cell.
sql "delete from run_cells where cell_key=(select cell_key from results where w_bits=4)"
out=$("$QB" compare --baseline base.json --db "$DB" --format json); rc=$?
check "missing cell: compare exits 1" test $rc -eq 1
check "missing cell: reported as missing in JSON" grep -q '"status": "missing"' <<<"$out"
out=$("$QB" compare --baseline base.json --db "$DB"); check "missing cell: a MISSING line" grep -qE "^MISSING +$W4 .*not in run 1" <<<"$out"

# Bad input: exit 2 and a message naming the file and key.
printf '{"format": "qbench-baseline", "version": 1, "tolerance": 1, "cells": [{"cell": "%s", "top1": "high"}]}' "$W8" >bad.json
err=$("$QB" compare --baseline bad.json --db "$DB" 2>&1); rc=$?
check "malformed baseline exits 2" test $rc -eq 2
check "malformed baseline names file and key" grep -q 'bad.json: cells\[0\].top1: expected a number, got "high"' <<<"$err"
"$QB" compare --baseline nope.json --db "$DB" >/dev/null 2>&1; check "missing baseline file exits 2" test $? -eq 2
"$QB" compare --baseline base.json --db nope.db >/dev/null 2>&1; check "missing store exits 2" test $? -eq 2
"$QB" compare --db "$DB" >/dev/null 2>&1; check "compare without --baseline exits 2" test $? -eq 2

finish
