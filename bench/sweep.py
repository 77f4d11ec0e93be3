#!/usr/bin/env python3
"""sweep.py — culeace against its peers and the machine's floor across
sizes: how each cost grows with rows n and width d.

One command makes the synthetic dumps (data/make_dump.py, planted binary
concept) and times, on the same files in the same run:

  fit    culeace fit            vs h5py + concept-erasure LeaceFitter (float64)
         vs the floor dsyrk(n, d) + dsyevd(d) (max'd with the raw read)
  apply  culeace apply -o / --in-place
         vs h5py read + concept-erasure eraser + h5py write (new file / r+)
         vs the floor: one read + one write of the same bytes, fsynced
  probe  culeace probe (5-fold)  vs h5py + StandardScaler + LogisticRegression
         (lbfgs, same C, tol, max_iter, culeace's folds)

    python3 bench/sweep.py                   # the default grid (bench/README.md)
    python3 bench/sweep.py --grid quick --no-doc --no-plots   # a minute

Each figure is the median over --repeats runs, with min..max; variants are
interleaved repeat by repeat. The report (OUT/sweep.md, the `bench_sweep`
section of docs/BENCHMARKS.md) gives ratios (peer / culeace, culeace /
floor), peak RSS, the slope of log time against log n and log d for every
series, the goals, and plots of time against n and d (docs/img/sweep_*.svg
and .png). Everything measured is in OUT/sweep.json.
"""

import argparse
import json
import os
import re
import shutil
import sys
import time

import benchlib
import sweep_floor
import sweep_report
from benchlib import HERE, ROOT, busy_jiffies, loadavg, own_cpu, steal_s

PROG = "sweep"
BEGIN, END = "<!-- bench_sweep:begin -->", "<!-- bench_sweep:end -->"


# ---- the grid --------------------------------------------------------------------

def point(kind, rows, dim, layers=1, dtype="float16", axes=(), repeats=None):
    return {"kind": kind, "rows": rows, "dim": dim, "layers": layers,
            "dtype": dtype, "axes": list(axes), "repeats": repeats}


def grid(name, corner_repeats):
    """The points to time. A point on an axis shares its other sizes with
    the axis's other points; one point may lie on two axes."""
    pts = {}

    def add(p):
        key = (p["kind"], p["rows"], p["dim"], p["layers"], p["dtype"])
        if key in pts:
            pts[key]["axes"] += [a for a in p["axes"] if a not in pts[key]["axes"]]
        else:
            pts[key] = p

    if name == "quick":
        for n in (2048, 4096, 8192):
            add(point("erase", n, 64, axes=["n"]))
        for d in (32, 64, 128):
            add(point("erase", 4096, d, axes=["d"]))
        add(point("erase", 4096, 64, dtype="float32", axes=["dtype"]))
        add(point("erase", 4096, 64, layers=3, axes=["layers"]))
        for n in (1000, 2000):
            add(point("probe", n, 32, axes=["n"]))
        for d in (32, 64):
            add(point("probe", 1000, d, axes=["d"]))
    else:
        for n in (16384, 32768, 65536, 131072, 262144):
            add(point("erase", n, 1024, axes=["n"]))
        for d in (256, 512, 1024, 2048, 4096):
            add(point("erase", 32768, d, axes=["d"]))
        add(point("erase", 65536, 1024, dtype="float32", axes=["dtype"]))
        add(point("erase", 16384, 1024, layers=24, axes=["layers"]))
        if corner_repeats > 0:
            add(point("erase", 262144, 4096, axes=["corner"],
                      repeats=corner_repeats))
        for n in (10000, 20000, 40000):
            add(point("probe", n, 256, axes=["n"]))
        for d in (256, 512, 1024):
            add(point("probe", 10000, d, axes=["d"]))
    return list(pts.values())


def label(p):
    s = f"{p['rows']} x {p['dim']}"
    if p["layers"] > 1:
        s += f" x {p['layers']} layers"
    return s + f" {p['dtype']}"


# ---- running ---------------------------------------------------------------------

