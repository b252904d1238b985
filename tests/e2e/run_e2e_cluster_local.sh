#!/usr/bin/env bash
# Scale-out without a scheduler: `qbench submit --backend local --jobs 2` runs cluster_tiny.yaml
# (10 cells, 2 baselines, divnet's fails) as the same two arrays of tasks and shards as Slurm
# would; a Ctrl-C stops it between batches with nothing partial, `--resume` completes it (the QAT
# cell from its epoch checkpoint), and the merged store equals a plain `qbench run`, cell by cell.
# Then merge robustness: `qbench merge` killed with SIGKILL at random points never corrupts the
# target and a rerun completes it with no duplicated result and no half-merged shard, while
# `qbench report` reads the same store.
# usage: run_e2e_cluster_local.sh QBENCH_BINARY E2E_DIR WORK_DIR
set -u
QB=$1; HERE=$2; WORK=$3
DB=$WORK/merged.db; CACHE=$WORK/plain_cache
source "$HERE/harness.sh"
SECONDS=0

/usr/bin/python3 "$HERE/make_divzero_onnx.py" "$WORK/divzero.onnx" || { echo "FAIL - cannot write divzero.onnx"; exit 1; }
sed "s#@DIVZERO@#$WORK/divzero.onnx#" "$HERE/cluster_tiny.yaml" > cluster.yaml
"$QB" run cluster.yaml --db plain.db --cache-dir "$CACHE" --no-progress 2>plain.log; rc=$?
check "plain run exits 1 (divnet fails)" test $rc -eq 1

# Bad input: exit 2, nothing written.
err=$("$QB" submit cluster.yaml --workdir "$WORK/bad" --partition gpu 2>&1); rc=$?
check "a Slurm option without --backend slurm exits 2" test $rc -eq 2 -a ! -e "$WORK/bad"
check "naming the option" has "$err" "--partition: a Slurm option; add --backend slurm"
sed "s#$WORK/divzero.onnx#divzero.onnx#" cluster.yaml > relative.yaml
err=$("$QB" submit relative.yaml --workdir "$WORK/bad" 2>&1); rc=$?
check "a matrix with a path relative to its folder exits 2" test $rc -eq 2 -a ! -e "$WORK/bad"
check "and says to make it absolute" has "$err" "its copy in the work directory cannot be used" "make it absolute"
err=$("$QB" status --workdir "$WORK/nowhere" 2>&1); rc=$?
check "status of a folder without a plan exits 2" test $rc -eq 2
check "naming it" has "$err" "--workdir $WORK/nowhere: no plan here"

# Local backend, interrupted with Ctrl-C while the QAT cells train.
WD=$WORK/wd
"$QB" submit cluster.yaml --workdir "$WD" --jobs 2 >submit1.out 2>submit1.log &
pid=$!
qkey=""
for _ in $(seq 600); do
  [ -z "$qkey" ] && [ -s "$WD/submissions/001/cells.keys" ] && qkey=$(sed -n 4p "$WD/submissions/001/cells.keys")
  [ -n "$qkey" ] && ls "$WD/cache/cells/$qkey"/epoch_*.pt >/dev/null 2>&1 && break
  sleep 0.05
done
st=$("$QB" status --workdir "$WD")
kill -INT $pid
wait $pid; rc=$?
check "the interrupted local submission exits 130" test $rc -eq 130
check "status showed the QAT task running (local job, host, elapsed)" \
  grep -q "^RUNNING  ${qkey:0:12} .*local $(hostname)-$pid on $(hostname), [0-9:]* elapsed" <<<"$st"
check "and the cells not started yet as pending" grep -q '^PENDING .*(waiting for a local process)' <<<"$st"
check "the interrupted cell published nothing" bash -c "! ls '$WD/shards/$qkey'.*.db 2>/dev/null"
check "no temporary left in shards/" test -z "$(ls -A "$WD/shards" | grep '^\.')"
check "its QAT checkpoint stays" bash -c "ls '$WD/cache/cells/$qkey'/epoch_*.pt"
check "its run stopped between batches" has "$(cat submit1.log)" "INTERRUPTED" "nothing published"
st=$("$QB" status --workdir "$WD")
check "status: the interrupted cell is missing" grep -q "^MISSING  ${qkey:0:12} .*no result and nothing queued" <<<"$st"
check "status: no cell left running or pending" has "$st" "running 0, pending 0"

