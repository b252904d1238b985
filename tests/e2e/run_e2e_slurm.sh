#!/usr/bin/env bash
# Scale-out on a real Slurm cluster: a private single-node cluster (slurm_cluster.sh) runs the
# 10-cell matrix cluster_tiny.yaml as two job arrays. One baseline fails (divnet divides by zero)
# and one QAT task is cancelled between its epoch checkpoints; `qbench status` shows both;
# `qbench submit --resume` completes what can complete (the QAT cell continues from its
# checkpoint); the merged store holds every cell once and its top-1 equals, cell by cell, a plain
# `qbench run` of the same matrix at the same thread count. Needs slurm-wlm and munge
# (scripts/install-deps.sh installs them): it fails, never skips, where they are missing.
# usage: run_e2e_slurm.sh QBENCH_BINARY E2E_DIR WORK_DIR
set -u
QB=$1; HERE=$2; WORK=$3
if [ "$(id -u)" -ne 0 ]; then
  echo "skip: slurmd launches jobs as root here and needs root (CI runs as root, so it never skips there)"
  exit 77
fi
DB=$WORK/merged.db; CACHE=$WORK/plain_cache
source "$(dirname "$0")/harness.sh"
source "$HERE/slurm_cluster.sh"
trap slurm_down EXIT
SECONDS=0
for tool in munged slurmctld slurmd sbatch squeue scontrol scancel; do
  command -v $tool >/dev/null || { echo "FAIL - $tool is not installed (scripts/install-deps.sh installs slurm-wlm and munge)"; exit 1; }
done

/usr/bin/python3 "$HERE/make_divzero_onnx.py" "$WORK/divzero.onnx" || { echo "FAIL - cannot write divzero.onnx"; exit 1; }
sed "s#@DIVZERO@#$WORK/divzero.onnx#" "$HERE/cluster_tiny.yaml" > cluster.yaml

# The reference: a plain run of the same matrix (exit 1: divnet's five cells fail).
"$QB" run cluster.yaml --db plain.db --cache-dir "$CACHE" --no-progress 2>plain.log; rc=$?
check "plain run exits 1 (divnet fails)" test $rc -eq 1
check "plain run: 5 ok, 5 failed" test "$(sqlite3 plain.db "select group_concat(n) from (select count(*) n from results group by status order by status)")" = "5,5"

t0=$SECONDS
slurm_up "$WORK/slurm" || { echo "FAIL - the Slurm cluster did not come up"; exit 1; }
echo "# cluster up in $((SECONDS - t0)) s"
check "sinfo sees one idle node" test "$(sinfo -h -o '%D %t')" = "1 idle"

# Bad scheduler options exit 2 before anything is written (sbatch --test-only refuses them).
err=$("$QB" submit cluster.yaml --backend slurm --workdir "$WORK/bad" --partition nosuch 2>&1); rc=$?
check "an unknown partition exits 2" test $rc -eq 2
check "and says sbatch refuses it" has "$err" "--backend slurm: sbatch refuses these options" "nosuch"
check "and writes no work directory" test ! -e "$WORK/bad"
err=$("$QB" submit cluster.yaml --backend slurm --workdir "$WORK/bad" --sbatch-arg=--mem=900000 2>&1); rc=$?
check "a memory request the node cannot meet exits 2" test $rc -eq 2
check "and writes nothing" test ! -e "$WORK/bad"

# Submit: a baseline array, then the cell array after it (afterany).
WD=$WORK/wd
out=$("$QB" submit cluster.yaml --backend slurm --workdir "$WD" --partition debug --time 00:10:00 \
        --array-parallelism 2 --requeue 2>submit1.log); rc=$?
st0=$("$QB" status --workdir "$WD" 2>&1)
# Once the scheduler has looked at them: a baseline running, the cells held by their dependency.
for _ in $(seq 50); do
  stq=$("$QB" status --workdir "$WD" 2>&1)
  grep -q '^PENDING .*(Dependency)' <<<"$stq" && grep -q '^RUNNING .*fp32 seed0' <<<"$stq" && break
  sleep 0.1
done
echo "$out"
check "submit exits 0" test $rc -eq 0
bjob=$(sed -n 's/.*baseline task(s) as job \([0-9]*\).*/\1/p' <<<"$out")
cjob=$(sed -n 's/.*cell task(s) as job \([0-9]*\).*/\1/p' <<<"$out")
check "two arrays queued (baselines $bjob, cells $cjob)" test -n "$bjob" -a -n "$cjob"
check "the cell array depends on the baselines with afterany" has "$out" "(afterany:$bjob)"
check "scontrol shows the dependency" has "$(scontrol show job -o "$cjob" | head -1)" "Dependency=afterany:${bjob}"
check "scripts kept in the work directory" test -r "$WD/submissions/001/baselines.sbatch" -a -r "$WD/submissions/001/cells.sbatch"
script=$(cat "$WD/submissions/001/cells.sbatch")
check "sbatch lines: array with parallelism, CPUs per task, partition, time, requeue" \
  has "$script" "#SBATCH --array=0-7%2" "#SBATCH --cpus-per-task=1" "#SBATCH --partition=debug" "#SBATCH --time=00:10:00" "#SBATCH --requeue"
