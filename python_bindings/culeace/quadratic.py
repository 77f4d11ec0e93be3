"""quadratic.py — QuadraticFitter and QuadraticEraser with concept-erasure's
interface (`concept_erasure.quadratic`) over the C library: quadratic LEACE
moves each class onto the 2-Wasserstein barycenter of the classes'
Gaussians, x' = A_c (x - mu_c) + m, so that class means and covariances are
equal after the edit. It needs each row's class when applied. Host rows are
edited in place by `culeace_eraser_apply_quadratic`; CUDA tensors with
torch operations on their device.

m is the prior-weighted mean of the class means (the data's mean), where
concept-erasure takes the unweighted mean of the class means: the two agree
for balanced classes (see docs/METHODS.md)."""

import ctypes as C

import numpy as np

from . import _arrays as A
from . import _context
from . import _native as N
from ._eraser_handle import EraserHandle, eraser_info
from .leace import _to_numpy

QUADRATIC = N.METHOD_NAMES.index("quadratic")


def _classes(z, n, k):
    """z as (n,) int32 class indices in 0..k-1."""
    c = z.detach().cpu().numpy() if A.is_torch(z) else np.asarray(z)
    if c.dtype.kind not in "biu":
        raise ValueError(f"z must be integer class labels, got {c.dtype}")
    c = c.reshape(-1)
    if c.shape[0] != n:
        raise ValueError(f"z has {c.shape[0]} labels for {n} rows")
    bad = (c < 0) | (c >= k)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"z[{i}] = {c[i]} is not a class in 0..{k - 1}")
    return np.ascontiguousarray(c, dtype=np.int32)


class QuadraticEraser(EraserHandle):
    """x' = ot_maps[c] (x - class_means[c]) + global_mean for a row of class
    c: class_means (k, d), global_mean (d,), ot_maps (k, d, d), float64 numpy
    arrays. `device` is where tensors are edited ("cpu" or "cuda:N")."""

    def __init__(self, class_means, global_mean, ot_maps, *, device="cpu",
                 _handle=None, _info=None):
        M = np.ascontiguousarray(_to_numpy(class_means), dtype=np.float64)
        g = np.ascontiguousarray(_to_numpy(global_mean),
                                 dtype=np.float64).reshape(-1)
        T = np.ascontiguousarray(_to_numpy(ot_maps), dtype=np.float64)
        if M.ndim != 2 or M.shape[0] < 2 or g.shape != (M.shape[1],) or \
                T.shape != (M.shape[0], M.shape[1], M.shape[1]):
            raise ValueError(f"class_means {M.shape}, global_mean {g.shape} "
                             f"and ot_maps {T.shape} must be (k, d), (d,) "
                             "and (k, d, d) with k >= 2")
        self.class_means, self.global_mean, self.ot_maps = M, g, T
        self.device = _context.normalize_device(device)
        self.info = _info or {}
        if _handle is None:
            ctx = _context.get("cpu")
            h = C.c_void_p()
            ctx.call(N.lib.culeace_eraser_from_quadratic, ctx.handle,
                     M.shape[1], M.shape[0], M.ctypes.data, T.ctypes.data,
                     g.ctypes.data, C.byref(h), what="QuadraticEraser")
            _handle = h
        self._handle = _handle

    @classmethod
    def fit(cls, x, z, **kwargs):
        """Fits a QuadraticFitter on (x, z) in one call; returns its eraser."""
        return QuadraticFitter.fit(x, z, **kwargs).eraser

    @classmethod
    def _from_handle(cls, handle, device="cpu"):
        info = eraser_info(handle)
        k, d = info.n_classes, info.d
        M, T, g = np.empty((k, d)), np.empty((k, d, d)), np.empty(d)
        N.check(N.lib.culeace_eraser_quadratic_params(
            handle, M.ctypes.data, T.ctypes.data, g.ctypes.data))
        meta = {"d": d, "rank": info.rank, "z_dim": info.z_dim,
                "n_seen": info.n_seen, "n_classes": k, "method": "quadratic",
                "shrinkage": bool(info.shrinkage)}
        return cls(M, g, T, device=device, _handle=handle, _info=meta)

    @property
    def dim(self):
        return self.class_means.shape[1]

    @property
    def num_classes(self):
        return self.class_means.shape[0]

    def to(self, device):
        """The same eraser, editing tensors on `device`."""
        return QuadraticEraser(self.class_means, self.global_mean,
                               self.ot_maps, device=device)

    def __repr__(self):
        return (f"QuadraticEraser(d={self.dim}, classes={self.num_classes}, "
                f"device={self.device!r})")

    def optimal_transport(self, z, x):
        """x (..., d) all of class z moved to the barycenter (a new array or
        tensor), as concept-erasure's method of the same name."""
        c = np.full(int(np.prod(x.shape[:-1])), int(z), dtype=np.int64)
        return self(x, c)

    def apply_(self, x, z):
        """Erases in place: x (..., d) float16/bfloat16/float32/float64 rows
        (numpy or torch, on this eraser's device), z (n,) the rows' integer
        classes (0..k-1). Returns x."""
        rows = A.rows_of(x, self.dim, writable=True)
        if A.is_torch(x) and rows.device != self.device:
            raise ValueError(f"x is on {rows.device} but the eraser is on "
                             f"{self.device}: move one of them")
        cls = _classes(z, rows.n, self.num_classes)
        if rows.n == 0:
            return x
        if rows.device == "cpu":
            ctx = _context.get("cpu")
            ctx.call(N.lib.culeace_eraser_apply_quadratic, ctx.handle,
                     self._h(), rows.ptr, rows.code, rows.n, rows.ld,
                     cls.ctypes.data, what="QuadraticEraser.apply_")
        else:
            import torch
            with torch.no_grad():
                flat = x.view(-1, self.dim)
                flat.copy_(self._torch_edit(flat, cls).to(x.dtype))
        return x

    def _torch_edit(self, flat, cls):
        """The edited rows of flat (n, d) as float64 (float32 for 16/32-bit
        input), with torch operations on flat's device."""
        import torch
        wide = torch.float64 if flat.dtype == torch.float64 else torch.float32
        out = torch.empty(flat.shape, dtype=torch.float64, device=flat.device)
        idx = torch.as_tensor(cls, device=flat.device, dtype=torch.int64)
        g = torch.as_tensor(self.global_mean, device=flat.device)
        for c in range(self.num_classes):
            sel = (idx == c).nonzero().squeeze(1)
            if sel.numel() == 0:
                continue
            mu = torch.as_tensor(self.class_means[c], device=flat.device)
            A_c = torch.as_tensor(self.ot_maps[c], device=flat.device)
            out[sel] = (flat[sel].to(torch.float64) - mu) @ A_c.T + g
        return out.to(wide)

    def __call__(self, x, z):
        """The erased copy of x (same type, dtype, shape and device)."""
        if A.is_torch(x):
            A.rows_of(x, self.dim)
            import torch
            if x.requires_grad and torch.is_grad_enabled():
                flat = x.reshape(-1, self.dim)
                cls = _classes(z, flat.shape[0], self.num_classes)
                idx = torch.as_tensor(cls, device=x.device, dtype=torch.int64)
                M = torch.as_tensor(self.class_means, device=x.device,
                                    dtype=x.dtype)[idx]
                T = torch.as_tensor(self.ot_maps, device=x.device,
                                    dtype=x.dtype)[idx]
                g = torch.as_tensor(self.global_mean, device=x.device,
                                    dtype=x.dtype)
                y = torch.einsum("nij,nj->ni", T, flat - M) + g
                return y.reshape(x.shape)
            y = x.detach().clone(memory_format=torch.contiguous_format)
        else:
            A.rows_of(np.asarray(x), self.dim)
            y = np.array(x, copy=True, order="C")
        return self.apply_(y, z)


