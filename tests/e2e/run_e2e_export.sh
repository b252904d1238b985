#!/usr/bin/env bash
# End-to-end checks of deployable artifacts on the built binary: saved cell states, ONNX Runtime
# as a deploy engine (the profile's own, or added by pipeline.deploy), `qbench export` in its three
# formats from the key alone, and its refusals (exit 2, one line, nothing written).
# usage: run_e2e_export.sh QBENCH_BINARY E2E_DIR WORK_DIR
set -u
QB=$1; HERE=$2; WORK=$3
DB=$WORK/export.db; CACHE=$WORK/cache
source "$(dirname "$0")/harness.sh"
ORT_JS="$HERE/../../scripts/ort/qbench_ort.js"

run "$HERE/export_tiny.yaml" 2>run.log; rc=$?
check "run exits 0" test $rc -eq 0
check "6 ok rows (baseline, 4 minmax, apot)" test "$(sql "select count(*) from results where status='ok'")" = 6

# Every quantized cell saved its state under the cache.
n=0
for k in $(sql "select cell_key from results where kind != 'fp32'"); do [ -s "$CACHE/cells/$k/state.safetensors" ] && n=$((n+1)); done
check "every quantized cell saved its state ($n of 5)" test $n = 5

# ort-cpu: ONNX Runtime is the row's engine; its latency is ORT's.
for b in 8 4; do
  row=$(sql "select top1, deploy_top1, deploy_agreement, deploy_engine, latency_source from results where profile='ort-cpu' and w_bits=$b")
  IFS='|' read -r sim dep agr eng src <<<"$row"
  check "ort-cpu w${b}a${b}: deployed on onnxruntime ($eng, $src)" test "$eng|$src" = "onnxruntime|measured-int8-ort"
  min=99  # ort-cpu simulates the int32 bias ORT adds (bias: int32), so even 4-bit grids agree
  check "ort-cpu w${b}a${b}: >= $min% of predictions agree with the simulation ($agr)" awk "BEGIN{exit !(\"$agr\" != \"\" && $agr >= $min)}"
  cov=$(sql "select json_extract(values_json, '\$.int8_coverage') from cell_details d join results r on r.id=d.result_id where r.profile='ort-cpu' and r.w_bits=$b and d.section='deploy_engines'")
  check "ort-cpu w${b}a${b}: ORT ran most convs in int8 ($cov%)" awk "BEGIN{exit !(\"$cov\" != \"\" && $cov >= 80)}"
done
# x86-onednn: LibTorch's oneDNN is the row's engine, ORT a second record.
row=$(sql "select deploy_engine, latency_source from results where profile='x86-onednn' and w_bits=8")
check "x86-onednn: the row's deploy columns are LibTorch's ($row)" test "$row" = "libtorch-onednn|measured-int8"
engines=$(sql "select group_concat(d.name, ',') from (select d.name from cell_details d join results r on r.id=d.result_id where r.profile='x86-onednn' and r.w_bits=8 and d.section='deploy_engines' order by d.name) d")
check "x86-onednn: both engines recorded ($engines)" test "$engines" = "libtorch-onednn,onnxruntime"
fp32lat=$(sql "select json_extract(values_json, '\$.fp32_latency_ms_p50') from cell_details d join results r on r.id=d.result_id where r.profile='x86-onednn' and r.w_bits=8 and d.name='onnxruntime'")
check "ORT's FP32 latency of the same network recorded ($fp32lat ms)" awk "BEGIN{exit !(\"$fp32lat\" != \"\" && $fp32lat > 0)}"
# The APoT cell cannot be expressed as QDQ: kept, with the reason.
check "apot: not deployed on onnxruntime, with the reason" \
  test "$(sql "select count(*) from cell_details where section='deploy_engines' and text like 'not deployed:%not affine%'")" = 1

# qbench export, from the key alone.
key=$(sql "select cell_key from results where profile='ort-cpu' and w_bits=4")
"$QB" export --db "$DB" --cache-dir "$CACHE" --cell "${key:0:10}" --out w4.onnx >exp.out 2>exp.err; rc=$?
check "export qdq exits 0" test $rc -eq 0
check "and says what it wrote" grep -q "as qdq: w4.onnx" exp.out
check "the file passes the ONNX checker (python3-onnx)" /usr/bin/python3 -c "import onnx,sys; m=onnx.load('w4.onnx'); onnx.checker.check_model(m, full_check=True); sys.exit(0 if any(n.op_type=='QuantizeLinear' for n in m.graph.node) else 1)"
cat > req.json <<JSON
{"model": "$PWD/w4.onnx", "threads": 1, "latency": {"input": "$PWD/x.f32", "shape": [2, 1, 28, 28], "warmup": 0, "repeats": 1}}
JSON
head -c 6272 /dev/zero > x.f32
node "$ORT_JS" req.json >ort.out 2>ort.err; rc=$?
check "ONNX Runtime loads and runs the exported file" test $rc -eq 0
"$QB" export --db "$DB" --cache-dir "$CACHE" --cell "${key:0:10}" --out w4_fp32.onnx --format fp32 >/dev/null 2>&1
check "export --format fp32 of a quantized cell has no Q/DQ" /usr/bin/python3 -c "import onnx,sys; m=onnx.load('w4_fp32.onnx'); sys.exit(any(n.op_type.endswith('Linear') for n in m.graph.node))"
k8=$(sql "select cell_key from results where profile='ort-cpu' and w_bits=8")
"$QB" export --db "$DB" --cache-dir "$CACHE" --cell "${k8:0:10}" --out trt.onnx --format tensorrt >/dev/null 2>exp.err; rc=$?
check "export --format tensorrt refuses ort-cpu's asymmetric activations (exit 2)" test $rc -eq 2
check "with the reason" grep -q "non-zero zero point" exp.err
base=$(sql "select cell_key from results where kind='fp32'")
"$QB" export --db "$DB" --cache-dir "$CACHE" --cell "${base:0:10}" --out base.onnx --format fp32 >/dev/null 2>exp.err; rc=$?
check "the FP32 baseline exports as fp32" test $rc -eq 0 -a -s base.onnx

