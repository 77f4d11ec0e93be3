"""test_oracle.py — oracle LEACE end to end: the Python OracleFitter/
OracleEraser against concept-erasure's on the same float64 data; the CLI
(fit --method oracle, apply --z, check) leaving x with zero
cross-covariance with the labels; apply without --z refused with no output;
eraser files through load_erasers/save_erasers; bad labels refused."""

import subprocess

import h5py
import numpy as np
import pytest

import culeace

torch = pytest.importorskip("torch")
ce_oracle = pytest.importorskip("concept_erasure.oracle")


def _data(n=3000, d=24, k=3, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) + 0.3
    x = rng.normal(size=(n, d)) + z @ rng.normal(size=(k, d)) * 2 + 5
    return x, z


def _rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("shrinkage", [False, True])
@pytest.mark.parametrize("k", [1, 4])
def test_python_vs_concept_erasure(k, shrinkage):
    x, z = _data(k=k)
    ref = ce_oracle.OracleFitter.fit(torch.from_numpy(x), torch.from_numpy(z),
                                     shrinkage=shrinkage).eraser
    fit = culeace.OracleFitter(x.shape[1], k, shrinkage=shrinkage)
    for i in range(0, len(x), 700):  # streamed in blocks
        fit.update(x[i:i + 700], z[i:i + 700])
    e = fit.eraser
    assert _rel(e.coef, ref.coef.numpy()) < 1e-6
    assert _rel(e.mean_z, ref.mean_z.numpy()) < 1e-6
    want = ref(torch.from_numpy(x), torch.from_numpy(z)).numpy()
    got = e(x, z)
    assert _rel(got, want) < 1e-6
    y = x.copy()
    assert e.apply_(y, z) is y and _rel(y, want) < 1e-6
    # the same through a one-call fit and for float32 tensors
    e2 = culeace.OracleEraser.fit(x, z, shrinkage=shrinkage)
    assert _rel(e2.coef, ref.coef.numpy()) < 1e-6
    t = torch.from_numpy(x).float()
    assert _rel(e(t, torch.from_numpy(z)).double().numpy(), want) < 1e-5
    if not shrinkage:  # the defining property on the fitting rows
        yc, zc = got - got.mean(0), z - z.mean(0)
        assert np.abs(yc.T @ zc).max() / np.abs((x - x.mean(0)).T @ zc).max() < 1e-10


def test_python_errors():
    x, z = _data(n=100, k=2)
    e = culeace.OracleEraser.fit(x, z)
    with pytest.raises(ValueError, match="values for 100 rows"):
        e(x, z[:50])
    with pytest.raises(culeace.CuleaceError, match="non-finite"):
        bad = z.copy()
        bad[3, 1] = np.nan
        e.apply_(x.copy(), bad)
    with pytest.raises(ValueError, match="z_dim"):
        culeace.OracleEraser(np.zeros((4, 2)), np.zeros(3))


def _write_dump(path, n=1500, d=12, values=(2, 5, 9), seed=1, float_dtype="float32"):
    rng = np.random.default_rng(seed)
    y = rng.choice(values, size=n)
    shift = {v: rng.normal(size=d) * 2 for v in values}
    x = rng.normal(size=(n, d)) + np.stack([shift[v] for v in y])
    with h5py.File(path, "w") as f:
        f["x"] = x.astype(float_dtype)
        f["y"] = y
        f["y_short"] = y[:-3]
        f["y_other"] = np.where(y == 9, 11, y)
    return x, y


def _cross_cov(x, y, values):
    z = np.stack([(y == v).astype(float) for v in values], 1)
    if len(values) == 2:
        z = z[:, 1:]
    xc = x - x.mean(0)
    return np.abs(xc.T @ (z - z.mean(0))).max() / (len(x) - 1)


def _run(bin_, *args, ok=True):
    p = subprocess.run([str(bin_), *map(str, args), "--device", "cpu"],
                       capture_output=True, text=True)
    if ok:
        assert p.returncode == 0, p.stderr
    return p


@pytest.mark.parametrize("values", [(2, 5, 9), (0, 1)])
def test_cli_fit_apply(tmp_path, culeace_bin, values):
    dump = tmp_path / "a.h5"
    x, y = _write_dump(dump, values=values, float_dtype="float64")
    er = tmp_path / "e.h5"
    _run(culeace_bin, "fit", dump, "--x", "/x", "--z", "/y", "--method",
         "oracle", "-o", er)
    with h5py.File(er) as f:
        g = f["erasers/0000"]
        assert g.attrs["method"] == b"oracle" or g.attrs["method"] == "oracle"
        zd = 1 if len(values) == 2 else len(values)
        assert g["coef"].shape == (12, zd) and g["mean_z"].shape == (zd,)
    before = _cross_cov(x, y, values)
    # -o
    out = tmp_path / "out.h5"
    _run(culeace_bin, "apply", er, dump, "--x", "/x", "--z", "/y", "-o", out)
    with h5py.File(out) as f:
        assert _cross_cov(f["x"][:], y, values) < 1e-10 * before
    # in place gives the same rows
    ip = tmp_path / "ip.h5"
    ip.write_bytes(dump.read_bytes())
    _run(culeace_bin, "apply", er, ip, "--x", "/x", "--z", "/y", "--in-place",
         "--block-rows", "100")
    with h5py.File(ip) as f, h5py.File(out) as g:
        assert np.array_equal(f["x"][:], g["x"][:])
    # check reports the erased cross-covariance
    p = _run(culeace_bin, "check", er, dump, "--x", "/x", "--z", "/y", "--json")
    import json
    r = json.loads(p.stdout)["layers"][0]
    assert r["max_abs_cov_xz_after"] < 1e-10 * r["max_abs_cov_xz_before"]