check "the task line runs qbench task for the array index" has "$script" 'task --workdir' '--index "$SLURM_ARRAY_TASK_ID"'
check "status right after submit: every cell queued" grep -Eq '^done 0, failed 0, running [0-9]+, pending [0-9]+, missing 0$' <<<"$st0"
check "then a baseline running and the cells pending on their dependency" \
  bash -c "grep -q '^PENDING .*slurm job ${cjob}_[0-9] (Dependency)' <<<'$stq' && grep -q '^RUNNING .*fp32 seed0 .*slurm job ${bjob}_[01] on localhost, [0-9:]* elapsed' <<<'$stq'"

# Cancel the resnet8 lsq w4a4 task (cell task 3) once its first epoch checkpoint exists.
qkey=$(sed -n 4p "$WD/submissions/001/cells.keys")
check "task 3 is a QAT cell" has "$(grep -A3 "\"key\": \"$qkey\"" "$WD/plan.json")" '"kind": "qat"'
for _ in $(seq 1200); do ls "$WD/cache/cells/$qkey"/epoch_*.pt >/dev/null 2>&1 && break; sleep 0.05; done
st1=$("$QB" status --workdir "$WD" 2>&1)
scancel "${cjob}_3"
check "a QAT epoch checkpoint was written before the cancel" bash -c "ls '$WD/cache/cells/$qkey'/epoch_*.pt"
check "status showed the QAT task running with node and elapsed time" \
  grep -q "^RUNNING  ${qkey:0:12} .*slurm job ${cjob}_3 on localhost, [0-9:]* elapsed" <<<"$st1"

wait_queue() {
  local i
  for i in $(seq 1800); do
    [ -z "$(squeue -h -t PD,R,CG,CF,S -j "$1" 2>/dev/null)" ] && return 0
    sleep 0.1
  done
  return 1
}
check "first submission finished" wait_queue "$bjob,$cjob"
check "the cancelled task ended CANCELLED (squeue -t all)" \
  test "$(squeue -h -r -t all -j "$cjob" -o '%K %T' | awk '$1==3 {print $2}')" = CANCELLED
log3=$(cat "$WD/logs/cells-${cjob}_3.out")
check "the cancelled task's run stopped between batches, nothing published" has "$log3" "INTERRUPTED" "interrupted" "nothing published"
check "no shard for the cancelled cell" bash -c "! ls '$WD/shards/$qkey'.*.db 2>/dev/null"
check "its epoch checkpoint stays for the next attempt" bash -c "ls '$WD/cache/cells/$qkey'/epoch_*.pt"
check "every other task wrote its output (not only an exit code)" \
  test "$(grep -l 'task: published' "$WD"/logs/*.out | wc -l)" -eq 9

st=$("$QB" status --workdir "$WD"); rc=$?
echo "$st"
check "status exits 0" test $rc -eq 0
check "status counts: 4 done, 5 failed, 1 missing" has "$st" "done 4, failed 5, running 0, pending 0, missing 1"
check "status names the cancelled task" grep -q "^MISSING  ${qkey:0:12} .*ended CANCELLED.*slurm job ${cjob}_3" <<<"$st"
check "status shows the failed baseline with its error" grep -q '^FAILED   [0-9a-f]* *divnet fp32 seed0 .*training diverged: loss is' <<<"$st"
check "and its four cells failed with the baseline's error" \
  test "$(grep -c '^FAILED .*the FP32 baseline (divnet, seed 0) failed (slurm job .*training diverged' <<<"$st")" -eq 4
check "status shows done cells with top-1 and node" grep -q "^DONE .*resnet8-w0.5 fp32 seed0 .*top-1 [0-9.]*  slurm job ${bjob}_0 ([0-9]*) on $(hostname)" <<<"$st"

