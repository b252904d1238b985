# Shared by the e2e scripts (sourced): a fresh work directory, check/ok/bad counters, sql and run
# helpers, and the summary that sets the exit code.
# usage (after QB, WORK, DB, CACHE are set): source "$(dirname "$0")/harness.sh"
rm -rf "$WORK"; mkdir -p "$WORK"; cd "$WORK"
fails=0; passes=0
ok()   { passes=$((passes+1)); echo "ok   - $*"; }
bad()  { fails=$((fails+1)); echo "FAIL - $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
sql() { sqlite3 -batch -noheader "$DB" "$1"; }
run() { "$QB" run --db "$DB" --cache-dir "$CACHE" --no-progress "$@"; }
# has TEXT PATTERN...: every fixed-string PATTERN occurs in TEXT (TEXT may hold any quote).
has() { local text=$1; shift; local p; for p in "$@"; do grep -qF -- "$p" <<<"$text" || return 1; done; }
finish() { echo "$passes passed, $fails failed"; [ "$fails" -eq 0 ]; }
