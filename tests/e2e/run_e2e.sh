#!/usr/bin/env bash
# End-to-end checks of the built qbench binary on tiny matrices: exit codes, store rows,
# resume, --force determinism, failure recording, interrupt safety and report text.
# usage: run_e2e.sh QBENCH_BINARY E2E_DIR WORK_DIR
set -u
QB=$1; HERE=$2; WORK=$3
DB=$WORK/e2e.db; CACHE=$WORK/cache
source "$(dirname "$0")/harness.sh"

"$QB" --version >/dev/null; check "--version exits 0" test $? -eq 0
out=$("$QB" list 2>&1); check "list shows registries" has "$out" minmax resnet20 fashion-mnist academic
"$QB" list nonsense >/dev/null 2>&1; check "list of an unknown kind exits 2" test $? -eq 2
out=$("$QB" list algorithms --verbose 2>&1)
check "list algorithms --verbose shows each setting from its table" has "$out" \
  "pipeline.ptq.reconstruction (read by adaround, brecq, qdrop)" "default 20000" "papers: 2.4" \
  "pipeline.ptq.bias_correction" "images       integer >= 0"
out=$("$QB" list archs 2>&1)
check "list archs measures the published sizes" has "$out" '11.69M params, 1.814 GMACs' '3.50M params' regnetx-600mf

# Configuration errors: exit 2 with file:line:column and the key path, nothing written.
err=$("$QB" run "$HERE/bad_bits.yaml" --db "$DB" 2>&1); rc=$?
check "bad bit width exits 2" test $rc -eq 2
check "bad bit width names file:line:col and key" grep -q "bad_bits.yaml:5:[0-9]*: matrix.bits\[1\]" <<<"$err"
check "no store written on a config error" test ! -e "$DB"
err=$("$QB" run "$HERE/does_not_exist.yaml" 2>&1); check "missing matrix exits 2" test $? -eq 2

# Dry run lists the baseline and two PTQ cells.
out=$(run "$HERE/tiny.yaml" --dry-run); rc=$?
check "dry-run exits 0" test $rc -eq 0
check "dry-run shows 3 cells" grep -q "3 cells" <<<"$out"

# First run: trains the baseline, runs both PTQ cells.
run "$HERE/tiny.yaml" 2>run1.log; rc=$?
check "first run exits 0" test $rc -eq 0
check "3 ok rows" test "$(sql "select count(*) from results where status='ok'")" = 3
fp32=$(sql "select top1 from results where kind='fp32'")
w8=$(sql "select top1 from results where algorithm='minmax' and w_bits=8")
check "FP32 well above chance (got $fp32)" awk "BEGIN{exit !($fp32 > 40)}"
check "w8a8 within 3 points of FP32 (got $w8 vs $fp32)" awk "BEGIN{d=$fp32-$w8; if(d<0)d=-d; exit !(d < 3)}"
check "fp32_top1 recorded on PTQ rows" test "$(sql "select count(*) from results where kind='ptq' and fp32_top1=$fp32")" = 2
check "latency recorded with its source" test "$(sql "select count(*) from results where latency_source='measured-fakequant' and latency_ms_p50>0")" = 2
check "provenance recorded" test -n "$(sql "select git_rev||torch_version||host from runs where id=1")"
check "checkpoint cached as safetensors" bash -c "ls '$CACHE'/baselines/*.safetensors >/dev/null"

