"""_arrays.py — numpy arrays and torch tensors seen as the library's row
blocks without copying: (pointer, dtype, n rows, d, row stride ld) for any
leading shape with the feature axis last, plus the checks that give a clear
exception instead of a wrong answer (integer data, a strided feature axis,
rows that are not evenly spaced, a read-only array, a tensor autograd is
tracking)."""

import sys
from dataclasses import dataclass

import numpy as np

from . import _native as N


FLOAT_TYPES = "float16, bfloat16, float32 or float64"


@dataclass
class Rows:
    ptr: int      # address of row 0
    dtype: str    # "float16", "bfloat16", "float32", "float64"
    n: int        # rows: product of the leading dims
    d: int        # features (last axis)
    ld: int       # row stride in elements
    device: str   # "cpu" or "cuda:N"

    @property
    def code(self):
        return N.DTYPE[self.dtype]


def torch_module():
    """torch, when the caller has imported it, else None. torch is optional
    and heavy (seconds to import, and its own CUDA libraries): culeace never
    imports it to look at an argument, since a tensor can only exist once
    its caller has imported torch."""
    return sys.modules.get("torch")


def is_torch(x):
    torch = torch_module()
    return torch is not None and isinstance(x, torch.Tensor)


def _row_stride(shape, strides, what):
    """Element stride between consecutive rows when the leading dims of
    `shape` (all but the last) collapse into one evenly spaced row axis;
    None when they do not."""
    lead = [(s, st) for s, st in zip(shape[:-1], strides[:-1]) if s != 1]
    if not lead:
        return shape[-1]
    stride = lead[-1][1]
    expect = stride
    for size, st in reversed(lead):
        if st != expect:
            return None
        expect = st * size
    return stride


def _dtype_name(x):
    if is_torch(x):
        return str(x.dtype).replace("torch.", "")
    return x.dtype.name


def rows_of(x, d=None, writable=False, what="x",
            expected="the eraser was fitted on"):
    """Describes x (..., d) as rows; raises TypeError/ValueError with what is
    wrong. d: expected width (None: any), `expected` says whose."""
    if is_torch(x):
        dtype = _dtype_name(x)
        if dtype not in N.DTYPE:
            raise TypeError(f"{what} is a torch.{dtype} tensor: culeace takes "
                            f"{FLOAT_TYPES} activations")
        if x.dim() == 0:
            raise ValueError(f"{what} is a scalar: expected (..., {d or 'd'})")
        shape, strides = tuple(x.shape), tuple(x.stride())
        ptr = x.data_ptr()
        device = "cpu" if x.device.type == "cpu" else f"cuda:{x.device.index or 0}"
        if x.device.type not in ("cpu", "cuda"):
            raise ValueError(f"{what} is on device {x.device}: culeace runs on cpu or cuda")
        if writable and x.requires_grad and torch_module().is_grad_enabled():
            raise ValueError(f"{what} requires grad: an in-place edit would "
                             "bypass autograd; call the eraser out of place "
                             "(eraser(x)) or run under torch.no_grad()")
    else:
        x = x if isinstance(x, np.ndarray) else np.asarray(x)
        dtype = _dtype_name(x)
        if dtype not in N.DTYPE:
            raise TypeError(f"{what} has dtype {dtype}: culeace takes "
                            f"{FLOAT_TYPES} activations")
        if x.ndim == 0:
            raise ValueError(f"{what} is a scalar: expected (..., {d or 'd'})")
        if writable and not x.flags.writeable:
            raise ValueError(f"{what} is read-only: apply_ edits in place")
        item = x.itemsize
        if any(st % item for st in x.strides):
            raise ValueError(f"{what} has strides {x.strides} that are not "
                             f"multiples of its {item}-byte elements")
        shape = x.shape
        strides = tuple(st // item for st in x.strides)
        ptr = x.ctypes.data
        device = "cpu"
    width = shape[-1]
    if d is not None and width != d:
        raise ValueError(f"{what} has {width} features (shape {tuple(shape)}) "
                         f"but {expected} {d}")
    if width == 0:
        raise ValueError(f"{what} has no features (shape {tuple(shape)})")
    if strides[-1] != 1 and width > 1:
        raise ValueError(f"{what}'s feature axis is not contiguous (stride "
                         f"{strides[-1]} elements): pass a tensor whose last "
                         "axis has stride 1, e.g. x.contiguous()")
    n = 1
    for s in shape[:-1]:
        n *= s
    ld = _row_stride(shape, strides, what)
    if ld is None or (n > 1 and ld < width):
        raise ValueError(f"{what}'s rows (shape {tuple(shape)}, strides "
                         f"{tuple(strides)}) are not evenly spaced rows of "
                         f"{width} features: pass a contiguous copy")
    return Rows(ptr, dtype, n, width, max(ld, width), device)


def as_float64_matrix(z, n, what="z"):
    """z as a C-contiguous float64 numpy array (n, c) on the host."""
    if is_torch(z):
        z = z.detach().cpu()
        if z.dtype == torch_module().bfloat16:
            z = z.float()
        z = z.numpy()
    z = np.asarray(z)
    if z.dtype.kind not in "biuf":
        raise TypeError(f"{what} has dtype {z.dtype}: expected numbers")
    z = np.ascontiguousarray(z.reshape(n, -1) if z.size else z.reshape(n, 0),
                             dtype=np.float64)
    return z