# Resume: the cells without an ok result (divnet's five, which fail again, and the cancelled one).
out=$("$QB" submit --workdir "$WD" --resume 2>submit2.log); rc=$?
echo "$out"
check "resume exits 0" test $rc -eq 0
check "resume resubmits 1 baseline and 5 cells, skips 4 done" has "$out" "1 baseline task(s) as job" "5 cell task(s) as job" "skipped 4 cell(s) with an ok result"
bjob2=$(sed -n 's/.*baseline task(s) as job \([0-9]*\).*/\1/p' <<<"$out")
cjob2=$(sed -n 's/.*cell task(s) as job \([0-9]*\).*/\1/p' <<<"$out")
again=$("$QB" submit --workdir "$WD" --resume 2>/dev/null)
check "a second resume while they are queued submits nothing" has "$again" "nothing to submit: 4 cell(s) done, 6 queued or running"
check "the resubmitted scripts keep the options (partition, time, requeue)" \
  has "$(cat "$WD/submissions/002/cells.sbatch")" "#SBATCH --partition=debug" "#SBATCH --time=00:10:00" "#SBATCH --requeue" "#SBATCH --array=0-4%2"
check "second submission finished" wait_queue "$bjob2,$cjob2"
qlog=$(cat "$WD"/logs/cells-${cjob2}_*.out)
check "the QAT cell continued from its epoch checkpoint" has "$qlog" "resuming QAT of ${qkey:0:12} after epoch"
st=$("$QB" status --workdir "$WD")
check "status after resume: 5 done, 5 failed, 0 missing" has "$st" "done 5, failed 5, running 0, pending 0, missing 0"
check "failed cells show two attempts" test "$(grep -c '^FAILED .*2 attempts' <<<"$st")" -eq 5

# Merge: every shard into one store, twice (idempotent), then the report.
counts() { sqlite3 "$DB" "select (select count(*) from runs)||' '||(select count(*) from results)||' '||(select count(*) from run_cells)||' '||(select count(*) from cell_details)"; }
out=$("$QB" merge "$WD" --into "$DB"); rc=$?
echo "$out"
check "merge exits 0" test $rc -eq 0
c1=$(counts)
out2=$("$QB" merge "$WD" --into "$DB"); rc=$?
check "merging again exits 0 and adds nothing ($c1 / $(counts))" test $rc -eq 0 -a "$c1" = "$(counts)"
check "and says so" has "$out2" "0 new" "merged run already recorded"
check "integrity_check ok" test "$(sqlite3 "$DB" 'pragma integrity_check')" = ok
latest="(select max(id) from runs)"
check "the merged run plans every cell exactly once" \
  test "$(sqlite3 "$DB" "select count(*)||' '||count(distinct cell_key) from run_cells where run_id=$latest")" = "10 10"
check "every ok cell has exactly one ok result" \
  test -z "$(sqlite3 "$DB" "select cell_key from results where status='ok' group by cell_key having count(*) <> 1")"
check "5 ok cells" test "$(sqlite3 "$DB" "select count(distinct cell_key) from results where status='ok'")" = 5
check "every row of the merged run comes from a Slurm task (job, array task, host recorded)" \
  test "$(sqlite3 "$DB" "select count(*) from run_cells rc join results r on r.id=rc.result_id join runs u on u.id=r.run_id
           where rc.run_id=$latest and u.scheduler='slurm' and u.job_id<>'' and u.array_job_id<>'' and u.array_task_id<>'' and u.host<>''")" = 10
sqlite3 plain.db "select cell_key, status, coalesce(printf('%.4f', top1), '-') from results order by cell_key" > plain.txt
sqlite3 "$DB" "select rc.cell_key, r.status, coalesce(printf('%.4f', r.top1), '-') from run_cells rc join results r on r.id=rc.result_id
               where rc.run_id=$latest order by rc.cell_key" > merged.txt
check "top-1 and status equal the plain run, cell by cell" diff plain.txt merged.txt
md=$("$QB" report --db "$DB" --run latest --format markdown); rc=$?
check "report --run latest exits 0 and shows the whole matrix" has "$md" "10 planned: 5 ok, 5 failed, 0 pending"
"$QB" report --db "$DB" --format html --out "$WORK/academic.html"; rc=$?
check "html report written" test $rc -eq 0 -a -s "$WORK/academic.html"

# The generated scripts are re-submittable by hand: the baseline array again does nothing for the
# baseline that is done and records the divnet baseline's failure once more.
hjob=$(sbatch --parsable "$WD/submissions/001/baselines.sbatch"); rc=$?
check "sbatch of a kept script by hand is accepted (job $hjob)" test $rc -eq 0 -a -n "$hjob"
check "and finishes" wait_queue "$hjob"
check "its task for the finished baseline does nothing" has "$(cat "$WD/logs/baselines-${hjob}_0.out")" "already done" "nothing to run"
check "status: still 5 done, 5 failed" has "$("$QB" status --workdir "$WD")" "done 5, failed 5, running 0, pending 0, missing 0"

pids="${SLURM_PIDS[*]}"
slurm_down
check "the daemons are stopped" bash -c "! kill -0 $pids 2>/dev/null"
echo "# e2e.slurm took $SECONDS s"
finish
