"""setup.py — puts the C library inside the package: builds libculeace.so
from this repository with CMake (the build/ tree of the repository root is
reused when it already holds one), or copies the one named by
$CULEACE_PREBUILT_LIBRARY, into culeace/_lib/ of the wheel, with the CUDA
backend module libculeace_cuda.so when it was built next to it (the library
loads that module itself, on first use of a GPU). The package loads the
library with ctypes (culeace/_native.py)."""

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def built_library():
    given = os.environ.get("CULEACE_PREBUILT_LIBRARY")
    if given:
        path = Path(given)
        if not path.is_file():
            raise SystemExit(f"CULEACE_PREBUILT_LIBRARY={given}: no such file")
        return path
    if not (REPO / "CMakeLists.txt").is_file():
        raise SystemExit("culeace: build from the repository (pip install "
                         "./python_bindings) or set CULEACE_PREBUILT_LIBRARY")
    build = REPO / "build"
    subprocess.run(["cmake", "-S", str(REPO), "-B", str(build),
                    "-DCMAKE_BUILD_TYPE=Release"], check=True)
    subprocess.run(["cmake", "--build", str(build), "-j",
                    str(os.cpu_count() or 2)], check=True)
    return build / "libculeace.so"


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        dest = Path(self.build_lib) / "culeace" / "_lib"
        dest.mkdir(parents=True, exist_ok=True)
        lib = built_library()
        shutil.copy2(lib, dest / "libculeace.so")
        module = lib.parent / "libculeace_cuda.so"
        if module.is_file():
            shutil.copy2(module, dest / "libculeace_cuda.so")


class BinaryDistribution(Distribution):
    def has_ext_modules(self):  # a platform wheel: it carries a .so
        return True


setup(cmdclass={"build_py": BuildWithLibrary}, distclass=BinaryDistribution)
