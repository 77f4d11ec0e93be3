#!/usr/bin/env bash
# build.sh — configures and builds culeace into build/ (CUDA backend when nvcc
# is found, as CULEACE_CUDA=AUTO decides).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$here/build" -j"$(nproc)"
