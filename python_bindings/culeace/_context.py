"""_context.py — one library context per device ("cpu", "cuda:0", ...),
created on first use and kept for the process. A context holds the last
error message, so each call that may fail runs under the context's lock and
reads the message before another thread can overwrite it."""

import ctypes as C
import threading

from . import _native as N

_contexts = {}
_contexts_lock = threading.Lock()


class Context:
    def __init__(self, device):
        self.device = device  # "cpu" or "cuda:N"
        opts = N.CtxOpts()
        N.lib.culeace_ctx_opts_init(C.byref(opts))
        if device == "cpu":
            opts.device = N.DEVICE_CPU
        else:
            opts.device = N.DEVICE_CUDA
            opts.device_index = int(device.split(":")[1])
        handle = C.c_void_p()
        err = C.create_string_buffer(512)
        code = N.lib.culeace_ctx_create(C.byref(opts), C.byref(handle), err, 512)
        if code != 0:
            msg = err.value.decode(errors="replace") or N.lib.culeace_strerror(code).decode()
            raise N.CuleaceError(N.status_name(code), f"device {device}: {msg}")
        self.handle = handle
        self.lock = threading.RLock()

    def call(self, fn, *args, what=None):
        """Calls a C function whose status is checked against this context."""
        with self.lock:
            N.check(fn(*args), self.handle, what)

    @property
    def backend(self):
        return N.lib.culeace_ctx_backend_name(self.handle).decode()

    def __del__(self):
        if getattr(self, "handle", None):
            N.lib.culeace_ctx_free(self.handle)
            self.handle = None


def normalize_device(device):
    """"cpu", "cuda", "cuda:1", "auto", a torch.device or None -> "cpu" or
    "cuda:N". "auto" is CUDA device 0 when this build and machine have one."""
    if device is None:
        return "cpu"
    s = str(device)
    if s == "auto":
        return "cuda:0" if cuda_available() else "cpu"
    if s == "cpu":
        return "cpu"
    if s == "cuda":
        return "cuda:0"
    if s.startswith("cuda:") and s[5:].isdigit():
        return s
    raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', not {device!r}")


def get(device="cpu"):
    device = normalize_device(device)
    with _contexts_lock:
        ctx = _contexts.get(device)
        if ctx is None:
            ctx = _contexts[device] = Context(device)
        return ctx


def cuda_available():
    """True when the library was built with CUDA and a GPU can be used."""
    if "cuda" not in N.backends_compiled():
        return False
    try:
        get("cuda:0")
        return True
    except N.CuleaceError:
        return False
