"""conftest.py — shared pytest fixtures for culeace's Python tests.

  repo_root       the repository holding this file
  culeace_bin     path of the CLI (env CULEACE_BIN, else <repo>/build/culeace);
                  tests that use it are skipped, with the reason, when it is
                  not built yet
  run_culeace     runs the CLI, failing the test with its stderr on error
  make_dump       writes a synthetic dump with data/make_dump.py
  make_sample     data/make_sample.py as a module (prompts, model loader)

The Python bindings are imported from <repo>/python_bindings (ahead of any
installed copy), loading <repo>/build/libculeace.so unless CULEACE_LIBRARY
names another build.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # leace_reference
sys.path.insert(0, str(REPO_ROOT / "python_bindings"))    # culeace


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT


@pytest.fixture(scope="session")
def culeace_bin():
    path = Path(os.environ.get("CULEACE_BIN", REPO_ROOT / "build" / "culeace"))
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.skip(f"culeace CLI not found at {path}: build it (cmake -S . -B build "
                    f"-DCULEACE_CUDA=OFF && cmake --build build) or set CULEACE_BIN")
    return path


@pytest.fixture(scope="session")
def run_culeace(culeace_bin):
    def run(*args, timeout=600):
        cmd = [str(culeace_bin)] + [str(a) for a in args]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} exited {p.returncode}\n"
                        f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")
        return p
    return run


@pytest.fixture(scope="session")
def make_dump():
    script = REPO_ROOT / "data" / "make_dump.py"

    def make(out, **opts):
        cmd = [sys.executable, str(script), "--quiet", "-o", str(out)]
        for key, val in opts.items():
            cmd += [f"--{key.replace('_', '-')}", str(val)]
        subprocess.run(cmd, check=True, timeout=600)
        return out
    return make


@pytest.fixture(scope="session")
def make_sample():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "make_sample", REPO_ROOT / "data" / "make_sample.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
