#!/usr/bin/env python3
"""bench_methods.py — the erasure methods side by side on the same data,
measured, for docs/METHODS.md.

For each dataset (the real sample dump's layer, a synthetic dump with a
planted linear concept, and a synthetic one whose classes differ only in
covariance) the rows are split in half by prompt group (seeded): every
method is fitted by the CLI (`culeace fit --method M`) on the first half,
applied (`culeace apply`, with --z for the methods that need labels) to
both halves, and judged on the second half by probes trained on the erased
first half:
  linear probe     scikit-learn LogisticRegression (standardised, C = 1);
  quadratic probe  QuadraticDiscriminantAnalysis (reg_param 0.1) on the top
                   16 principal components of the erased training rows;
plus the mean squared edit ||x' - x||^2 / ||x - mean||^2 over the held-out
rows, the rank removed (from the eraser file; for oracle erasers the
columns of coef; quadratic erasers map every direction: "full") and the fit
time (the fit
command's wall time, median of the repeats).

    python3 bench/bench_methods.py [--repeats 3] [--methods leace,orth,...] [--update-doc]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import benchlib  # noqa: E402

CULEACE = os.path.join(ROOT, "build", "culeace")
NEEDS_Z = {"oracle", "quadratic"}
# Options per method: R-LACE's reference default is 75000 iterations
# (~15 min per fit on this 2-core machine); the table uses fewer, and says so.
FIT_OPTIONS = {"rlace": ["--iterations", "2000", "--rank", "1"]}


def covariance_dump(path, n=20000, d=64, seed=0):
    """Two classes with the same mean that differ in covariance along 8
    random directions (x 2.5 in scale): invisible to linear probes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    q, _ = np.linalg.qr(rng.normal(size=(d, 8)))
    x = rng.normal(size=(n, d))
    x[y == 1] += 1.5 * (x[y == 1] @ q) @ q.T
    with h5py.File(path, "w") as f:
        f["hidden"] = x.astype(np.float32)
        f["labels"] = y
        f["groups"] = np.arange(n) // 4


