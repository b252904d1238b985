#!/usr/bin/env bash
# End-to-end checks of mixed precision (issue 19) on the built binary: budgets in the bits axis
# keep the other cells' keys, each budget is met by the allocation the quantizers really carry
# (minmax and AdaRound), one allocation per budget whatever the algorithm, detail rows, the
# report's tables, determinism, and the bad inputs (exit 2 before any work, store untouched).
# usage: run_e2e_mixed.sh QBENCH_BINARY E2E_DIR WORK_DIR
set -u
QB=$1; HERE=$2; WORK=$3
DB=$WORK/mixed.db; CACHE=$WORK/cache
source "$(dirname "$0")/harness.sh"
M=$HERE/mixed_tiny.yaml

# Keys: the uniform cells keep the keys of the same matrix without any mixed entry or section.
sed '/mixed_precision:/d; s/, {mixed: {avg_w_bits: 3}}, {mixed: {bops_ratio: 0.3, avg_a_bits: 6}}//' "$M" > plain.yaml
keys() { "$QB" run "$1" --dry-run --db "$WORK/dry.db" --cache-dir "$CACHE" --no-progress 2>/dev/null | grep -E '^[0-9]+ +[0-9a-f]{12} ' | awk '{print $2}' | sort; }
out=$(run "$M" --dry-run); rc=$?
check "dry-run exits 0" test $rc -eq 0
check "13 cells (baseline + 3 algorithms x 4 bits)" grep -q "13 cells" <<<"$out"
check "the mixed cells are labelled by their budget" has "$out" "mixed:avg_w_bits=3" "mixed:avg_a_bits=6,bops_ratio=0.3"
pk=$(keys plain.yaml); mk=$(keys "$M")
check "every key of the plain matrix is kept ($(wc -w <<<"$pk") keys)" bash -c "test $(wc -w <<<"$pk") -eq 7 && test -z \"\$(comm -23 <(echo '$pk') <(echo '$mk'))\""

run "$M" 2>mixed.log; rc=$?
check "mixed run exits 0" test $rc -eq 0
check "13 ok rows" test "$(sql "select count(*) from results where status='ok'")" = 13
nl=$(sql "select count(*) from cell_details d join results r on r.id = d.result_id where r.algorithm='minmax' and d.section='bit_allocation' and r.config_json like '%avg_w_bits%'")
check "one bit_allocation row per layer ($nl)" test "$nl" -ge 9
for alg in minmax adaround lsq; do
  ach=$(sql "select json_extract(d.values_json, '\$.avg_w_bits') from cell_details d join results r on r.id = d.result_id where r.algorithm='$alg' and d.section='model_cost' and json_extract(r.config_json, '\$.mixed.label')='mixed:avg_w_bits=3'")
  check "$alg: the quantizers' average weight width meets the budget ($ach <= 3)" awk "BEGIN{exit !(\"$ach\" != \"\" && $ach <= 3 + 1e-9 && $ach > 2)}"
  alloc=$(sql "select json_extract(d.values_json, '\$.avg_w_bits') from cell_details d join results r on r.id = d.result_id where r.algorithm='$alg' and d.section='mixed_budget' and json_extract(r.config_json, '\$.mixed.label')='mixed:avg_w_bits=3'")
  check "$alg: and equals the allocation's ($ach = $alloc)" awk "BEGIN{d=$ach-$alloc; if(d<0)d=-d; exit !(d < 1e-9)}"
  b=$(sql "select json_extract(d.values_json, '\$.bops_ratio') || ' ' || json_extract(d.values_json, '\$.avg_a_bits') from cell_details d join results r on r.id = d.result_id where r.algorithm='$alg' and d.section='model_cost' and json_extract(r.config_json, '\$.mixed.label')='mixed:avg_a_bits=6,bops_ratio=0.3'")
  check "$alg: BOPs and average activation width within their budgets ($b)" awk -v b="$b" 'BEGIN{split(b, v, " "); exit !(v[1] <= 0.3 + 1e-9 && v[2] <= 6 + 1e-9)}'
  w=$(sql "select top1 from results where algorithm='$alg' and w_bits=2 and a_bits=8 and config_json not like '%mixed%'")
  mx=$(sql "select top1 from results where algorithm='$alg' and json_extract(config_json, '\$.mixed.label')='mixed:avg_w_bits=3'")
  [ $alg = lsq ] || check "$alg: 3 average weight bits beat uniform w2a8 ($mx > $w)" awk "BEGIN{exit !($mx > $w)}"
