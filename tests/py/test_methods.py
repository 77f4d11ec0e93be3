"""test_methods.py — `culeace fit --method inlp|rlace` end to end on
data/sample.h5: fit, apply, check, a scikit-learn probe on the erased rows,
the eraser file read by the Python package, and refused options."""

import json
import subprocess

import h5py
import numpy as np
import pytest

import culeace

SAMPLE_ARGS = ["--x", "/hidden", "--z", "/labels", "--groups", "/groups"]


@pytest.fixture(scope="module")
def sample(repo_root):
    return repo_root / "data" / "sample.h5"


def heldout_accuracy(x, y, groups):
    """Mean held-out accuracy of LogisticRegression over 5 group folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    accs = []
    for tr, te in GroupKFold(5).split(x, y, groups):
        clf = LogisticRegression(max_iter=2000).fit(x[tr], y[tr])
        accs.append(clf.score(x[te], y[te]))
    return float(np.mean(accs))


def check_projection(e, rank):
    L, R = np.asarray(e.proj_left), np.asarray(e.proj_right)
    assert L.shape == (384, rank) and R.shape == (rank, 384)
    np.testing.assert_allclose(L.T, R, atol=0)
    np.testing.assert_allclose(L.T @ L, np.eye(rank), atol=1e-10)


def test_inlp_end_to_end(tmp_path, sample, run_culeace):
    er, out = tmp_path / "inlp.h5", tmp_path / "erased.h5"
    res = json.loads(run_culeace("fit", sample, *SAMPLE_ARGS, "--method",
                                 "inlp", "--layers", "0,3", "-o", er,
                                 "--json", "--quiet").stdout)
    assert res["method"] == "inlp" and len(res["layers"]) == 2
    for layer in res["layers"]:
        assert layer["rank"] == layer["iterations"] >= 1
        assert layer["accuracy_before"] > 0.9
        assert layer["stopped"] and layer["accuracy"] <= layer["majority"] + 0.01
        assert layer["held_out"] > 0 and layer["rows"] == 420
    ers = culeace.load_erasers(er)
    for layer in res["layers"]:
        e = ers[layer["name"]]
        assert e.info["method"] == "inlp" and e.info["n_seen"] == 420
        assert e.info["n_classes"] == 2 and e.info["rank"] == layer["rank"]
        check_projection(e, layer["rank"])
    run_culeace("apply", er, sample, "--x", "/hidden", "-o", out, "--quiet")
    chk = json.loads(run_culeace("check", er, sample, "--x", "/hidden", "--z",
                                 "/labels", "--json", "--quiet").stdout)
    assert len(chk["layers"]) == 2
    with h5py.File(sample, "r") as f0, h5py.File(out, "r") as f1:
        y, g = f0["labels"][...], f0["groups"][...]
        for name in ("0", "3"):
            before = heldout_accuracy(f0["hidden"][name][...].astype(np.float64), y, g)
            after = heldout_accuracy(f1["hidden"][name][...].astype(np.float64), y, g)
            assert before > 0.95
            # no better than chance any more (the group folds reuse rows the
            # eraser was fitted on, which pushes accuracy below chance)
            assert after < 0.6, (name, after)


def test_rlace_end_to_end(tmp_path, sample, run_culeace):
    er, out = tmp_path / "rlace.h5", tmp_path / "erased.h5"
    args = ["fit", sample, *SAMPLE_ARGS, "--method", "rlace", "--layers", "3",
            "--rank", "3", "--iterations", "300", "--seed", "5", "--json",
            "--quiet"]
    res = json.loads(run_culeace(*args, "-o", er).stdout)
    layer, = res["layers"]
    assert res["method"] == "rlace" and layer["rank"] == 3
    assert layer["iterations"] == 300 and 0 <= layer["accuracy"] <= 1
    e = culeace.load_erasers(er)["3"]
    assert e.info["method"] == "rlace" and e.info["affine"]
    check_projection(e, 3)
    # deterministic for a seed
    er2 = tmp_path / "rlace2.h5"
    run_culeace(*args, "-o", er2)
    np.testing.assert_array_equal(np.asarray(e.proj_left),
                                  np.asarray(culeace.load_erasers(er2)["3"].proj_left))
    run_culeace("apply", er, sample, "--x", "/hidden", "-o", out, "--quiet")
    with h5py.File(sample, "r") as f0, h5py.File(out, "r") as f1:
        x0 = f0["hidden"]["3"][...].astype(np.float64)
        x1 = f1["hidden"]["3"][...].astype(np.float64)
    # the edit removes exactly the span of U (float16 rounding aside)
    U = np.asarray(e.proj_left)
    assert np.abs((x1 - x1.mean(0)) @ U).max() < 0.05 * np.abs(x0 @ U).max()
    run_culeace("check", er, sample, "--x", "/hidden", "--z", "/labels",
                "--quiet")


@pytest.mark.parametrize("extra, needle", [
    (["--method", "rlace", "--rank", "0"], "--rank must be a positive"),
    (["--method", "rlace", "--rank", "385"], "larger than the width"),
    (["--method", "inlp", "--iterations", "0"], "--iterations must be a positive"),
    (["--method", "inlp", "--min-accuracy", "2"], "--min-accuracy must be"),
    (["--method", "inlp", "--rank", "2"], "--rank does not apply to --method inlp"),
    (["--method", "rlace", "--min-accuracy", "0.5"],
     "--min-accuracy does not apply to --method rlace"),
    (["--method", "leace", "--iterations", "3"], "only to inlp and rlace"),
    (["--method", "inlp", "--svd-tol", "0.1"], "--svd-tol does not apply"),
    (["--method", "qleace"], "--method must be leace, orth, inlp"),
])
def test_bad_options(tmp_path, sample, culeace_bin, extra, needle):
    out = tmp_path / "e.h5"
    p = subprocess.run([str(culeace_bin), "fit", str(sample), *SAMPLE_ARGS,
                        *extra, "-o", str(out)], capture_output=True, text=True)
    assert p.returncode != 0 and needle in p.stderr, p.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_continuous_labels_refused(tmp_path, culeace_bin):
    src = tmp_path / "c.h5"
    with h5py.File(src, "w") as f:
        f["x"] = np.random.default_rng(0).normal(size=(100, 6)).astype(np.float32)
        f["z"] = np.linspace(0, 1, 100)
    p = subprocess.run([str(culeace_bin), "fit", str(src), "--x", "/x", "--z",
                        "/z", "--method", "inlp", "-o", str(tmp_path / "e.h5")],
                       capture_output=True, text=True)
    assert p.returncode != 0 and "needs integer class labels" in p.stderr
    assert not (tmp_path / "e.h5").exists()


def test_python_fit_inlp_equals_cli(tmp_path, sample, run_culeace):
    """culeace.fit_inlp on the same rows, groups and seed makes the CLI's
    eraser (the same held-out split and probes)."""
    with h5py.File(sample) as f:
        x, y, g = f["hidden/3"][...], f["labels"][...], f["groups"][...]
    e, rep = culeace.fit_inlp(x, y, groups=g)
    out = tmp_path / "inlp.h5"
    run_culeace("fit", sample, *SAMPLE_ARGS, "--layers", "3", "--method",
                "inlp", "-o", out, "--device", "cpu")
    c = culeace.load_erasers(out)["3"]
    assert e.rank == c.rank == rep["rank"] >= 1
    # identical from one build; float32 probes in another build of the
    # library (the sanitizer pass's CLI) differ at rounding level
    assert np.abs(e.P - c.P).max() < 1e-4
    assert np.abs(e.bias - c.bias).max() < 1e-5
    check_projection(e, rep["rank"])
    assert rep["classes"] == [0, 1]
    assert len(rep["accuracy"]) == rep["iterations"] + 1
    assert rep["accuracy"][0] > 0.9 and rep["final_accuracy"] < rep["accuracy"][0]
    if rep["stopped"]:
        assert rep["final_accuracy"] <= rep["threshold"]


def test_python_fit_rlace(sample):
    with h5py.File(sample) as f:
        x, y = f["hidden/3"][...], f["labels"][...]
    e, rep = culeace.fit_rlace(x, y, rank=2, iterations=30, evaluate_every=10)
    check_projection(e, 2)
    assert rep["iterations"] <= 30 and rep["evaluations"] >= 1
    assert e.info["method"] == "rlace"
    with pytest.raises(TypeError, match="unexpected option 'lr'"):
        culeace.fit_rlace(x, y, iterations=1, lr=0.1)
    with pytest.raises(ValueError, match="integer class labels"):
        culeace.fit_inlp(x, y.astype(float))


def test_three_classes():
    """INLP and R-LACE with three classes (a softmax probe and classifier):
    held-out accuracy falls from ~1 to near the majority baseline; R-LACE
    with rank k - 1 = 2 has exactly that rank."""
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(1)
    n, d, k = 3000, 16, 3
    y = rng.integers(0, k, n) * 2 + 1  # labels 1, 3, 5
    x = rng.normal(size=(n, d)) + rng.normal(size=(k, d))[(y - 1) // 2] * 1.5
    tr, te = slice(0, 2000), slice(2000, None)
    maj = max(np.mean(y[te] == v) for v in (1, 3, 5))

    def acc(z):
        clf = LogisticRegression(max_iter=2000).fit(z[tr], y[tr])
        return clf.score(z[te], y[te])
    assert acc(x) > 0.95
    e, rep = culeace.fit_inlp(x[tr], y[tr])
    assert rep["classes"] == [1, 3, 5] and rep["stopped"]
    L = np.asarray(e.proj_left)
    assert np.abs(L.T @ L - np.eye(rep["rank"])).max() < 1e-10
    assert acc(e(x)) < maj + 0.05
    e, rep = culeace.fit_rlace(x[tr], y[tr], rank=2, iterations=5000)
    assert e.rank == 2 and rep["iterations"] <= 5000
    assert acc(e(x)) < maj + 0.05
