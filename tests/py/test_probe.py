"""test_probe.py — `culeace probe` and `culeace score` end to end against
scikit-learn on synthetic dumps (data/make_dump.py, d = 256):

  * with a tight tolerance, the probe fitted on all rows (--save) has the
    coefficients of StandardScaler + LogisticRegression(lbfgs) to 1e-3
    relative, and per-fold held-out accuracies on the same folds (the
    assignment exported by --json) agree to 0.5 percentage points, binary
    and 5-class;
  * with default settings, mean accuracies agree to 1 point;
  * folds never split a group (or an example's tokens), every fold has every
    class, control labels keep the class counts, after-erasure accuracy is
    at the majority baseline (1 point) on a planted concept, MDL;
  * bad input: clear message, non-zero exit, no output file left behind;
  * score reproduces scikit-learn's predict_proba; the SVG is well-formed.
"""

import csv
import json
import os
import subprocess
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("CULEACE_BIN", str(ROOT / "build" / "culeace"))

pytestmark = pytest.mark.skipif(not Path(BIN).exists(),
                                reason=f"culeace binary not built ({BIN})")


def run(*args, check=True):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True,
                       timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"culeace {' '.join(map(str, args))} failed "
                             f"({p.returncode}):\n{p.stderr}")
    return p


def probe_json(*args):
    return json.loads(run("probe", *args, "--json", "--quiet").stdout)


@pytest.fixture(scope="module")
def dumps(tmp_path_factory, make_dump):
    d = tmp_path_factory.mktemp("probe")
    return {
        "bin": make_dump(d / "bin.h5", rows=3000, dim=256, layers=3,
                         classes=2, signal=0.8, seed=1),
        "five": make_dump(d / "five.h5", rows=3000, dim=256, layers=3,
                          classes=5, rank=4, signal=1.0, seed=2),
        "groups": make_dump(d / "groups.h5", rows=2000, dim=64, layers=2,
                            classes=3, rank=2, groups=90, seed=3),
        "tokens": make_dump(d / "tokens.h5", rows=400, dim=32, layers=2,
                            tokens=6, seed=4),
        "planted": make_dump(d / "planted.h5", rows=3000, dim=64, layers=3,
                             classes=2, class_weights="0.65,0.35", signal=4.0,
                             seed=5),
    }


def layer_x(path, name):
    with h5py.File(path, "r") as f:
        return f["hidden"][name][...].astype(np.float64), f["labels"][...]


def sk_fit(x, y, C=1.0, tol=1e-4, max_iter=100):
    """StandardScaler on the training rows + LogisticRegression(lbfgs)."""
    sc = StandardScaler().fit(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter
        m = LogisticRegression(C=C, tol=tol, max_iter=max_iter,
                               solver="lbfgs").fit(sc.transform(x), y)
    return sc, m


def sk_fold_accuracies(x, y, fold, n_folds, **kw):
    accs = []
    for k in range(n_folds):
        tr, te = (fold >= 0) & (fold != k), fold == k
        sc, m = sk_fit(x[tr], y[tr], **kw)
        accs.append(m.score(sc.transform(x[te]), y[te]))
    return np.array(accs)


def saved_probe(path, layer_name):
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] in (b"culeace-probes", "culeace-probes")
        for key in f["probes"]:
            g = f["probes"][key]
            name = g.attrs["layer_name"]
            name = name.decode() if isinstance(name, bytes) else name
            if name == layer_name:
                return {k: g[k][...] for k in g} | dict(g.attrs)
    raise KeyError(layer_name)


def centred(b):
    """Softmax intercepts are defined up to a common shift: centre them."""
    return b - b.mean() if b.size > 1 else b


# ---- agreement with scikit-learn ------------------------------------------------