class Runner:
    def __init__(self, args):
        self.args = args
        self.culeace = os.path.join(args.build, "culeace")
        self.floor_bin = os.path.join(args.build, "culeace_bench_floor")
        for exe in (self.culeace, self.floor_bin):
            if not os.access(exe, os.X_OK):
                sys.exit(f"{PROG}: {exe} not found; build with "
                         f"`cmake --build {args.build}`")
        self.peers = os.path.join(HERE, "sweep_peers.py")
        self.probe_peer = os.path.join(HERE, "bench_probe.py")
        self.device = ["--device", args.device]
        # The floor runs with the OpenBLAS kernel the CLI picks for itself
        # (it re-executes with OPENBLAS_CORETYPE set; without it OpenBLAS
        # may take a slower one on a VM).
        info = benchlib.sh([self.culeace, "--version"]) or ""
        kernel = re.search(r"BLAS kernel:\s*([A-Za-z0-9_]+)", info)
        self.env = dict(os.environ)
        self.kernel = kernel.group(1) if kernel else None
        if self.kernel:
            self.env["OPENBLAS_CORETYPE"] = self.kernel

    def timed(self, cmd):
        os.sync()  # the previous step's dirty pages are not this one's cost
        wall, rss, out, ru = benchlib.run_timed_big(cmd, env=self.env, prog=PROG)
        return wall, rss, out, ru.ru_utime + ru.ru_stime

    def dump(self, p):
        path = os.path.join(self.args.out, f"dump_{p['rows']}x{p['dim']}x"
                                           f"{p['layers']}_{p['dtype']}.h5")
        want = {"rows": p["rows"], "dim": p["dim"], "layers": p["layers"],
                "dtype": p["dtype"], "layout": "group", "seed": 0}
        need = [f"/hidden/{i}" for i in range(p["layers"])] + ["/labels"]
        t0 = time.time()
        made = benchlib.ensure_dump(path, want, need)
        if made:
            print(f"{PROG}: made {path} ({time.time() - t0:.1f} s)",
                  file=sys.stderr)
        return path

    def erase_point(self, p, reps):
        """fit + apply at one size; returns the point's measurements."""
        out = self.args.out
        dump = self.dump(p)
        names = [str(i) for i in range(p["layers"])]
        tag = f"{p['rows']}x{p['dim']}x{p['layers']}_{p['dtype']}"
        er_cu = os.path.join(out, f"erasers_{tag}.h5")
        er_ce = os.path.join(out, f"erasers_{tag}.pt")
        out_cu, out_ce = (os.path.join(out, f"applied_{w}_{tag}.h5")
                          for w in ("culeace", "peer"))
        copy_cu, copy_ce, copy_fl = (os.path.join(out, f"inplace_{w}_{tag}.h5")
                                     for w in ("culeace", "peer", "floor"))
        floor_out = os.path.join(out, f"floor_copy_{tag}.h5")
        extents = sweep_floor.dataset_extents(
            dump, [f"/hidden/{n}" for n in names])
        series = {k: {"wall": [], "rss_mib": [], "cpu_s": []} for k in (
            "culeace_fit", "peer_fit", "culeace_apply_out", "peer_apply_out",
            "culeace_apply_inplace", "peer_apply_inplace")}
        peer_import, peer_whole = [], {"fit": [], "apply_out": [],
                                       "apply_inplace": []}
        floor = {"dsyrk_s": [], "ssyrk_s": [], "dsyevd_s": [],
                 "dpotrf_s": [], "read_s": [], "copy_s": [], "in_place_s": []}
        syrk_meta = None
        fresh_copy(dump, None)  # warm the page cache

        def rec(key, wall, rss, cpu):
            series[key]["wall"].append(wall)
            series[key]["rss_mib"].append(rss)
            series[key]["cpu_s"].append(cpu)

        def peer(key, cmd):
            wall, rss, text, cpu = self.timed(cmd)
            j = json.loads(text.strip().splitlines()[-1])
            rec(key, j["work_s"], rss, cpu)
            peer_import.append(j["import_s"])
            peer_whole[key.replace("peer_", "")].append(wall)

        for r in range(reps):
            # fit (its files feed apply)
            w = self.timed([self.culeace, "fit", dump, "--x", "/hidden", "--z",
                            "/labels", "-o", er_cu, "--quiet"] + self.device)
            rec("culeace_fit", *w[:2], w[3])
            peer("peer_fit", [sys.executable, self.peers, "fit", dump,
                              ",".join(names), er_ce if r == 0 else "-"])
            fl = sweep_floor.syrk_eigh(self.floor_bin, p["rows"], p["dim"],
                                       env=self.env)
            for k in ("dsyrk_s", "ssyrk_s", "dsyevd_s", "dpotrf_s"):
                floor[k].append(fl[k] * p["layers"])
            floor["read_s"].append(sweep_floor.read(dump))
            syrk_meta = fl
            # apply to a new file
            for f in (out_cu, out_ce, floor_out):
                if os.path.exists(f):
                    os.remove(f)
            w = self.timed([self.culeace, "apply", er_cu, dump, "--x",
                            "/hidden", "-o", out_cu, "--quiet"] + self.device)
            rec("culeace_apply_out", *w[:2], w[3])
            peer("peer_apply_out", [sys.executable, self.peers, "apply", dump,
                                    ",".join(names), er_ce, out_ce])
            os.sync()  # the peer's output is not fsynced: flush it first
            floor["copy_s"].append(sweep_floor.copy(dump, floor_out))
            # apply in place, each on a fresh copy (durable and cached)
            fresh_copy(dump, copy_cu)
            w = self.timed([self.culeace, "apply", er_cu, copy_cu, "--x",
                            "/hidden", "--in-place", "--quiet"] + self.device)
            rec("culeace_apply_inplace", *w[:2], w[3])
            fresh_copy(dump, copy_ce)
            peer("peer_apply_inplace", [sys.executable, self.peers, "apply",
                                        copy_ce, ",".join(names), er_ce, "-"])
            fresh_copy(dump, copy_fl)
            os.sync()
            floor["in_place_s"].append(sweep_floor.in_place(copy_fl, extents))
            print(f"{PROG}: {label(p)} repeat {r + 1}/{reps}: fit "
                  f"{series['culeace_fit']['wall'][-1]:.2f} s (peer "
                  f"{series['peer_fit']['wall'][-1]:.2f}), apply -o "
                  f"{series['culeace_apply_out']['wall'][-1]:.2f} s (peer "
                  f"{series['peer_apply_out']['wall'][-1]:.2f}, floor "
                  f"{floor['copy_s'][-1]:.2f})", file=sys.stderr)

        agree = compare_erase(er_cu, er_ce, out_cu, out_ce, copy_cu, dump)
        for f in (out_cu, out_ce, copy_cu, copy_ce, copy_fl, floor_out):
            os.remove(f)
        return {"series": {k: summarise(v) for k, v in series.items()},
                "peer_import_s": benchlib.summary(peer_import),
                "peer_whole_s": {k: benchlib.summary(v)
                                 for k, v in peer_whole.items()},
                "floor": {k: benchlib.summary(v) for k, v in floor.items()},
                "syrk_rows": syrk_meta["syrk_rows"],
                "dsyrk_gflops": syrk_meta["gflops"],
                "ssyrk_gflops": syrk_meta["sgflops"],
                "bytes": sum(e[1] for e in extents),
                "file_bytes": os.path.getsize(dump),
                "agreement": agree}

    def probe_point(self, p, reps):
        import numpy as np
        dump = self.dump(p)
        tag = f"{p['rows']}x{p['dim']}x{p['layers']}_{p['dtype']}"
        folds = os.path.join(self.args.out, f"folds_{tag}.npy")
        a = self.args
        base = [self.culeace, "probe", dump, "--x", "/hidden", "--y",
                "/labels", "--folds", "5", "--C", repr(a.C), "--tol",
                repr(a.tol), "--max-iter", str(a.max_iter), "--json",
                "--quiet"] + self.device
        series = {k: {"wall": [], "rss_mib": [], "cpu_s": []}
                  for k in ("culeace_probe", "sklearn_probe")}
        peer_import, cu_json, pe_json, assign = [], None, None, None
        fresh_copy(dump, None)
        for r in range(reps):
            wall, rss, text, cpu = self.timed(base)
            j = json.loads(text)
            got = np.asarray(j["folds"]["assignment"], dtype=np.int64)
            if assign is None:
                assign, cu_json = got, j
                np.save(folds, assign)
            elif not np.array_equal(got, assign):
                sys.exit(f"{PROG}: culeace's folds changed between repeats")
            for k, v in (("wall", wall), ("rss_mib", rss), ("cpu_s", cpu)):
                series["culeace_probe"][k].append(v)
            names = [str(x["name"]) for x in j["layers"]]
            wall, rss, text, cpu = self.timed(
                [sys.executable, self.probe_peer, "--peer-worker", dump,
                 "/hidden", "/labels", ",".join(names), folds, repr(a.C),
                 repr(a.tol), str(a.max_iter)])
            w = json.loads(text.strip().splitlines()[-1])
            pe_json = pe_json or w
            peer_import.append(w["import_s"])
            for k, v in (("wall", w["fit_s"]), ("rss_mib", rss),
                         ("cpu_s", cpu)):
                series["sklearn_probe"][k].append(v)
            print(f"{PROG}: {label(p)} probe repeat {r + 1}/{reps}: culeace "
                  f"{series['culeace_probe']['wall'][-1]:.2f} s, sklearn "
                  f"{w['fit_s']:.2f} s", file=sys.stderr)
        os.remove(folds)
        lc, lp = cu_json["layers"][0], pe_json["layers"][0]
        return {"series": {k: summarise(v) for k, v in series.items()},
                "peer_import_s": benchlib.summary(peer_import),
                "culeace_accuracy": lc["accuracy"]["mean"],
                "sklearn_accuracy": float(np.mean(lp["accuracy"])),
                "max_fold_diff_pp": max(abs(x - y) for x, y in zip(
                    lc["accuracy"]["folds"], lp["accuracy"])) * 100,
                "culeace_iterations": lc.get("max_iterations"),
                "sklearn_iterations": max(lp["n_iter"])}


