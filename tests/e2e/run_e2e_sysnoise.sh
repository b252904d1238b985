#!/usr/bin/env bash
# End-to-end checks of the deployment-system noise track (issue 20, SysNoise) on the built binary:
# the noise axis keeps every plain key, each noise row is present with its reference and flips,
# decode-opencv equals the ISLOW reference, rows repeat bit for bit run to run, the report's noise
# table, and bad input (unknown or inapplicable noise: exit 2 at file:line, store untouched).
# usage: run_e2e_sysnoise.sh QBENCH_BINARY E2E_DIR WORK_DIR
set -u
QB=$1; HERE=$2; WORK=$3
DB=$WORK/sysnoise.db; CACHE=$WORK/cache
source "$(dirname "$0")/harness.sh"
M=$HERE/sysnoise_tiny.yaml
NOISES="decode-ifast decode-float decode-opencv bf16 fp16"

# Keys: without the axis (and with noise: none) every cell keeps its key; the noise cells add theirs.
sed '/^  noise: \[/d' "$M" > plain.yaml
sed 's/^  noise: \[.*/  noise: none/' "$M" > none.yaml
keys() { "$QB" run "$1" --dry-run --db "$WORK/dry.db" --cache-dir "$CACHE" --no-progress 2>/dev/null | grep -E '^[0-9]+ +[0-9a-f]{12} ' | awk '{print $2}' | sort; }
out=$(run "$M" --dry-run); rc=$?
check "dry-run exits 0" test $rc -eq 0
check "18 cells ((baseline + 2 quantized) x 6 noises)" grep -q "18 cells" <<<"$out"
pk=$(keys plain.yaml); nk=$(keys none.yaml); mk=$(keys "$M")
check "noise: none keeps every key" test "$pk" = "$nk"
check "every key of the plain matrix is kept ($(wc -w <<<"$pk") keys)" bash -c "test $(wc -w <<<"$pk") -eq 3 && test -z \"\$(comm -23 <(echo '$pk') <(echo '$mk'))\""

run "$M" 2>noise.log; rc=$?
check "noise run exits 0" test $rc -eq 0
check "18 ok rows" test "$(sql "select count(*) from results where status='ok'")" = 18
check "one baseline trained (noise cells load it)" test "$(grep -c 'training FP32 baseline' noise.log)" = 1
for n in $NOISES; do
  c=$(sql "select count(*) from cell_details d join results r on r.id = d.result_id where d.section='noise' and d.name='$n' and json_extract(r.config_json, '\$.noise')='$n'")
  check "$n: a noise row for each of the 3 cells ($c)" test "$c" = 3
done
bad_flips=$(sql "select count(*) from cell_details where section='noise' and (json_extract(values_json, '\$.flips') is null or json_extract(values_json, '\$.images') != 500)")
check "every noise row counts its flips over the 500 test images" test "$bad_flips" = 0
opencv=$(sql "select count(*) from cell_details where section='noise' and name='decode-opencv' and json_extract(values_json, '\$.flips') = 0 and json_extract(values_json, '\$.top1') = json_extract(values_json, '\$.reference_top1')")
check "decode-opencv equals the ISLOW reference (0 flips, same top-1) in all 3 cells" test "$opencv" = 3
ifast=$(sql "select cast(sum(json_extract(values_json, '\$.flips')) as int) from cell_details where section='noise' and name='decode-ifast'")
check "decode-ifast flips some predictions ($ifast)" test "$ifast" -gt 0
q=$(sql "select count(*) from cell_details where section='noise' and name like 'decode-%' and json_extract(values_json, '\$.jpeg_quality') = 75 and json_extract(values_json, '\$.raw_top1') is not null and json_extract(values_json, '\$.quality_cost') is not null")
check "decode rows carry the JPEG quality's own cost (raw vs ISLOW, quality 75)" test "$q" = 9
ref=$(sql "select count(*) from results p join results n on json_extract(n.config_json, '\$.noise') in ('bf16', 'fp16') and n.baseline_key = p.baseline_key and n.algorithm = p.algorithm and n.w_bits = p.w_bits and n.a_bits = p.a_bits join cell_details d on d.result_id = n.id and d.section = 'noise' where p.config_json not like '%\"noise\"%' and json_extract(d.values_json, '\$.reference_top1') = p.top1")
check "precision rows' reference is the plain cell's top-1 (6 rows)" test "$ref" = 6
check "the baseline under a noise is a row of its own, keyed apart from the baseline" test "$(sql "select count(*) from results where algorithm='fp32' and cell_key != baseline_key")" = 5
check "fp16 says emulated" test "$(sql "select count(*) from cell_details where section='noise' and name='fp16' and text like '%emulated%'")" = 3
rep=$("$QB" report --db "$DB" --format markdown 2>/dev/null)
check "report: the noise table" grep -q "Deployment noise (SysNoise): fashion-mnist / resnet8-w0.5" <<<"$rep"
check "report: the fp16 column says emulated" grep -q "fp16 (emulated)" <<<"$rep"
check "report: the accuracy table has no noise rows (one fp32 baseline row)" test "$("$QB" report --db "$DB" --format csv --table accuracy 2>/dev/null | grep -c '^fashion-mnist,.*fp32')" -le 1

