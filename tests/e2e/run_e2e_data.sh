#!/usr/bin/env bash
# End-to-end checks of the data layer through the built qbench binary: the synthetic dataset, an
# image folder of PPM files written here (class folders, decoding, background loading), dataset
# options in the cell key, option errors, determinism under --force, and a corrupt image failing
# its cells with the file named.
# usage: run_e2e_data.sh QBENCH_BINARY E2E_DIR WORK_DIR
set -u
QB=$1; HERE=$2; WORK=$3
DB=$WORK/e2e.db; CACHE=$WORK/cache
source "$(dirname "$0")/harness.sh"

out=$("$QB" list datasets 2>&1)
for d in fashion-mnist mnist cifar10 cifar100 imagefolder synthetic; do
  check "list datasets shows $d" grep -q "^ *$d" <<<"$out"
done

err=$("$QB" run "$HERE/bad_dataset_option.yaml" --db "$DB" 2>&1); rc=$?
check "an option the dataset does not read exits 2" test $rc -eq 2
check "and names file:line:col and the key" grep -q "bad_dataset_option.yaml:2:[0-9]*: dataset.image_size: dataset 'fashion-mnist' has no option image_size" <<<"$err"

# Synthetic: the options are part of the cell key.
k1=$(run "$HERE/synthetic.yaml" --dry-run | awk '$5=="fp32"{print $2}')
k2=$(run "$HERE/synthetic.yaml" --dry-run --size bigger | awk '$5=="fp32"{print $2}')
check "dry-run lists the baseline key ($k1)" test -n "$k1"
check "another image_size gives another key ($k2)" bash -c "[ -n '$k2' ] && [ '$k1' != '$k2' ]"

run "$HERE/synthetic.yaml" 2>syn1.log; rc=$?
check "synthetic run exits 0" test $rc -eq 0
fp32=$(sql "select top1 from results where kind='fp32' and dataset='synthetic'")
w8=$(sql "select top1 from results where kind='ptq' and dataset='synthetic'")
check "synthetic FP32 top-1 far above chance 25% (got $fp32)" awk "BEGIN{exit !(\"$fp32\" != \"\" && $fp32 > 60)}"
check "synthetic w8a8 within 5 points of FP32 ($w8 vs $fp32)" awk "BEGIN{d=$fp32-$w8; if(d<0)d=-d; exit !(\"$w8\" != \"\" && d < 5)}"
check "synthetic options recorded in the resolved configuration" \
  test "$(sql "select count(*) from results where dataset='synthetic' and config_json like '%\"image_size\":16%' and config_json like '%\"classes\":4%'")" = 2
run "$HERE/synthetic.yaml" --force 2>syn2.log
again=$(sql "select group_concat(top1, ',') from (select top1 from results where dataset='synthetic' order by id desc limit 2)")
first=$(sql "select group_concat(top1, ',') from (select top1 from results where dataset='synthetic' order by id asc limit 2)")
check "forced synthetic rerun gives identical top-1 ($first / $again)" test "$(echo $first | tr , '\n' | sort)" = "$(echo $again | tr , '\n' | sort)"

# An image folder of 16x16 PPM images, three classes told apart by their dominant colour.
ROOT=$WORK/images
hex=(); for v in $(seq 0 255); do hex[$v]=$(printf '\\x%02x' "$v"); done
write_ppm() {  # file class index
  local f=$1 c=$2 i=$3 s="" p ch v n
  RANDOM=$((c * 1000 + i))
  for ((p = 0; p < 256; p++)); do
    for ((ch = 0; ch < 3; ch++)); do
      n=$((RANDOM % 90)); v=$(( (ch == c ? 140 : 30) + n )); s+=${hex[$v]}
    done
  done
  { printf 'P6\n16 16\n255\n'; printf '%b' "$s"; } > "$f"
}
for split in train val; do
  count=20; offset=0; [ $split = val ] && count=8 && offset=500
  for c in 0 1 2; do
    mkdir -p "$ROOT/$split/class$c"
    for ((i = 0; i < count; i++)); do write_ppm "$ROOT/$split/class$c/img$i.ppm" $c $((i + offset)); done
  done
done
run "$HERE/imagefolder.yaml" --data-root "$ROOT" 2>if1.log; rc=$?
check "imagefolder run exits 0" test $rc -eq 0
iff=$(sql "select top1 from results where kind='fp32' and dataset='imagefolder'")
ifn=$(sql "select eval_images from results where kind='fp32' and dataset='imagefolder'")
check "imagefolder evaluated all 24 val images (got $ifn)" test "$ifn" = 24
check "imagefolder FP32 top-1 above chance 33% (got $iff)" awk "BEGIN{exit !(\"$iff\" != \"\" && $iff > 60)}"

# A corrupt image: the cells fail with the file named, the run exits 1, nothing else breaks.
printf 'P6\n16 16\n255\nshort' > "$ROOT/val/class1/img3.ppm"
run "$HERE/imagefolder.yaml" --data-root "$ROOT" --force 2>if2.log; rc=$?
check "a corrupt image makes the run exit 1" test $rc -eq 1
check "the failed rows name the corrupt file" \
  test "$(sql "select count(*) from results where status='failed' and error like '%val/class1/img3.ppm%'")" -ge 1

finish
