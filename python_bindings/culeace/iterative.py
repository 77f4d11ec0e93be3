"""iterative.py — the iterative erasers from Python: INLP (Ravfogel et al.
2020) and R-LACE (Ravfogel et al. 2022), as `culeace fit --method
inlp|rlace` runs them. Both hold the rows in memory as float32, hold out a
stratified fifth of them (whole groups when groups are given) to decide
when to stop, and return an orthogonal projection as a LeaceEraser (L = U,
R = U^T) with a report of the run."""

import ctypes as ct

import numpy as np

from . import _arrays as A
from . import _context
from . import _native as N
from .leace import LeaceEraser

HELD_OUT_FOLDS = 5  # as the CLI: one fold of five is held out


class InlpOpts(ct.Structure):
    _fields_ = [("iterations", ct.c_int), ("min_accuracy", ct.c_double),
                ("margin", ct.c_double), ("C", ct.c_double),
                ("max_iter", ct.c_int), ("affine", ct.c_int)]


class InlpReport(ct.Structure):
    _fields_ = [("iterations", ct.c_int), ("rank", ct.c_int64),
                ("stopped", ct.c_int), ("majority", ct.c_double),
                ("threshold", ct.c_double), ("final_accuracy", ct.c_double)]


class RlaceOpts(ct.Structure):
    _fields_ = [("rank", ct.c_int64), ("iterations", ct.c_int),
                ("batch_size", ct.c_int64), ("lr_P", ct.c_double),
                ("lr_clf", ct.c_double), ("weight_decay", ct.c_double),
                ("evaluate_every", ct.c_int), ("epsilon", ct.c_double),
                ("C", ct.c_double), ("max_iter", ct.c_int),
                ("seed", ct.c_uint64), ("affine", ct.c_int)]


class RlaceReport(ct.Structure):
    _fields_ = [("iterations", ct.c_int), ("evaluations", ct.c_int),
                ("best_iteration", ct.c_int), ("label_entropy", ct.c_double),
                ("best_loss", ct.c_double), ("accuracy", ct.c_double),
                ("majority", ct.c_double)]


vp, i64, P = ct.c_void_p, ct.c_int64, ct.POINTER
for _name, _res, _args in (
        ("culeace_inlp_opts_init", None, [P(InlpOpts)]),
        ("culeace_inlp_fit", ct.c_int, [vp, vp, i64, i64, i64, vp, i64, vp,
                                       P(InlpOpts), P(vp), P(InlpReport), vp]),
        ("culeace_rlace_opts_init", None, [P(RlaceOpts)]),
        ("culeace_rlace_fit", ct.c_int, [vp, vp, i64, i64, i64, vp, i64, vp,
                                        P(RlaceOpts), P(vp), P(RlaceReport)])):
    _fn = getattr(N.lib, _name)
    _fn.restype, _fn.argtypes = _res, _args


def _prepare(x, y, groups, seed, ctx):
    """float32 rows, class indices, the training mask and the classes."""
    rows = A.rows_of(x)
    xf = np.ascontiguousarray(
        (x.detach().cpu().numpy() if A.is_torch(x) else np.asarray(x))
        .reshape(rows.n, rows.d), dtype=np.float32)
    yv = y.detach().cpu().numpy() if A.is_torch(y) else np.asarray(y)
    if yv.dtype.kind not in "biu" or yv.reshape(-1).shape[0] != rows.n:
        raise ValueError(f"y must be {rows.n} integer class labels (got "
                         f"{yv.dtype}, {yv.size} values)")
    values, cls = np.unique(yv.reshape(-1), return_inverse=True)
    cls = np.ascontiguousarray(cls, dtype=np.int32)
    g = None
    if groups is not None:
        g = np.ascontiguousarray(np.asarray(groups).reshape(-1), dtype=np.int64)
        if g.shape[0] != rows.n:
            raise ValueError(f"groups has {g.shape[0]} values for {rows.n} rows")
    fold = np.empty(rows.n, dtype=np.int32)
    ctx.call(N.lib.culeace_stratified_folds, ctx.handle, rows.n,
             cls.ctypes.data, len(values), g.ctypes.data if g is not None
             else None, HELD_OUT_FOLDS, int(seed), fold.ctypes.data,
             what="the held-out split")
    train = np.ascontiguousarray(fold != 0, dtype=np.uint8)
    return xf, cls, train, values


def fit_inlp(x, y, *, iterations=20, min_accuracy=None, affine=True,
             groups=None, seed=0, C=1.0):
    """INLP: probes trained on 4/5 of the rows, their directions projected
    out, until held-out accuracy <= min_accuracy (default: the majority
    baseline + 0.01) or `iterations` directions. Returns (eraser, report)
    with report keys iterations, rank, stopped, majority, threshold,
    final_accuracy, accuracy (held-out accuracy before each removal),
    classes."""
    ctx = _context.get("cpu")
    xf, cls, train, values = _prepare(x, y, groups, seed, ctx)
    o = InlpOpts()
    N.lib.culeace_inlp_opts_init(ct.byref(o))
    o.iterations, o.affine, o.C = int(iterations), int(affine), float(C)
    if min_accuracy is not None:
        o.min_accuracy = float(min_accuracy)
    rep, h = InlpReport(), ct.c_void_p()
    acc = np.full(int(iterations) + 1, np.nan)
    ctx.call(N.lib.culeace_inlp_fit, ctx.handle, xf.ctypes.data, xf.shape[0],
             xf.shape[1], xf.shape[1], cls.ctypes.data, len(values),
             train.ctypes.data, ct.byref(o), ct.byref(h), ct.byref(rep),
             acc.ctypes.data, what="fit_inlp")
    report = {f: getattr(rep, f) for f, _ in InlpReport._fields_}
    report["stopped"] = bool(report["stopped"])
    report["accuracy"] = acc[:rep.iterations + 1].tolist()
    report["classes"] = values.tolist()
    return LeaceEraser._from_handle(h), report


def fit_rlace(x, y, *, rank=1, iterations=75000, affine=True, groups=None,
              seed=0, **game):
    """R-LACE: the rank-`rank` orthogonal projection of the minimax game
    (the authors' defaults; `game` may set batch_size, lr_P, lr_clf,
    weight_decay, evaluate_every, epsilon, C, max_iter). Returns (eraser,
    report) with report keys iterations, evaluations, best_iteration,
    label_entropy, best_loss, accuracy, majority, classes."""
    ctx = _context.get("cpu")
    xf, cls, train, values = _prepare(x, y, groups, seed, ctx)
    o = RlaceOpts()
    N.lib.culeace_rlace_opts_init(ct.byref(o))
    o.rank, o.iterations, o.affine, o.seed = int(rank), int(iterations), \
        int(affine), int(seed)
    names = {f for f, _ in RlaceOpts._fields_}
    for key, val in game.items():
        if key not in names or key in ("rank", "iterations", "affine", "seed"):
            raise TypeError(f"fit_rlace() got an unexpected option {key!r}")
        setattr(o, key, type(getattr(o, key))(val))
    rep, h = RlaceReport(), ct.c_void_p()
    ctx.call(N.lib.culeace_rlace_fit, ctx.handle, xf.ctypes.data, xf.shape[0],
             xf.shape[1], xf.shape[1], cls.ctypes.data, len(values),
             train.ctypes.data, ct.byref(o), ct.byref(h), ct.byref(rep),
             what="fit_rlace")
    report = {f: getattr(rep, f) for f, _ in RlaceReport._fields_}
    report["classes"] = values.tolist()
    return LeaceEraser._from_handle(h), report