@pytest.mark.parametrize("which,layer", [("bin", "1"), ("five", "2")])
def test_tight_tolerance_matches_sklearn(dumps, tmp_path, which, layer):
    path = dumps[which]
    save = tmp_path / "probes.h5"
    tight = dict(C=1.0, tol=1e-8, max_iter=10000)
    js = probe_json(path, "--x", "/hidden", "--y", "/labels", "--layers",
                    layer, "--folds", "3", "--tol", "1e-8", "--max-iter",
                    "10000", "--save", save)
    assert js["settings"]["tol"] == 1e-8 and js["settings"]["folds"] == 3
    x, y = layer_x(path, layer)
    fold = np.array(js["folds"]["assignment"])
    ours = np.array(js["layers"][0]["accuracy"]["folds"])
    ref = sk_fold_accuracies(x, y, fold, 3, **tight)
    diff_pp = 100 * np.abs(ours - ref).max()
    print(f"{which} layer {layer}: fold accuracies {ours} vs sklearn {ref}, "
          f"max diff {diff_pp:.3f} pp")
    assert diff_pp <= 0.5
    # the probe fitted on all rows against sklearn's, in the standardised
    # space (sklearn's coef_ after a StandardScaler)
    sc, m = sk_fit(x, y, **tight)
    p = saved_probe(save, layer)
    assert p["coef"].shape == m.coef_.shape
    np.testing.assert_allclose(p["mean"], sc.mean_, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(p["scale"], sc.scale_, rtol=1e-5)
    ref_w = np.concatenate([m.coef_.ravel(), centred(m.intercept_)])
    our_w = np.concatenate([p["coef"].ravel(), centred(p["intercept"])])
    rel = np.abs(our_w - ref_w).max() / np.abs(ref_w).max()
    print(f"{which} layer {layer}: coefficient relative difference {rel:.2e}")
    assert rel <= 1e-3
    assert list(p["class_values"]) == sorted(set(y.tolist()))


@pytest.mark.parametrize("which,layers", [("bin", "0,1"), ("five", "2")])
def test_default_settings_match_sklearn(dumps, which, layers):
    path = dumps[which]
    js = probe_json(path, "--x", "/hidden", "--y", "/labels", "--layers",
                    layers)
    assert js["settings"]["C"] == 1.0 and js["settings"]["max_iter"] == 100
    fold = np.array(js["folds"]["assignment"])
    for L in js["layers"]:
        x, y = layer_x(path, L["name"])
        ref = sk_fold_accuracies(x, y, fold, 5)
        ours = np.array(L["accuracy"]["folds"])
        d_mean = 100 * abs(ours.mean() - ref.mean())
        print(f"{which} layer {L['name']}: accuracy {ours.mean():.4f} vs "
              f"sklearn {ref.mean():.4f} ({d_mean:.2f} pp; max per fold "
              f"{100 * np.abs(ours - ref).max():.2f} pp)")
        assert d_mean <= 1.0
        assert abs(L["accuracy"]["mean"] - ours.mean()) < 1e-9
        assert abs(L["accuracy"]["std"] - ours.std()) < 1e-9


def test_metrics_match_sklearn(dumps):
    """Balanced accuracy, AUROC, log-loss and the majority baseline of one
    fold recomputed with sklearn from the same predictions."""
    from sklearn.metrics import balanced_accuracy_score, log_loss, \
        roc_auc_score
    path = dumps["bin"]
    js = probe_json(path, "--x", "/hidden", "--y", "/labels", "--layers", "0",
                    "--folds", "3", "--tol", "1e-7", "--max-iter", "10000")
    x, y = layer_x(path, "0")
    fold = np.array(js["folds"]["assignment"])
    L = js["layers"][0]
    for k in range(3):
        tr, te = fold != k, fold == k
        sc, m = sk_fit(x[tr], y[tr], tol=1e-7, max_iter=10000)
        p = m.predict_proba(sc.transform(x[te]))
        assert abs(L["auroc"]["folds"][k] - roc_auc_score(y[te], p[:, 1])) < 2e-3
        assert abs(L["log_loss"]["folds"][k] - log_loss(y[te], p)) < 2e-3
        assert abs(L["balanced_accuracy"]["folds"][k] -
                   balanced_accuracy_score(y[te], p.argmax(1))) <= 0.005
        maj = np.bincount(y[tr]).argmax()
        assert abs(L["majority"]["folds"][k] - np.mean(y[te] == maj)) < 1e-12


# ---- folds, control task, erasure, MDL -----------------------------------------

@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_rows_fit_as_their_float32_copy(tmp_path, make_dump,
                                                       dtype):
    """2-byte layers are probed from their own bytes, centred as they are
    read; a float32 file holding the same values (exactly: they widen
    without rounding) gives the same probes: same fold accuracies and
    iterations, log-loss to 1e-12, saved coefficients equal."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "make_dump", Path(__file__).resolve().parents[2] / "data" /
        "make_dump.py")
    md = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(md)
    half = make_dump(tmp_path / "half.h5", rows=1500, dim=48, layers=2,
                     classes=3, rank=2, dtype=dtype, seed=9)
    wide = tmp_path / "wide.h5"
    with h5py.File(half, "r") as f, h5py.File(wide, "w") as g:
        g["labels"] = f["labels"][...]
        for name in f["hidden"]:
            ds = f["hidden"][name]
            if dtype == "bfloat16":  # read the raw bits, widen exactly
                bits = np.empty(ds.shape, np.uint16)
                ds.id.read(h5py.h5s.ALL, h5py.h5s.ALL, bits,
                           mtype=md.bf16_h5type())
                x = md.bf16_bits_to_f32(bits)
            else:
                x = ds[...].astype(np.float32)
            g[f"hidden/{name}"] = x
    args = ["--x", "/hidden", "--y", "/labels", "--control", "--erase"]
    a = probe_json(half, *args, "--save", tmp_path / "a.h5")
    b = probe_json(wide, *args, "--save", tmp_path / "b.h5")
    for la, lb in zip(a["layers"], b["layers"]):
        for key in ("accuracy", "control_accuracy", "erased_accuracy"):
            assert la[key]["folds"] == lb[key]["folds"], (la["name"], key)
        assert la["max_iterations"] == lb["max_iterations"]
        assert np.allclose(la["log_loss"]["folds"], lb["log_loss"]["folds"],
                           rtol=0, atol=1e-12)
    with h5py.File(tmp_path / "a.h5") as f, h5py.File(tmp_path / "b.h5") as g:
        for name in g["probes"]:
            assert np.array_equal(f["probes"][name]["coef"][...],
                                  g["probes"][name]["coef"][...]), name


def test_stacked_compressed_layers_read_together(tmp_path, make_dump):
    """Layers of one compressed stacked dataset (chunks holding every
    layer) are read ahead together, a row of chunks at a time, in groups
    that fit half of --max-memory: the same results as the same values
    stored one dataset per layer, with all layers in one group, in groups of
    two (--max-memory), for a subset of layers, and with a NaN row dropped
    in one layer only (each layer keeps its own rows)."""
    kw = dict(rows=1200, dim=24, layers=3, dtype="float16", chunks=100,
              compress=4, seed=13)
    st = make_dump(tmp_path / "st.h5", layout="stacked1", **kw)
    gr = make_dump(tmp_path / "gr.h5", layout="group", **kw)
    for path in (st, gr):  # row 7 of the middle layer
        with h5py.File(path, "r+") as f:
            if path == st:
                v = f["hidden"][7]
                v[1, 2] = np.nan
                f["hidden"][7] = v
            else:
                name = sorted(f["hidden"])[1]
                v = f["hidden"][name][7]
                v[2] = np.nan
                f["hidden"][name][7] = v
    common = ["--y", "/labels", "--drop-nonfinite", "--control"]
    ref = probe_json(gr, "--x", "/hidden", *common)
    for extra in ([], ["--max-memory", "300K"]):  # 3 layers, then 2 + 1
        got = probe_json(st, "--x", "/hidden", "--layer-axis", "1", *common,
                         *extra)
        assert [L["rows"] for L in got["layers"]] == [1200, 1199, 1200]
        for a, b in zip(got["layers"], ref["layers"]):
            assert a["dropped_nonfinite"] == b["dropped_nonfinite"]
            for key in ("accuracy", "control_accuracy"):
                assert a[key]["folds"] == b[key]["folds"], (a["name"], key)
            assert a["log_loss"]["folds"] == b["log_loss"]["folds"]
    sub = probe_json(st, "--x", "/hidden", "--layer-axis", "1", *common,
                     "--layers", "0,2")
    by_name = {L["name"]: L for L in ref["layers"]}
    assert len(sub["layers"]) == 2
    for a in sub["layers"]:
        assert a["accuracy"]["folds"] == by_name[a["name"]]["accuracy"]["folds"]


def test_layers_fitted_together_equal_layers_fitted_alone(tmp_path, dumps,
                                                         make_dump):
    """--batch-layers N fits N layers' probes together (their L-BFGS steps
    at once; with N > 1 each layer's --erase refits on its F erased copies
    are fitted together too): every number of the report and every saved
    probe is the same as fitting one layer and one erased fold at a time
    (N = 1), for binary and 5-class probes with the control task, MDL and
    --erase, in batches of 2 + 1 and of all 3, and with layers that keep
    different rows (a NaN row dropped from one layer only)."""
    def same(args, path, batches):
        ref_save = tmp_path / "ref.h5"
        ref = probe_json(path, *args, "--batch-layers", "1",
                         "--save", ref_save)
        for b in batches:
            save = tmp_path / f"b{b}.h5"
            got = probe_json(path, *args, "--batch-layers", b, "--save", save)
            assert got.pop("saved") == str(save)
            assert got == {k: v for k, v in ref.items() if k != "saved"}, \
                (path.name, b)
            with h5py.File(ref_save, "r") as f, h5py.File(save, "r") as g:
                assert sorted(f["probes"]) == sorted(g["probes"])
                for name in f["probes"]:
                    for key in ("coef", "intercept", "mean", "scale"):
                        assert np.array_equal(f["probes"][name][key][...],
                                              g["probes"][name][key][...])
        return ref

    common = ["--x", "/hidden", "--y", "/labels", "--control", "--mdl"]
    same(common, dumps["bin"], (2, 3))
    ref = same(common + ["--erase"], dumps["five"], (3,))
    assert len(ref["layers"]) == 3
    path = make_dump(tmp_path / "nan.h5", rows=900, dim=40, layers=3,
                     classes=3, rank=2, seed=21)
    with h5py.File(path, "r+") as f:
        name = sorted(f["hidden"])[1]
        v = f["hidden"][name][5]
        v[3] = np.nan
        f["hidden"][name][5] = v
    ref = same(common + ["--drop-nonfinite"], path, (3,))
    assert [L["rows"] for L in ref["layers"]] == [900, 899, 900]


@pytest.mark.parametrize("value", ["0", "-2", "x", "70000"])
def test_batch_layers_refuses_bad_values(dumps, value):
    p = run("probe", dumps["bin"], "--x", "/hidden", "--y", "/labels",
            "--batch-layers", value, check=False)
    assert p.returncode == 2, p.stderr
    assert "--batch-layers must be a number from 1 to 65536" in p.stderr
    assert f"'{value}'" in p.stderr


def test_folds_never_split_groups(dumps):
    path = dumps["groups"]
    js = probe_json(path, "--x", "/hidden", "--y", "/labels", "--groups",
                    "/groups", "--folds", "4", "--control")
    with h5py.File(path, "r") as f:
        groups, y = f["groups"][...], f["labels"][...]
    fold = np.array(js["folds"]["assignment"])
    assert js["fold_unit"] == "group" and js["n_groups"] == len(set(groups))
    for g in np.unique(groups):
        assert len(set(fold[groups == g])) == 1, f"group {g} split"
    counts = np.array(js["folds"]["class_counts"])
    assert counts.shape == (4, 3) and (counts > 0).all()
    for k in range(4):
        assert js["folds"]["sizes"][k] == int(np.sum(fold == k))
        assert list(counts[k]) == list(np.bincount(y[fold == k], minlength=3))
    assert js["control"]["unit"] == "group"
    # same seed, same folds; another seed, other folds
    js2 = probe_json(path, "--x", "/hidden", "--y", "/labels", "--groups",
                     "/groups", "--folds", "4")
    assert js2["folds"]["assignment"] == js["folds"]["assignment"]
    js3 = probe_json(path, "--x", "/hidden", "--y", "/labels", "--groups",
                     "/groups", "--folds", "4", "--seed", "7")
    assert js3["folds"]["assignment"] != js["folds"]["assignment"]
    assert js3["settings"]["seed"] == 7


def test_token_rows_keep_examples_together(dumps):
    path = dumps["tokens"]
    js = probe_json(path, "--x", "/hidden", "--tokens", "--mask", "/mask",
                    "--y", "/labels")
    with h5py.File(path, "r") as f:
        mask = f["mask"][...].astype(bool)
    fold = np.array(js["folds"]["assignment"]).reshape(mask.shape)
    assert js["fold_unit"] == "example"
    assert ((fold >= 0) == mask).all()  # padding rows are not used
    for i in range(mask.shape[0]):
        assert len(set(fold[i][mask[i]])) == 1
    assert js["layers"][0]["rows"] == int(mask.sum())


def test_control_task_keeps_class_distribution(dumps):
    path = dumps["bin"]
    js = probe_json(path, "--x", "/hidden", "--y", "/labels", "--control")
    assert js["control"]["unit"] == "row"
    assert js["control"]["class_counts"] == js["class_counts"]
    for L in js["layers"]:
        # control labels carry no signal: control accuracy is near chance,
        # selectivity = task - control
        assert L["control_accuracy"]["mean"] < 0.56
        assert abs(L["selectivity"] - (L["accuracy"]["mean"] -
                                       L["control_accuracy"]["mean"])) < 1e-9
    best = max(js["layers"], key=lambda L: L["accuracy"]["mean"])
    assert best["selectivity"] > 0.3


def test_erasure_reaches_majority_baseline(dumps):
    path = dumps["planted"]
    js = probe_json(path, "--x", "/hidden", "--y", "/labels", "--erase")
    for L in js["layers"]:
        acc, era, maj = (L["accuracy"]["mean"], L["erased_accuracy"]["mean"],
                         L["majority"]["mean"])
        print(f"layer {L['name']}: accuracy {acc:.4f}, after erasure "
              f"{era:.4f}, majority {maj:.4f}")
        assert acc > maj + 0.05  # the concept is there before erasure
        assert abs(era - maj) <= 0.01
    assert abs(js["layers"][0]["majority"]["mean"] - 0.65) < 0.03


@pytest.mark.parametrize("method,slack", [("orth", 0.01), ("oracle", 0.01),
                                          ("quadratic", 0.01), ("inlp", 0.06)])
def test_erase_methods(dumps, method, slack):
    """--erase-method: each method fitted per fold on the training rows;
    the closed-form ones bring a planted linear concept to the majority
    baseline, INLP (which stops on its own held-out fifth) close to it."""
    path = dumps["planted"]
    js = probe_json(path, "--x", "/hidden", "--y", "/labels", "--layers", "0",
                    "--erase-method", method)
    assert js["settings"]["erase"] is True
    assert js["settings"]["erase_method"] == method
    L = js["layers"][0]
    acc, era, maj = (L["accuracy"]["mean"], L["erased_accuracy"]["mean"],
                     L["majority"]["mean"])
    assert acc > maj + 0.05
    assert abs(era - maj) <= slack, (method, era, maj)
    # each fold's eraser was given exactly its training rows (INLP fits on
    # four fifths of them and stops on the rest, all of them given)
    train = [L["rows"] - size for size in js["folds"]["sizes"]]
    assert L["erase_fit_rows"] == train, method


def test_erase_fold_moments_merged_or_summed_per_fold(tmp_path, make_dump):
    """The moment-based --erase methods take a fold's training moments as
    the merge of the other folds' (each row summed once per layer). When
    the folds' states would take more than a quarter of --max-memory
    (5 x 2219 doubles for d = 64, 3 classes: 89 KB against 300K / 4), each
    fold sums its own training rows instead. Both give every fold's eraser
    its training rows and the same erased accuracies."""
    path = make_dump(tmp_path / "m.h5", rows=400, dim=64, layers=2,
                     classes=3, rank=2, signal=3.0, seed=31)
    args = ["--x", "/hidden", "--y", "/labels", "--erase", "--control"]
    merged = probe_json(path, *args)
    per_fold = probe_json(path, *args, "--max-memory", "300K")
    for a, b in zip(merged["layers"], per_fold["layers"]):
        train = [a["rows"] - size for size in merged["folds"]["sizes"]]
        assert a["erase_fit_rows"] == b["erase_fit_rows"] == train
        assert a["erased_accuracy"]["folds"] == b["erased_accuracy"]["folds"]
        assert abs(a["erased_accuracy"]["mean"] - a["majority"]["mean"]) \
            <= 0.02


def test_erase_method_rlace_and_refusals(dumps):
    path = dumps["planted"]
    js = probe_json(path, "--x", "/hidden", "--y", "/labels", "--layers", "0",
                    "--erase-method", "rlace", "--erase-iterations", "20")
    assert js["settings"]["erase_method"] == "rlace"
    assert len(js["layers"][0]["erased_accuracy"]["folds"]) == 5
    for args, msg in ((["--erase-method", "lace"], "--erase-method must be"),
                      (["--erase", "--erase-iterations", "3"],
                       "applies to --erase-method inlp and rlace")):
        p = subprocess.run([str(BIN), "probe", str(path), "--x", "/hidden",
                            "--y", "/labels", *args], capture_output=True,
                           text=True)
        assert p.returncode == 2 and msg in p.stderr


def test_mdl(dumps):
    path = dumps["bin"]
    js = probe_json(path, "--x", "/hidden", "--y", "/labels", "--mdl")
    comp = {}
    for L in js["layers"]:
        md = L["mdl"]
        assert md["uniform_bits"] == pytest.approx(3000 * np.log2(2))
        assert md["compression"] == pytest.approx(md["uniform_bits"] /
                                                  md["online_bits"])
        assert md["blocks"] == 10
        comp[L["name"]] = md["compression"]
    best = max(js["layers"], key=lambda L: L["accuracy"]["mean"])["name"]
    worst = min(js["layers"], key=lambda L: L["accuracy"]["mean"])["name"]
    assert comp[best] > comp[worst] and comp[best] > 1.5


def test_diffmeans_probe(dumps):
    js = probe_json(dumps["bin"], "--x", "/hidden", "--y", "/labels",
                    "--probe", "diffmeans")
    assert js["settings"]["probe"] == "diffmeans"
    best = max(L["accuracy"]["mean"] for L in js["layers"])
    assert best > 0.8


# ---- outputs ------------------------------------------------------------------------

def test_table_csv_and_svg(dumps, tmp_path):
    svg, out_csv = tmp_path / "acc.svg", tmp_path / "acc.csv"
    p = run("probe", dumps["bin"], "--x", "/hidden", "--y", "/labels",
            "--control", "--erase", "--csv", out_csv, "--plot", svg,
            "--quiet")
    lines = p.stdout.splitlines()
    assert lines[0].split()[:3] == ["layer", "rows", "accuracy"]
    assert sum(1 for ln in lines if ln.startswith("*")) == 2  # row + summary
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["name"] for r in rows] == ["0", "1", "2"]
    assert sum(int(r["best"]) for r in rows) == 1
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = " ".join(t.text or "" for t in root.iter(
        "{http://www.w3.org/2000/svg}text"))
    assert "best:" in texts and "majority baseline" in texts
    assert "control task" in texts and "after LEACE erasure" in texts
    assert len(list(root.iter("{http://www.w3.org/2000/svg}polyline"))) >= 4
    assert not list(tmp_path.glob("*.tmp*"))


@pytest.mark.parametrize("which,layers", [("bin", ["0", "2"]),
                                          ("five", ["1"])])
def test_score_round_trip(dumps, tmp_path, which, layers):
    path = dumps[which]
    save, out, out_csv = (tmp_path / "p.h5", tmp_path / "s.h5",
                          tmp_path / "s.csv")
    run("probe", path, "--x", "/hidden", "--y", "/labels", "--layers",
        ",".join(layers), "--tol", "1e-8", "--max-iter", "10000", "--save",
        save, "--quiet")
    js = json.loads(run("score", save, path, "--x", "/hidden", "-o", out,
                        "--json", "--quiet").stdout)
    assert [L["name"] for L in js["layers"]] == layers
    run("score", save, path, "--x", "/hidden", "--csv", out_csv, "--quiet")
    table = list(csv.reader(out_csv.open()))
    with h5py.File(out, "r") as f:
        assert f.attrs["format"] in (b"culeace-scores", "culeace-scores")
        for name in layers:
            proba = f["scores"][name][...]
            rows = f["row_index"][name][...]
            x, y = layer_x(path, name)
            assert (rows == np.arange(len(y))).all()
            # 1. the saved parameters applied with numpy
            p = saved_probe(save, name)
            z = ((x - p["mean"]) / p["scale"]) @ p["coef"].T + p["intercept"]
            if z.shape[1] == 1:
                mine = np.hstack([1 / (1 + np.exp(z)), 1 / (1 + np.exp(-z))])
            else:
                e = np.exp(z - z.max(1, keepdims=True))
                mine = e / e.sum(1, keepdims=True)
            np.testing.assert_allclose(proba, mine, atol=1e-6)
            # 2. scikit-learn's probabilities of its own fit on all rows
            sc, m = sk_fit(x, y, tol=1e-8, max_iter=10000)
            ref = m.predict_proba(sc.transform(x))
            err = np.abs(proba - ref).max()
            print(f"{which} layer {name}: max |p - sklearn p| = {err:.2e}")
            assert err < 5e-3
            assert (proba.argmax(1) != ref.argmax(1)).mean() < 0.002
            # 3. the CSV holds the same numbers
            got = np.array([[float(v) for v in r[2:]] for r in table[1:]
                            if r[0] == name])
            np.testing.assert_allclose(got, proba, rtol=1e-12, atol=1e-15)
    assert table[0][:2] == ["layer", "row"]


# ---- bad input -------------------------------------------------------------------------

def outputs(tmp_path):
    return ["--save", tmp_path / "p.h5", "--csv", tmp_path / "o.csv",
            "--plot", tmp_path / "o.svg"]


def expect_failure(tmp_path, args, *needles):
    p = run("probe", *args, *outputs(tmp_path), check=False)
    assert p.returncode != 0, p.stdout
    for n in needles:
        assert n in p.stderr, p.stderr
    left = [f.name for f in tmp_path.iterdir() if f.suffix != ".h5" or
            f.name == "p.h5" or ".tmp" in f.name]
    assert not left, f"left behind: {left}"
    return p.stderr


@pytest.fixture()
def bad_dump(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["x"] = rng.standard_normal((60, 8)).astype(np.float32)
        f["one"] = np.full(60, 3, np.int64)
        f["rare"] = np.array([7] * 3 + [0, 1] * 28 + [0], np.int64)
        f["y"] = np.arange(60) % 2
        f["g_short"] = np.arange(59) // 4
        f["g"] = np.arange(60) // 20  # 3 groups, mixed labels
    return path


def test_bad_one_class(bad_dump, tmp_path):
    expect_failure(tmp_path, [bad_dump, "--x", "/x", "--y", "/one"],
                   "only one class", "3")


def test_bad_fold_missing_class(bad_dump, tmp_path):
    expect_failure(tmp_path, [bad_dump, "--x", "/x", "--y", "/rare"],
                   "has no rows of class", "label value 7", "use fewer folds")


def test_bad_groups_length(bad_dump, tmp_path):
    expect_failure(tmp_path, [bad_dump, "--x", "/x", "--y", "/y", "--groups",
                              "/g_short"], "/g_short", "59", "60")


def test_bad_more_folds_than_groups(bad_dump, tmp_path):
    expect_failure(tmp_path, [bad_dump, "--x", "/x", "--y", "/y", "--groups",
                              "/g"], "--folds 5", "3 groups")


@pytest.mark.parametrize("c", ["0", "-1", "abc"])
def test_bad_C(bad_dump, tmp_path, c):
    expect_failure(tmp_path, [bad_dump, "--x", "/x", "--y", "/y", "--C", c],
                   "--C")


def test_bad_folds_and_options(bad_dump, tmp_path):
    expect_failure(tmp_path, [bad_dump, "--x", "/x", "--y", "/y", "--folds",
                              "1"], "--folds")
    expect_failure(tmp_path, [bad_dump, "--x", "/x", "--y", "/y", "--probe",
                              "svm"], "--probe")
    expect_failure(tmp_path, [bad_dump, "--x", "/x"], "--y")
    expect_failure(tmp_path, [bad_dump, "--x", "/x", "--y", "/y", "--folds",
                              "61"], "61")


def test_score_bad_input(dumps, bad_dump, tmp_path):
    save = tmp_path / "p.h5"
    run("probe", dumps["groups"], "--x", "/hidden", "--y", "/labels",
        "--save", save, "--quiet")
    # width mismatch, no such layer, an eraser file instead of probes
    p = run("score", save, bad_dump, "--x", "/x", "-o", tmp_path / "s.h5",
            check=False)
    assert p.returncode != 0 and "no layer of that name" in p.stderr
    p = run("score", save, dumps["bin"], "--x", "/hidden", "-o",
            tmp_path / "s.h5", check=False)
    assert p.returncode != 0 and "d = 64" in p.stderr
    p = run("score", bad_dump, dumps["groups"], "--x", "/hidden", "-o",
            tmp_path / "s.h5", check=False)
    assert p.returncode != 0 and "not a culeace probe file" in p.stderr
    p = run("score", save, dumps["groups"], "--x", "/hidden", check=False)
    assert p.returncode == 2 and "-o" in p.stderr
    # a damaged probe file: an attribute missing, a dataset of the wrong shape
    with h5py.File(save, "a") as f:
        del f["probes/0001"].attrs["kind"]
    p = run("score", save, dumps["groups"], "--x", "/hidden", "-o",
            tmp_path / "s.h5", check=False)
    assert p.returncode == 1 and "/probes/0001 lacks attribute 'kind'" in \
        p.stderr, p.stderr
    with h5py.File(save, "a") as f:
        f["probes/0001"].attrs["kind"] = "logistic"
        del f["probes/0000/scale"]
        f["probes/0000/scale"] = np.ones(3)
    p = run("score", save, dumps["groups"], "--x", "/hidden", "-o",
            tmp_path / "s.h5", check=False)
    assert p.returncode == 1 and "wrong shape" in p.stderr, p.stderr
    assert not (tmp_path / "s.h5").exists()
    assert not list(tmp_path.glob("*.tmp*"))


def _gpu_or_skip(tmp_path):
    """Skips with the CLI's own words unless `--device cuda` opens a GPU."""
    p = run("fit", ROOT / "data" / "sample.h5", "--x", "/hidden", "--z",
            "/labels", "-o", tmp_path / "gpu-probe.h5", "--device", "cuda",
            "--quiet", check=False)
    if p.returncode != 0:
        pytest.skip(f"no GPU here (culeace --device cuda: "
                    f"{p.stderr.strip().splitlines()[-1] if p.stderr else p.returncode})")


