#!/usr/bin/env bash
# Compiles the fixture's LaTeX report with pdflatex as a standalone document. Exit 77 (ctest
# SKIP_RETURN_CODE) when pdflatex is not installed.
# usage: check_latex.sh WRITE_FIXTURE_BINARY WORK_DIR
set -u
WRITER=$1; WORK=$2
if ! command -v pdflatex >/dev/null; then
  echo "SKIP - pdflatex not installed (Debian: texlive-latex-base texlive-latex-recommended)"
  exit 77
fi
rm -rf "$WORK"; mkdir -p "$WORK"
"$WRITER" "$WORK" || { echo "FAIL - could not write the fixture"; exit 1; }
cd "$WORK"
if ! pdflatex -interaction=nonstopmode -halt-on-error report.tex >pdflatex.log 2>&1; then
  echo "FAIL - pdflatex failed:"; grep -A3 '^!' pdflatex.log; exit 1
fi
[ -s report.pdf ] || { echo "FAIL - no PDF written"; exit 1; }
grep -q '\\usepackage{booktabs}' report.tex && grep -q '\\toprule' report.tex || { echo "FAIL - not booktabs"; exit 1; }
pages=$(grep -o 'Output written on report.pdf ([0-9]* page' pdflatex.log | grep -o '[0-9]* page')
echo "ok   - report.tex compiles standalone ($pages)"
