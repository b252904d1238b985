#!/usr/bin/env bash
# Loads the fixture's HTML report in headless Chromium (offline, from a file:// URL) and checks
# that the page logs nothing to the console, that every chart the page declares was drawn by
# vega-embed (an SVG with marks inside each chart's element), and that a screenshot is not blank.
# usage: check_html.sh WRITE_FIXTURE_BINARY WORK_DIR
# CI installs Debian's chromium (scripts/install-deps.sh), so a missing browser is a failure.
set -u
WRITER=$1; WORK=$2
rm -rf "$WORK"; mkdir -p "$WORK"
fails=0
ok()  { echo "ok   - $*"; }
bad() { fails=$((fails+1)); echo "FAIL - $*"; }

CHROMIUM=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$CHROMIUM" ]; then
  echo "FAIL - no chromium on PATH: install it with scripts/install-deps.sh (Debian package 'chromium')"
  exit 1
fi
"$WRITER" "$WORK" || { echo "FAIL - could not write the fixture"; exit 1; }
page=$WORK/report.html
# --virtual-time-budget lets the page's promises (vega-embed) settle before the DOM is dumped.
flags=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run --user-data-dir="$WORK/profile"
       --enable-logging=stderr --v=0 --virtual-time-budget=20000)
timeout 90 "$CHROMIUM" "${flags[@]}" --dump-dom "file://$page" >"$WORK/dom.html" 2>"$WORK/chromium.log"
rc=$?
[ $rc -eq 0 ] && ok "chromium loaded the page" || bad "chromium exited $rc (see $WORK/chromium.log)"

console=$(grep -E ':CONSOLE[:(]' "$WORK/chromium.log" || true)
[ -z "$console" ] && ok "no console messages" || bad "console messages: $console"

declared=$(grep -o '<div class="chart" id="chart-[0-9]*"' "$page" | wc -l)
[ "$declared" -ge 5 ] && ok "the page declares $declared charts" || bad "expected at least 5 charts, the page declares $declared"
grep -q 'data-charts="rendered"' "$WORK/dom.html" && ok "the page reports every chart rendered" \
  || bad "the page did not report its charts rendered: $(grep -o 'data-charts[a-z-]*="[^"]*"' "$WORK/dom.html" | tr '\n' ' ')"
grep -q "data-charts-rendered=\"$declared\"" "$WORK/dom.html" && ok "$declared of $declared charts rendered" \
  || bad "rendered count differs from $declared"
# Each chart's own element holds an SVG drawn by Vega with symbols or lines in it.
for i in $(seq 1 "$declared"); do
  seg=$(awk -v id="id=\"chart-$i\"" 'index($0, id) {p=1} p {print} /<\/figure>/ && p {exit}' \
        <(sed 's/<figure>/\n<figure>/g; s/<\/figure>/<\/figure>\n/g' "$WORK/dom.html"))
  if grep -q 'class="marks"' <<<"$seg" && grep -qE 'class="mark-(symbol|line)' <<<"$seg"; then
    ok "chart-$i has an SVG with marks"
  else
    bad "chart-$i has no rendered SVG"
  fi
done
grep -q 'class="chart chart-error"' "$WORK/dom.html" && bad "a chart shows an error" || ok "no chart shows an error"
# The charts' titles are drawn as SVG text, so the browser really laid them out.
grep -q 'Accuracy vs bit width: fashion-mnist / academic' "$WORK/dom.html" && grep -q 'Pareto front' "$WORK/dom.html" \
  && grep -q 'Simulated vs deployed accuracy' "$WORK/dom.html" && ok "the three kinds of chart are present" \
  || bad "a kind of chart is missing"

# A screenshot of the page against one of an empty page of the same size: the report's must hold
# far more drawing (PNG compresses a blank page to almost nothing).
shot=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run --hide-scrollbars --window-size=1280,1600
      --virtual-time-budget=20000)
printf '<!DOCTYPE html><html><body></body></html>' >"$WORK/blank.html"
timeout 90 "$CHROMIUM" "${shot[@]}" --user-data-dir="$WORK/profile2" --screenshot="$WORK/report.png" "file://$page" >/dev/null 2>&1
timeout 90 "$CHROMIUM" "${shot[@]}" --user-data-dir="$WORK/profile3" --screenshot="$WORK/blank.png" "file://$WORK/blank.html" >/dev/null 2>&1
rs=$(stat -c %s "$WORK/report.png" 2>/dev/null || echo 0); bs=$(stat -c %s "$WORK/blank.png" 2>/dev/null || echo 0)
[ "$bs" -gt 0 ] && [ "$rs" -gt $((bs * 10)) ] && ok "screenshot is not blank ($rs bytes vs $bs for an empty page)" \
  || bad "screenshot looks blank ($rs bytes vs $bs for an empty page)"

echo "$fails failed"
[ $fails -eq 0 ]
