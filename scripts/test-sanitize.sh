#!/usr/bin/env bash
# test-sanitize.sh — the library, CLI and C tests built with AddressSanitizer
# + UndefinedBehaviorSanitizer (CPU backend, Debug, into build-asan/), then
# ctest and the whole Python suite (the CLI end to end, the bad-input
# catalogue with every error path, probes) against that build. Any sanitizer report fails
# the run: ASan/UBSan stop the process with their own exit codes, and the
# Python tests also look for report text in every error message.
#
#   bash scripts/test-sanitize.sh        (scripts/test.sh runs it last)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$here/build-asan"
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCULEACE_SANITIZE=ON \
  -DCULEACE_CUDA=OFF >/dev/null
cmake --build "$build" -j"$(nproc)"
export ASAN_OPTIONS="detect_leaks=1:exitcode=86:abort_on_error=0"
export UBSAN_OPTIONS="halt_on_error=1:exitcode=87:print_stacktrace=1"
(cd "$build" && ctest --output-on-failure -j2)
# The Python bindings' tests are left out here: they load the library into
# the interpreter with ctypes, i.e. the regular build (test.sh runs them).
# So is the benchmark harness's test: it runs the regular build's tools.
CULEACE_BIN="$build/culeace" python3 -m pytest -q "$here/tests/py" \
  --ignore-glob='*/test_bindings*.py' --ignore-glob='*/test_bench_sweep.py'
