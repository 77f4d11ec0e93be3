"""files.py — the CLI's eraser files (docs/FORMAT.md) from Python:
load_erasers reads every eraser of a file (validated by the library before
anything is allocated), save_erasers writes them to a temporary file that
is renamed into place only when complete."""

import ctypes as C
import os

from . import _context
from . import _native as N
from .leace import LeaceEraser
from .oracle import ORACLE, OracleEraser
from .quadratic import QUADRATIC, QuadraticEraser

_ERASERS = (LeaceEraser, OracleEraser, QuadraticEraser)


class ErasersFile(dict):
    """Erasers by layer name, in file order; .meta[name] holds each one's
    source_file, source_dataset, layer, layer_name, label_dataset and
    class_values as the CLI wrote them."""

    def __init__(self):
        super().__init__()
        self.meta = {}


def _s(b):
    return b.decode(errors="replace") if b else None


def load_erasers(path, device="cpu"):
    """Reads an eraser file written by `culeace fit` or save_erasers."""
    ctx = _context.get("cpu")
    f = C.c_void_p()
    ctx.call(N.lib.culeace_eraser_file_open, ctx.handle, os.fsencode(path),
             C.byref(f), what=str(path))
    out = ErasersFile()
    try:
        for i in range(N.lib.culeace_eraser_file_count(f)):
            h, meta = C.c_void_p(), N.EraserMeta()
            ctx.call(N.lib.culeace_eraser_file_load, f, i, C.byref(h),
                     C.byref(meta), what=str(path))
            info = N.EraserInfo()
            N.check(N.lib.culeace_eraser_info_get(h, C.byref(info)))
            e = (OracleEraser if info.method == ORACLE else
                 QuadraticEraser if info.method == QUADRATIC else
                 LeaceEraser)._from_handle(h, device=device)
            m = {"source_file": _s(meta.source_file),
                 "source_dataset": _s(meta.source_dataset),
                 "layer": meta.layer, "layer_name": _s(meta.layer_name),
                 "label_dataset": _s(meta.label_dataset),
                 "class_values": _s(meta.class_values)}
            name = m["layer_name"] or (str(m["layer"]) if m["layer"] >= 0 else str(i))
            if name in out:
                name = f"{name}#{i}"
            out[name] = e
            out.meta[name] = m
    finally:
        N.lib.culeace_eraser_file_free(f)
    return out


def save_erasers(path, erasers, meta=None):
    """Writes erasers (a dict name -> eraser, in order, or a list) to
    an eraser file the CLI's apply/check read; layer names are the dict's
    keys (a list's are 0, 1, ...). meta: optional dict name -> dict of the
    fields load_erasers returns. Atomic: PATH appears only when complete."""
    items = list(erasers.items()) if isinstance(erasers, dict) else \
        [(str(i), e) for i, e in enumerate(erasers)]
    ctx = _context.get("cpu")
    f = C.c_void_p()
    ctx.call(N.lib.culeace_eraser_file_create, ctx.handle, os.fsencode(path),
             C.byref(f), what=str(path))
    try:
        for i, (name, e) in enumerate(items):
            if not isinstance(e, _ERASERS):
                raise TypeError(f"erasers[{name!r}] is a {type(e).__name__}, "
                                "not a LeaceEraser, OracleEraser or "
                                "QuadraticEraser")
            m = N.EraserMeta()
            N.lib.culeace_eraser_meta_init(C.byref(m))
            given = (meta or {}).get(name, {})
            keep = []  # the encoded strings must outlive the call

            def enc(v):
                b = str(v).encode()
                keep.append(b)
                return b
            m.layer_name = enc(name)
            m.layer = int(given.get("layer", i))
            for field in ("source_file", "source_dataset", "label_dataset",
                          "class_values"):
                if given.get(field) is not None:
                    setattr(m, field, enc(given[field]))
            ctx.call(N.lib.culeace_eraser_file_add, f, e._h(), C.byref(m),
                     what=f"{path}: eraser {name!r}")
        ctx.call(N.lib.culeace_eraser_file_commit, f, what=str(path))
    finally:
        N.lib.culeace_eraser_file_free(f)