# Determinism: the same matrix in a fresh store gives every row's top-1 and flips again.
"$QB" run "$M" --db again.db --cache-dir "$CACHE" --no-progress 2>again.log; rc=$?
check "rerun exits 0" test $rc -eq 0
r1=$(sql "select r.cell_key || ' ' || r.top1 || ' ' || ifnull(json_extract(d.values_json, '\$.flips'), '') from results r left join cell_details d on d.result_id = r.id and d.section = 'noise' order by r.cell_key")
r2=$(sqlite3 again.db "select r.cell_key || ' ' || r.top1 || ' ' || ifnull(json_extract(d.values_json, '\$.flips'), '') from results r left join cell_details d on d.result_id = r.id and d.section = 'noise' order by r.cell_key")
check "same top-1 and flips run to run (18 rows)" bash -c "test -n '$r1' && test '$r1' = '$r2' && test \$(wc -l <<<'$r1') -eq 18"

# Bad input: exit 2 with file:line before any work; the store is not touched.
before=$(sql "select count(*) from results")
sed 's/decode-float, /decode-flaot, /' "$M" > unknown.yaml
err=$(run unknown.yaml 2>&1); rc=$?
check "an unknown noise exits 2 ($err)" test $rc -eq 2
check "naming file:line, the key and the closest name" grep -qE "unknown.yaml:[0-9]+:[0-9]+: matrix.noise\[2\]: unknown noise 'decode-flaot' \(did you mean: decode-float" <<<"$err"
sed 's/decode-float, /yuv-bt601-limited, /' "$M" > colour.yaml
err=$(run colour.yaml 2>&1); rc=$?
check "a colour noise on grey data exits 2 ($err)" bash -c "test $rc -eq 2 && grep -qE \"colour.yaml:[0-9]+:[0-9]+: matrix.noise\\[2\\]: noise 'yuv-bt601-limited' does not apply: a colour noise needs RGB data\" <<<\"\$0\"" "$err"
sed 's/decode-float, /resize-pil-bilinear, /' "$M" > resize.yaml
err=$(run resize.yaml 2>&1); rc=$?
check "a resize noise where nothing resizes exits 2 ($err)" bash -c "test $rc -eq 2 && grep -q \"noise 'resize-pil-bilinear' does not apply: evaluation of dataset 'fashion-mnist' resizes nothing\" <<<\"\$0\"" "$err"
sed 's/decode-float, /decode-nofancy, /' "$M" > nofancy.yaml
err=$(run nofancy.yaml 2>&1); rc=$?
check "decode-nofancy on grey JPEGs exits 2 ($err)" bash -c "test $rc -eq 2 && grep -q \"noise 'decode-nofancy' does not apply: fancy upsampling acts on the chroma of colour JPEGs\" <<<\"\$0\"" "$err"
sed 's/decode-float, /ceil-mode, /' "$M" > ceil.yaml
err=$(run ceil.yaml 2>&1); rc=$?
check "ceil-mode on a network without a max-pool exits 2 ($err)" bash -c "test $rc -eq 2 && grep -qE \"ceil.yaml:[0-9]+:[0-9]+: matrix.noise\\[2\\]: noise 'ceil-mode' does not apply: resnet8-w0.5: no pooling layer's output size changes with ceil_mode flipped on 28x28 inputs\" <<<\"\$0\"" "$err"
sed 's/decode-float, /count-include-pad, /' "$M" > cip.yaml
err=$(run cip.yaml 2>&1); rc=$?
check "count-include-pad where no average pool pads exits 2 ($err)" bash -c "test $rc -eq 2 && grep -q \"noise 'count-include-pad' does not apply: resnet8-w0.5: no average pooling layer pads\" <<<\"\$0\"" "$err"
sed 's/decode-float, /align-corners, /' "$M" > align.yaml
err=$(run align.yaml 2>&1); rc=$?
check "align-corners on the zoo exits 2 ($err)" bash -c "test $rc -eq 2 && grep -q \"noise 'align-corners' does not apply: resnet8-w0.5: the zoo's networks have no upsampling layer\" <<<\"\$0\"" "$err"
check "the store is untouched by the refused runs" test "$(sql "select count(*) from results")" = "$before"

