"""leace.py — LeaceFitter and LeaceEraser with concept-erasure's interface
(EleutherAI's `concept_erasure`: switching is a change of import) over the C
library: streaming float64 moments, the closed-form eraser, and an in-place
edit that reads and writes each row once, on numpy arrays and torch tensors
(CPU and CUDA) without copying them."""

import ctypes as C

import numpy as np

from . import _arrays as A
from . import _context
from . import _native as N
from ._eraser_handle import EraserHandle, eraser_info


def _f64_ptr(a):
    return a.ctypes.data if a is not None else None


class LeaceEraser(EraserHandle):
    """x' = x - ((x - bias) proj_right^T) proj_left^T, the LEACE edit.

    proj_left (d, r), proj_right (r, d) and bias (d,) (None when not affine)
    are float64 numpy arrays; P = I - proj_left proj_right. `device` is where
    the eraser edits tensors ("cpu" or "cuda:N", see .to()); a torch tensor
    elsewhere is refused rather than moved.
    """

    def __init__(self, proj_left, proj_right, bias=None, *, device="cpu",
                 _handle=None, _info=None):
        L = np.ascontiguousarray(_to_numpy(proj_left), dtype=np.float64)
        R = np.ascontiguousarray(_to_numpy(proj_right), dtype=np.float64)
        if L.ndim != 2 or R.ndim != 2 or L.shape[::-1] != R.shape:
            raise ValueError(f"proj_left {L.shape} and proj_right {R.shape} "
                             "must be (d, r) and (r, d)")
        d, r = L.shape
        b = None
        if bias is not None:
            b = np.ascontiguousarray(_to_numpy(bias), dtype=np.float64)
            if b.shape != (d,):
                raise ValueError(f"bias has shape {b.shape}, expected ({d},)")
        self.proj_left, self.proj_right, self.bias = L, R, b
        self.device = _context.normalize_device(device)
        self.info = _info or {}
        if _handle is None:
            ctx = _context.get("cpu")
            h = C.c_void_p()
            ctx.call(N.lib.culeace_eraser_from_factors, ctx.handle, d, r,
                     _f64_ptr(L), _f64_ptr(R), _f64_ptr(b), C.byref(h),
                     what="eraser")
            _handle = h
        self._handle = _handle

    # ---- construction ------------------------------------------------------
    @classmethod
    def fit(cls, x, z, **kwargs):
        """Fits a LeaceFitter on (x, z) in one call and returns its eraser."""
        return LeaceFitter.fit(x, z, **kwargs).eraser

    @classmethod
    def _from_handle(cls, handle, device="cpu"):
        info = eraser_info(handle)
        d, r = info.d, info.rank
        L = np.empty((d, r)); R = np.empty((r, d)); b = np.empty(d)
        N.check(N.lib.culeace_eraser_factors(handle, _f64_ptr(L), _f64_ptr(R),
                                             _f64_ptr(b)))
        meta = {"d": d, "rank": r, "z_dim": info.z_dim, "n_seen": info.n_seen,
                "n_classes": info.n_classes,
                "method": N.METHOD_NAME.get(info.method, str(info.method)),
                "affine": bool(info.affine), "shrinkage": bool(info.shrinkage),
                "constrain_cov_trace": bool(info.constrain_cov_trace),
                "svd_tol": info.svd_tol}
        return cls(L, R, b if info.affine else None, device=device,
                   _handle=handle, _info=meta)

    # ---- properties ----------------------------------------------------------
    @property
    def dim(self):
        return self.proj_left.shape[0]

    @property
    def rank(self):
        return self.proj_left.shape[1]

    @property
    def P(self):
        """The (d, d) float64 projection I - proj_left proj_right."""
        return np.eye(self.dim) - self.proj_left @ self.proj_right

    def to(self, device):
        """The same eraser, editing tensors on `device` ("cpu", "cuda:N");
        shares the factors (the library copies them to the GPU on first
        use)."""
        other = LeaceEraser.__new__(LeaceEraser)
        other.__dict__.update(self.__dict__)
        other.device = _context.normalize_device(device)
        other._handle = None  # the original keeps ownership of the handle
        other._owner = self
        other._shared = self._handle
        return other

    def _h(self):
        return self._handle or getattr(self, "_shared", None)

    def __repr__(self):
        return (f"LeaceEraser(d={self.dim}, rank={self.rank}, "
                f"affine={self.bias is not None}, device={self.device!r})")

    # ---- editing ---------------------------------------------------------------
    def apply_(self, x):
        """Erases in place: x (..., d) float16/bfloat16/float32/float64, a
        numpy array or a torch tensor (on this eraser's device; CUDA tensors
        are edited on torch's current stream). Returns x."""
        rows = A.rows_of(x, self.dim, writable=True)
        if A.is_torch(x) and rows.device != self.device:
            raise ValueError(f"x is on {rows.device} but the eraser is on "
                             f"{self.device}: move one of them "
                             f"(eraser.to('{rows.device}') or x.to('{self.device}'))")
        if rows.n == 0:
            return x
        if rows.device == "cpu":
            ctx = _context.get("cpu")
            ctx.call(N.lib.culeace_eraser_apply, ctx.handle, self._h(),
                     rows.ptr, rows.code, rows.n, rows.ld, what="apply")
        else:
            import torch
            ctx = _context.get(rows.device)
            stream = torch.cuda.current_stream(x.device).cuda_stream
            ctx.call(N.lib.culeace_eraser_apply_device, ctx.handle, self._h(),
                     rows.ptr, rows.code, rows.n, rows.ld, stream,
                     what="apply on the GPU")
        return x

    def __call__(self, x):
        """The erased copy of x (same type, dtype, shape and device)."""
        if A.is_torch(x):
            A.rows_of(x, self.dim)  # the same checks before copying
            if x.requires_grad and A.torch_module().is_grad_enabled():
                return self._differentiable(x)
            y = x.detach().clone(memory_format=A.torch_module().contiguous_format)
        else:
            A.rows_of(np.asarray(x), self.dim)
            y = np.array(x, copy=True, order="C")
        return self.apply_(y)

    def _differentiable(self, x):
        """x' computed with torch operations (autograd sees the edit)."""
        import torch
        L = torch.as_tensor(self.proj_left, device=x.device, dtype=x.dtype)
        R = torch.as_tensor(self.proj_right, device=x.device, dtype=x.dtype)
        delta = x - torch.as_tensor(self.bias, device=x.device, dtype=x.dtype) \
            if self.bias is not None else x
        return x - (delta @ R.T) @ L.T


