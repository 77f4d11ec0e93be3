"""_native.py — loads libculeace with ctypes and declares the C API
(include/culeace.h) once: argument and return types, the option structs, and
`check`, which turns a failed status into a CuleaceError carrying the
library's message.

OpenBLAS reads OPENBLAS_CORETYPE only when it loads, and on virtual machines
that hide the CPU model its detection can fall back to its slowest x86-64
kernel (the CLI re-executes itself to fix that; a library cannot): so while
libculeace (and with it OpenBLAS) loads, OPENBLAS_CORETYPE is set to the
kernel of the CPU's instruction set (AVX-512: SkylakeX, AVX2: Haswell),
unless the user set it or CULEACE_NO_BLAS_KERNEL=1; it is restored after.

Where the library comes from, first match wins:
  1. $CULEACE_LIBRARY (a path to libculeace.so);
  2. the copy installed inside this package (culeace/_lib/libculeace.so);
  3. a source checkout's build: <repo>/build/libculeace.so when this package
     is imported from <repo>/python_bindings.
"""

import ctypes as C
import os
import platform
from pathlib import Path

_HERE = Path(__file__).resolve().parent


class CuleaceError(RuntimeError):
    """A failure reported by the C library: .status is the code's name
    (e.g. "CULEACE_ERR_SHAPE"), the text is the library's own message."""

    def __init__(self, status_name, message):
        super().__init__(message)
        self.status = status_name


def _candidates():
    env = os.environ.get("CULEACE_LIBRARY")
    if env:
        return [Path(env)]
    return [_HERE / "_lib" / "libculeace.so",
            _HERE.parent.parent / "build" / "libculeace.so"]


def _cpu_blas_kernel():
    """OpenBLAS kernel for this CPU's instruction set, or None."""
    if platform.machine() != "x86_64":
        return None
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((set(line.split(":", 1)[1].split()) for line in f
                          if line.startswith("flags")), set())
    except OSError:
        return None
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        return "SkylakeX"
    if {"avx2", "fma"} <= flags:
        return "Haswell"
    return None


def _open(path):
    kernel = None
    if "OPENBLAS_CORETYPE" not in os.environ and \
            not os.environ.get("CULEACE_NO_BLAS_KERNEL"):
        kernel = _cpu_blas_kernel()
    if kernel:
        os.environ["OPENBLAS_CORETYPE"] = kernel
    try:
        return C.CDLL(str(path))
    finally:
        if kernel:
            del os.environ["OPENBLAS_CORETYPE"]


def _load():
    tried = []
    for path in _candidates():
        if path.is_file():
            return _open(path), path
        tried.append(str(path))
    raise ImportError(
        "culeace: the C library libculeace.so was not found (looked at "
        + ", ".join(tried)
        + "); build it with `bash scripts/build.sh` or set CULEACE_LIBRARY")


lib, library_path = _load()

# ---- option and info structs (field order as in culeace.h) ----------------
i64 = C.c_int64
vp = C.c_void_p


class CtxOpts(C.Structure):
    _fields_ = [("device", C.c_int), ("device_index", C.c_int),
                ("n_threads", C.c_int)]


class FitOpts(C.Structure):
    _fields_ = [("method", C.c_int), ("affine", C.c_int),
                ("shrinkage", C.c_int), ("constrain_cov_trace", C.c_int),
                ("svd_tol", C.c_double), ("precision", C.c_int)]


class EraserInfo(C.Structure):
    _fields_ = [("d", i64), ("rank", i64), ("z_dim", i64), ("n_seen", i64),
                ("n_classes", i64), ("method", C.c_int), ("affine", C.c_int),
                ("shrinkage", C.c_int), ("constrain_cov_trace", C.c_int),
                ("svd_tol", C.c_double)]


class EraserMeta(C.Structure):
    _fields_ = [("source_file", C.c_char_p), ("source_dataset", C.c_char_p),
                ("layer", i64), ("layer_name", C.c_char_p),
                ("label_dataset", C.c_char_p), ("class_values", C.c_char_p)]


class ProbeOpts(C.Structure):
    _fields_ = [("kind", C.c_int), ("C", C.c_double), ("tol", C.c_double),
                ("max_iter", C.c_int), ("history", C.c_int),
                ("standardize", C.c_int), ("balanced", C.c_int)]


class ProbeInfo(C.Structure):
    _fields_ = [("kind", C.c_int), ("d", i64), ("n_classes", i64),
                ("n_outputs", i64), ("n_train", i64), ("n_iter", C.c_int),
                ("converged", C.c_int), ("objective", C.c_double),
                ("grad_max", C.c_double)]


# enum values (culeace.h)
DTYPE = {"float32": 0, "float16": 1, "bfloat16": 2, "float64": 3}
DEVICE_AUTO, DEVICE_CPU, DEVICE_CUDA = 0, 1, 2
METHOD = {"leace": 0, "orth": 1}  # the fitter's methods
METHOD_NAMES = ("leace", "orth", "inlp", "rlace", "oracle", "quadratic")  # culeace_method
METHOD_NAME = dict(enumerate(METHOD_NAMES))
PRECISION = {"float64": 0, "float32": 1, "tensor": 2, "auto": 3}
Z_CLASSES, Z_CONTINUOUS = 0, 1
PROBE_KIND = {"logistic": 0, "diffmeans": 1}

