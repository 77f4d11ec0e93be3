"""_eraser_handle.py — what every eraser class shares: it owns one C eraser
(freed with the Python object), and reads the eraser's info from a handle."""

import ctypes as C

from . import _native as N


def eraser_info(handle):
    """The culeace_eraser_info of a C eraser handle."""
    info = N.EraserInfo()
    N.check(N.lib.culeace_eraser_info_get(handle, C.byref(info)))
    return info


class EraserHandle:
    """Owns self._handle (a C eraser); _h() is the handle calls use."""

    _handle = None

    def __del__(self):
        h = getattr(self, "_handle", None)
        if h:
            N.lib.culeace_eraser_free(h)
            self._handle = None

    def _h(self):
        return self._handle
