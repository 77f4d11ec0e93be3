"""_probe_metrics.py — the held-out metrics of a probe sweep in numpy, with
the definitions of src/core/metrics.c step for step (sums in row order, the
same clipping and tie rules), so the Python sweep reports the numbers
`culeace probe` reports: accuracy, balanced accuracy, AUROC, log-loss, the
majority-class baseline, and a metric's mean and population std over the
folds where it is defined.

y: (m,) classes 0..k-1 of the rows taking part; proba: (m, k) float64."""

import math

import numpy as np

LOGLOSS_EPS = 2.220446049250313e-16  # CULEACE_LOGLOSS_EPS (sklearn's clip)


def _seq_sum(v):
    """Left-to-right sum (C's loop order; numpy's sum is pairwise)."""
    return float(np.cumsum(v)[-1]) if len(v) else 0.0


def accuracy(y, proba):
    """Share of rows whose argmax class (ties: the lower) is the label."""
    if len(y) == 0:
        return math.nan
    return int((proba.argmax(axis=1) == y).sum()) / len(y)


def balanced_accuracy(y, proba):
    """Mean recall over the classes present among the rows."""
    pred = proba.argmax(axis=1)
    s, present = 0.0, 0
    for c in range(proba.shape[1]):
        rows = y == c
        tot = int(rows.sum())
        if tot:
            s += int((pred[rows] == c).sum()) / tot
            present += 1
    return s / present if present else math.nan


def auroc(y, score):
    """Binary AUROC of score against y == 1 from ranks, ties sharing their
    average rank (Mann-Whitney U); NaN when a class is absent."""
    order = np.argsort(score, kind="stable")
    s, pos = score[order], (y[order] == 1).astype(np.int64)
    m = len(s)
    if m == 0:
        return math.nan
    starts = np.concatenate(([0], np.nonzero(s[1:] != s[:-1])[0] + 1))
    ends = np.concatenate((starts[1:], [m]))
    pos_in = np.add.reduceat(pos, starts)
    terms = (pos_in.astype(np.float64) * 0.5) * (starts + 1 + ends).astype(np.float64)
    rank_sum = _seq_sum(terms)
    n_pos = int(pos.sum())
    n_neg = m - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    return (rank_sum - 0.5 * n_pos * (n_pos + 1)) / (n_pos * n_neg)


def log_loss(y, proba):
    """Mean of -ln(clip(proba[i, y_i])), clipped to [eps, 1 - eps]."""
    if len(y) == 0:
        return math.nan
    p = proba[np.arange(len(y)), y]
    p = np.where(p >= LOGLOSS_EPS, p, LOGLOSS_EPS)  # NaN -> eps as well
    p = np.minimum(p, 1 - LOGLOSS_EPS)
    return _seq_sum(-np.log(p)) / len(y)


def majority(y, train, test, k):
    """Accuracy on the test rows of the most frequent training class (ties:
    the lower class); NaN without training or test rows."""
    cnt = np.bincount(y[train], minlength=k)
    if cnt.sum() == 0 or not test.any():
        return math.nan
    maj = int(np.argmax(cnt))
    return int((y[test] == maj).sum()) / int(test.sum())


def summarise(values):
    """(mean, population std) over the non-NaN values, in fold order;
    (NaN, NaN) when none is defined."""
    v = [x for x in values if not math.isnan(x)]
    if not v:
        return math.nan, math.nan
    s = 0.0
    for x in v:
        s += x
    mean = s / len(v)
    q = 0.0
    for x in v:
        q += (x - mean) * (x - mean)
    return mean, math.sqrt(q / len(v))
