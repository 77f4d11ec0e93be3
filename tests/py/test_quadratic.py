"""test_quadratic.py — quadratic LEACE end to end: the Python
QuadraticFitter/QuadraticEraser against concept-erasure's on the same
float64 data (two classes: closed-form midpoint; more: fixed-point
barycenter); the defining property (equal class means and covariances after
the edit, and a quadratic classifier no better than the prior on held-out
rows); the CLI (fit --method quadratic, apply --z, check) and its eraser
files; bad input refused with nothing written."""

import json
import subprocess

import h5py
import numpy as np
import pytest

import culeace

torch = pytest.importorskip("torch")
ce_quadratic = pytest.importorskip("concept_erasure.quadratic")


def _data(n=4000, d=16, k=2, balanced=True, seed=0):
    """Classes that differ in mean and covariance."""
    rng = np.random.default_rng(seed)
    if balanced:
        z = np.arange(n) % k
    else:
        z = rng.choice(k, size=n, p=np.r_[0.6, np.full(k - 1, 0.4 / (k - 1))])
    x = rng.normal(size=(n, d))
    for c in range(k):
        mix = rng.normal(size=(d, d)) * 0.3 + np.eye(d)
        x[z == c] = x[z == c] @ mix + rng.normal(size=d)
    return x, z


def _rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("shrinkage", [True, False])
@pytest.mark.parametrize("k,balanced", [(2, True), (2, False), (3, False),
                                        (5, True)])
def test_python_vs_concept_erasure(k, balanced, shrinkage):
    x, z = _data(k=k, balanced=balanced)
    ref = ce_quadratic.QuadraticFitter.fit(
        torch.from_numpy(x), torch.from_numpy(z), shrinkage=shrinkage).eraser
    fit = culeace.QuadraticFitter(x.shape[1], k, shrinkage=shrinkage)
    for i in range(0, len(x), 900):  # streamed in blocks
        fit.update(x[i:i + 900], z[i:i + 900])
    e = fit.eraser
    assert _rel(e.class_means, ref.class_means.numpy()) < 1e-12
    assert _rel(e.ot_maps, ref.ot_maps.numpy()) < 1e-6
    # the target mean: prior-weighted (concept-erasure: unweighted)
    prior = np.bincount(z, minlength=k) / len(z)
    assert _rel(e.global_mean, prior @ ref.class_means.numpy()) < 1e-12
    got = e(x, z)
    if balanced:  # then the two targets agree and so do the edits
        want = ref(torch.from_numpy(x), torch.from_numpy(z)).numpy()
        assert _rel(got, want) < 1e-6
    else:  # the same maps, shifted by the difference of the targets
        shift = e.global_mean - ref.global_mean.numpy()
        want = ref(torch.from_numpy(x), torch.from_numpy(z)).numpy() + shift
        assert _rel(got, want) < 1e-6
        # the prior-weighted target keeps the data's mean
        assert np.abs(got.mean(0) - x.mean(0)).max() < 1e-10
    y = x.copy()
    assert e.apply_(y, z) is y and np.abs(y - got).max() < 1e-12


@pytest.mark.parametrize("k", [2, 4])
def test_defining_property(k):
    """Without shrinkage, the erased rows' class means and class covariances
    are equal (to rounding) on the rows the eraser was fitted on."""
    x, z = _data(n=6000, d=12, k=k, balanced=False, seed=k)
    y = culeace.QuadraticEraser.fit(x, z, shrinkage=False)(x, z)
    means = [y[z == c].mean(0) for c in range(k)]
    covs = [np.cov(y[z == c].T) for c in range(k)]
    before = max(np.abs(np.cov(x[z == c].T) - np.cov(x[z == 0].T)).max()
                 for c in range(k))
    for c in range(1, k):
        assert np.abs(means[c] - means[0]).max() < 1e-10
        assert np.abs(covs[c] - covs[0]).max() < 1e-9 * before


