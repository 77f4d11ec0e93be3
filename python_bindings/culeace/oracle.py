"""oracle.py — OracleFitter and OracleEraser with concept-erasure's interface
(`concept_erasure.oracle`) over the C library: oracle LEACE edits each row
with its own concept label, x' = x - (z - mean_z) coef^T with
coef = Sigma_xz pinv(Sigma_zz) (d, z_dim). Host rows are edited in place by
`culeace_eraser_apply_oracle`; CUDA tensors with torch operations on their
device (the library's oracle edit runs on host rows)."""

import ctypes as C

import numpy as np

from . import _arrays as A
from . import _context
from . import _native as N
from ._eraser_handle import EraserHandle, eraser_info
from .leace import _MomentFitter, _is_labels, _one_hot, _to_numpy

ORACLE = N.METHOD_NAMES.index("oracle")


def _z_matrix(z, n, z_dim):
    """z as (n, z_dim) float64: integer labels (n,) one-hot when z_dim >= 2
    (as LeaceFitter does), anything else used as z_dim columns."""
    if _is_labels(z) and z_dim >= 2:
        return _one_hot(z, n, z_dim)
    size = int(np.prod(z.shape)) if hasattr(z, "shape") else np.asarray(z).size
    if size != n * z_dim:
        raise ValueError(f"z has {size} values for {n} rows: expected ({n},) "
                         f"or ({n}, {z_dim})" if z_dim == 1 else
                         f"z has {size} values for {n} rows: expected "
                         f"({n}, {z_dim}) (or ({n},) class labels)")
    return A.as_float64_matrix(z, n)


class OracleEraser(EraserHandle):
    """x' = x - (z - mean_z) coef^T: coef (d, z_dim), mean_z (z_dim,)
    float64 numpy arrays. `device` is where tensors are edited ("cpu" or
    "cuda:N")."""

    def __init__(self, coef, mean_z, *, device="cpu", _handle=None,
                 _info=None):
        W = np.ascontiguousarray(_to_numpy(coef), dtype=np.float64)
        m = np.ascontiguousarray(_to_numpy(mean_z), dtype=np.float64).reshape(-1)
        if W.ndim != 2 or m.shape != (W.shape[1],):
            raise ValueError(f"coef {W.shape} and mean_z {m.shape} must be "
                             "(d, z_dim) and (z_dim,)")
        self.coef, self.mean_z = W, m
        self.device = _context.normalize_device(device)
        self.info = _info or {}
        if _handle is None:
            ctx = _context.get("cpu")
            h = C.c_void_p()
            ctx.call(N.lib.culeace_eraser_from_oracle, ctx.handle, W.shape[0],
                     W.shape[1], W.ctypes.data, m.ctypes.data, C.byref(h),
                     what="OracleEraser")
            _handle = h
        self._handle = _handle

    @classmethod
    def fit(cls, x, z, **kwargs):
        """Fits an OracleFitter on (x, z) in one call and returns its eraser."""
        return OracleFitter.fit(x, z, **kwargs).eraser

    @classmethod
    def _from_handle(cls, handle, device="cpu"):
        info = eraser_info(handle)
        coef, mz = np.empty((info.d, info.z_dim)), np.empty(info.z_dim)
        N.check(N.lib.culeace_eraser_oracle_params(handle, coef.ctypes.data,
                                                   mz.ctypes.data))
        meta = {"d": info.d, "rank": info.rank, "z_dim": info.z_dim,
                "n_seen": info.n_seen, "n_classes": info.n_classes,
                "method": "oracle", "shrinkage": bool(info.shrinkage),
                "svd_tol": info.svd_tol}
        return cls(coef, mz, device=device, _handle=handle, _info=meta)

    @property
    def dim(self):
        return self.coef.shape[0]

    @property
    def z_dim(self):
        return self.coef.shape[1]

    def to(self, device):
        """The same eraser, editing tensors on `device`."""
        return OracleEraser(self.coef, self.mean_z, device=device)

    def __repr__(self):
        return (f"OracleEraser(d={self.dim}, z_dim={self.z_dim}, "
                f"device={self.device!r})")

    def apply_(self, x, z):
        """Erases in place: x (..., d) float16/bfloat16/float32/float64 rows
        (numpy or torch, on this eraser's device), z (n,) or (n, z_dim) the
        rows' concept values (integer labels one-hot when z_dim >= 2).
        Returns x."""
        rows = A.rows_of(x, self.dim, writable=True)
        if A.is_torch(x) and rows.device != self.device:
            raise ValueError(f"x is on {rows.device} but the eraser is on "
                             f"{self.device}: move one of them")
        zz = _z_matrix(z, rows.n, self.z_dim)
        if rows.n == 0:
            return x
        if rows.device == "cpu":
            ctx = _context.get("cpu")
            ctx.call(N.lib.culeace_eraser_apply_oracle, ctx.handle, self._h(),
                     rows.ptr, rows.code, rows.n, rows.ld, zz.ctypes.data,
                     self.z_dim, what="OracleEraser.apply_")
        else:
            import torch
            with torch.no_grad():
                t = torch.as_tensor(zz - self.mean_z, device=x.device)
                corr = t @ torch.as_tensor(self.coef, device=x.device).T
                flat = x.view(-1, self.dim)
                wide = torch.float64 if x.dtype == torch.float64 else torch.float32
                flat.copy_((flat.to(torch.float64) - corr).to(wide).to(x.dtype))
        return x

    def __call__(self, x, z):
        """The erased copy of x (same type, dtype, shape and device)."""
        if A.is_torch(x):
            A.rows_of(x, self.dim)
            import torch
            if x.requires_grad and torch.is_grad_enabled():
                zz = torch.as_tensor(_z_matrix(z, x.reshape(-1, self.dim).shape[0],
                                               self.z_dim) - self.mean_z,
                                     device=x.device, dtype=x.dtype)
                W = torch.as_tensor(self.coef, device=x.device, dtype=x.dtype)
                return x - (zz @ W.T).reshape(x.shape)
            y = x.detach().clone(memory_format=torch.contiguous_format)
        else:
            A.rows_of(np.asarray(x), self.dim)
            y = np.array(x, copy=True, order="C")
        return self.apply_(y, z)


class OracleFitter(_MomentFitter):
    """Streaming moments for oracle LEACE, concept-erasure's OracleFitter
    interface: OracleFitter(x_dim, z_dim, *, device=None, dtype=None,
    shrinkage=False, svd_tol=0.01). update(x, z) as LeaceFitter.update;
    `.eraser` an OracleEraser. The moments are float64 (`dtype` is accepted
    for compatibility)."""

    _eraser_class = OracleEraser

    def __init__(self, x_dim, z_dim, *, device=None, dtype=None,
                 shrinkage=False, svd_tol=0.01):
        if not svd_tol > 0:
            raise ValueError("`svd_tol` must be positive for numerical stability.")
        self.shrinkage, self.svd_tol = bool(shrinkage), float(svd_tol)
        opts = N.FitOpts()
        N.lib.culeace_fit_opts_init(C.byref(opts))
        opts.method, opts.shrinkage, opts.svd_tol = ORACLE, int(shrinkage), self.svd_tol
        self._create(x_dim, z_dim, device, opts)

    def _z_matrix(self, z, n):
        return _z_matrix(z, n, self.z_dim)