done
a1=$(sql "select group_concat(d.name || '=' || cast(json_extract(d.values_json, '\$.w_bits') as int) || '/' || cast(json_extract(d.values_json, '\$.a_bits') as int), ',') from cell_details d join results r on r.id = d.result_id where r.algorithm='minmax' and d.section='bit_allocation' and json_extract(r.config_json, '\$.mixed.label')='mixed:avg_w_bits=3' order by d.position")
a2=$(sql "select group_concat(d.name || '=' || cast(json_extract(d.values_json, '\$.w_bits') as int) || '/' || cast(json_extract(d.values_json, '\$.a_bits') as int), ',') from cell_details d join results r on r.id = d.result_id where r.algorithm='adaround' and d.section='bit_allocation' and json_extract(r.config_json, '\$.mixed.label')='mixed:avg_w_bits=3' order by d.position")
check "one allocation per budget, whatever the algorithm" bash -c "test -n '$a1' && test '$a1' = '$a2'"
check "the widths differ between layers (a real allocation: $a1)" bash -c "tr ',' '\n' <<<'$a1' | cut -d= -f2 | sort -u | wc -l | grep -qv '^1$'"
check "the first and last layers stay at 8 bits (academic)" bash -c "tr ',' '\n' <<<'$a1' | sed -n '1p;\$p' | grep -c '=8/8' | grep -q 2"
check "the sensitivities were computed once per baseline (one log line)" test "$(grep -c 'mixed precision: hessian sensitivities' mixed.log)" = 1
np=$(sql "select count(*) from cell_details where section='pareto_size'")
check "Pareto fronts stored with the mixed cells ($np rows)" test "$np" -ge 12
rep=$("$QB" report --db "$DB" --format markdown 2>/dev/null)
check "report: the mixed-precision table" grep -q "Mixed precision: fashion-mnist / resnet8-w0.5 / academic" <<<"$rep"
check "report: the bit-allocation table" grep -q "Bit allocation: " <<<"$rep"
tex=$("$QB" report --db "$DB" --format latex --table mixed 2>/dev/null)
check "report: the budget table in LaTeX" grep -q "avg\\\\_w\\\\_bits=3" <<<"$tex"

# Determinism: the minmax mixed cell again in a fresh store gives the same top-1 and widths.
sed 's/algorithm: \[minmax, adaround, lsq\]/algorithm: [minmax]/; s/bits: \[w4a8, w2a8, /bits: [/' "$M" > again.yaml
"$QB" run again.yaml --db again.db --cache-dir "$CACHE" --no-progress 2>again.log; rc=$?
check "rerun exits 0" test $rc -eq 0
t1=$(sql "select top1 from results where algorithm='minmax' and json_extract(config_json, '\$.mixed.label')='mixed:avg_w_bits=3'")
t2=$(sqlite3 again.db "select top1 from results where json_extract(config_json, '\$.mixed.label')='mixed:avg_w_bits=3'")
check "same top-1 run to run ($t1 = $t2)" test "$t1" = "$t2"
check "the sensitivities come from the cache directory the second time" grep -q "mixed precision: hessian sensitivities of [0-9]* layers read from $CACHE/mixed/" again.log
a3=$(sqlite3 again.db "select group_concat(d.name || '=' || cast(json_extract(d.values_json, '\$.w_bits') as int) || '/' || cast(json_extract(d.values_json, '\$.a_bits') as int), ',') from cell_details d join results r on r.id = d.result_id where d.section='bit_allocation' and json_extract(r.config_json, '\$.mixed.label')='mixed:avg_w_bits=3' order by d.position")
check "and give the same allocation" test "$a3" = "$a1"