out=$("$QB" submit --workdir "$WD" --resume 2>resume.log); rc=$?
echo "$out"
check "resume exits 1 (divnet's cells fail again)" test $rc -eq 1
check "the QAT cell continued from its checkpoint" has "$(cat resume.log)" "resuming QAT of ${qkey:0:12} after epoch"
st=$("$QB" status --workdir "$WD")
check "status: 5 done, 5 failed" has "$st" "done 5, failed 5, running 0, pending 0, missing 0"
check "shards record the local scheduler and task" \
  test "$(sqlite3 "$(ls "$WD"/shards/*.db | head -1)" "select scheduler||'/'||(job_id<>'')||'/'||(array_task_id<>'') from runs")" = "local/1/1"

out=$("$QB" merge "$WD" --into "$DB"); rc=$?
echo "$out"
check "merge exits 0" test $rc -eq 0
latest="(select max(id) from runs)"
sqlite3 plain.db "select cell_key, status, coalesce(printf('%.4f', top1), '-') from results order by cell_key" > plain.txt
sqlite3 "$DB" "select rc.cell_key, r.status, coalesce(printf('%.4f', r.top1), '-') from run_cells rc join results r on r.id=rc.result_id
               where rc.run_id=$latest order by rc.cell_key" > merged.txt
check "the local backend's merged top-1 and status equal the plain run, cell by cell" diff plain.txt merged.txt
check "every ok cell has exactly one ok result" \
  test -z "$(sqlite3 "$DB" "select cell_key from results where status='ok' group by cell_key having count(*) <> 1")"

ckey_first=$(sed -n 1p "$WD/submissions/001/cells.keys")

# Publication is atomic: a task killed after its shard is copied, before the rename, leaves only
# a hidden temporary (QBENCH_TEST_FAULT kills it there); the cell is missing, not half there.
cp -r "$WD" fault
rm fault/shards/"$ckey_first".*.db
QBENCH_TEST_FAULT=shard-before-rename:$ckey_first "$QB" submit --workdir fault --resume >/dev/null 2>fault.log; rc=$?
check "the resume with the fault exits 1" test $rc -eq 1
check "the fault killed the task at the publication" has "$(cat fault.log)" "QBENCH_TEST_FAULT=shard-before-rename" "cells task 0 (" "exit 137"
check "no shard for the cell, a hidden temporary instead" \
  test "$(ls fault/shards | grep -c "^$ckey_first")" -eq 0 -a "$(ls -A fault/shards | grep -c '^\.')" -eq 1
st=$("$QB" status --workdir fault)
check "status: the cell is missing and the temporary is noted" has "$st" "missing 1" "1 temporary file(s)"
"$QB" submit --workdir fault --resume >/dev/null 2>&1
check "resume publishes it" has "$("$QB" status --workdir fault)" "done 5, failed 5"
"$QB" merge fault --into fault.db >/dev/null
check "and merge ignores the temporary" test "$(sqlite3 fault.db "select count(*) from results where cell_key = '$ckey_first'")" = 1

# A conflict: the same cell with two different ok results (a later copy of a shard with another
# top-1). Both rows are kept, the merged run uses the earliest, the output and the report say so.
ckey=$ckey_first
cp -r "$WD" conflict
cp "$(ls conflict/shards/$ckey.*.db | head -1)" conflict/shards/zz-conflict.db
sqlite3 conflict/shards/zz-conflict.db "update runs set uid = lower(hex(randomblob(16)));
  update results set top1 = top1 - 10, finished_at = '2099-01-01T00:00:00.000Z'"
out=$("$QB" merge conflict --into conflict.db); rc=$?
check "merge with a conflict exits 0" test $rc -eq 0
check "and lists the conflict with both results" has "$out" "CONFLICT ${ckey:0:12}" "2 ok results differ; the merged run uses result" "2099-01-01T00:00:00.000Z"
check "both ok rows are kept" test "$(sqlite3 conflict.db "select count(*) from results where cell_key = '$ckey' and status = 'ok'")" = 2
check "the merged run points at the earliest (the plain run's top-1)" \
  test "$(sqlite3 conflict.db "select printf('%.4f', r.top1) from run_cells rc join results r on r.id = rc.result_id
           where rc.run_id = (select max(id) from runs) and rc.cell_key = '$ckey'")" = "$(sqlite3 plain.db "select printf('%.4f', top1) from results where cell_key = '$ckey'")"
"$QB" report --db conflict.db --format json --out conflict.json
check "the JSON report lists the conflict (run.environment.merge.conflicts)" /usr/bin/python3 -c "
import json; c = json.load(open('conflict.json'))['run']['environment']['merge']['conflicts']
assert len(c) == 1 and c[0]['cell_key'] == '$ckey' and len(c[0]['results']) == 2, c"

# Merge robustness on many shards: 240 copies of the work directory's shards, each its own run.
counts() { sqlite3 "$1" "select (select count(*) from runs)||' '||(select count(*) from results)||' '||(select count(*) from run_cells)||' '||(select count(*) from cell_details)"; }
cp -r "$WD" big
shards=(big/shards/*.db)
for i in $(seq 240); do
  src=${shards[$((i % ${#shards[@]}))]}
  dst=big/shards/$(basename "$src" .db).copy$i.db
  cp "$src" "$dst"
  sqlite3 "$dst" "update runs set uid = lower(hex(randomblob(16)))"
done
n_shards=$(ls big/shards/*.db | wc -l)
"$QB" merge big --into clean.db >/dev/null; check "a clean merge of $n_shards shards exits 0" test $? -eq 0
clean=$(counts clean.db)
"$QB" merge "$WD" --into live.db >/dev/null  # the store the reports read from the start
reports_failed=0
( while [ ! -e stop_reports ]; do "$QB" report --db live.db --format csv >/dev/null 2>>reports.err || echo x >> reports.failed; done ) &
reader=$!
partial=0
for i in $(seq 12); do
  "$QB" merge big --into live.db >/dev/null 2>&1 &
  m=$!
  sleep "0.$(printf '%02d' $((RANDOM % 70 + 5)))"
  kill -9 $m 2>/dev/null; wait $m 2>/dev/null
  ok_db=$(sqlite3 live.db 'pragma integrity_check')
  [ "$ok_db" = ok ] || bad "integrity_check after kill $i: $ok_db"
  half=$(sqlite3 live.db "select count(*) from runs u where scheduler = 'local' and
           ((select count(*) from results where run_id = u.id) <> 1 or (select count(*) from run_cells where run_id = u.id) <> 1)")
  [ "$half" = 0 ] || bad "after kill $i: $half run(s) merged half way"
  n=$(sqlite3 live.db "select count(*) from runs where scheduler = 'local'")
  [ "$n" -gt 10 ] && [ "$n" -lt "$n_shards" ] && partial=$((partial + 1))
done
echo "# $partial of 12 kills landed in the middle of the shards"
check "after 12 kills -9 the store is intact (integrity_check) and holds no half-merged shard" test "$fails" -eq 0
"$QB" merge big --into live.db >/dev/null; check "the rerun completes (exit 0)" test $? -eq 0
touch stop_reports; wait $reader
check "qbench report read the store throughout without an error" test ! -e reports.failed
# live.db also holds the merged runs of the first merge and of killed attempts that got that far.
check "the rerun leaves every shard exactly once (results as in a clean merge: $(counts clean.db) / $(counts live.db))" \
  test "$(sqlite3 live.db 'select count(*) from results')" = "$(sqlite3 clean.db 'select count(*) from results')"
check "no run uid twice, no result twice" \
  test "$(sqlite3 live.db "select count(*) from (select u.uid, r.cell_key from results r join runs u on u.id = r.run_id group by 1, 2 having count(*) > 1)")" = 0
"$QB" merge big --into clean.db >/dev/null
check "merging again changes nothing ($clean)" test "$(counts clean.db)" = "$clean"
echo "# e2e.cluster_local took $SECONDS s"
finish
