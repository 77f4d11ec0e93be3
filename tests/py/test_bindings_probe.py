"""test_bindings_probe.py — culeace.probe_layers (the Python probe sweep)
against `culeace probe --json` on the same rows: data/sample.h5 (row and
group folds, control task, erasure), control labels drawn again (seeds near
2**64 too), a 3-class file with label values 3, 7, 11 in float16 layers,
token rows with a mask; per-fold accuracy, balanced accuracy, AUROC,
log-loss, majority baseline, control and erased accuracy equal to 1e-12,
the same fold assignment, control seed and table. Also: folds never split a
group, held-out accuracy within 1 point of scikit-learn's
LogisticRegression on the same folds, torch and string inputs, the reports
(JSON, table, plot) and the bad inputs."""

import json

import h5py
import numpy as np
import pytest

import culeace

SAMPLE = "data/sample.h5"
METRICS = ("accuracy", "balanced_accuracy", "auroc", "log_loss", "majority",
           "control_accuracy", "erased_accuracy")


def cli_probe(run_culeace, repo_root, *args):
    p = run_culeace("probe", *args, "--device", "cpu", "--quiet", "--json")
    table = run_culeace("probe", *args, "--device", "cpu", "--quiet").stdout
    return json.loads(p.stdout), table


def assert_same(cli, ours, cli_table=None):
    """Every per-fold value, mean and std of every metric to 1e-12, and the
    folds, control labels' seed, classes and convergence as the CLI's."""
    d = ours.to_dict()
    json.dumps(d, allow_nan=False)  # JSON-serialisable as it is
    assert d["folds"] == cli["folds"]
    assert d["control"] == cli["control"]
    assert d["classes"] == cli["classes"]
    assert d["class_counts"] == cli["class_counts"]
    assert d["n_groups"] == cli["n_groups"]
    assert d["fold_unit"] == cli["fold_unit"]
    assert len(d["layers"]) == len(cli["layers"])
    for a, b in zip(cli["layers"], d["layers"]):
        assert (b["name"], b["rows"]) == (a["name"], a["rows"])
        for key in METRICS:
            if a[key] is None:
                assert b[key] is None, key
                continue
            va = a[key]["folds"] + [a[key]["mean"], a[key]["std"]]
            vb = b[key]["folds"] + [b[key]["mean"], b[key]["std"]]
            for u, v in zip(va, vb):
                assert (u is None) == (v is None), (b["name"], key)
                if u is not None:
                    assert abs(u - v) <= 1e-12, (b["name"], key, va, vb)
        for key in ("selectivity", "converged", "max_iterations"):
            assert b[key] == a[key] or abs(b[key] - a[key]) <= 1e-12, key
    assert d["best_layer"]["name"] == cli["best_layer"]["name"]
    if cli_table is not None:
        assert ours.table() == cli_table


@pytest.fixture(scope="module")
def sample(repo_root):
    with h5py.File(repo_root / SAMPLE) as f:
        layers = {n: f["hidden"][n][:] for n in ("0", "3", "6")}
        return layers, f["labels"][:], f["groups"][:]


SAMPLE_CASES = [
    (dict(groups=True, control=True, erase=True), []),
    (dict(folds=3, seed=5, control=True), ["--folds", "3", "--seed", "5"]),
]


@pytest.mark.parametrize("opts,args", SAMPLE_CASES, ids=["groups", "rows"])
def test_sample_matches_cli(opts, args, sample, run_culeace, repo_root):
    layers, y, g = sample
    opts = dict(opts)
    use_groups = opts.pop("groups", False)
    cli_args = [repo_root / SAMPLE, "--x", "/hidden", "--y", "/labels",
                "--layers", "0,3,6"] + args
    if use_groups:
        cli_args += ["--groups", "/groups"]
    cli_args += ["--control"] if opts.get("control") else []
    cli_args += ["--erase"] if opts.get("erase") else []
    cli, table = cli_probe(run_culeace, repo_root, *cli_args)
    ours = culeace.probe_layers(layers, y, g if use_groups else None, **opts)
    assert_same(cli, ours, table)
    # the control task is at chance on a concept the layers encode fully
    assert all(0.3 < L.control_accuracy.mean < 0.7 for L in ours)
    if opts.get("erase"):
        assert all(abs(L.erased_accuracy.mean - 0.5) < 0.1 for L in ours)