def split_file(src, x_path, out_dir, seed=0):
    """Writes train.h5 / test.h5 (x (n, d), labels, groups) split by group."""
    with h5py.File(src) as f:
        x = f[x_path][:]
        y = f["labels"][:]
        g = f["groups"][:] if "groups" in f else np.arange(len(y))
    rng = np.random.default_rng(seed)
    ids = np.unique(g)
    train_ids = set(rng.permutation(ids)[: len(ids) // 2].tolist())
    tr = np.array([v in train_ids for v in g])
    paths = {}
    for name, m in (("train", tr), ("test", ~tr)):
        p = os.path.join(out_dir, f"{name}.h5")
        with h5py.File(p, "w") as f:
            f["x"] = x[m]
            f["labels"] = y[m]
            f["groups"] = g[m]
        paths[name] = p
    return paths, x[tr], y[tr], x[~tr], y[~tr]


def run(args, repeats=1):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        p = subprocess.run([CULEACE] + args, capture_output=True, text=True)
        ts.append(time.perf_counter() - t0)
        if p.returncode != 0:
            return None, p.stderr.strip()
    return statistics.median(ts), ""


def probes(xtr, ytr, xte, yte):
    lin = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    lin.fit(xtr, ytr)
    pca = PCA(n_components=min(16, xtr.shape[1]), random_state=0).fit(xtr)
    qda = QuadraticDiscriminantAnalysis(reg_param=0.1).fit(pca.transform(xtr), ytr)
    return lin.score(xte, yte), qda.score(pca.transform(xte), yte)


def one_dataset(label, src, x_path, methods, repeats, work):
    paths, xtr, ytr, xte, yte = split_file(src, x_path, work)
    xtr, xte = xtr.astype(np.float64), xte.astype(np.float64)
    lin0, quad0 = probes(xtr, ytr, xte, yte)
    base = max(np.mean(yte == c) for c in np.unique(yte))
    rows = [(label, "none", lin0, quad0, 0.0, 0, None, "")]
    for m in methods:
        er = os.path.join(work, f"{m}.h5")
        fit_t, err = run(["fit", paths["train"], "--x", "/x", "--z", "/labels",
                          "--method", m, "-o", er, "--quiet", "--device", "cpu"]
                         + FIT_OPTIONS.get(m, []),
                         repeats)
        if fit_t is None:
            rows.append((label, m, None, None, None, None, None, err.splitlines()[-1][:80]))
            continue
        out = {}
        for part in ("train", "test"):
            o = os.path.join(work, f"{m}-{part}.h5")
            extra = ["--z", "/labels"] if m in NEEDS_Z else []
            _, err = run(["apply", er, paths[part], "--x", "/x", "-o", o, "--quiet",
                          "--device", "cpu"] + extra)
            with h5py.File(o) as f:
                out[part] = f["x"][:].astype(np.float64)
            os.remove(o)
        with h5py.File(er) as f:
            g = f["erasers/0000"]
            # an oracle eraser moves rows along coef's columns and a
            # quadratic one maps all of them (their L/R are empty)
            rank = int(g["coef"].shape[1]) if "coef" in g else \
                "full" if "ot_maps" in g else int(g.attrs["rank"])
        lin, quad = probes(out["train"], ytr, out["test"], yte)
        edit = np.sum((out["test"] - xte) ** 2) / np.sum((xte - xte.mean(0)) ** 2)
        rows.append((label, m, lin, quad, edit, rank, fit_t, ""))
    return rows, base, xtr.shape


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", default="leace,orth,inlp,rlace,oracle,quadratic")
    ap.add_argument("--synthetic-rows", type=int, default=20000)
    ap.add_argument("--synthetic-dim", type=int, default=256)
    ap.add_argument("--update-doc", action="store_true")
    a = ap.parse_args()
    methods = a.methods.split(",")
    lines = ["| data | method | linear probe acc | quadratic probe acc | "
             "mean sq. edit | rank removed | fit s |", "|---|---|---:|---:|---:|---:|---:|"]
    notes = []
    with tempfile.TemporaryDirectory() as work:
        synth = os.path.join(work, "synth.h5")
        subprocess.run([sys.executable, os.path.join(ROOT, "data", "make_dump.py"),
                        "--quiet", "--rows", str(a.synthetic_rows), "--dim",
                        str(a.synthetic_dim), "--layers", "1", "--layout", "single",
                        "--dtype", "float32", "--groups", str(a.synthetic_rows // 4),
                        "--signal", "3", "--rank", "1", "-o", synth], check=True)
        cov = os.path.join(work, "cov.h5")
        covariance_dump(cov)
        sets = [("sample.h5 /hidden/3", os.path.join(ROOT, "data", "sample.h5"), "hidden/3"),
                (f"synthetic {a.synthetic_rows}x{a.synthetic_dim}", synth, "hidden"),
                ("covariance-only 20000x64", cov, "hidden")]
        for label, src, xp in sets:
            d = os.path.join(work, label.split()[0].replace("/", "_"))
            os.makedirs(d)
            rows, base, shape = one_dataset(label, src, xp, methods, a.repeats, d)
            notes.append(f"- {label}: {shape[0]} training rows x {shape[1]}, "
                         f"held-out majority baseline {base:.3f}.")
            for lab, m, lin, quad, edit, rank, t, err in rows:
                if lin is None:
                    lines.append(f"| {lab} | {m} | failed: {err} | | | | |")
                    continue
                lines.append(f"| {lab} | {m} | {lin:.3f} | {quad:.3f} | {edit:.4f} | "
                             f"{rank} | {'' if t is None else f'{t:.3f}'} |")
    m = benchlib.machine(CULEACE)
    md = "\n".join(lines + [""] + notes + [
        "- Method options: " + "; ".join(f"{k} {' '.join(v)}" for k, v in
                                          FIT_OPTIONS.items()) + "; others the defaults.",
        f"- Machine: {m['cpu']}, {m['cores']} cores; commit {m['commit']}, {m['date']}.",
        f"- Command: `python3 bench/bench_methods.py --repeats {a.repeats} --methods {a.methods}`"]) + "\n"
    print(md)
    if a.update_doc:
        benchlib.update_doc(os.path.join(ROOT, "docs", "METHODS.md"), md,
                            "<!-- bench_methods:begin -->", "<!-- bench_methods:end -->",
                            prog="bench_methods")


if __name__ == "__main__":
    main()
