"""probe.py — probe_layers, a probe sweep over layers held in memory that
reports the numbers `culeace probe --device cpu` reports on the same rows:
the CLI's folds and control labels (culeace_stratified_folds,
culeace_control_labels, the same seeds), per layer one
culeace_probe_fit_batch call fitting every fold and its control twin in the
CLI's order, held-out metrics per fold (_probe_metrics.py), and with
erase=True LEACE fitted on each fold's training rows and the erased rows
re-probed. Results are a ProbeResults (probe_results.py)."""

import ctypes as ct
import math
import operator
import sys

import numpy as np

from . import _context
from . import _native as N
from . import _probe_data as D
from . import _probe_metrics as M
from .leace import LeaceFitter
from .probe_results import LayerResult, Metric, ProbeResults

DEFAULT_SEED = 0               # culeace probe --seed
CONTROL_SEED_STEP = 0x100000001  # the CLI's seed step between control draws
CONTROL_DRAWS = 100
_U64 = (1 << 64) - 1


class _Batch:
    """P probes on the rows x (n, d) float32 fitted together by
    culeace_probe_fit_batch: probe p learns labels[p] (n,) int32 from the
    rows with train[p] (n,) uint8 set. Frees its probes when collected."""

    def __init__(self, ctx, x, k, labels, train, opts):
        self.ctx, self.handles = ctx, []
        n, d = x.shape
        P = len(labels)
        lab = (ct.c_void_p * P)(*[a.ctypes.data for a in labels])
        tr = (ct.c_void_p * P)(*[m.ctypes.data for m in train])
        out = (ct.c_void_p * P)()
        try:
            ctx.call(N.lib.culeace_probe_fit_batch, ctx.handle, x.ctypes.data,
                     n, d, d, k, P, lab, tr, ct.byref(opts), out,
                     what="fitting the probes")
        finally:
            self.handles = [h for h in out]

    def __del__(self):
        for h in getattr(self, "handles", []):
            if h:
                N.lib.culeace_probe_free(h)
        self.handles = []

    def predict_proba(self, p, xs, k):
        proba = np.empty((xs.shape[0], k))
        if xs.shape[0]:
            self.ctx.call(N.lib.culeace_probe_predict_proba, self.ctx.handle,
                          self.handles[p], xs.ctypes.data, xs.shape[0],
                          xs.shape[1], proba.ctypes.data, what="predicting")
        return proba

    def info(self, p):
        info = N.ProbeInfo()
        N.check(N.lib.culeace_probe_info_get(self.handles[p], ct.byref(info)))
        return bool(info.converged), int(info.n_iter)


def _positive(name, v, why):
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, not {v!r}") from None
    if not (math.isfinite(f) and f > 0):
        raise ValueError(f"{name} must be a finite number > 0{why}, not {v!r}")
    return f


def _probe_opts(kind, C, tol, max_iter, standardize, balanced):
    if kind not in N.PROBE_KIND:
        raise ValueError(f"kind must be one of {sorted(N.PROBE_KIND)}, not {kind!r}")
    C = _positive("C", C, " (the inverse L2 strength)")
    tol = _positive("tol", tol, "")
    max_iter = operator.index(max_iter)
    if not 1 <= max_iter <= 1000000:
        raise ValueError(f"max_iter must be from 1 to 1000000, not {max_iter}")
    opts = N.ProbeOpts()
    N.lib.culeace_probe_opts_init(ct.byref(opts))
    opts.kind, opts.C, opts.tol = N.PROBE_KIND[kind], float(C), float(tol)
    opts.max_iter, opts.standardize = max_iter, int(bool(standardize))
    opts.balanced = int(bool(balanced))
    return opts


def _folds(ctx, y, k, groups, n_folds, seed):
    fold = np.empty(len(y), dtype=np.int32)
    ctx.call(N.lib.culeace_stratified_folds, ctx.handle, len(y), y.ctypes.data,
             k, groups.ctypes.data if groups is not None else None, n_folds,
             seed, fold.ctypes.data, what="cross-validation folds")
    return fold