def three_class_file(path, n=720, d=24, seed=11):
    """Three float16 layers of planted 3-class rows, labels 3, 7, 11, 80
    groups of 9 rows with one label each."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(80) * 5 + 2, 9)
    gl = rng.integers(0, 3, 80)
    z = np.repeat(gl, 9)
    with h5py.File(path, "w") as f:
        for l, s in enumerate([0.4, 1.2, 0.8]):
            x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 0.4
            x[:, :3] += s * np.eye(3)[z]
            f[f"hidden/{l}"] = x.astype(np.float16)
        f["labels"] = np.array([3, 7, 11])[z]
        f["groups"] = groups
    return path


@pytest.mark.parametrize("opts,args", [
    (dict(), []),
    (dict(kind="diffmeans", control=True, erase=True, seed=7),
     ["--probe", "diffmeans", "--control", "--erase", "--seed", "7"]),
    (dict(balanced=True, C=0.1, folds=4, standardize=False, erase=True,
          max_iter=30, tol=1e-6),
     ["--balanced", "--C", "0.1", "--folds", "4", "--no-standardize",
      "--erase", "--max-iter", "30", "--tol", "1e-6"]),
], ids=["defaults", "diffmeans", "balanced"])
def test_three_classes_with_groups_match_cli(opts, args, tmp_path,
                                             run_culeace, repo_root):
    path = three_class_file(tmp_path / "three.h5")
    cli, table = cli_probe(run_culeace, repo_root, path, "--x", "/hidden",
                           "--y", "/labels", "--groups", "/groups", *args)
    with h5py.File(path) as f:
        layers = [f[f"hidden/{l}"][:] for l in range(3)]
        y, g = f["labels"][:], f["groups"][:]
    ours = culeace.probe_layers(layers, y, g, **opts)
    assert_same(cli, ours, table)
    assert ours.classes == [3, 7, 11] and ours.settings["folds"] == opts.get("folds", 5)
    accs = ours.mean("accuracy")
    assert accs[1] > accs[2] > accs[0]  # the planted signal's order
    assert accs[1] > ours.mean("majority")[1] + 0.04


def test_control_redraws_match_cli(tmp_path, run_culeace, repo_root):
    """Groups (0, 1) with a random majority and two class-2 groups in 2
    folds: the first control draw often leaves class 2 out of a training
    fold, and the CLI draws again with seed + a * 0x100000001 (mod 2**64)."""
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 40 + [2, 2, 2, 2])
    g = np.repeat(np.arange(42), 2)
    x = rng.standard_normal((84, 8)).astype(np.float32)
    x[:, 0] += y
    path = tmp_path / "ctl.h5"
    with h5py.File(path, "w") as f:
        f["hidden/0"], f["labels"], f["groups"] = x, y, g

    def redrawn(seed):
        r = culeace.probe_layers({"0": x}, y, g, folds=2, seed=seed, control=True)
        return r if r.control["seed"] != seed else None

    high = next(s for s in range(2**64 - 40, 2**64) if redrawn(s))
    assert redrawn(7) and redrawn(high).control["seed"] < 2**40  # wrapped
    for seed in (7, high):
        cli, table = cli_probe(run_culeace, repo_root, path, "--x", "/hidden",
                               "--y", "/labels", "--groups", "/groups",
                               "--folds", "2", "--seed", seed, "--control")
        assert_same(cli, redrawn(seed), table)


def test_tokens_with_mask_match_cli(sample, run_culeace, repo_root):
    with h5py.File(repo_root / SAMPLE) as f:
        x, m = f["tokens/hidden"][:], f["tokens/mask"][:]
        y, g = f["tokens/labels"][:], f["tokens/groups"][:]
    for groups, args in [(None, ["--folds", "4"]), (g, ["--groups", "/tokens/groups"])]:
        cli, _ = cli_probe(run_culeace, repo_root, repo_root / SAMPLE, "--x",
                           "/tokens/hidden", "--tokens", "--mask", "/tokens/mask",
                           "--y", "/tokens/labels", "--control", "--erase", *args)
        ours = culeace.probe_layers({"hidden": x}, y, groups, mask=m, control=True,
                                    erase=True, folds=4 if groups is None else 5)
        assert_same(cli, ours)
        folds = ours.folds.reshape(m.shape)
        assert (folds[m == 0] == -1).all() and (folds[m != 0] >= 0).all()
        unit = np.repeat(np.arange(len(y)), m.shape[1]).reshape(m.shape) \
            if groups is None else np.repeat(g, m.shape[1]).reshape(m.shape)
        for u in np.unique(unit):  # an example's (or group's) tokens share a fold
            assert len(np.unique(folds[(unit == u) & (m != 0)])) <= 1


def test_folds_never_split_a_group(sample):
    layers, y, _ = sample
    rng = np.random.default_rng(0)
    g = rng.integers(0, 60, len(y)) * 3  # mixed-label groups of uneven size
    for seed in (0, 1, 2):
        r = culeace.probe_layers({"0": layers["0"]}, y, g, seed=seed)
        for gid in np.unique(g):
            assert len(np.unique(r.folds[g == gid])) == 1, (seed, gid)
        assert (r.fold_class_counts > 0).all()  # every fold has every class
        assert r.fold_class_counts.sum() == len(y)
    other = culeace.probe_layers({"0": layers["0"]}, y, g, seed=3).folds
    assert (other != r.folds).any()  # the seed matters


def test_three_classes_agree_with_sklearn():
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    rng = np.random.default_rng(5)
    n, d = 900, 20
    z = rng.integers(0, 3, n)
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 0.5
    x[:, :2] += 0.9 * np.eye(3)[z][:, :2] - 0.45 * np.eye(3)[z][:, 2:3]
    x = x.astype(np.float32)
    for C in (1.0, 0.05):
        r = culeace.probe_layers(x, z, C=C, tol=1e-8, max_iter=2000)
        ours = r[0].accuracy.folds
        theirs = []
        for f in range(5):
            tr, te = r.folds != f, r.folds == f
            clf = make_pipeline(StandardScaler(), LogisticRegression(
                C=C, tol=1e-8, max_iter=2000))
            clf.fit(x[tr].astype(np.float64), z[tr])
            theirs.append(clf.score(x[te].astype(np.float64), z[te]))
        assert 0.5 < np.mean(theirs) < 0.95, "the task should be neither trivial nor chance"
        assert np.abs(ours - np.array(theirs)).max() <= 0.01, (C, ours, theirs)
        assert abs(ours.mean() - np.mean(theirs)) <= 0.005


def test_torch_strings_and_lists_give_the_same_numbers(sample):
    torch = pytest.importorskip("torch")
    layers, y, g = sample
    x16 = layers["3"]  # float16 in the file
    base = culeace.probe_layers({"3": x16.astype(np.float32)}, y, g)
    names = np.where(y == 1, "yes", "no")  # "no" < "yes": the same classes
    via_torch = culeace.probe_layers({"3": torch.from_numpy(x16)}, names,
                                     torch.from_numpy(g))
    as_list = culeace.probe_layers([x16], y, g)
    for other in (via_torch, as_list):
        for key in ("accuracy", "log_loss", "auroc"):
            assert np.array_equal(getattr(other[0], key).folds,
                                  getattr(base[0], key).folds), key
    assert via_torch.classes == ["no", "yes"]
    assert as_list.names == ["0"]
    bf = torch.from_numpy(x16.astype(np.float32)).to(torch.bfloat16)
    r_bf = culeace.probe_layers(bf, y, g)
    r_ref = culeace.probe_layers(bf.float().numpy(), y, g)
    assert np.array_equal(r_bf[0].log_loss.folds, r_ref[0].log_loss.folds)
    # string group ids: dense ids in sorted string order, never split
    gs = np.char.add("p", (g % 70).astype(str))
    r_s = culeace.probe_layers(x16, y, gs)
    for gid in np.unique(gs):
        assert len(np.unique(r_s.folds[gs == gid])) == 1
    assert r_s.n_groups == 70


def test_reports(sample, tmp_path):
    layers, y, g = sample
    seen = []
    r = culeace.probe_layers(layers, y, g, control=True, erase=True,
                             progress=lambda i, m, name: seen.append((i, m, name)))
    assert seen == [(1, 3, "0"), (2, 3, "3"), (3, 3, "6")]
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert [L["name"] for L in d["layers"]] == ["0", "3", "6"]
    assert d["settings"]["control"] and d["settings"]["erase"]
    assert r.best is r[int(np.argmax(r.mean("accuracy")))]
    lines = r.table().splitlines()
    assert lines[0].split()[:3] == ["layer", "rows", "accuracy"]
    assert sum(line.startswith("*") for line in lines) == 2  # row + footer
    pytest.importorskip("matplotlib")
    fig, ax = r.plot(tmp_path / "probe.png")
    data = (tmp_path / "probe.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["majority baseline", "probe accuracy", "control task",
                      "after LEACE"]
    ys = ax.lines[0].get_ydata()  # the first errorbar's line: accuracy
    assert np.allclose(ys, r.mean("accuracy"))
    from matplotlib.figure import Figure
    ax2 = Figure().add_subplot()
    fig2, ax_back = r.plot(ax=ax2)
    assert ax_back is ax2 and fig2 is ax2.figure


def bad_cases(x, y, g):
    xi = (x * 100).astype(np.int32)
    xn = x.copy()
    xn[5, 2] = np.nan
    return [
        (dict(layers=x, y=y[:-1]), ValueError, "y has shape"),
        (dict(layers=x, y=np.zeros_like(y)), ValueError, "only one class"),
        (dict(layers=xi, y=y), TypeError, "dtype int32"),
        (dict(layers=x, y=y.astype(np.float64)), TypeError, "class labels"),
        (dict(layers=[x, x[:, :10][:-1]], y=y), ValueError, "same rows"),
        (dict(layers=xn, y=y), ValueError, "row 5 holds NaN"),
        (dict(layers={}, y=y), ValueError, "no layers"),
        (dict(layers=x, y=y, folds=1), ValueError, "folds must be"),
        (dict(layers=x, y=y, C=0), ValueError, "C must be"),
        (dict(layers=x, y=y, kind="svm"), ValueError, "kind must be"),
        (dict(layers=x, y=y, groups=g % 3), culeace.CuleaceError,
         "more than the 3 groups"),
        (dict(layers=x, y=y, mask=np.ones((len(y), 2))), ValueError, "mask"),
    ]


@pytest.mark.parametrize("case", range(12))
def test_bad_inputs_raise_clear_errors(case, sample):
    layers, y, g = sample
    kwargs, exc, match = bad_cases(layers["0"][:60].astype(np.float32),
                                   y[:60], g[:60])[case]
    with pytest.raises(exc, match=match):
        culeace.probe_layers(kwargs.pop("layers"), kwargs.pop("y"), **kwargs)