def test_cli_refusals(tmp_path, culeace_bin):
    dump = tmp_path / "a.h5"
    _write_dump(dump)
    er = tmp_path / "e.h5"
    _run(culeace_bin, "fit", dump, "--x", "/x", "--z", "/y", "--method",
         "oracle", "-o", er)
    out = tmp_path / "out.h5"
    p = _run(culeace_bin, "apply", er, dump, "--x", "/x", "-o", out, ok=False)
    assert p.returncode != 0 and "oracle" in p.stderr and "--z" in p.stderr
    assert not out.exists() and not list(tmp_path.glob("out.h5*"))
    ip = tmp_path / "ip.h5"
    ip.write_bytes(dump.read_bytes())
    p = _run(culeace_bin, "apply", er, ip, "--x", "/x", "--in-place", ok=False)
    assert p.returncode != 0 and ip.read_bytes() == dump.read_bytes()
    assert not list(tmp_path.glob("ip.h5.culeace-*"))
    # labels of the wrong length; a class the eraser does not know
    p = _run(culeace_bin, "apply", er, dump, "--x", "/x", "--z", "/y_short",
             "-o", out, ok=False)
    assert p.returncode != 0 and "rows" in p.stderr and not out.exists()
    p = _run(culeace_bin, "apply", er, dump, "--x", "/x", "--z", "/y_other",
             "-o", out, ok=False)
    assert p.returncode != 0 and "11" in p.stderr and "not a class" in p.stderr
    assert not out.exists()


def test_file_round_trip(tmp_path, culeace_bin):
    dump = tmp_path / "a.h5"
    x, y = _write_dump(dump, float_dtype="float64")
    er = tmp_path / "e.h5"
    _run(culeace_bin, "fit", dump, "--x", "/x", "--z", "/y", "--method",
         "oracle", "-o", er)
    loaded = culeace.load_erasers(er)
    e = loaded["x"]
    assert isinstance(e, culeace.OracleEraser)
    assert loaded.meta["x"]["class_values"] == "2,5,9"
    assert e.info["n_classes"] == 3 and e.z_dim == 3
    er2 = tmp_path / "e2.h5"
    culeace.save_erasers(er2, loaded, meta=loaded.meta)
    with h5py.File(er) as a, h5py.File(er2) as b:
        for k in ("coef", "mean_z"):
            assert np.array_equal(a["erasers/0000"][k][:], b["erasers/0000"][k][:])
    # the saved copy works with the CLI as the original does
    o1, o2 = tmp_path / "o1.h5", tmp_path / "o2.h5"
    _run(culeace_bin, "apply", er, dump, "--x", "/x", "--z", "/y", "-o", o1)
    _run(culeace_bin, "apply", er2, dump, "--x", "/x", "--z", "/y", "-o", o2)
    with h5py.File(o1) as a, h5py.File(o2) as b:
        assert np.array_equal(a["x"][:], b["x"][:])
    # Python's edit with one-hot labels equals the CLI's
    onehot = np.stack([(y == v).astype(float) for v in (2, 5, 9)], 1)
    with h5py.File(o1) as a:
        assert np.abs(e(x, onehot) - a["x"][:]).max() < 1e-12
    # a file without coef: a clear error naming the group and the field
    with h5py.File(er2, "a") as f:
        del f["erasers/0000/coef"]
    with pytest.raises(culeace.CuleaceError, match=r"/erasers/0000.*'coef'"):
        culeace.load_erasers(er2)


def test_python_one_hot_vs_concept_erasure():
    """Integer labels one-hot encoded; Sigma_zz singular (and a rare class
    whose variance falls under svd_tol): the pinv cuts must match."""
    rng = np.random.default_rng(3)
    n, d = 4000, 10
    y = rng.choice(4, size=n, p=[0.5, 0.3, 0.195, 0.005])
    x = rng.normal(size=(n, d)) + rng.normal(size=(4, d))[y] * 3
    oh = np.eye(4)[y]
    ref = ce_oracle.OracleFitter.fit(torch.from_numpy(x), torch.from_numpy(oh)).eraser
    e = culeace.OracleFitter(d, 4).update(x, y).eraser
    assert _rel(e.coef, ref.coef.numpy()) < 1e-6
    want = ref(torch.from_numpy(x), torch.from_numpy(oh)).numpy()
    assert _rel(e(x, y), want) < 1e-6