def _fold_class_counts(fold, labels, n_folds, k):
    """(n_folds, k) used rows (label >= 0) per fold and class."""
    used = labels >= 0
    flat = fold[used].astype(np.int64) * k + labels[used]
    return np.bincount(flat, minlength=n_folds * k).reshape(n_folds, k)


def _control(ctx, y, k, groups, fold, n_folds, seed):
    """The CLI's control labels: the first of up to 100 draws (seeds seed +
    a * 0x100000001) that leaves every class in every training fold.
    Returns (labels, seed used, class counts)."""
    for a in range(CONTROL_DRAWS):
        s = (seed + a * CONTROL_SEED_STEP) & _U64
        ctrl = np.empty(len(y), dtype=np.int32)
        ctx.call(N.lib.culeace_control_labels, ctx.handle, len(y),
                 y.ctypes.data, k, groups.ctypes.data if groups is not None
                 else None, s, ctrl.ctypes.data, what="control labels")
        cnt = _fold_class_counts(fold, ctrl, n_folds, k)
        tot = cnt.sum(axis=0)
        if ((tot[None, :] - cnt) > 0).all():
            return ctrl, s, tot
    raise ValueError(f"control=True: no permutation of the "
                     f"{'group' if groups is not None else 'row'} labels in "
                     f"{CONTROL_DRAWS} draws leaves every class in every "
                     "training fold; use fewer folds or more groups")


def _erased_accuracy(ctx, x, y, k, train, test_idx, opts):
    """LEACE on the training rows (the CLI's --erase: default fit options,
    one indicator column for 2 classes, one-hot for more), all rows erased,
    a probe refitted on the erased training rows, accuracy on the test rows."""
    tr_idx = np.nonzero(train)[0]
    fitter = LeaceFitter(x.shape[1], 1 if k == 2 else k)
    fitter.update(x[tr_idx], y[tr_idx])
    xe = x.copy()
    fitter.eraser.apply_(xe)
    batch = _Batch(ctx, xe, k, [y], [train], opts)
    return M.accuracy(y[test_idx], batch.predict_proba(0, xe[test_idx], k))


def _probe_layer(ctx, index, name, x, y, k, fold, ctrl, n_folds, opts, erase):
    n = len(y)
    train = [np.ascontiguousarray(fold != f, dtype=np.uint8)
             for f in range(n_folds)]
    labels = [y] * n_folds + ([ctrl] * n_folds if ctrl is not None else [])
    batch = _Batch(ctx, x, k, labels, train * (2 if ctrl is not None else 1),
                   opts)
    infos = [batch.info(p) for p in range(len(labels))]
    vals = {key: [math.nan] * n_folds for key in
            ("accuracy", "balanced_accuracy", "auroc", "log_loss", "majority",
             "control_accuracy", "erased_accuracy")}
    for f in range(n_folds):
        test = fold == f
        idx = np.nonzero(test)[0]
        if len(idx) == 0:
            continue
        xs, ys = x[idx], y[idx]
        proba = batch.predict_proba(f, xs, k)
        vals["accuracy"][f] = M.accuracy(ys, proba)
        vals["balanced_accuracy"][f] = M.balanced_accuracy(ys, proba)
        vals["log_loss"][f] = M.log_loss(ys, proba)
        if k == 2:
            vals["auroc"][f] = M.auroc(ys, np.ascontiguousarray(proba[:, 1]))
        vals["majority"][f] = M.majority(y, train[f].astype(bool), test, k)
        if ctrl is not None:
            pc = batch.predict_proba(n_folds + f, xs, k)
            vals["control_accuracy"][f] = M.accuracy(ctrl[idx], pc)
    if erase:
        for f in range(n_folds):
            idx = np.nonzero(fold == f)[0]
            vals["erased_accuracy"][f] = _erased_accuracy(ctx, x, y, k,
                                                          train[f], idx, opts)
    present = {"auroc": k == 2, "control_accuracy": ctrl is not None,
               "erased_accuracy": bool(erase)}
    metrics = {key: Metric(v, *M.summarise(v)) if present.get(key, True)
               else None for key, v in vals.items()}
    sel = (metrics["accuracy"].mean - metrics["control_accuracy"].mean
           if ctrl is not None else math.nan)
    return LayerResult(index, name, n, metrics, sel,
                       all(c for c, _ in infos), max(i for _, i in infos))