def _to_numpy(a):
    if A.is_torch(a):
        return a.detach().cpu().double().numpy()
    return np.asarray(a)


class _MomentFitter:
    """What LeaceFitter and OracleFitter share: the C fitter, fed continuous
    z columns (float64 moments), and its eraser computed once per update.
    A subclass sets _eraser_class and calls _create(opts) from __init__."""

    _eraser_class = None

    @classmethod
    def fit(cls, x, z, **kwargs):
        """A fitter updated once with all of (x, z); z_dim from z's shape."""
        rows = A.rows_of(x)
        z_dim = kwargs.pop("z_dim", None)
        if z_dim is None:
            z_dim = 1 if _is_labels(z) else A.as_float64_matrix(z, rows.n).shape[1]
        return cls(rows.d, z_dim, **kwargs).update(x, z)

    def _create(self, x_dim, z_dim, device, opts):
        if int(x_dim) < 1 or int(z_dim) < 1:
            raise ValueError(f"x_dim and z_dim must be >= 1 (got {x_dim}, {z_dim})")
        self.x_dim, self.z_dim = int(x_dim), int(z_dim)
        self.device = _context.normalize_device(device)
        self._ctx = _context.get(self.device)
        h = C.c_void_p()
        self._ctx.call(N.lib.culeace_fitter_create, self._ctx.handle, self.x_dim,
                       self.z_dim, N.Z_CONTINUOUS, C.byref(opts), C.byref(h),
                       what=type(self).__name__)
        self._handle = h
        self._eraser = None

    def __del__(self):
        h = getattr(self, "_handle", None)
        if h:
            N.lib.culeace_fitter_free(h)
            self._handle = None

    @property
    def n(self):
        return int(N.lib.culeace_fitter_rows(self._handle))

    def _z_matrix(self, z, n):
        """z as (n, z_dim) float64: continuous columns as concept-erasure
        takes them; integer labels (n,) one-hot when z_dim >= 2."""
        if _is_labels(z) and self.z_dim >= 2:
            zz = _one_hot(z, n, self.z_dim)
        else:
            zz = A.as_float64_matrix(z, n)
        if zz.shape != (n, self.z_dim):
            raise ValueError(f"z has {zz.size} values for {n} rows: expected "
                             f"({n},) or ({n}, {self.z_dim})")
        return zz

    def update(self, x, z):
        """Adds the rows of x with their z. Returns self."""
        if A.is_torch(x):
            x = x.detach().cpu()  # the fitter takes host rows
        rows = A.rows_of(x, self.x_dim, expected="the fitter's x_dim is")
        zz = self._z_matrix(z, rows.n)
        if rows.n == 0:
            return self
        name = type(self).__name__
        self._ctx.call(N.lib.culeace_fitter_update_continuous, self._handle,
                       rows.ptr, rows.code, rows.n, rows.ld, zz.ctypes.data,
                       self.z_dim, what=f"{name}.update")
        self._eraser = None
        return self

    @property
    def eraser(self):
        """The eraser of the moments so far (computed once per update)."""
        if self._eraser is None:
            h = C.c_void_p()
            self._ctx.call(N.lib.culeace_fitter_finalize, self._handle,
                           C.byref(h), what=f"{type(self).__name__}.eraser")
            self._eraser = self._eraser_class._from_handle(h, device=self.device)
        return self._eraser


