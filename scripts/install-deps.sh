#!/usr/bin/env bash
# Installs qbench's build and runtime dependencies from Debian's archive (Debian 12).
# Idempotent: packages already present are skipped by apt. chromium runs the HTML report's test
# (headless, charts must render); texlive compiles the LaTeX report in its test.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PKGS=(
  build-essential cmake ninja-build ccache pkg-config git
  libtorch-dev libopenblas0-pthread
  libyaml-cpp-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev
  libsqlite3-dev sqlite3 zlib1g-dev catch2
  libopencv-dev   # lib/data decodes the imagefolder dataset's JPEG/PNG (core, imgproc, imgcodecs)
  dataset-fashion-mnist
  chromium texlive-latex-base texlive-latex-recommended
  libonnx-dev libprotobuf-dev protobuf-compiler   # lib/onnx parses, checks and shape-infers ONNX files
  libonnx-testdata                                # ONNX operator conformance cases (tests/onnx)
  python3-torch python3-torchvision python3-onnx  # tests/onnx fixtures and cross-checks only, never at run time
  libglpk-dev       # lib/mixed solves the bit allocation as an integer linear program (GLPK)
  slurm-wlm munge   # e2e.slurm starts a private single-node Slurm cluster (qbench submit --backend slurm)
  libjpeg62-turbo-dev   # lib/sysnoise encodes and decodes JPEG through libjpeg-turbo (ISLOW/IFAST/FLOAT decoders)
  python3-pil           # scripts/make_sysnoise_fixtures.py only (fixtures), never at run time
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "install-deps: all packages present" >&2
fi

# ONNX Runtime, the ORT deploy engine (lib/export): npm's onnxruntime-node, pinned in
# scripts/ort/package-lock.json, run by Node.js. Its post-install step would download GPU files
# (and fails offline), so it is skipped: the CPU runtime ships inside the package.
ORT_DIR="$(cd "$(dirname "$0")" && pwd)/ort"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "install-deps: installing nodejs npm" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
want=$(sed -n 's/.*"onnxruntime-node": *"\([0-9.]*\)".*/\1/p' "$ORT_DIR/package.json")
have=""
if [ -f "$ORT_DIR/node_modules/onnxruntime-node/package.json" ]; then
  have=$(sed -n 's/^ *"version": *"\([0-9.]*\)".*/\1/p' "$ORT_DIR/node_modules/onnxruntime-node/package.json" | head -1)
fi
if [ "$have" != "$want" ]; then
  echo "install-deps: installing onnxruntime-node $want (npm ci in scripts/ort)" >&2
  (cd "$ORT_DIR" && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error >/dev/null)
else
  echo "install-deps: onnxruntime-node $have present" >&2
fi