def test_gpu_layers_together_equal_one_at_a_time(dumps, tmp_path):
    """On a GPU the layers' probes are fitted together by default (each
    L-BFGS step queues every layer's pass and waits once): the report and
    the saved probes equal those of one layer at a time on the same GPU,
    with float32 and with float64 sums, and the batch holds all 3 layers
    with --control and --mdl problems of different counts per layer.
    Skipped without a GPU."""
    _gpu_or_skip(tmp_path)
    for extra in ([], ["--tol", "1e-8", "--max-iter", "10000"]):
        base = [dumps["five"], "--x", "/hidden", "--y", "/labels",
                "--device", "cuda", "--control", "--mdl", *extra]
        one = probe_json(*base, "--batch-layers", "1", "--save",
                         tmp_path / "one.h5")
        together = probe_json(*base, "--save", tmp_path / "all.h5")
        assert together.pop("saved") == str(tmp_path / "all.h5")
        assert together == {k: v for k, v in one.items() if k != "saved"}
        with h5py.File(tmp_path / "one.h5") as f, \
                h5py.File(tmp_path / "all.h5") as g:
            for name in f["probes"]:
                assert np.array_equal(f["probes"][name]["coef"][...],
                                      g["probes"][name]["coef"][...]), name


@pytest.mark.parametrize("which", ["bin", "five"])
def test_gpu_probes_match_the_cpu(dumps, tmp_path, which):
    """On a GPU the L-BFGS passes run there (rows kept on the device, two
    GEMMs per evaluation): with a tight tolerance (float64 sums) the saved
    probes agree with the CPU's to 1e-3 relative (as with scikit-learn: the
    fits stop within the gradient tolerance, not at one point); held-out
    accuracies agree to 0.5 points per fold (a row at the boundary may
    flip), with the tight tolerance and with the defaults (float32 sums).
    Skipped without a GPU."""
    _gpu_or_skip(tmp_path)
    base = [dumps[which], "--x", "/hidden", "--y", "/labels"]
    tight = ["--tol", "1e-8", "--max-iter", "10000"]
    out = {}
    for dev in ("cpu", "cuda"):
        out[dev] = probe_json(*base, *tight, "--device", dev, "--save",
                              tmp_path / f"{dev}.h5")
    for la, lb in zip(out["cpu"]["layers"], out["cuda"]["layers"]):
        diff = np.abs(np.subtract(la["accuracy"]["folds"], lb["accuracy"]["folds"]))
        assert diff.max() <= 0.005, (la["name"], diff)
    with h5py.File(tmp_path / "cpu.h5") as f, h5py.File(tmp_path / "cuda.h5") as g:
        for name in f["probes"]:
            a, b = f["probes"][name]["coef"][...], g["probes"][name]["coef"][...]
            assert np.linalg.norm(a - b) <= 1e-3 * np.linalg.norm(a), name
    fast = {dev: probe_json(*base, "--device", dev) for dev in ("cpu", "cuda")}
    for la, lb in zip(fast["cpu"]["layers"], fast["cuda"]["layers"]):
        diff = np.abs(np.subtract(la["accuracy"]["folds"], lb["accuracy"]["folds"]))
        assert diff.max() <= 0.005, (la["name"], diff)
