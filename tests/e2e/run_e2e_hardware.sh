#!/usr/bin/env bash
# End-to-end checks of the hardware-track features on the built binary: the bn_fold axis (keys,
# rows, report labels), roofline-modeled latency for a profile with no engine here, detail rows,
# and data-free calibration (DSG) replacing the training images.
# usage: run_e2e_hardware.sh QBENCH_BINARY E2E_DIR WORK_DIR
set -u
QB=$1; HERE=$2; WORK=$3
DB=$WORK/hw.db; CACHE=$WORK/cache
source "$(dirname "$0")/harness.sh"

out=$(run "$HERE/hardware_tiny.yaml" --dry-run); rc=$?
check "dry-run exits 0" test $rc -eq 0
# baseline + academic (-1, 0) + tensorrt (its own 4, and 0) + x86-onednn (0, -1) + qnnpack (0)
check "the bn_fold axis expands to 8 cells" grep -q "8 cells" <<<"$out"

run "$HERE/hardware_tiny.yaml" 2>hw1.log; rc=$?
check "hardware run exits 0" test $rc -eq 0
check "8 ok rows" test "$(sql "select count(*) from results where status='ok'")" = 8
folds=$(sql "select group_concat(profile || ':' || json_extract(config_json, '\$.bn_fold'), ' ') from (select * from results where kind='ptq' order by profile, json_extract(config_json, '\$.bn_fold'))")
check "each cell records its folding strategy ($folds)" test "$folds" = "academic:-1 academic:0 qnnpack:0 tensorrt:0 tensorrt:4 x86-onednn:-1 x86-onednn:0"

# Integer deployment: the issue's bar at w8a8 with minmax is within 0.3 points and >= 99% agreement.
for p in x86-onednn qnnpack; do
  row=$(sql "select top1, deploy_top1, deploy_agreement, logit_cosine, sqnr_db, latency_source from results where profile='$p' and json_extract(config_json, '\$.bn_fold')=0")
  IFS='|' read -r sim dep agr cos sq src <<<"$row"
  check "$p: deployed top-1 within 0.3 of simulated ($dep vs $sim)" awk "BEGIN{d=$dep-$sim; if(d<0)d=-d; exit !(\"$dep\" != \"\" && d <= 0.3)}"
  check "$p: >= 99% identical predictions ($agr)" awk "BEGIN{exit !(\"$agr\" != \"\" && $agr >= 99)}"
  check "$p: logit cosine > 0.999 and SQNR > 25 dB ($cos, $sq)" awk "BEGIN{exit !(\"$cos\" != \"\" && $cos > 0.999 && $sq > 25)}"
  check "$p: latency measured on the int8 engine ($src)" test "$src" = measured-int8
  n=$(sql "select count(*) from cell_details d join results r on r.id=d.result_id where r.profile='$p' and d.section='deploy_layers' and json_extract(r.config_json, '\$.bn_fold')=0")
  check "$p: per-layer deploy rows stored ($n)" test "$n" -ge 10
done
row=$(sql "select coalesce(deploy_top1, 'null') || '|' || latency_source from results where profile='x86-onednn' and json_extract(config_json, '\$.bn_fold')=-1")
check "an unfolded BN is not deployed: no deployed metrics, fake-quant latency ($row)" test "$row" = "null|measured-fakequant"
check "and the reason is stored" test "$(sql "select count(*) from cell_details where section='deploy' and text like '%BatchNorm is not folded%'")" = 1
fp32=$(sql "select top1 from results where kind='fp32'")
for f in -1 0; do
  t=$(sql "select top1 from results where profile='academic' and json_extract(config_json, '\$.bn_fold')=$f")
  check "academic bn_fold $f w8a8 within 3 points of FP32 ($t vs $fp32)" awk "BEGIN{d=$fp32-$t; if(d<0)d=-d; exit !(d < 3)}"
done
# At inference a PTQ model folded on the fly (4) computes what the merged one (0) does.
t4=$(sql "select top1 from results where profile='tensorrt' and json_extract(config_json, '\$.bn_fold')=4")
t0=$(sql "select top1 from results where profile='tensorrt' and json_extract(config_json, '\$.bn_fold')=0")
check "tensorrt: strategies 4 and 0 agree after PTQ ($t4 vs $t0)" bash -c "test -n '$t4' && test '$t4' = '$t0'"
check "tensorrt latency is modeled, academic measured" test "$(sql "select group_concat(distinct profile || '=' || latency_source) from (select * from results where kind='ptq' and profile in ('academic', 'tensorrt') order by profile)")" = "academic=measured-fakequant,tensorrt=modeled"
nl=$(sql "select count(*) from cell_details d join results r on r.id=d.result_id where r.profile='tensorrt' and d.section='roofline_layers'")
check "modeled latency has one detail row per layer per cell ($nl)" test "$nl" = 20
sum=$(sql "select round(sum(json_extract(values_json, '\$.ms')), 9) = round(max(r.latency_ms_p50), 9) from cell_details d join results r on r.id=d.result_id where r.profile='tensorrt' and json_extract(r.config_json, '\$.bn_fold')=4 and d.section='roofline_layers'")
check "the modeled latency is the sum of its layers" test "$sum" = 1
rep=$("$QB" report --db "$DB" --format markdown 2>/dev/null)
check "report keeps the ablation's rows apart (academic bn0)" grep -q "academic bn0" <<<"$rep"
check "report labels modeled latency" grep -q "modeled" <<<"$rep"
check "report has the sim-vs-deploy table" grep -q "Simulated vs deployed" <<<"$rep"
dl=$(grep -A8 'Where deployment departs' <<<"$rep")
check "the deploy-layers table has the x86-onednn cell" grep -q '| x86-onednn | w8a8 | 0 |' <<<"$dl"
check "and the qnnpack cell" grep -q '| qnnpack | w8a8 | 0 |' <<<"$dl"

# Data-free calibration: DSG images instead of training images, synthesised once per baseline.
sed 's/ptq: {calib_images: 128, calib_batch_size: 64}/ptq: {calib_images: 128, calib_batch_size: 64, calibration: {source: dsg, iters: 40}}/; s/bn_fold: \[profile, 0\]/bn_fold: [profile]/; s/profile: \[academic, tensorrt, x86-onednn, qnnpack\]/profile: [academic, tensorrt]/; /include:/,$d' \
  "$HERE/hardware_tiny.yaml" > dsg.yaml
run dsg.yaml 2>dsg.log; rc=$?
check "DSG-calibrated run exits 0" test $rc -eq 0
check "synthesised once for both cells" test "$(grep -c 'synthesised 128 calibration images with dsg' dsg.log)" = 1
check "new keys: the calibration source is part of the configuration" test "$(sql "select count(*) from results where config_json like '%\"source\":\"dsg\"%' and status='ok'")" = 2
d=$(sql "select top1 from results where profile='academic' and config_json like '%dsg%'")
check "DSG w8a8 within 3 points of FP32 ($d vs $fp32)" awk "BEGIN{exit !($d > $fp32 - 3)}"
loss=$(sql "select json_extract(values_json, '\$.final_bn_loss') < json_extract(values_json, '\$.initial_bn_loss') from cell_details where section='calibration' limit 1")
check "synthesis lowered the BN statistics loss" test "$loss" = 1

finish
