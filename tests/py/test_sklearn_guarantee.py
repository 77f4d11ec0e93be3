"""test_sklearn_guarantee.py — LEACE's guarantee, end to end through the CLI,
checked with scikit-learn.

A synthetic dump (data/make_dump.py: 4000 rows x 64, 2 layers, float32,
planted concept) is erased with `culeace fit` on the first 3000 rows (the
training rows) and `culeace apply` on the whole dump. Then, per layer:
  * logistic regression (lbfgs) trained on the erased training rows is no
    better than the constant majority-class predictor, on those rows
    (<= +0.5 pp) and on the 1000 held-out erased rows (within 0.5 pp);
  * the same model on the original rows is clearly better (> +10 pp), so
    the concept was there to erase.
Binary (one indicator column) and 5-class (one-hot) variants.
"""

import h5py
import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

N_ROWS, N_TRAIN, DIM, LAYERS = 4000, 3000, 64, 2
CASES = {
    "binary": dict(classes=2, class_weights="0.65,0.35", rank=1, seed=11),
    "5class": dict(classes=5, class_weights="0.3,0.2,0.2,0.15,0.15", rank=3, seed=12),
}


def split_file(src, dst, rows):
    """Copies the given rows of /hidden/* and /labels into a new dump."""
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        for name, ds in f["hidden"].items():
            g.create_dataset(f"hidden/{name}", data=ds[rows])
        g.create_dataset("labels", data=f["labels"][rows])


def read_layers(path):
    with h5py.File(path, "r") as f:
        return [f[f"hidden/{l}"][()].astype(np.float64) for l in range(LAYERS)]


def probe():
    return LogisticRegression(solver="lbfgs", max_iter=20000, tol=1e-8)


@pytest.fixture(scope="module", params=sorted(CASES))
def erased(request, tmp_path_factory, make_dump, run_culeace):
    """(labels, original layers, erased layers) for one case."""
    opts = CASES[request.param]
    tmp = tmp_path_factory.mktemp(request.param)
    dump = make_dump(tmp / "dump.h5", rows=N_ROWS, dim=DIM, layers=LAYERS,
                     layout="group", dtype="float32", signal=3.0, **opts)
    train = tmp / "train.h5"
    split_file(dump, train, slice(0, N_TRAIN))
    erasers, out = tmp / "erasers.h5", tmp / "erased.h5"
    run_culeace("fit", train, "--x", "/hidden", "--z", "/labels", "-o", erasers, "--quiet")
    assert erasers.is_file()
    run_culeace("apply", erasers, dump, "--x", "/hidden", "-o", out, "--quiet")
    with h5py.File(dump, "r") as f:
        y = f["labels"][()]
    with h5py.File(out, "r") as f:
        assert np.array_equal(f["labels"][()], y), "apply changed /labels"
    return y, read_layers(dump), read_layers(out)


@pytest.mark.parametrize("layer", range(LAYERS))
def test_erased_probe_is_no_better_than_majority(erased, layer):
    y, orig, ers = erased
    tr, te = slice(0, N_TRAIN), slice(N_TRAIN, None)
    dummy = DummyClassifier(strategy="most_frequent").fit(orig[layer][tr], y[tr])
    major_tr = dummy.score(orig[layer][tr], y[tr])
    major_te = dummy.score(orig[layer][te], y[te])

    m = probe().fit(ers[layer][tr], y[tr])
    acc_tr, acc_te = m.score(ers[layer][tr], y[tr]), m.score(ers[layer][te], y[te])
    assert acc_tr <= major_tr + 0.005, f"erased train acc {acc_tr:.4f} vs majority {major_tr:.4f}"
    assert abs(acc_te - major_te) <= 0.005, f"erased held-out acc {acc_te:.4f} vs majority {major_te:.4f}"

    m0 = probe().fit(orig[layer][tr], y[tr])
    acc0 = m0.score(orig[layer][te], y[te])
    assert acc0 > major_te + 0.10, f"original held-out acc {acc0:.4f} vs majority {major_te:.4f}"


def test_erasure_is_small_and_keeps_means(erased):
    """Affine LEACE keeps column means and moves rows by a rank <= k-1 edit."""
    y, orig, ers = erased
    k = len(np.unique(y))
    for x, xe in zip(orig, ers):
        tr = slice(0, N_TRAIN)
        scale = np.abs(x).max()
        assert np.abs(xe[tr].mean(0) - x[tr].mean(0)).max() <= 1e-4 * scale
        sv = np.linalg.svd(xe - x, compute_uv=False)
        assert np.sum(sv > 1e-4 * sv[0]) <= k - 1