# An image folder of 64x64 RGB JPEGs (the script experiments/sysnoise_folder.yaml's folder comes from,
# here 30 training and 10 test images per class) at image_size 48: the resize, colour and
# ceil-mode noises apply, each measured against the plain evaluation.
FOLDER=$WORK/jpeg64; F=$HERE/sysnoise_folder_tiny.yaml
rm -rf "$FOLDER"
/usr/bin/python3 "$(dirname "$0")/../../scripts/make_sysnoise_folder.py" "$FOLDER" --train 300 --test 100 2>folder.log
check "the folder script writes 300 + 100 JPEGs" test "$(find "$FOLDER" -name '*.jpg' | wc -l)" = 400
FDB=$WORK/folder.db
frun() { "$QB" run "$1" --db "$FDB" --cache-dir "$CACHE" --data-root "$FOLDER" --no-progress "${@:2}"; }
fsql() { sqlite3 "$WORK/folder.db" "$1"; }
frun "$F" 2>folder_run.log; rc=$?
check "folder noise run exits 0" test $rc -eq 0
check "13 ok rows (2 cells x 6 noises, and the deployed cell)" test "$(fsql "select count(*) from results where status='ok'")" = 13
for n in ceil-mode resize-pil-bilinear resize-cv-bicubic yuv-bt601-limited decode-ifast; do
  c=$(fsql "select count(*) from cell_details where section='noise' and name='$n' and json_extract(values_json, '\$.images') = 100")
  check "$n: a noise row over the 100 test images for each of the 2 cells ($c)" test "$c" = 2
done
ceil=$(fsql "select cast(sum(json_extract(values_json, '\$.flips')) as int) from cell_details where section='noise' and name='ceil-mode'")
check "ceil-mode flips predictions ($ceil)" test "$ceil" -gt 0
dec=$(fsql "select count(*) from cell_details where section='noise' and name='decode-ifast' and text like '%folder''s JPEG files%' and json_extract(values_json, '\$.quality_cost') is null")
check "decode-ifast decodes the folder's own JPEGs (no re-encoding, no quality cost)" test "$dec" = 2
FDB=again_folder.db frun "$F" 2>/dev/null
r1=$(fsql "select r.cell_key || ' ' || r.top1 || ' ' || ifnull(json_extract(d.values_json, '\$.flips'), '') from results r left join cell_details d on d.result_id = r.id and d.section = 'noise' order by r.cell_key")
r2=$(sqlite3 again_folder.db "select r.cell_key || ' ' || r.top1 || ' ' || ifnull(json_extract(d.values_json, '\$.flips'), '') from results r left join cell_details d on d.result_id = r.id and d.section = 'noise' order by r.cell_key")
check "folder rows repeat bit for bit (13 rows)" bash -c "test -n '$r1' && test '$r1' = '$r2' && test \$(wc -l <<<'$r1') -eq 13"
frep=$("$QB" report --db "$FDB" --format markdown --table noise 2>/dev/null)
check "report: the folder's noise table has the ceil-mode and resize columns" grep -qE "^\| cell \| top-1 % \(quant. delta\) \| ceil-mode \| resize-pil-bilinear \|" <<<"$frep"
dep=$(fsql "select printf('%+.2f', deploy_top1 - top1) from results where profile='x86-onednn'")
check "report: the int8 deployment's delta ($dep) beside the noises" grep -qE "^\| minmax w8a8 x86-onednn \| [0-9.]+ \([-+][0-9.]+\) (\| — )+\| [${dep:0:1}]${dep:1} \([0-9]+\) \|$" <<<"$frep"
"$QB" report --db "$FDB" --format html --out folder.html 2>/dev/null
check "HTML report: the flips-per-noise chart, a bar per cell and noise (2 x 5) and the deployed cell's" bash -c "grep -q 'Predictions flipped per noise: imagefolder / resnet18' folder.html && test \$(grep -o '\"noise\":\"[a-z0-9 -]*\"' folder.html | wc -l) -eq 11 && grep -q '\"noise\":\"int8 deployed\"' folder.html"
sed 's/resize-cv-bicubic, /resize-cv-area, /' "$F" > area.yaml
err=$(frun area.yaml 2>&1); rc=$?
check "resize-cv-area, the reference kernel when shrinking, exits 2 ($err)" bash -c "test $rc -eq 2 && grep -qE \"area.yaml:[0-9]+:[0-9]+: matrix.noise\\[3\\]: noise 'resize-cv-area' does not apply: it is the reference kernel here: evaluation resizes 64x64 to 54x54 with OpenCV INTER_AREA\" <<<\"\$0\"" "$err"
sed 's/resize-cv-bicubic, /count-include-pad, /' "$F" > fcip.yaml
err=$(frun fcip.yaml 2>&1); rc=$?
check "count-include-pad on ResNet-18 (its max-pool is not an average) exits 2 ($err)" bash -c "test $rc -eq 2 && grep -q \"noise 'count-include-pad' does not apply: resnet18: no average pooling layer pads\" <<<\"\$0\"" "$err"
finish