# A latency budget under a profile with a roofline (tensorrt): the range from the refusal of an
# unreachable one, then its midpoint; the modeled latency of the allocated model meets it.
sed 's/profile: \[academic\]/profile: [tensorrt]/; s/algorithm: \[minmax, adaround, lsq\]/algorithm: [minmax]/; s/  latency: {enabled: false}/  latency: {enabled: true, batch_size: 8, warmup: 1, repeats: 2}/; s/^  bits: \[.*\]$/  bits: [{mixed: {latency_ms: 0.000001}}]/' "$M" > lat0.yaml
err=$("$QB" run lat0.yaml --db lat.db --cache-dir "$CACHE" --no-progress 2>&1); rc=$?
read -r lo hi < <(grep -oE 'latency_ms 1e-06 \(reachable [0-9.e+-]+ \.\. [0-9.e+-]+\)' <<<"$err" | sed -E 's/.*reachable ([^ ]+) \.\. ([^)]+)\)/\1 \2/')
check "an unreachable latency exits 2 with the roofline's range ($lo .. $hi)" bash -c "test $rc -eq 2 && test -n '$lo'"
mid=$(awk "BEGIN{printf \"%.6g\", ($lo + $hi) / 2}")
sed "s/latency_ms: 0.000001/latency_ms: $mid/" lat0.yaml > lat.yaml
"$QB" run lat.yaml --db lat.db --cache-dir "$CACHE" --no-progress 2>/dev/null; rc=$?
check "a latency budget runs" test $rc -eq 0
lat=$(sqlite3 lat.db "select latency_ms_p50 || ' ' || latency_source from results where kind='ptq'")
check "the modeled latency meets the budget ($lat <= $mid)" awk -v l="$lat" -v b="$mid" 'BEGIN{split(l, v, " "); exit !(v[2] == "modeled" && v[1] <= b * (1 + 1e-6) && v[1] > 0)}'
ach=$(sqlite3 lat.db "select json_extract(d.values_json, '\$.latency_ms') from cell_details d join results r on r.id = d.result_id where d.section='mixed_budget'")
check "and equals the allocation's latency ($ach)" awk -v l="$lat" -v a="$ach" 'BEGIN{split(l, v, " "); d = v[1] - a; if (d < 0) d = -d; exit !(a != "" && d <= 1e-9 * (1 + a))}'

# Bad input: exit 2 with file:line and the reachable range; nothing run, store untouched.
before=$(sql "select count(*) from results")
sed 's/{mixed: {avg_w_bits: 3}}/{mixed: {size_kb: 0.5}}/' "$M" > unreachable.yaml
err=$(run unreachable.yaml 2>&1); rc=$?
check "an unreachable size exits 2" test $rc -eq 2
check "naming file:line, key and the reachable range ($err)" grep -qE "unreachable.yaml:[0-9]+:[0-9]+: matrix.bits: mixed:size_kb=0.5 on resnet8-w0.5 under profile academic: no allocation meets the budget: size_kb 0.5 \(reachable [0-9.]+ \.\. [0-9.]+\)" <<<"$err"
sed 's/{mixed: {avg_w_bits: 3}}/{mixed: {latency_ms: 1}}/' "$M" > latency.yaml
err=$(run latency.yaml 2>&1); rc=$?
check "a latency budget without a width-dependent latency model exits 2 ($err)" bash -c "test $rc -eq 2 && grep -q 'latency_ms needs a latency that depends on the width' <<<\"\$0\"" "$err"
sed 's/algorithm: \[minmax, adaround, lsq\]/algorithm: [minmax, apot]/' "$M" > apot.yaml
err=$(run apot.yaml 2>&1); rc=$?
check "a non-uniform quantizer with a mixed budget exits 2 ($err)" bash -c "test $rc -eq 2 && grep -q \"algorithm 'apot' cannot take a mixed budget\" <<<\"\$0\"" "$err"
sed 's/candidates: {w: \[2, 4, 8\]/candidates: {w: [2, 4, 8]/; s/profile: \[academic\]/profile: [openvino]/' "$M" > prof.yaml
err=$(run prof.yaml 2>&1); rc=$?
check "a candidate the profile does not allow exits 2 ($err)" bash -c "test $rc -eq 2 && grep -q 'is not allowed by profile' <<<\"\$0\""  "$err"
check "the store is untouched" test "$(sql "select count(*) from results")" = "$before"
finish