P = C.POINTER
_sigs = {
    "culeace_status_name": (C.c_char_p, [C.c_int]),
    "culeace_strerror": (C.c_char_p, [C.c_int]),
    "culeace_version": (C.c_char_p, []),
    "culeace_backends_compiled": (C.c_char_p, []),
    "culeace_ctx_opts_init": (None, [P(CtxOpts)]),
    "culeace_ctx_create": (C.c_int, [P(CtxOpts), P(vp), C.c_char_p, C.c_size_t]),
    "culeace_ctx_free": (None, [vp]),
    "culeace_ctx_last_error": (C.c_char_p, [vp]),
    "culeace_ctx_backend_name": (C.c_char_p, [vp]),
    "culeace_ctx_device_note": (C.c_char_p, [vp]),
    "culeace_fit_opts_init": (None, [P(FitOpts)]),
    "culeace_fitter_create": (C.c_int, [vp, i64, i64, C.c_int, P(FitOpts), P(vp)]),
    "culeace_fitter_free": (None, [vp]),
    "culeace_fitter_update_classes": (C.c_int, [vp, vp, C.c_int, i64, i64, vp]),
    "culeace_fitter_update_continuous": (C.c_int, [vp, vp, C.c_int, i64, i64, vp, i64]),
    "culeace_fitter_rows": (i64, [vp]),
    "culeace_fitter_z_dim": (i64, [vp]),
    "culeace_fitter_moments": (C.c_int, [vp, vp, vp, vp, vp]),
    "culeace_fitter_finalize": (C.c_int, [vp, P(vp)]),
    "culeace_eraser_free": (None, [vp]),
    "culeace_eraser_info_get": (C.c_int, [vp, P(EraserInfo)]),
    "culeace_eraser_factors": (C.c_int, [vp, vp, vp, vp]),
    "culeace_eraser_from_factors": (C.c_int, [vp, i64, i64, vp, vp, vp, P(vp)]),
    "culeace_eraser_apply": (C.c_int, [vp, vp, vp, C.c_int, i64, i64]),
    "culeace_eraser_apply_device": (C.c_int, [vp, vp, vp, C.c_int, i64, i64, vp]),
    "culeace_eraser_apply_oracle": (C.c_int, [vp, vp, vp, C.c_int, i64, i64, vp, i64]),
    "culeace_eraser_from_oracle": (C.c_int, [vp, i64, i64, vp, vp, P(vp)]),
    "culeace_eraser_oracle_params": (C.c_int, [vp, vp, vp]),
    "culeace_eraser_apply_quadratic": (C.c_int, [vp, vp, vp, C.c_int, i64, i64, vp]),
    "culeace_eraser_from_quadratic": (C.c_int, [vp, i64, i64, vp, vp, vp, P(vp)]),
    "culeace_eraser_quadratic_params": (C.c_int, [vp, vp, vp, vp]),
    "culeace_eraser_meta_init": (None, [P(EraserMeta)]),
    "culeace_eraser_file_create": (C.c_int, [vp, C.c_char_p, P(vp)]),
    "culeace_eraser_file_add": (C.c_int, [vp, vp, P(EraserMeta)]),
    "culeace_eraser_file_commit": (C.c_int, [vp]),
    "culeace_eraser_file_free": (None, [vp]),
    "culeace_eraser_file_open": (C.c_int, [vp, C.c_char_p, P(vp)]),
    "culeace_eraser_file_count": (i64, [vp]),
    "culeace_eraser_file_load": (C.c_int, [vp, i64, P(vp), P(EraserMeta)]),
    "culeace_probe_opts_init": (None, [P(ProbeOpts)]),
    "culeace_probe_fit_batch": (C.c_int, [vp, vp, i64, i64, i64, i64, i64,
                                          P(vp), P(vp), P(ProbeOpts), P(vp)]),
    "culeace_probe_free": (None, [vp]),
    "culeace_probe_info_get": (C.c_int, [vp, P(ProbeInfo)]),
    "culeace_probe_predict_proba": (C.c_int, [vp, vp, vp, i64, i64, vp]),
    "culeace_probe_params": (C.c_int, [vp, vp, vp, vp, vp]),
    "culeace_stratified_folds": (C.c_int, [vp, i64, vp, i64, vp, i64,
                                           C.c_uint64, vp]),
    "culeace_control_labels": (C.c_int, [vp, i64, vp, i64, vp, C.c_uint64,
                                         vp]),
}
for _name, (_res, _args) in _sigs.items():
    _fn = getattr(lib, _name)
    _fn.restype = _res
    _fn.argtypes = _args


def status_name(code):
    return lib.culeace_status_name(code).decode()


def check(code, ctx=None, what=None):
    """Raises CuleaceError for a non-zero status: the context's last message
    when there is one, else the code's description; `what` prefixes it."""
    if code == 0:
        return
    msg = ""
    if ctx:
        msg = (lib.culeace_ctx_last_error(ctx) or b"").decode(errors="replace")
    if not msg:
        msg = lib.culeace_strerror(code).decode()
    if what:
        msg = f"{what}: {msg}"
    raise CuleaceError(status_name(code), msg)


def version():
    return lib.culeace_version().decode()


def backends_compiled():
    return lib.culeace_backends_compiled().decode().split()


def blas_kernel():
    """The kernel OpenBLAS runs in this process (e.g. "SkylakeX"), or None
    when the library does not use OpenBLAS."""
    try:
        fn = C.CDLL("libopenblas.so.0").openblas_get_corename
    except (OSError, AttributeError):
        return None
    fn.restype = C.c_char_p
    return fn().decode()