# The cached baseline is a safetensors export: a matrix that imports it as weights (no training)
# evaluates to the same FP32 top-1, and its PTQ cells to the same numbers.
ckpt=$(ls "$CACHE"/baselines/*.safetensors | head -1)
sed "s#^matrix:#architectures:\n  resnet8-w0.5: {weights: $ckpt}\nmatrix:#" "$HERE/tiny.yaml" > imported.yaml
"$QB" run imported.yaml --db imported.db --cache-dir "$WORK/cache_imported" --no-progress 2>imported.log; rc=$?
check "imported-weights run exits 0" test $rc -eq 0
check "imported-weights run trains nothing" bash -c "grep -q 'imported .* tensors' imported.log && ! grep -q 'training FP32 baseline' imported.log"
imp=$(sqlite3 imported.db "select top1 from results where kind='fp32'")
check "imported weights give the trained FP32 top-1 ($imp vs $fp32)" test "$imp" = "$fp32"
imp8=$(sqlite3 imported.db "select top1 from results where algorithm='minmax' and w_bits=8")
check "and the same w8a8 top-1 ($imp8 vs $w8)" test "$imp8" = "$w8"
sed "s#^matrix:#architectures:\n  resnet8: {weights: $ckpt}\nmatrix:#; s#arch: \[resnet8-w0.5\]#arch: [resnet8]#" "$HERE/tiny.yaml" > wrong_arch.yaml
err=$("$QB" run wrong_arch.yaml --db wrong.db --cache-dir "$WORK/cache_wrong" --no-progress 2>&1); rc=$?
# Checked before any work (runner::validate_inputs): an input error, no store written.
check "weights of another width are an input error (exit 2)" test $rc -eq 2
check "and name the option, the file and the tensor" grep -q "wrong_arch.yaml:[0-9]*:[0-9]*: architectures.resnet8.weights: .*safetensors: tensor 'conv1.weight' has shape" <<<"$err"
check "and write no store" test ! -e wrong.db

# Second run: nothing to do, no new rows.
run "$HERE/tiny.yaml" 2>run2.log; rc=$?
check "resume run exits 0" test $rc -eq 0
check "resume run did no work" grep -q "0 ran, 3 skipped" run2.log
check "no duplicated rows" test "$(sql "select count(*) from results")" = 3

# Forced rerun: identical top-1 values.
before=$(sql "select group_concat(top1, ',') from (select top1 from results where run_id=1 order by cell_key)")
run "$HERE/tiny.yaml" --force 2>run3.log; rc=$?
check "forced run exits 0" test $rc -eq 0
after=$(sql "select group_concat(top1, ',') from (select top1 from results where run_id=3 order by cell_key)")
check "forced rerun gives identical top-1 ($before / $after)" test "$before" = "$after"

# Reports.
md=$("$QB" report --db "$DB" --format markdown); rc=$?
check "markdown report exits 0" test $rc -eq 0
check "markdown has the pivot table" has "$md" 'fashion-mnist / academic' w8a8 w4a4
"$QB" report --db "$DB" --format json --out report.json; check "json report exits 0" test $? -eq 0
check "json report has 3 rows with top1" bash -c "[ \$(grep -c '\"top1\":[0-9]' report.json) -eq 3 ]"
csv=$("$QB" report --db "$DB" --format csv --run 1); check "csv report has header + 3 lines" test "$(wc -l <<<"$csv")" -eq 4
"$QB" report --db "$DB" --format pdf >/dev/null 2>&1; check "unknown format exits 2" test $? -eq 2
"$QB" report --db "$DB" --run 99 >/dev/null 2>&1; check "unknown run exits 2" test $? -eq 2

# A diverging recipe: every cell recorded as failed, the run goes on, exit 1.
run "$HERE/diverge.yaml" 2>div.log; rc=$?
check "diverging run exits 1" test $rc -eq 1
check "failed rows recorded with the NaN message" test "$(sql "select count(*) from results where status='failed' and error like '%diverged%'")" = 2
md=$("$QB" report --db "$DB"); check "report lists failed cells" grep -q "Failed cells" <<<"$md"
check "earlier rows intact" test "$(sql "select count(*) from results where status='ok'")" = 6

# Interrupt: SIGINT mid-run leaves no partial row; the next run resumes.
rows_before=$(sql "select count(*) from results")
# Started directly (not through the run() function) so that $! is qbench itself.
"$QB" run "$HERE/slow.yaml" --db "$DB" --cache-dir "$CACHE" --no-progress --threads 1 2>int.log & pid=$!
sleep 4; kill -INT $pid; wait $pid; rc=$?
check "interrupted run exits 130" test $rc -eq 130
rid=$(sql "select max(id) from runs")
check "interrupted run marked" test "$(sql "select status from runs where id=$rid")" = interrupted
check "no partial rows (every row has its metrics or an error)" test "$(sql "select count(*) from results where status='ok' and top1 is null")" = 0
check "the interrupted cell wrote nothing" test "$(sql "select count(*) from results")" = "$rows_before"
check "its plan shows the cells as pending" test "$(sql "select count(*) from run_cells where run_id=$rid and result_id is null")" = 2
check "no half-written checkpoint left" bash -c "! ls '$CACHE'/baselines/*.tmp.* 2>/dev/null"
check "and no lock held" bash -c "! ls '$CACHE'/baselines/*.lock 2>/dev/null"

# QAT: two methods end to end, then an interrupted QAT cell resumes from its epoch checkpoint
# and lands on exactly the top-1 of the uninterrupted run.
run "$HERE/qat_tiny.yaml" 2>qat1.log; rc=$?
check "QAT run exits 0" test $rc -eq 0
qfp=$(sql "select fp32_top1 from results where algorithm='lsq'")
lsq=$(sql "select top1 from results r join runs u on u.id=r.run_id where u.matrix_name='e2e-qat' and algorithm='lsq'")
# An 8-channel ResNet-8 at w4a4 after 96 steps: a sanity band (chance is 10%); the accuracy
# bands proper come from experiments/academic.yaml.
check "LSQ w4a4 within 8 points of FP32 ($lsq vs $qfp)" awk "BEGIN{exit !(\"$qfp\" != \"\" && $lsq > $qfp - 8)}"
check "QAT rows are kind qat with the qat recipe recorded" test "$(sql "select count(*) from results where kind='qat' and config_json like '%\"train_images\":2048%'")" = 2
key=$(run "$HERE/qat_tiny.yaml" --dry-run | awk '$5=="lsq"{print $2}')
"$QB" run "$HERE/qat_tiny.yaml" --db "$DB" --cache-dir "$CACHE" --no-progress --force --cell "$key" 2>qat2.log & pid=$!
for i in $(seq 1 600); do ls "$CACHE"/cells/"$key"*/epoch_1.pt >/dev/null 2>&1 && break; sleep 0.1; done
kill -INT $pid; wait $pid; rc=$?
check "QAT cell interrupted after its first epoch (exit $rc)" test $rc -eq 130
run "$HERE/qat_tiny.yaml" --force --cell "$key" 2>qat3.log; rc=$?
check "resumed QAT cell exits 0" test $rc -eq 0
check "it resumed from the epoch checkpoint" grep -q "resuming QAT" qat3.log
lsq2=$(sql "select top1 from results where algorithm='lsq' order by id desc limit 1")
check "resumed QAT gives the uninterrupted top-1 ($lsq2 vs $lsq)" test "$lsq2" = "$lsq"
check "epoch checkpoints removed once the row is written" bash -c "! ls '$CACHE'/cells/$key*/epoch_* 2>/dev/null"
check "and the cell's saved state kept" bash -c "ls '$CACHE'/cells/$key*/state.safetensors >/dev/null"

# pipeline.qat.range_init: mse (issue 21): every learnable range starts from the MSE observer's.
sed -e 's/^name: e2e-qat/name: e2e-qat-mse/' -e 's/algorithm: \[lsq, pact\]/algorithm: [pact, dorefa]/' \
  -e 's/bits: \[w4a4\]/bits: [w2a2]/' "$HERE/qat_tiny.yaml" >qat_paper.yaml
sed -e 's/train_images: 2048,/train_images: 2048, range_init: mse,/' qat_paper.yaml >qat_mse.yaml
check "qat_mse.yaml derived from qat_tiny.yaml" grep -q "range_init: mse" qat_mse.yaml
pact_key() { run "$1" --dry-run | awk '$5=="pact"{print $2}'; }
check "range_init: mse re-keys the cells" test "$(pact_key qat_mse.yaml)" != "$(pact_key qat_paper.yaml)"
run qat_mse.yaml 2>qat_mse.log; rc=$?
check "QAT with range_init: mse exits 0" test $rc -eq 0
check "its rows record range_init" test "$(sql "select count(*) from results r join runs u on u.id=r.run_id where u.matrix_name='e2e-qat-mse' and kind='qat' and config_json like '%\"range_init\":\"mse\"%'")" = 2
# Both restart their activation quantizers (clipping levels), not the tanh-normalised DoReFa
# weights both use (PACT quantizes weights with DoReFa): half of the quantizers.
restarted() { sql "select json_extract(d.values_json,'\$.restarted')||'/'||json_extract(d.values_json,'\$.quantizers') from cell_details d join results r on r.id=d.result_id join runs u on u.id=r.run_id where u.matrix_name='e2e-qat-mse' and r.algorithm='$1' and d.section='qat_range_init'"; }
pr=$(restarted pact); dr=$(restarted dorefa)
check "pact restarted exactly its activation quantizers ($pr)" awk -v r="$pr" 'BEGIN{split(r,a,"/"); exit !(a[2] > 0 && a[1] * 2 == a[2])}'
check "dorefa restarted exactly its activation quantizers ($dr)" awk -v r="$dr" 'BEGIN{split(r,a,"/"); exit !(a[2] > 0 && a[1] * 2 == a[2])}'

# Each QAT row keeps its per-step loss trace: 2,048 images in batches of 64 for 3 epochs.
trace=$(sql "select d.text from cell_details d join results r on r.id=d.result_id join runs u on u.id=r.run_id where u.matrix_name='e2e-qat-mse' and r.algorithm='pact' and d.section='qat_loss_trace'")
tsteps=$(sql "select json_extract(d.values_json,'\$.steps') from cell_details d join results r on r.id=d.result_id join runs u on u.id=r.run_id where u.matrix_name='e2e-qat-mse' and r.algorithm='pact' and d.section='qat_loss_trace'")
check "the loss trace has one value per step (96: $tsteps)" test "$(echo "$trace" | tr ',' '\n' | grep -c .)" = 96 -a "${tsteps%.0}" = 96
cp "$DB" trace_copy.db
check "compare_loss_traces finds no step where a store and its copy part ways" \
  bash -c "/usr/bin/python3 '$HERE/../../scripts/compare_loss_traces.py' '$DB' trace_copy.db --algorithm pact | grep -q '| pact w2a2 seed 0 | 96 | none |'"

finish