class LeaceFitter(_MomentFitter):
    """Streaming moments for LEACE, concept-erasure's LeaceFitter interface.

    LeaceFitter(x_dim, z_dim, method="leace"|"orth", *, affine=True,
    constrain_cov_trace=True, device=None, dtype=None, shrinkage=True,
    svd_tol=0.01, precision="float64").

    update(x, z): x (..., x_dim) float rows (numpy or torch; CUDA tensors
    are copied to the host), z (n,) or (n, z_dim) numbers, used as
    continuous columns exactly as concept-erasure does; integer class
    labels (n,) with z_dim >= 2 are one-hot encoded (z_dim classes).
    `precision` is the block products' type: "float64", "float32",
    "tensor", or "auto" (float32 for float16/bfloat16 rows, float64 for
    wider ones: the command line's default).
    `device` picks where the moments are computed ("cpu", "cuda", "auto");
    `dtype` is accepted for compatibility: the moments are always float64.
    """

    _eraser_class = LeaceEraser

    def __init__(self, x_dim, z_dim, method="leace", *, affine=True,
                 constrain_cov_trace=True, device=None, dtype=None,
                 shrinkage=True, svd_tol=0.01, precision="float64"):
        if method not in N.METHOD:
            raise ValueError(f"Unknown projection type {method!r}: 'leace' or 'orth'")
        if precision not in N.PRECISION:
            raise ValueError(f"precision must be one of {sorted(N.PRECISION)}")
        self.method = method
        self.affine, self.shrinkage = bool(affine), bool(shrinkage)
        self.constrain_cov_trace, self.svd_tol = bool(constrain_cov_trace), svd_tol
        opts = N.FitOpts()
        N.lib.culeace_fit_opts_init(C.byref(opts))
        opts.method, opts.affine = N.METHOD[method], int(affine)
        opts.shrinkage, opts.constrain_cov_trace = int(shrinkage), int(constrain_cov_trace)
        opts.svd_tol, opts.precision = float(svd_tol), N.PRECISION[precision]
        self._create(x_dim, z_dim, device, opts)

    def moments(self):
        """float64 mean_x (d,), mean_z (z,), sigma_xz (d, z), sigma_xx (d, d)."""
        d, k = self.x_dim, int(N.lib.culeace_fitter_z_dim(self._handle))
        mx, mz = np.empty(d), np.empty(k)
        sxz, sxx = np.empty((d, k)), np.empty((d, d))
        self._ctx.call(N.lib.culeace_fitter_moments, self._handle, mx.ctypes.data,
                       mz.ctypes.data, sxz.ctypes.data, sxx.ctypes.data,
                       what="LeaceFitter.moments")
        return mx, mz, sxz, sxx


def _is_labels(z):
    if A.is_torch(z):
        return (not z.is_floating_point()) and z.dim() == 1
    z = np.asarray(z)
    return z.dtype.kind in "biu" and z.ndim == 1


def _one_hot(z, n, k):
    z = _to_numpy(z).astype(np.int64).reshape(-1)
    if z.shape[0] != n:
        raise ValueError(f"z has {z.shape[0]} labels for {n} rows")
    bad = (z < 0) | (z >= k)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"z[{i}] = {z[i]} is not a class in 0..{k - 1} (z_dim = {k})")
    out = np.zeros((n, k))
    out[np.arange(n), z] = 1.0
    return out
