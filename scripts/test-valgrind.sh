#!/usr/bin/env bash
# test-valgrind.sh — the CLI's main commands (fit, apply, check, probe,
# inspect, and an error path) on data/sample.h5 under valgrind memcheck, from
# a CPU-only build (build-vg/; the CUDA libraries' own initialisation is
# noisy under valgrind). Fails on any memcheck error or definite leak. Takes
# about 8 minutes on 2 cores (probe dominates); not part of scripts/test.sh,
# whose ASan+UBSan run covers the same paths faster.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$here/build-vg"
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCULEACE_CUDA=OFF -DCULEACE_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=1 CULEACE_NO_BLAS_KERNEL=1
vg=(valgrind --error-exitcode=99 --leak-check=full
    --errors-for-leak-kinds=definite --trace-children=yes -q)
b="$build/culeace" s="$here/data/sample.h5"
run() { # run EXPECTED_STATUS ARGS...: fails on 99 (valgrind) or a surprise
  local want="$1"; shift
  set +e; "${vg[@]}" "$b" "$@" >/dev/null 2>"$tmp/err"; local rc=$?; set -e
  if [ "$rc" -ne "$want" ]; then
    cat "$tmp/err"; echo "test-valgrind: culeace $* exited $rc (want $want)"; exit 1
  fi
  echo "ok: culeace $1 (exit $rc)"
}
run 0 fit "$s" --x /hidden --z /labels -o "$tmp/e.h5" --quiet
run 0 apply "$tmp/e.h5" "$s" --x /hidden -o "$tmp/o.h5" --quiet
run 0 check "$tmp/e.h5" "$tmp/o.h5" --x /hidden --z /labels --quiet
run 0 probe "$s" --x /hidden --y /labels --groups /groups --folds 3 --quiet
run 0 inspect "$s"
run 1 fit "$s" --x /nope --z /labels -o "$tmp/bad.h5" --quiet
echo "test-valgrind: clean"
