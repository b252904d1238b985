#!/usr/bin/env bash
# Configures and builds qbench (Release, Ninja, ccache) into build/. At most two parallel jobs:
# LibTorch translation units take ~1 GB of compiler memory each.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${QBENCH_JOBS:-2}
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
fi
cmake --build build -j "$JOBS"