def test_quadratic_probe_at_prior():
    """Classes with the same mean and different covariances: no linear
    probe finds them, QDA does; after quadratic LEACE (fitted on one half),
    QDA on the other half is at the majority baseline."""
    da = pytest.importorskip("sklearn.discriminant_analysis")
    rng = np.random.default_rng(7)
    n, d = 8000, 8
    z = rng.choice(2, size=n, p=[0.55, 0.45])
    scale = np.where(z[:, None] == 1, np.linspace(0.3, 3.0, d), 1.0)
    x = rng.normal(size=(n, d)) * scale
    tr, te = slice(0, n // 2), slice(n // 2, n)

    def qda_acc(a, b):
        q = da.QuadraticDiscriminantAnalysis().fit(a[tr], z[tr])
        return q.score(b[te], z[te])
    majority = max(np.mean(z[te] == 0), np.mean(z[te] == 1))
    assert qda_acc(x, x) > 0.85
    e = culeace.QuadraticEraser.fit(x[tr], z[tr])
    y = e(x, z)
    assert qda_acc(y, y) < majority + 0.02


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_dtypes_and_strides(dtype):
    x, z = _data(n=600, d=10, k=3, balanced=False)
    e = culeace.QuadraticEraser.fit(x, z)
    want = e(x.astype(dtype).astype(np.float64), z)
    wide = np.zeros((600, 14), dtype=dtype)
    wide[:, :10] = x.astype(dtype)
    e.apply_(wide[:, :10], z)  # strided rows, edited in place
    tol = 1e-6 if dtype == np.float32 else 2e-3
    assert np.abs(wide[:, :10].astype(np.float64) - want).max() / \
        np.abs(want).max() < tol
    assert not wide[:, 10:].any()  # the padding is untouched
    t = torch.from_numpy(x.astype(np.float32))
    got = e(t, torch.from_numpy(z))
    assert got.dtype == torch.float32 and _rel(got.double().numpy(), e(x, z)) < 1e-5
    # under autograd: a differentiable edit with the same values
    tg = torch.from_numpy(x).requires_grad_()
    out = e(tg, torch.from_numpy(z))
    out.sum().backward()
    assert _rel(out.detach().numpy(), e(x, z)) < 1e-12 and tg.grad is not None


def test_python_errors():
    x, z = _data(n=200, d=6, k=3)
    e = culeace.QuadraticEraser.fit(x, z)
    with pytest.raises(ValueError, match="not a class in 0..2"):
        e(x, np.where(z == 2, 3, z))
    with pytest.raises(ValueError, match="integer class labels"):
        e(x, z.astype(float))
    with pytest.raises(ValueError, match="labels for 200 rows"):
        e(x, z[:10])
    fit = culeace.QuadraticFitter(6, 3).update(x[z != 2][:5], z[z != 2][:5])
    with pytest.raises(culeace.CuleaceError, match="class 2 has 0"):
        fit.eraser
    with pytest.raises(ValueError, match="num_classes >= 2"):
        culeace.QuadraticFitter(6, 1)


def _run(bin_, *args, ok=True):
    p = subprocess.run([str(bin_), *map(str, args), "--device", "cpu"],
                       capture_output=True, text=True)
    if ok:
        assert p.returncode == 0, p.stderr
    return p


def _write_dump(path, n=1200, d=10, values=(3, 7, 8), seed=2):
    rng = np.random.default_rng(seed)
    y = rng.choice(values, size=n)
    x = np.empty((n, d))
    for v in values:
        sel = y == v
        mix = rng.normal(size=(d, d)) * 0.4 + np.eye(d)
        x[sel] = rng.normal(size=(sel.sum(), d)) @ mix + rng.normal(size=d)
    with h5py.File(path, "w") as f:
        f["x"] = x.astype(np.float32)
        f["y"] = y
        f["y_other"] = np.where(y == 8, 4, y)
        f["y_float"] = y.astype(np.float64)
        f["y_lonely"] = np.where(np.arange(n) == 5, 99, y)
    return x.astype(np.float32).astype(np.float64), y


def test_cli_fit_apply_check(tmp_path, culeace_bin):
    dump = tmp_path / "a.h5"
    x, y = _write_dump(dump)
    er = tmp_path / "e.h5"
    _run(culeace_bin, "fit", dump, "--x", "/x", "--z", "/y", "--method",
         "quadratic", "--no-shrinkage", "-o", er)
    with h5py.File(er) as f:
        g = f["erasers/0000"]
        assert g.attrs["method"] in (b"quadratic", "quadratic")
        assert g["ot_maps"].shape == (3, 10, 10)
        assert g["class_means"].shape == (3, 10) and g["target_mean"].shape == (10,)
    out = tmp_path / "out.h5"
    _run(culeace_bin, "apply", er, dump, "--x", "/x", "--z", "/y", "-o", out)
    cls = np.searchsorted([3, 7, 8], y)
    e = culeace.load_erasers(er)["x"]
    assert isinstance(e, culeace.QuadraticEraser)
    with h5py.File(out) as f:
        got = f["x"][:].astype(np.float64)
    want = e(x, cls)
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-6  # float32
    # class means and covariances equal after the edit
    covs = [np.cov(got[y == v].T) for v in (3, 7, 8)]
    scale = np.abs(np.cov(x[y == 3].T)).max()
    assert max(np.abs(c - covs[0]).max() for c in covs) < 1e-5 * scale
    # the same edit from the Python fitter on the same rows
    py = culeace.QuadraticFitter(10, 3, shrinkage=False).update(x, cls).eraser
    assert _rel(py.ot_maps, e.ot_maps) < 1e-9
    # in place: the same rows
    ip = tmp_path / "ip.h5"
    ip.write_bytes(dump.read_bytes())
    _run(culeace_bin, "apply", er, ip, "--x", "/x", "--z", "/y", "--in-place",
         "--block-rows", "100")
    with h5py.File(ip) as f, h5py.File(out) as g:
        assert np.array_equal(f["x"][:], g["x"][:])
    p = _run(culeace_bin, "check", er, dump, "--x", "/x", "--z", "/y", "--json")
    r = json.loads(p.stdout)["layers"][0]
    assert r["max_abs_cov_xz_after"] < 1e-5 * r["max_abs_cov_xz_before"]
    # the class covariances, measured by check, are equal after the edit
    assert r["max_class_cov_gap_after"] < 1e-5 * r["max_class_cov_gap_before"]
    p = _run(culeace_bin, "check", er, dump, "--x", "/x", "--z", "/y")
    assert "covgap before" in p.stdout


def test_cli_refusals(tmp_path, culeace_bin):
    dump = tmp_path / "a.h5"
    _write_dump(dump)
    er = tmp_path / "e.h5"
    # continuous labels; a class with one row; options that do not apply
    for z, msg in (("/y_float", "needs class labels"),
                   ("/y_lonely", "class 3 has 1")):
        p = _run(culeace_bin, "fit", dump, "--x", "/x", "--z", z, "--method",
                 "quadratic", "-o", er, ok=False)
        assert p.returncode != 0 and msg in p.stderr, p.stderr
        assert not er.exists() and not list(tmp_path.glob("e.h5*"))
    p = _run(culeace_bin, "fit", dump, "--x", "/x", "--z", "/y", "--method",
             "quadratic", "--svd-tol", "0.1", "-o", er, ok=False)
    assert p.returncode == 2 and "--svd-tol does not apply" in p.stderr
    _run(culeace_bin, "fit", dump, "--x", "/x", "--z", "/y", "--method",
         "quadratic", "-o", er)
    out = tmp_path / "out.h5"
    p = _run(culeace_bin, "apply", er, dump, "--x", "/x", "-o", out, ok=False)
    assert p.returncode != 0 and "quadratic eraser" in p.stderr
    assert "--z" in p.stderr and not out.exists()
    p = _run(culeace_bin, "apply", er, dump, "--x", "/x", "--z", "/y_other",
             "-o", out, ok=False)
    assert p.returncode != 0 and "4" in p.stderr and "not a class" in p.stderr
    assert not out.exists() and not list(tmp_path.glob("out.h5*"))
    # the erasers (k d^2 values each) must fit in --max-memory
    p = _run(culeace_bin, "apply", er, dump, "--x", "/x", "--z", "/y", "-o",
             out, "--max-memory", "3K", ok=False)
    assert p.returncode != 0 and "holding the selected erasers" in p.stderr
    assert "--max-memory" in p.stderr and not out.exists()


@pytest.mark.parametrize("corrupt,msg", [
    ("drop", "'ot_maps' is missing"),
    ("shape", "'ot_maps' is missing, of the wrong shape"),
    ("nan", "non-finite value in ot_maps"),
    ("unwritten", "not fully stored"),
    ("classes", "inconsistent fields"),
])
def test_file_round_trip_and_corruption(tmp_path, culeace_bin, corrupt, msg):
    dump = tmp_path / "a.h5"
    x, y = _write_dump(dump)
    er = tmp_path / "e.h5"
    _run(culeace_bin, "fit", dump, "--x", "/x", "--z", "/y", "--method",
         "quadratic", "-o", er)
    loaded = culeace.load_erasers(er)
    assert loaded.meta["x"]["class_values"] == "3,7,8"
    er2 = tmp_path / "e2.h5"
    culeace.save_erasers(er2, loaded, meta=loaded.meta)
    with h5py.File(er) as a, h5py.File(er2) as b:
        for k in ("class_means", "ot_maps", "target_mean"):
            assert np.array_equal(a["erasers/0000"][k][:], b["erasers/0000"][k][:])
    with h5py.File(er2, "a") as f:
        g = f["erasers/0000"]
        if corrupt == "drop":
            del g["ot_maps"]
        elif corrupt == "shape":
            del g["ot_maps"]
            g["ot_maps"] = np.zeros((2, 10, 10))
        elif corrupt == "unwritten":  # the right shape, no bytes behind it
            del g["ot_maps"]
            g.create_dataset("ot_maps", shape=(3, 10, 10), dtype="f8")
        elif corrupt == "nan":
            m = g["ot_maps"][:]
            m[1, 2, 3] = np.nan
            g["ot_maps"][...] = m
        else:
            g.attrs["n_classes"] = np.int64(1)
    with pytest.raises(culeace.CuleaceError, match=msg):
        culeace.load_erasers(er2)
    out = tmp_path / "out.h5"
    p = _run(culeace_bin, "apply", er2, dump, "--x", "/x", "--z", "/y", "-o",
             out, ok=False)
    assert p.returncode != 0 and not out.exists()