# Round trip (the BYOM issue's criterion): the trained baseline exported as FP32 ONNX and imported
# again as an architecture with its own weights gives the same FP32 top-1, and minmax w4a4 within
# 0.1 points of the zoo model's.
sed -e 's/^name: e2e-export/name: e2e-export-roundtrip/' -e '/^  deploy:/d' -e '/^  include:/,$d' \
    -e 's/^  arch: \[resnet8-w0.5\]/  arch: [again]/' -e 's/^  profile: \[ort-cpu, x86-onednn\]/  profile: [academic]/' \
    -e 's/^  bits: \[w8a8, w4a4\]/  bits: [w4a4]/' "$HERE/export_tiny.yaml" > roundtrip.yaml
printf 'architectures:\n  again: {onnx: base.onnx}\n' >> roundtrip.yaml
"$QB" run roundtrip.yaml --db rt.db --cache-dir "$CACHE" --no-progress 2>rt.log; rc=$?
check "the exported baseline runs as an ONNX architecture (exit $rc)" test $rc -eq 0
zoo_fp32=$(sql "select top1 from results where kind='fp32'")
rt_fp32=$(sqlite3 -batch -noheader rt.db "select top1 from results where kind='fp32'")
check "its FP32 top-1 is the baseline's exactly ($rt_fp32 vs $zoo_fp32)" test "$rt_fp32" = "$zoo_fp32"
sed -e '/^  deploy:/d' -e '/^  include:/,$d' -e 's/^  profile: \[ort-cpu, x86-onednn\]/  profile: [academic]/' \
    -e 's/^  bits: \[w8a8, w4a4\]/  bits: [w4a4]/' "$HERE/export_tiny.yaml" > zoo_w4.yaml
"$QB" run zoo_w4.yaml --db zoo.db --cache-dir "$CACHE" --no-progress 2>/dev/null
zoo_w4=$(sqlite3 -batch -noheader zoo.db "select top1 from results where kind='ptq'")
rt_w4=$(sqlite3 -batch -noheader rt.db "select top1 from results where kind='ptq'")
check "its minmax w4a4 top-1 within 0.1 of the zoo model's ($rt_w4 vs $zoo_w4)" \
  awk "BEGIN{d=$rt_w4-$zoo_w4; if(d<0)d=-d; exit !(\"$rt_w4\" != \"\" && d <= 0.1)}"

# Refusals: exit 2, one line, no file.
refuse() {  # refuse NAME EXPECTED_TEXT ARGS...
  local name=$1 text=$2; shift 2
  rm -f refused.onnx
  "$QB" export --db "$DB" --cache-dir "$CACHE" --out refused.onnx "$@" >/dev/null 2>err.txt; local rc=$?
  check "$name: exit 2" test $rc -eq 2
  check "$name: one line saying '$text'" bash -c "[ \$(wc -l <err.txt) -eq 1 ] && grep -q -- '$text' err.txt"
  check "$name: no file written" test ! -e refused.onnx
}
refuse "unknown key" "no cell of" --cell ffffffffff
refuse "ambiguous prefix" "ambiguous, 6 cells start with it" --cell ""
amb=$(sql "select substr(cell_key, 1, 1) p from (select distinct cell_key from results) group by p having count(*) > 1 order by p limit 1")
check "two cells of the store share a first key character ('$amb')" test -n "$amb"
refuse "ambiguous one-character prefix" "ambiguous, [0-9]* cells start with it" --cell "$amb"
apot=$(sql "select cell_key from results where algorithm='apot'")
refuse "non-uniform quantizer (apot)" "not affine" --cell "${apot:0:10}"
refuse "baseline as qdq" "use --format fp32" --cell "${base:0:10}"
refuse "unknown format" "unknown export format" --cell "${key:0:10}" --format int4
mv "$CACHE/cells/$key/state.safetensors" state.bak
refuse "no saved state" "no saved state" --cell "${key:0:10}"
mv state.bak "$CACHE/cells/$key/state.safetensors"
# A failed cell: a diverging run's row in the same store.
run "$HERE/diverge.yaml" >/dev/null 2>&1
failed=$(sql "select cell_key from results where status='failed' limit 1")
refuse "failed cell" "did not finish ok" --cell "${failed:0:12}"

finish
