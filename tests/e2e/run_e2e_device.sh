#!/usr/bin/env bash
# `qbench run --device` end to end, on any machine: a device that is not there exits 2 with one
# line naming the flag and leaves the store untouched; --device cpu gives exactly the numbers of
# a run without the flag; the device is recorded in the run's provenance and in every row.
# (run_e2e_cuda.sh runs the same matrix on a GPU, where there is one.)
# usage: run_e2e_device.sh QBENCH_BINARY E2E_DIR WORK_DIR
set -u
QB=$1; HERE=$2; WORK=$3
DB=$WORK/default.db; CACHE=$WORK/cache_default
source "$(dirname "$0")/harness.sh"
M=$HERE/device_tiny.yaml

# The default (no --device) run: the reference numbers.
run "$M" --threads 1 2>default.log; rc=$?
check "run without --device exits 0" test $rc -eq 0
check "3 ok rows" test "$(sql "select count(*) from results where status='ok'")" = 3

# A device that is not there: exit 2, one line naming the flag, the store not touched.
store_sum() { cat "$DB" "$DB-wal" 2>/dev/null | sha256sum; }
before=$(store_sum)
cuda_rc=0
"$QB" run "$M" --device cuda --dry-run --db "$WORK/probe.db" >/dev/null 2>probe.log || cuda_rc=$?
if [ "$cuda_rc" -ne 0 ]; then
  # No GPU visible (CI, the CPU build machine): plain `cuda` is refused.
  err=$(run "$M" --threads 1 --device cuda 2>&1 >/dev/null); rc=$?
  check "--device cuda without a GPU exits 2 ($rc)" test $rc -eq 2
  check "with one line" test "$(grep -c . <<<"$err")" -eq 1
  check "naming the flag and why ($err)" grep -q "^qbench: error: --device cuda: CUDA is not available (this LibTorch build has no CUDA support, or no CUDA device is visible)" <<<"$err"
  check "the existing store is untouched" test "$(store_sum)" = "$before"
  "$QB" run "$M" --device cuda --db "$WORK/new.db" --cache-dir "$WORK/cache_new" --no-progress 2>/dev/null; rc=$?
  check "a new store is not even created ($rc)" bash -c "[ $rc -eq 2 ] && [ ! -e '$WORK/new.db' ] && [ ! -e '$WORK/cache_new' ]"
  "$QB" run "$M" --device cuda --dry-run --db "$DB" >/dev/null 2>&1; rc=$?
  check "--dry-run checks the device too ($rc)" test $rc -eq 2
fi
err=$(run "$M" --threads 1 --device cuda:99 2>&1 >/dev/null); rc=$?
check "--device cuda:99 exits 2 on any machine ($rc)" test $rc -eq 2
check "and names the flag ($err)" grep -q "^qbench: error: --device cuda:99: " <<<"$err"
err=$(run "$M" --threads 1 --device gpu 2>&1 >/dev/null); rc=$?
check "a malformed --device exits 2 ($rc)" test $rc -eq 2
check "with the accepted values ($err)" grep -q "^qbench: error: --device: expected cpu, cuda, cuda:N or auto, got 'gpu' (did you mean: cuda?)" <<<"$err"
check "the store is still untouched" test "$(store_sum)" = "$before"
check "still one run in it" test "$(sql "select count(*) from runs")" = 1

# --device cpu: the same numbers as no flag, from scratch (own store and baseline cache).
"$QB" run "$M" --threads 1 --device cpu --db "$WORK/cpu.db" --cache-dir "$WORK/cache_cpu" --no-progress 2>cpu.log; rc=$?
check "--device cpu exits 0" test $rc -eq 0
rows() { sqlite3 -batch -noheader "$1" "select group_concat(cell_key || '=' || top1 || '/' || top5 || '/' || loss, ' ') from (select * from results order by cell_key)"; }
a=$(rows "$DB"); b=$(rows "$WORK/cpu.db")
check "--device cpu gives exactly the default run's top-1, top-5 and loss" test "$a" = "$b"
check "(and the rows are there: $a)" test "$(wc -w <<<"$a")" -eq 3
check "latency sources unchanged on the CPU" test "$(sql "select group_concat(latency_source, ',') from (select latency_source from results order by kind, algorithm)")" = "measured-fp32,measured-fakequant,measured-fakequant"
check "no latency device rows on the CPU" test "$(sql "select count(*) from cell_details where section='latency'")" = 0

# Provenance: the run, its environment and every row name the device.
for db in "$DB" "$WORK/cpu.db"; do
  check "$(basename "$db"): runs.device is cpu" test "$(sqlite3 "$db" "select group_concat(device) from runs")" = cpu
  check "$(basename "$db"): every row's device is cpu" test "$(sqlite3 "$db" "select count(*) from results where device='cpu'")" = 3
  check "$(basename "$db"): environment_json names the device" test "$(sqlite3 "$db" "select json_extract(environment_json, '\$.device') from runs")" = cpu
  check "$(basename "$db"): environment_json records the allocator setting" test "$(sqlite3 "$db" "select substr(json_extract(environment_json, '\$.allocator'), 1, 6) from runs")" = "glibc:"
done
# auto: cuda:0 where LibTorch sees a GPU, else cpu; recorded even when every cell is reused.
want=cpu; [ "$cuda_rc" -eq 0 ] && want=cuda:0
run "$M" --threads 1 --device auto 2>auto.log; rc=$?
check "--device auto exits 0 (every cell already finished)" bash -c "[ $rc -eq 0 ] && grep -q '0 ran, 3 skipped' auto.log"
check "--device auto recorded as $want" test "$(sql "select device from runs order by id desc limit 1")" = "$want"
check "the log names the device" grep -q "threads, device $want" auto.log
# The device is no part of a cell key: the keys of a dry run are the same whatever --device says.
k1=$("$QB" run "$M" --dry-run --db "$DB" | awk 'NR>2{print $2}'); k2=$("$QB" run "$M" --dry-run --device auto --db "$DB" | awk 'NR>2{print $2}')
check "cell keys do not depend on --device" bash -c "[ -n '$k1' ] && [ '$k1' = '$k2' ]"

finish
