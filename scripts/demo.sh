#!/usr/bin/env bash
# demo.sh — the main job on the sample data: installs dependencies, builds, then
# inspects data/sample.h5, fits one LEACE eraser per layer, writes an erased
# copy and checks the guarantee on it. Outputs go to demo-out/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/scripts/install-deps.sh"
bash "$here/scripts/build.sh"
cl="$here/build/culeace"
out="$here/demo-out"
mkdir -p "$out"
set -x
"$cl" inspect "$here/data/sample.h5"
"$cl" fit "$here/data/sample.h5" --x /hidden --z /labels -o "$out/erasers.h5"
"$cl" apply "$out/erasers.h5" "$here/data/sample.h5" --x /hidden -o "$out/sample-erased.h5"
"$cl" check "$out/erasers.h5" "$here/data/sample.h5" --x /hidden --z /labels
