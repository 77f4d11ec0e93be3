"""test_cuda_module.py — the CUDA backend is a module (libculeace_cuda.so)
that libculeace loads on first use: a process that never uses a GPU never
maps cuBLAS/cuSOLVER, a machine without a CUDA driver never loads the
module, and when the driver is there but unusable (here: a stand-in
libcuda.so.1 with no functions) the module loads and the usual fallback
and error messages follow.

The driverless checks skip on a machine with a real driver; the stand-in
checks need the module (a CUDA build) and a C compiler."""

import ctypes
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

CUDA_LIBS = ("libcublas", "libcusolver", "libcudart", "libculeace_cuda")


def driver_present():
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def module_built(culeace_bin):
    return (culeace_bin.parent / "libculeace_cuda.so").is_file()


def loaded_files(cmd, env=None):
    """(returncode, stderr without the loader's lines, the shared objects
    the dynamic loader opened) of cmd run with LD_DEBUG=files."""
    env = dict(env or os.environ, LD_DEBUG="files")
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                       env=env, timeout=300)
    files, rest = set(), []
    for line in p.stderr.splitlines():
        if "file=" in line:
            files.add(line.split("file=", 1)[1].split()[0].rstrip(";"))
        elif not line.lstrip()[:1].isdigit():
            rest.append(line)
    return p.returncode, "\n".join(rest), files


@pytest.fixture(scope="module")
def dump(tmp_path_factory, make_dump):
    return make_dump(tmp_path_factory.mktemp("cm") / "d.h5", rows=600, dim=12,
                     layers=2, dtype="float32", layout="group")


def test_cpu_runs_never_load_the_cuda_libraries(culeace_bin, dump, tmp_path):
    """--device cpu never loads the module or any CUDA library; on a machine
    without a driver, neither does the default --device auto."""
    rc, err, files = loaded_files([culeace_bin, "fit", dump, "--x", "/hidden",
                                   "--z", "/labels", "-o", tmp_path / "e.h5",
                                   "--device", "cpu", "--quiet"])
    assert rc == 0, err
    assert any("libculeace.so" in f for f in files), files  # the probe works
    assert not [f for f in files if any(c in f for c in CUDA_LIBS)], files
    if driver_present():
        return
    rc, err, files = loaded_files([culeace_bin, "fit", dump, "--x", "/hidden",
                                   "--z", "/labels", "-o", tmp_path / "a.h5"])
    assert rc == 0, err
    want = ("no CUDA driver on this machine" if module_built(culeace_bin)
            else "not built with CUDA")
    assert "device auto: " in err and want in err and "using cpu" in err, err
    assert not [f for f in files if any(c in f for c in CUDA_LIBS)], files


def test_python_cpu_context_never_loads_the_cuda_libraries(repo_root):
    """import culeace and a CPU fit map no CUDA library into the process,
    and import no torch (torch is optional and brings its own CUDA
    libraries: culeace only looks at it once the caller has imported it)."""
    code = ("import sys, culeace, numpy as np; "
            "assert 'torch' not in sys.modules, 'import culeace imported torch'; "
            "culeace.LeaceEraser.fit(np.eye(4, dtype=np.float32).repeat(5, 0), "
            "np.arange(20) % 2, device='cpu'); "
            "maps = open('/proc/self/maps').read(); "
            f"print(sorted({{c for c in {CUDA_LIBS!r} if c in maps}}))")
    env = dict(os.environ, PYTHONPATH=str(repo_root / "python_bindings"))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]", p.stdout


def test_device_cuda_without_a_driver_says_so(culeace_bin, dump, tmp_path):
    if driver_present():
        pytest.skip("this machine has a CUDA driver")
    out = tmp_path / "e.h5"
    p = subprocess.run([str(culeace_bin), "fit", str(dump), "--x", "/hidden",
                        "--z", "/labels", "-o", str(out), "--device", "cuda"],
                       capture_output=True, text=True)
    assert p.returncode != 0
    assert "device 'cuda' requested but" in p.stderr, p.stderr
    want = ("no CUDA driver on this machine" if module_built(culeace_bin)
            else "not built with CUDA")
    assert want in p.stderr, p.stderr
    assert not out.exists()


@pytest.fixture(scope="module")
def stand_in_driver(tmp_path_factory):
    """A folder holding a libcuda.so.1 that exports no CUDA function."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler to build the stand-in driver")
    d = tmp_path_factory.mktemp("driver")
    (d / "s.c").write_text("int culeace_stand_in_driver;\n")
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(d / "libcuda.so.1"),
                    str(d / "s.c")], check=True)
    return d


def test_module_loads_where_a_driver_is_found(culeace_bin, dump, tmp_path,
                                              stand_in_driver):
    """With a libcuda.so.1 on the path the module is loaded; the runtime
    then finds the driver unusable: auto falls back to the CPU with the
    runtime's reason and gives the CPU's erasers; --device cuda fails
    cleanly with that reason and writes nothing."""
    if not module_built(culeace_bin):
        pytest.skip("built without the CUDA backend module")
    if driver_present():
        pytest.skip("this machine has a real CUDA driver")
    env = dict(os.environ, LD_LIBRARY_PATH=str(stand_in_driver) + (
        ":" + os.environ["LD_LIBRARY_PATH"]
        if os.environ.get("LD_LIBRARY_PATH") else ""))
    auto, cpu = tmp_path / "auto.h5", tmp_path / "cpu.h5"
    rc, err, files = loaded_files([culeace_bin, "fit", dump, "--x", "/hidden",
                                   "--z", "/labels", "-o", auto], env=env)
    assert rc == 0, err
    assert any("libculeace_cuda.so" in f for f in files), files
    assert "device auto: no usable GPU" in err and "using cpu" in err, err
    subprocess.run([str(culeace_bin), "fit", str(dump), "--x", "/hidden",
                    "--z", "/labels", "-o", str(cpu), "--device", "cpu",
                    "--quiet"], check=True)
    with h5py.File(auto) as a, h5py.File(cpu) as c:
        for name in c["erasers"]:
            for k in ("L", "R", "bias"):
                np.testing.assert_array_equal(a["erasers"][name][k][:],
                                              c["erasers"][name][k][:])
    out = tmp_path / "cuda.h5"
    p = subprocess.run([str(culeace_bin), "fit", str(dump), "--x", "/hidden",
                        "--z", "/labels", "-o", str(out), "--device", "cuda"],
                       capture_output=True, text=True, env=env)
    assert p.returncode != 0
    assert "no usable GPU" in p.stderr and "CUDA error" in p.stderr, p.stderr
    assert not out.exists()