class QuadraticFitter:
    """Streaming class-conditional moments for quadratic LEACE,
    concept-erasure's QuadraticFitter interface: QuadraticFitter(x_dim,
    num_classes, *, device=None, dtype=None, shrinkage=True). update(x, z)
    with z (n,) integer classes 0..num_classes-1; `.eraser` a
    QuadraticEraser. The moments are float64 (`dtype` is accepted for
    compatibility)."""

    def __init__(self, x_dim, num_classes, *, device=None, dtype=None,
                 shrinkage=True):
        if int(x_dim) < 1 or int(num_classes) < 2:
            raise ValueError(f"x_dim must be >= 1 and num_classes >= 2 (got "
                             f"{x_dim}, {num_classes})")
        self.x_dim, self.num_classes = int(x_dim), int(num_classes)
        self.shrinkage = bool(shrinkage)
        self.device = _context.normalize_device(device)
        self._ctx = _context.get(self.device)
        opts = N.FitOpts()
        N.lib.culeace_fit_opts_init(C.byref(opts))
        opts.method, opts.shrinkage = QUADRATIC, int(shrinkage)
        h = C.c_void_p()
        self._ctx.call(N.lib.culeace_fitter_create, self._ctx.handle,
                       self.x_dim, self.num_classes, N.Z_CLASSES,
                       C.byref(opts), C.byref(h), what="QuadraticFitter")
        self._handle = h
        self._eraser = None

    @classmethod
    def fit(cls, x, z, **kwargs):
        """A fitter updated once with all of (x, z); num_classes from z."""
        rows = A.rows_of(x)
        k = kwargs.pop("num_classes", None)
        if k is None:
            k = int(np.max(z.detach().cpu().numpy() if A.is_torch(z)
                           else np.asarray(z))) + 1
        return cls(rows.d, k, **kwargs).update(x, z)

    def __del__(self):
        h = getattr(self, "_handle", None)
        if h:
            N.lib.culeace_fitter_free(h)
            self._handle = None

    @property
    def n(self):
        return int(N.lib.culeace_fitter_rows(self._handle))

    def update(self, x, z):
        """Adds the rows of x with their classes z. Returns self."""
        if A.is_torch(x):
            x = x.detach().cpu()  # the fitter takes host rows
        rows = A.rows_of(x, self.x_dim, expected="the fitter's x_dim is")
        cls = _classes(z, rows.n, self.num_classes)
        if rows.n == 0:
            return self
        self._ctx.call(N.lib.culeace_fitter_update_classes, self._handle,
                       rows.ptr, rows.code, rows.n, rows.ld, cls.ctypes.data,
                       what="QuadraticFitter.update")
        self._eraser = None
        return self

    @property
    def eraser(self):
        """The eraser of the moments so far (computed once per update)."""
        if self._eraser is None:
            h = C.c_void_p()
            self._ctx.call(N.lib.culeace_fitter_finalize, self._handle,
                           C.byref(h), what="QuadraticFitter.eraser")
            self._eraser = QuadraticEraser._from_handle(h, device=self.device)
        return self._eraser
