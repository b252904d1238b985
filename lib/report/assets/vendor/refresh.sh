#!/usr/bin/env bash
# Refreshes the vendored charting libraries from npm: installs the versions pinned in
# package.json / package-lock.json into a scratch folder and copies their minified UMD builds and
# licence files here. To move to newer versions, edit package.json, delete package-lock.json, run
# this script, review the diff and rebuild (the files are embedded into qbench at build time).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$here/package.json" "$tmp/"
if [ -f "$here/package-lock.json" ]; then
  cp "$here/package-lock.json" "$tmp/"
  (cd "$tmp" && npm ci --no-audit --no-fund --ignore-scripts >&2)
else
  (cd "$tmp" && npm install --no-audit --no-fund --ignore-scripts >&2)
  cp "$tmp/package-lock.json" "$here/"
fi
nm=$tmp/node_modules
cp "$nm/vega/build/vega.min.js" "$nm/vega-lite/build/vega-lite.min.js" "$nm/vega-embed/build/vega-embed.min.js" "$here/"
mkdir -p "$here/licenses"
rm -f "$here"/licenses/*
# vega-embed's UMD build bundles these packages; their licences travel with it.
for p in vega vega-lite vega-embed fast-json-patch json-stringify-pretty-compact semver tslib \
         vega-interpreter vega-schema-url-parser vega-themes vega-tooltip; do
  lic=$(ls "$nm/$p" | grep -i -E '^(licen[cs]e|copying)' | head -n1)
  cp "$nm/$p/$lic" "$here/licenses/$p.LICENSE"
done
for p in vega vega-lite vega-embed; do
  node -e "const p=require('$nm/$p/package.json');console.log(p.name+' '+p.version)"
done >"$here/VERSIONS"
echo "refreshed: $(tr '\n' ' ' <"$here/VERSIONS")" >&2
