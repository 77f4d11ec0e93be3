#!/usr/bin/env bash
# bundle.sh — builds culeace (scripts/build.sh, into build/) and packs the
# relocatable bundle with CPack: build/culeace-<version>-Linux.tar.gz holding
# bin/culeace, lib/libculeace.so, include/culeace.h and, in lib/, the
# non-system shared libraries they need (HDF5 + its chain, OpenBLAS, LAPACKE,
# libgfortran, libgomp ...; see the install section of CMakeLists.txt). The
# NVIDIA libraries are not bundled: they come from the machine it runs on.
#
#   bash scripts/bundle.sh [CMAKE_ARGS...]       e.g. -DCULEACE_CUDA=ON
#
# Environment: BUILD_DIR (default build; anything else is configured here
# with the same flags build.sh uses), CPACK_GENERATORS (default TGZ; TXZ packs
# about half the size). CPack's staging folder is removed afterwards so that
# the build folder stays small enough to carry to a GPU machine
# (scripts/gpu-check.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$here/build}"
case "$build" in /*) ;; *) build="$here/$build" ;; esac
gens="${CPACK_GENERATORS:-TGZ}"

if [ "$build" = "$here/build" ]; then
  bash "$here/scripts/build.sh" "$@"
else
  cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  cmake --build "$build" -j"$(nproc)"
fi

version="$(sed -n 's/^CMAKE_PROJECT_VERSION:[A-Z]*=//p' "$build/CMakeCache.txt")"
cuda="$(sed -n 's/^CULEACE_CUDA:[A-Z]*=//p' "$build/CMakeCache.txt")"
(cd "$build" && cpack -G "$gens" --config CPackConfig.cmake >cpack.log 2>&1) || {
  cat "$build/cpack.log" >&2
  echo "bundle: cpack failed (log above)" >&2
  exit 1
}
rm -rf "$build/_CPack_Packages"

status=0
for g in ${gens//;/ }; do
  case "$g" in
    TGZ) ext=tar.gz ;; TXZ) ext=tar.xz ;; TBZ2) ext=tar.bz2 ;; ZIP) ext=zip ;;
    *) ext="" ;;
  esac
  [ -n "$ext" ] || continue
  tarball="$build/culeace-$version-Linux.$ext"
  if [ ! -f "$tarball" ]; then
    echo "bundle: $tarball was not made" >&2
    status=1
    continue
  fi
  size=$(stat -c %s "$tarball")
  nlibs=$(tar -tf "$tarball" 2>/dev/null | grep -c '/lib/.*\.so' || true)
  printf 'bundle: %s  %.1f MiB  (%s shared libraries in lib/; CULEACE_CUDA=%s; backends: %s)\n' \
    "$tarball" "$(awk -v s="$size" 'BEGIN{print s/1048576}')" "$nlibs" "$cuda" \
    "$("$build/culeace" --version 2>/dev/null | sed -n 's/.*backends: \([^;)]*\).*/\1/p')"
done
"$build/culeace" --version 2>/dev/null | grep -q cuda \
  || echo "bundle: note: built without the CUDA backend (CULEACE_CUDA=$cuda); for" \
          "scripts/gpu-check.sh run: bash scripts/bundle.sh -DCULEACE_CUDA=ON" >&2
echo "bundle: build folder now $(du -sh "$build" | cut -f1) (carry it to run scripts/gpu-check.sh)"
exit $status
