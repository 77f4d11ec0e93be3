#!/usr/bin/env bash
# run.sh — the self/other example from a clean clone: installs what it needs
# (scripts/install-deps.sh: Debian packages and the Python packages,
# torch, transformers and the model package included), builds the library,
# and runs run.py (outputs in examples/self_other/out/).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$here/scripts/install-deps.sh"
bash "$here/scripts/build.sh"
python3 "$here/examples/self_other/run.py" "$@"