def _report(progress, i, m, name):
    if progress is True:
        print(f"probe: layer {name} done ({i}/{m})", file=sys.stderr, flush=True)
    elif callable(progress):
        progress(i, m, name)


def probe_layers(layers, y, groups=None, *, folds=5, seed=DEFAULT_SEED,
                 C=1.0, tol=1e-4, max_iter=100, kind="logistic",
                 standardize=True, balanced=False, control=False, erase=False,
                 mask=None, progress=None):
    """Held-out linear probes on every layer, as `culeace probe` runs them.

    layers: dict name -> array, a list of arrays (named "0", "1", ...) or
    one array; each (n, d) or (n, ..., d) rows of float16/bfloat16/float32/
    float64 features (numpy or torch, any device), converted to float32.
    y: (n,) or (n, ...) class labels (integers, strings, booleans), mapped to
    classes 0..k-1 in ascending order; per-example labels are repeated over
    the other leading axes (tokens). groups: (n,) or (n, ...) group ids kept
    within one fold; with token rows and no groups, each example's tokens
    are one group. mask: (n, ...) nonzero = the row takes part (e.g. the
    valid tokens), like the CLI's --mask; None: every row.
    folds, seed, C, tol, max_iter, kind ("logistic" or "diffmeans"),
    standardize, balanced, control (Hewitt & Liang control task and
    selectivity), erase (accuracy after LEACE fitted per training fold):
    the CLI's --folds, --seed, ... options with the CLI's defaults.
    progress: True (a line per layer on stderr) or a callable
    progress(done, total, layer_name). Returns a ProbeResults.
    """
    n_folds = operator.index(folds)
    if not 2 <= n_folds <= 1000:
        raise ValueError(f"folds must be from 2 to 1000, not {n_folds}")
    seed = operator.index(seed)
    if not 0 <= seed <= _U64:
        raise ValueError(f"seed must be an integer in 0..2**64-1, not {seed}")
    opts = _probe_opts(kind, C, tol, max_iter, standardize, balanced)
    items = D.named_layers(layers)
    lead = D.check_layers(items)
    keep = D.row_mask(mask, lead)
    ycls, values = D.classes(y, lead, keep)
    k = len(values)
    grp, unit = D.group_ids(groups, lead)
    ctx = _context.get("cpu")
    fold = _folds(ctx, ycls, k, grp, n_folds, seed)
    used = ycls >= 0
    fold_counts = _fold_class_counts(fold, ycls, n_folds, k)
    ctrl, ctrl_info = None, None
    if control:
        ctrl, s, tot = _control(ctx, ycls, k, grp, fold, n_folds, seed)
        ctrl_info = {"seed": s, "unit": "row" if grp is None else "group",
                     "class_counts": [int(c) for c in tot]}
    # the kept rows, in row order (the CLI's layer_rows)
    yk, fk = ycls[used], fold[used]
    ck = ctrl[used] if ctrl is not None else None
    out = []
    for i, (name, x) in enumerate(items):
        x32 = D.layer_rows(name, x, keep)
        out.append(_probe_layer(ctx, i, name, x32, yk, k, fk, ck, n_folds,
                                opts, erase))
        del x32
        _report(progress, i + 1, len(items), name)
    settings = {"probe": kind, "folds": n_folds, "seed": seed, "C": float(C),
                "tol": float(tol), "max_iter": int(max_iter),
                "standardize": bool(standardize), "balanced": bool(balanced),
                "control": bool(control), "erase": bool(erase),
                "erase_method": "leace" if erase else None, "mdl": False,
                "std": "population"}
    return ProbeResults(out, settings, values, np.bincount(yk, minlength=k),
                        fold, fold_counts, unit,
                        None if grp is None else int(len(np.unique(grp[used]))),
                        ctrl_info)