def summarise(s):
    return {k: benchlib.summary(v) for k, v in s.items()}


def fresh_copy(src, dst):
    """Reads src once (page cache); with dst, copies it there, fsynced, so
    that no dirty page of the copy is written back while timing."""
    if dst is None:
        sweep_floor.read(src)
        return
    shutil.copyfile(src, dst)
    fd = os.open(dst, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def compare_erase(er_cu, er_ce, out_cu, out_ce, inplace_cu, dump):
    """Layer 0: culeace's eraser vs concept-erasure's (dP, bias), culeace's
    -o rows vs the peer's, relative to the largest |x|, and culeace's
    in-place rows vs its -o rows (must be identical)."""
    import h5py
    import numpy as np
    import torch
    with h5py.File(er_cu, "r") as f:
        g = f["/erasers/0000"]
        L, R, b = (g[k][:].astype(np.float64) for k in ("L", "R", "bias"))
    ce = torch.load(er_ce)["0"]
    Lc, Rc = ce["proj_left"].double().numpy(), ce["proj_right"].double().numpy()
    bc = ce["bias"].double().numpy()
    eye = np.eye(R.shape[1])
    P, Pc = eye - L @ R, eye - Lc @ Rc
    with h5py.File(out_cu, "r") as a, h5py.File(out_ce, "r") as b2, \
            h5py.File(inplace_cu, "r") as c, h5py.File(dump, "r") as x:
        rows, d = x["/hidden/0"].shape
        n = min(rows, max(1, (1 << 24) // d))  # 128 MiB per float64 copy
        xa = a["/hidden/0"][:n].astype(np.float64)
        xb = b2["/hidden/0"][:n].astype(np.float64)
        same = bool(np.array_equal(a["/hidden/0"][:n], c["/hidden/0"][:n]))
        scale = np.abs(x["/hidden/0"][:n].astype(np.float64)).max()
    return {"dP": float(np.abs(P - Pc).max() / np.abs(Pc).max()),
            "dbias": float(np.abs(b - bc).max() / np.abs(bc).max()),
            "apply_rows_compared": int(n),
            "apply_max_diff": float(np.abs(xa - xb).max() / scale),
            "inplace_equals_out": same}


# ---- main ------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", default="default", choices=["default", "quick"])
    ap.add_argument("--only", default="erase,probe",
                    help="kinds of point to time: erase (fit + apply), probe")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--corner-repeats", type=int, default=2,
                    help="repeats of the largest point, 262144 x 4096 "
                         "(0: leave it out)")
    ap.add_argument("--device", default="cpu",
                    help="culeace's --device for every command (cpu, cuda)")
    ap.add_argument("--C", type=float, default=1.0)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--out", default=os.path.join(HERE, "out", "sweep"))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs", "BENCHMARKS.md"))
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--plots", default=os.path.join(ROOT, "docs", "img"))
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--max-others", type=float, default=0.1)
    ap.add_argument("--max-wait", type=float, default=300)
    ap.add_argument("--report-only", metavar="SWEEP_JSON",
                    help="time nothing: redo the report, plots and doc "
                         "section from a saved sweep.json")
    args = ap.parse_args()
    benchlib.use_build(args.build)
    if args.report_only:
        with open(args.report_only) as f:
            report(json.load(f), args)
        return

    os.makedirs(args.out, exist_ok=True)
    kinds = set(args.only.split(","))
    pts = [p for p in grid(args.grid, args.corner_repeats) if p["kind"] in kinds]
    run = Runner(args)
    for p in pts:  # every dump first, so that making them is not timed
        run.dump(p)
    info = benchlib.machine(run.culeace, packages=(
        ("torch", "torch"), ("concept_erasure", "concept-erasure"),
        ("scikit_learn", "scikit-learn")))

    others_before, idle = benchlib.wait_for_idle(args.max_others, args.max_wait,
                                                 prog=PROG)
    la = {"before": loadavg(), "idle": idle}
    busy0, own0, steal0 = busy_jiffies(), own_cpu(), steal_s()
    clock0 = time.perf_counter()
    for i, p in enumerate(pts):
        reps = p["repeats"] or args.repeats
        b0, o0, t0 = busy_jiffies(), own_cpu(), time.perf_counter()
        print(f"{PROG}: point {i + 1}/{len(pts)}: {p['kind']} {label(p)}",
              file=sys.stderr)
        res = (run.erase_point if p["kind"] == "erase" else run.probe_point)(
            p, reps)
        p.update(res)
        p["repeats"] = reps
        p["others_cores"] = max(0.0, (busy_jiffies() - b0) - (own_cpu() - o0)
                                ) / (time.perf_counter() - t0)
    la["timed_wall_s"] = time.perf_counter() - clock0
    la["after"] = loadavg()
    la["others_cpu_s"] = max(0.0, (busy_jiffies() - busy0) - (own_cpu() - own0))
    la["steal_s"] = steal_s() - steal0

    cmd = "python3 bench/sweep.py " + " ".join(sys.argv[1:])
    res = {"machine": info, "load": la, "points": pts, "command": cmd.strip(),
           "settings": {"grid": args.grid, "repeats": args.repeats,
                        "corner_repeats": args.corner_repeats,
                        "device": args.device, "C": args.C, "tol": args.tol,
                        "max_iter": args.max_iter,
                        "syrk_rows_max": sweep_floor.SYRK_ROWS_MAX}}
    report(res, args)


def report(res, args):
    """Slopes, plots, the markdown report (OUT/sweep.md, the doc section)."""
    pts = res["points"]
    res["slopes"] = sweep_report.slopes(pts)
    res["plots"] = [] if args.no_plots else sweep_report.plots(pts, args.plots)
    md = sweep_report.render(res, doc_dir=os.path.dirname(args.doc))
    benchlib.save_report(args.out, "sweep", res, md,
                         None if args.no_doc else args.doc, BEGIN, END, PROG)


if __name__ == "__main__":
    main()
