#!/usr/bin/env bash
# The tiny matrix on a CUDA GPU against the CPU. Needs a GPU that LibTorch sees: without one
# (CI, the CPU build machine) it exits 77, which ctest reports as skipped.
# usage: run_e2e_cuda.sh QBENCH_BINARY E2E_DIR WORK_DIR
set -u
QB=$1; HERE=$2; WORK=$3
DB=$WORK/cuda.db; CACHE=$WORK/cache_cuda
M=$HERE/device_tiny.yaml
# Skip only for the one refusal that means "no GPU here" (and never where QBENCH_EXPECT_CUDA is
# set); any other failure of the probe is a failure.
probe=$("$QB" run "$M" --device cuda --dry-run --db "$WORK.probe.db" 2>&1 >/dev/null); probe_rc=$?
if [ $probe_rc -ne 0 ]; then
  if [ $probe_rc -eq 2 ] && grep -q "CUDA is not available" <<<"$probe" && [ -z "${QBENCH_EXPECT_CUDA:-}" ]; then
    echo "skipped: no CUDA device visible to this qbench ($("$QB" --version))"
    exit 77
  fi
  echo "FAIL: --device cuda probe exited $probe_rc: $probe"
  exit 1
fi
source "$(dirname "$0")/harness.sh"

run "$M" --threads 1 --device cuda 2>cuda.log; rc=$?
check "--device cuda exits 0" test $rc -eq 0
check "3 ok rows" test "$(sql "select count(*) from results where status='ok'")" = 3
"$QB" run "$M" --threads 1 --db "$WORK/cpu.db" --cache-dir "$WORK/cache_cpu" --no-progress 2>cpu.log; rc=$?
check "the CPU run exits 0" test $rc -eq 0
# Same seeds and recipes: the GPU's float arithmetic differs in rounding only, so every cell's
# top-1 lands within a few points of the CPU's (500 test images: one image is 0.2 points; the
# two trainings drift apart over 3 epochs, so the band is 5 points).
while IFS='|' read -r key top1; do
  ref=$(sqlite3 "$WORK/cpu.db" "select top1 from results where cell_key='$key'")
  check "cell ${key:0:12}: top-1 on cuda $top1 within 5 points of the CPU's $ref" awk "BEGIN{d=$top1-$ref; if(d<0)d=-d; exit !(\"$ref\" != \"\" && d <= 5)}"
done < <(sql "select cell_key, top1 from results order by cell_key")
check "runs.device is cuda:0" test "$(sql "select device from runs")" = cuda:0
check "every row's device is cuda:0" test "$(sql "select count(*) from results where device='cuda:0'")" = 3
# The GPU's name is attributed only when the driver lists one GPU (or CUDA_DEVICE_ORDER says how
# CUDA indices map to the driver's list).
if [ "$(sql "select json_array_length(json_extract(environment_json, '\$.nvidia_gpus')) from runs")" = 1 ]; then
  check "environment_json names the GPU" test -n "$(sql "select json_extract(environment_json, '\$.gpu') from runs")"
fi
check "cuDNN deterministic, no TF32" test "$(sql "select json_extract(environment_json, '\$.cudnn_deterministic') || json_extract(environment_json, '\$.allow_tf32') from runs")" = 10
check "GPU latency says so" test "$(sql "select group_concat(latency_source, ',') from (select latency_source from results order by kind, algorithm)")" = "measured-fp32-cuda,measured-fakequant-cuda,measured-fakequant-cuda"
check "with a detail row naming the device" test "$(sql "select count(*) from cell_details where section='latency' and name='cuda:0' and text like 'measured on cuda:0%'")" = 3
md=$("$QB" report --db "$DB"); check "the report shows the device" grep -q "device: cuda:0" <<<"$md"
check "and explains the GPU latency source" grep -q "measured-fakequant-cuda: " <<<"$md"

# The baseline trained on the GPU is cached from CPU tensors: the CPU loads it and evaluates it
# to (nearly) the GPU's top-1.
"$QB" run "$M" --threads 1 --db "$WORK/cross.db" --cache-dir "$CACHE" --no-progress 2>cross.log; rc=$?
check "a CPU run from the GPU's cache exits 0" test $rc -eq 0
check "it trains nothing" bash -c "! grep -q 'training FP32 baseline' cross.log"
g=$(sql "select top1 from results where kind='fp32'"); c=$(sqlite3 "$WORK/cross.db" "select top1 from results where kind='fp32'")
check "the GPU-trained baseline evaluates on the CPU to within 1 point ($c vs $g)" awk "BEGIN{d=$c-$g; if(d<0)d=-d; exit !(d <= 1)}"

# Rerun on the GPU: reported, not asserted (cuDNN is deterministic, but atomics in some backward
# kernels are not).
run "$M" --threads 1 --device cuda --force 2>cuda2.log
echo "info: forced rerun on cuda: $(sql "select group_concat(top1, ',') from (select top1 from results where run_id=(select max(id) from runs) order by cell_key)") vs $(sql "select group_concat(top1, ',') from (select top1 from results where run_id=1 order by cell_key)")"

finish
