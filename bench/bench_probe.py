#!/usr/bin/env python3
"""bench_probe.py — times `culeace probe` against scikit-learn and this machine's floor.

One command, one file, one run (see bench/README.md for the columns):

    python3 bench/bench_probe.py            # 20000 x 768, 12 layers, float16,
                                            # 5 folds, C 1, tol 1e-4, 3 repeats

1. Makes a synthetic dump with data/make_dump.py (--layers L --layout group:
   /hidden/0 .. /hidden/{L-1} (n, d), /labels (n,), planted binary concept
   whose signal varies by layer), or reuses the one at --dump if its root
   attributes say it was made with the same parameters.
2. Warms the page cache (reads the file once), then times, interleaved
   repeat by repeat so drifting load hits both alike:
   - `culeace probe FILE --x /hidden --y /labels --folds K --C C --tol T
     --max-iter M --json --quiet` (task only): wall time of the subprocess,
     its peak RSS and CPU time (os.wait4's rusage of that child). Its JSON
     gives the fold of every row, the per-layer, per-fold accuracies and the
     L-BFGS iterations;
   - the peer, scikit-learn as a user writes it, in a fresh interpreter per
     repeat: h5py reads each layer as float32 (`f[...][:].astype(float32)`),
     then per fold StandardScaler fitted on the training rows and
     LogisticRegression(C, tol, solver="lbfgs", max_iter) fitted on them,
     accuracy on the test rows, with exactly culeace's fold assignment (from
     the first repeat's JSON; later repeats are checked to give the same).
     Timed from after the imports (import time reported apart); its thread
     pools (threadpoolctl) are recorded and not limited.
   After the repeats: `culeace probe ... --control --erase` once (reported
   apart, not in the ratio), the raw read of the layers' stored bytes (warm
   page cache) and this machine's streaming bandwidth (for the floor).
3. Compares accuracies per layer (mean over folds) and per fold, in
   percentage points.
4. Writes bench_probe.json and bench_probe.md to --out, prints the table, and
   (unless --no-doc) replaces the section of docs/BENCHMARKS.md between
   <!-- bench_probe:begin --> and <!-- bench_probe:end --> with bench_probe.md.

Run it on an otherwise idle machine: it waits (up to --max-wait s) until
other processes use under --max-others cores, and records the load average,
the CPU time other processes took while it timed, and the steal time.
"""

import argparse
import json
import os
import sys
import time

import benchlib
from benchlib import (HERE, ROOT, busy_jiffies, loadavg, own_cpu,
                      read_bandwidth, steal_s, summary, timed_runs)

PROG = "bench_probe"
BEGIN, END = "<!-- bench_probe:begin -->", "<!-- bench_probe:end -->"


# ---- the peer, run in a fresh interpreter --------------------------------------------

def peer_worker(path, xpath, ypath, names, folds_path, C, tol, max_iter):
    """h5py + StandardScaler + LogisticRegression(lbfgs) per layer and fold,
    on the folds saved in folds_path; prints one JSON line."""
    t0 = time.perf_counter()
    import warnings
    import h5py
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    t1 = time.perf_counter()

    assign = np.load(folds_path)
    k_folds = int(assign.max()) + 1
    layers = []
    warned = 0
    with h5py.File(path, "r") as f:
        y = f[ypath][:]
        for name in names:
            ta = time.perf_counter()
            X = f[xpath][name][:].astype(np.float32)
            tb = time.perf_counter()
            accs, iters = [], []
            for k in range(k_folds):
                test = assign == k
                train = (assign >= 0) & ~test
                scaler = StandardScaler().fit(X[train])
                clf = LogisticRegression(C=C, tol=tol, solver="lbfgs",
                                         max_iter=max_iter)
                with warnings.catch_warnings(record=True) as w:
                    warnings.simplefilter("always", ConvergenceWarning)
                    clf.fit(scaler.transform(X[train]), y[train])
                warned += sum(issubclass(x.category, ConvergenceWarning)
                              for x in w)
                accs.append(float(clf.score(scaler.transform(X[test]),
                                            y[test])))
                iters.append(int(np.max(clf.n_iter_)))
            layers.append({"name": name, "read_s": tb - ta,
                           "fit_s": time.perf_counter() - tb,
                           "accuracy": accs, "n_iter": iters})
    t2 = time.perf_counter()

    try:
        from threadpoolctl import threadpool_info
        pools = [{k: p.get(k) for k in ("user_api", "internal_api", "prefix",
                                           "num_threads", "version",
                                           "threading_layer", "architecture")}
                 for p in threadpool_info()]
    except ImportError:
        pools = None
    env = {k: v for k, v in os.environ.items()
           if k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    print(json.dumps({"import_s": t1 - t0, "fit_s": t2 - t1, "layers": layers,
                      "convergence_warnings": warned, "threadpools": pools,
                      "thread_env": env}))


# ---- helpers ---------------------------------------------------------------------

def run_timed(cmd, env=None):
    """Runs cmd; returns (wall s, peak RSS MiB, stdout, CPU s of the child)."""
    wall, rss, out, ru = benchlib.run_timed_big(cmd, env, prog=PROG)
    return wall, rss, out, ru.ru_utime + ru.ru_stime


def warm_file(path):
    """Reads the whole file once (page cache)."""
    with open(path, "rb", buffering=0) as fh:
        while fh.read(1 << 24):
            pass


def stream_bandwidth(n, d, repeats):
    """This machine's streaming rates in GB/s (median of repeats) over an
    (n, d) float32 array, the working set of culeace's iterations (one
    layer's rows; about 59 MiB at 20000 x 768):
      max1: X.max(), numpy's SIMD reduction, one thread, read only;
      maxT: the same over T = cores slices in T threads (numpy releases the
            GIL in reductions), read only;
      copyT: np.copyto of the T slices in T threads into a second array,
            counted as read + write bytes (STREAM's convention).
    The floor takes the best of the three (the lowest floor)."""
    import numpy as np
    from concurrent.futures import ThreadPoolExecutor
    T = os.cpu_count() or 1
    X = np.random.default_rng(0).standard_normal(n * d, dtype=np.float32)
    dst = np.empty_like(X)
    cuts = [len(X) * k // T for k in range(T + 1)]
    parts = [(X[a:b], dst[a:b]) for a, b in zip(cuts, cuts[1:])]
    with ThreadPoolExecutor(T) as ex:
        tests = {
            "max1": (lambda: X.max(), X.nbytes),
            "maxT": (lambda: list(ex.map(lambda p: p[0].max(), parts)),
                     X.nbytes),
            "copyT": (lambda: list(ex.map(lambda p: np.copyto(p[1], p[0]),
                                          parts)), 2 * X.nbytes)}
        out = {"threads": T, "array_bytes": X.nbytes}
        for name, (fn, nbytes) in tests.items():
            out[name] = summary(timed_runs(fn, repeats))
            out[name]["bytes"] = nbytes
            out[name]["gb_s"] = nbytes / out[name]["median"] / 1e9
    return out


def floor_of(rows, dim, dtype, iters, rd, bw):
    """The floor: the larger of the file's raw read and the passes over
    the rows L-BFGS needs (iterations + 1 per layer), each pass reading one
    layer's rows as culeace's pass does: float16/bfloat16 layers in their
    own 2 bytes (centred as each block is read), others as float32."""
    pass_bytes = rows * dim * (2 if dtype in ("float16", "bfloat16") else 4)
    passes = sum(i + 1 for i in iters)
    best_bw = max(bw[k]["gb_s"] for k in ("max1", "maxT", "copyT"))
    bw["best_gb_s"] = best_bw
    passes_s = passes * pass_bytes / (best_bw * 1e9)
    return {"read": rd, "bandwidth": bw, "layer_pass_bytes": pass_bytes,
            "pass_dtype": "float32" if pass_bytes == rows * dim * 4 else dtype,
            "passes": passes, "passes_s": passes_s,
            "floor_s": max(rd["h5py_raw"]["median"], passes_s)}


def val(x):
    """A metric of culeace's JSON: its mean when it is {mean, std, folds}."""
    if isinstance(x, dict):
        return x.get("mean")
    return x


# ---- report ----------------------------------------------------------------------

def render(res):
    m, p, t = res["machine"], res["params"], res["times"]
    fl, ag, la = res["floor"], res["agreement"], res["load"]
    L = p["layers"]
    cu, pe = t["culeace"], t["sklearn"]
    ratio = res["ratio"]
    lines = [
        f"Probe sweep of {L} layers, {p['rows']} x {p['dim']} {p['dtype']} "
        f"(binary concept), {p['folds']} folds, C {p['C']:g}, tol "
        f"{p['tol']:g}, max_iter {p['max_iter']}; {p['repeats']} repeats: "
        f"median and min..max; run {m['date']}, commit {m['commit']}.", "",
        "| what | time s | spread s | s / layer | sklearn / this | x floor "
        "| peak RSS MiB | cores used | L-BFGS iterations |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def row(name, s, rss, cores, iters, ref=True):
        med, spr = benchlib.fmt_s(s)
        r = f"{pe['fit']['median'] / s['median']:.2f}" if ref else ""
        return (f"| {name} | {med} | {spr} | {s['median'] / L:.3f} | {r} | "
                f"{s['median'] / fl['floor_s']:.1f} | {rss:.0f} | "
                f"{cores:.2f} | {iters} |")
    lines.append(row("culeace probe (task)", cu["wall"], cu["rss_mib"]["max"],
                     cu["cores"]["median"], res["iterations"]["culeace_sum"]))
    lines.append(row("h5py + StandardScaler + LogisticRegression(lbfgs), "
                     "after imports", pe["fit"], pe["rss_mib"]["max"],
                     pe["cores"]["median"], res["iterations"]["sklearn_sum"]))
    if t.get("culeace_control_erase"):
        ce = t["culeace_control_erase"]
        s = summary([ce["wall"]])
        med, _ = benchlib.fmt_s(s)
        lines.append(
            f"| culeace probe --control --erase (once, not in the ratio) | "
            f"{med} | | {ce['wall'] / L:.3f} | | "
            f"{ce['wall'] / fl['floor_s']:.1f} | {ce['rss_mib']:.0f} | "
            f"{ce['cores']:.2f} | {ce['iterations_sum']} |")
    lines.append(
        f"| floor: max(read, passes x layer bytes / bandwidth) | "
        f"{fl['floor_s']:.3f} | | {fl['floor_s'] / L:.3f} | | 1.0 | | | |")
    lines.append("")
    lines.append(
        f"**sklearn / culeace = {ratio:.2f}** (goal: at least 10 on 2 cores); "
        f"accuracy: max |culeace - sklearn| over layers "
        f"{ag['max_layer_pp']:.2f} points (mean over folds), over every "
        f"layer and fold {ag['max_fold_pp']:.2f} points.")
    lines.append("")
    has_ce = bool(t.get("culeace_control_erase"))
    head = ("| layer | culeace acc % | sklearn acc % | diff pp | max fold "
            "diff pp | culeace iters | sklearn iters | sklearn s |")
    sep = "|---:|---:|---:|---:|---:|---:|---:|---:|"
    if has_ce:
        head += " control acc % | erased acc % |"
        sep += "---:|---:|"
    lines += [head, sep]
    for r in res["per_layer"]:
        line = (f"| {r['name']} | {100 * r['culeace_acc']:.2f} | "
                f"{100 * r['sklearn_acc']:.2f} | {r['diff_pp']:+.2f} | "
                f"{r['max_fold_pp']:.2f} | {r['culeace_iters']}"
                f"{'' if r['culeace_converged'] else '*'} | "
                f"{r['sklearn_iters']} | {r['sklearn_s']:.2f} |")
        if has_ce:
            c, e = r.get("control_acc"), r.get("erased_acc")
            line += (f" {'' if c is None else f'{100 * c:.2f}'} | "
                     f"{'' if e is None else f'{100 * e:.2f}'} |")
        lines.append(line)
    lines.append("")
    lines.append(
        f"- Iterations: culeace's is the most L-BFGS iterations any fold of "
        f"the layer took (its JSON's max_iterations; * = some fold stopped at "
        f"max_iter); sklearn's is the most n_iter_ over the folds "
        f"({pe['convergence_warnings']} ConvergenceWarnings in a run). The "
        f"table's iteration column sums these over the layers.")
    ps = pe["parts"]
    lines.append(
        f"- sklearn: imports (h5py, numpy, sklearn) {pe['import_s']['median']:.2f} s "
        f"median, not in its time above; of its time, reading the layers "
        f"as float32 {ps['read_s']:.2f} s and the folds' scaler + fit + "
        f"score {ps['fit_s']:.2f} s (medians of per-run sums); whole process "
        f"{pe['wall']['median']:.2f} s. Thread pools (threadpoolctl, "
        f"not limited): {pe['threadpools_text']}.")
    lines.append(
        f"- culeace's time is its whole process (start, read and convert "
        f"the float16 layers, standardise, fit all folds of a layer "
        f"together, metrics, JSON of {p['rows']} fold assignments); its "
        f"accuracies were identical in every repeat: "
        f"{'yes' if ag['culeace_repeats_identical'] else 'no'}; sklearn's: "
        f"{'yes' if ag['sklearn_repeats_identical'] else 'no'}. Fold sizes "
        f"{', '.join(str(s) for s in res['fold_sizes'])}.")
    rd, bw = fl["read"], fl["bandwidth"]
    rl = (f"- Floor: read = the {L} layers' stored {rd['bytes'] / 2**20:.0f} "
          f"MiB, page cache warm, h5py with the file's own 2-byte type (no "
          f"conversion) in 8192-row blocks, {rd['h5py_raw']['median']:.3f} s "
          f"({rd['h5py_raw']['gb_s']:.1f} GB/s)")
    if "file" in rd:
        rl += (f"; plain file reads {rd['file']['median']:.3f} s "
               f"({rd['file']['gb_s']:.1f} GB/s)")
    lines.append(rl + ".")
    lines.append(
        f"- Floor: passes = sum over layers of (culeace's iterations + 1) = "
        f"{fl['passes']} (each L-BFGS iteration evaluates the loss and "
        f"gradient of all folds at least once, one read of the layer's rows "
        f"in the type the pass reads; line-search retries and the "
        f"standardisation pass are not counted), x "
        f"{fl['layer_pass_bytes'] / 2**20:.1f} MiB ({p['rows']} x "
        f"{p['dim']} {fl['pass_dtype']}) / {bw['best_gb_s']:.1f} GB/s "
        f"(the best of, on an array that size: numpy max, 1 thread, "
        f"{bw['max1']['gb_s']:.1f} GB/s; max over {bw['threads']} slices "
        f"in {bw['threads']} threads {bw['maxT']['gb_s']:.1f} GB/s; copy in "
        f"{bw['threads']} threads {bw['copyT']['gb_s']:.1f} GB/s counting "
        f"read + write"
        f") = {fl['passes_s']:.3f} s. The floor is the larger of read and "
        f"passes (reading the next layer can overlap iterating on this one); "
        f"it leaves out process start, the conversion to float32, the flops, "
        f"and the metrics.")
    lines += benchlib.context_lines(la, m, f"scikit-learn {m['scikit_learn']}, scipy {m['scipy']}, threadpoolctl {m['threadpoolctl']}")
    lines.append(f"- Command: `{res['command']}`")
    return "\n".join(lines) + "\n"


def pools_text(pools):
    if not pools:
        return "threadpoolctl not installed"
    parts = []
    for p in pools:
        what = p.get("internal_api") or p.get("user_api")
        ver = f" {p['version']}" if p.get("version") else ""
        parts.append(f"{what}{ver} ({p.get('prefix')}) {p.get('num_threads')} "
                     f"threads")
    return "; ".join(parts)


# ---- main ------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--dtype", default="float16",
                    choices=["float16", "bfloat16", "float32", "float64"])
    ap.add_argument("--groups", type=int, default=0,
                    help="prompt groups in the dump (0: none); with groups, "
                         "culeace gets --groups /groups")
    ap.add_argument("--seed", type=int, default=0, help="seed of the dump")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--C", type=float, default=1.0)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-control-erase", action="store_true",
                    help="skip the one run with --control --erase")
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--dump", default=None,
                    help="dump path (default: OUT/dump_probe_ROWSxDIMxLAYERS_"
                         "DTYPE[_gGROUPS].h5)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="folder with culeace")
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs", "BENCHMARKS.md"))
    ap.add_argument("--no-doc", action="store_true",
                    help="do not update the doc's bench_probe section")
    ap.add_argument("--max-others", type=float, default=0.1,
                    help="wait until other processes use fewer cores than this")
    ap.add_argument("--max-wait", type=float, default=300,
                    help="seconds to wait for an idle machine before timing anyway")
    ap.add_argument("--report-only", metavar="JSON",
                    help="redo the report (floor included) from a saved "
                    "bench_probe.json, timing nothing")
    ap.add_argument("--peer-worker", nargs=8, help=argparse.SUPPRESS,
                    metavar=("FILE", "X", "Y", "NAMES", "FOLDS", "C", "TOL",
                             "MAXITER"))
    args = ap.parse_args()
    benchlib.use_build(args.build)
    if args.report_only:
        with open(args.report_only) as f:
            res = json.load(f)
        p, fl = res["params"], res["floor"]
        iters = [int(x.get("max_iterations") or 0)
                 for x in res["culeace_json_first"]["layers"]]
        res["floor"] = floor_of(p["rows"], p["dim"], p["dtype"], iters,
                                fl["read"], fl["bandwidth"])
        benchlib.save_report(args.out, "bench_probe", res, render(res),
                             None if args.no_doc else args.doc, BEGIN, END,
                             PROG)
        return

    if args.peer_worker:
        path, xp, yp, names, folds, C, tol, mi = args.peer_worker
        peer_worker(path, xp, yp, names.split(","), folds, float(C),
                    float(tol), int(mi))
        return

    import numpy as np
    culeace = os.path.join(args.build, "culeace")
    if not os.access(culeace, os.X_OK):
        sys.exit(f"{PROG}: {culeace} not found; build with "
                 f"`cmake --build {args.build}`")
    os.makedirs(args.out, exist_ok=True)
    gsuf = f"_g{args.groups}" if args.groups else ""
    dump = args.dump or os.path.join(
        args.out, f"dump_probe_{args.rows}x{args.dim}x{args.layers}_"
                  f"{args.dtype}{gsuf}.h5")
    want = {"rows": args.rows, "dim": args.dim, "layers": args.layers,
            "dtype": args.dtype, "layout": "group", "groups": args.groups,
            "seed": args.seed}
    need = [f"/hidden/{i}" for i in range(args.layers)] + ["/labels"]
    if args.groups:
        need.append("/groups")
    t0 = time.time()
    made = benchlib.ensure_dump(dump, want, need)
    print(f"{PROG}: dump {dump} ({'made' if made else 'reused'}, "
          f"{time.time() - t0:.1f} s)", file=sys.stderr)

    info = benchlib.machine(culeace, packages=(
        ("scikit_learn", "scikit-learn"), ("scipy", "scipy"),
        ("threadpoolctl", "threadpoolctl")))
    cmd_line = "python3 bench/bench_probe.py " + " ".join(
        f"--{k.replace('_', '-')} {getattr(args, k)}"
        for k in ("rows", "dim", "layers", "dtype", "groups", "folds", "C",
                  "tol", "max_iter", "repeats"))

    base = [culeace, "probe", dump, "--x", "/hidden", "--y", "/labels",
            "--folds", str(args.folds), "--C", repr(args.C), "--tol",
            repr(args.tol), "--max-iter", str(args.max_iter), "--json",
            "--quiet"]
    if args.groups:
        base += ["--groups", "/groups"]
    folds_path = os.path.join(args.out, "probe_folds.npy")

    def peer_cmd(names):
        return [sys.executable, os.path.abspath(__file__), "--peer-worker",
                dump, "/hidden", "/labels", ",".join(names), folds_path,
                repr(args.C), repr(args.tol), str(args.max_iter)]

    others_before, idle = benchlib.wait_for_idle(args.max_others,
                                                 args.max_wait, prog=PROG)
    load_before = loadavg()
    print(f"{PROG}: load average {load_before}", file=sys.stderr)
    busy0, own0, steal0 = busy_jiffies(), own_cpu(), steal_s()
    clock0 = time.perf_counter()
    warm_file(dump)

    cu = {"wall": [], "rss_mib": [], "cores": []}
    pe = {"wall": [], "rss_mib": [], "cores": [], "fit": [], "import_s": [],
          "read_parts": [], "fit_parts": []}
    cu_json, pe_json = [], []
    assignment = None
    for r in range(args.repeats):
        wall, rss, out, cpu = run_timed(base)
        j = json.loads(out)
        a = np.asarray(j["folds"]["assignment"], dtype=np.int64)
        if assignment is None:
            assignment = a
            np.save(folds_path, assignment)
        elif not np.array_equal(a, assignment):
            sys.exit(f"{PROG}: culeace's fold assignment changed between "
                     f"repeats")
        cu["wall"].append(wall)
        cu["rss_mib"].append(rss)
        cu["cores"].append(cpu / wall)
        cu_json.append(j)
        names = [str(layer["name"]) for layer in j["layers"]]

        wall, rss, out, cpu = run_timed(peer_cmd(names))
        w = json.loads(out.strip().splitlines()[-1])
        pe["wall"].append(wall)
        pe["rss_mib"].append(rss)
        pe["cores"].append(cpu / wall)
        pe["fit"].append(w["fit_s"])
        pe["import_s"].append(w["import_s"])
        pe["read_parts"].append(sum(x["read_s"] for x in w["layers"]))
        pe["fit_parts"].append(sum(x["fit_s"] for x in w["layers"]))
        pe_json.append(w)
        print(f"{PROG}: repeat {r + 1}/{args.repeats}: culeace "
              f"{cu['wall'][-1]:.2f} s, sklearn {w['fit_s']:.2f} s "
              f"(+{w['import_s']:.2f} s imports)", file=sys.stderr)

    ce = None
    if not args.no_control_erase:
        wall, rss, out, cpu = run_timed(base + ["--control", "--erase"])
        jce = json.loads(out)
        if not np.array_equal(np.asarray(jce["folds"]["assignment"]),
                              assignment):
            print(f"{PROG}: note: --control --erase gave other folds",
                  file=sys.stderr)
        ce = {"wall": wall, "rss_mib": rss, "cores": cpu / wall,
              "iterations_sum": sum(int(x.get("max_iterations") or 0)
                                    for x in jce["layers"]),
              "layers": [{"name": x["name"],
                          "accuracy": val(x["accuracy"]),
                          "control_accuracy": val(x.get("control_accuracy")),
                          "selectivity": val(x.get("selectivity")),
                          "erased_accuracy": val(x.get("erased_accuracy")),
                          "max_iterations": x.get("max_iterations")}
                         for x in jce["layers"]]}
        print(f"{PROG}: --control --erase {wall:.2f} s", file=sys.stderr)

    rd = read_bandwidth(dump, args.repeats,
                        names=[f"/hidden/{n}" for n in names])
    bw = stream_bandwidth(args.rows, args.dim, max(5, args.repeats))
    clock = time.perf_counter() - clock0
    load_after = loadavg()
    others_cpu = max(0.0, (busy_jiffies() - busy0) - (own_cpu() - own0))
    steal = steal_s() - steal0

    # ---- accuracy agreement (first repeat of each; repeats are compared)
    j0, w0 = cu_json[0], pe_json[0]
    per_layer, max_fold = [], 0.0
    for i, (lc, lp) in enumerate(zip(j0["layers"], w0["layers"])):
        fc = lc["accuracy"]["folds"]
        fp = lp["accuracy"]
        fold_pp = max(abs(a - b) for a, b in zip(fc, fp)) * 100
        max_fold = max(max_fold, fold_pp)
        r = {"name": lc["name"], "culeace_acc": lc["accuracy"]["mean"],
             "sklearn_acc": float(np.mean(fp)),
             "diff_pp": (lc["accuracy"]["mean"] - float(np.mean(fp))) * 100,
             "max_fold_pp": fold_pp,
             "culeace_folds": fc, "sklearn_folds": fp,
             "culeace_iters": lc.get("max_iterations"),
             "culeace_converged": lc.get("converged", True),
             "sklearn_iters": max(lp["n_iter"]),
             "sklearn_iters_folds": lp["n_iter"],
             "sklearn_s": float(np.median([w["layers"][i]["read_s"] +
                                           w["layers"][i]["fit_s"]
                                           for w in pe_json]))}
        if ce:
            r["control_acc"] = ce["layers"][i]["control_accuracy"]
            r["erased_acc"] = ce["layers"][i]["erased_accuracy"]
        per_layer.append(r)

    def same(js, get):
        first = [get(x) for x in js[0]["layers"]]
        return all([get(x) for x in j["layers"]] == first for j in js[1:])
    agreement = {
        "max_layer_pp": max(abs(r["diff_pp"]) for r in per_layer),
        "max_fold_pp": max_fold,
        "culeace_repeats_identical": same(cu_json,
                                          lambda x: x["accuracy"]["folds"]),
        "sklearn_repeats_identical": same(pe_json, lambda x: x["accuracy"])}

    iters = [int(x.get("max_iterations") or 0) for x in j0["layers"]]
    floor = floor_of(args.rows, args.dim, args.dtype, iters, rd, bw)

    times = {"culeace": {k: summary(v) for k, v in cu.items()},
             "sklearn": {k: summary(pe[k]) for k in
                         ("wall", "rss_mib", "cores", "fit", "import_s")},
             "culeace_control_erase": ce}
    sk = times["sklearn"]
    sk["parts"] = {"read_s": summary(pe["read_parts"])["median"],
                   "fit_s": summary(pe["fit_parts"])["median"]}
    sk["convergence_warnings"] = pe_json[0]["convergence_warnings"]
    sk["threadpools"] = pe_json[0]["threadpools"]
    sk["threadpools_text"] = pools_text(pe_json[0]["threadpools"])
    sk["thread_env"] = pe_json[0]["thread_env"]
    ratio = sk["fit"]["median"] / times["culeace"]["wall"]["median"]

    res = {"params": {"rows": args.rows, "dim": args.dim,
                      "layers": len(names), "dtype": args.dtype,
                      "groups": args.groups, "seed": args.seed,
                      "folds": args.folds, "C": args.C, "tol": args.tol,
                      "max_iter": args.max_iter, "repeats": args.repeats,
                      "dump": dump, "culeace_command": base},
           "command": cmd_line, "machine": info,
           "load": {"before": load_before, "after": load_after, "idle": idle,
                    "others_cores_before": others_before,
                    "others_cpu_s": others_cpu, "steal_s": steal,
                    "timed_wall_s": clock},
           "times": times, "ratio": ratio,
           "ratio_whole_process": sk["wall"]["median"]
           / times["culeace"]["wall"]["median"],
           "iterations": {"culeace_sum": sum(iters),
                          "sklearn_sum": sum(r["sklearn_iters"]
                                             for r in per_layer)},
           "fold_sizes": j0["folds"]["sizes"],
           "agreement": agreement, "per_layer": per_layer, "floor": floor,
           "culeace_json_first": {k: v for k, v in j0.items() if k != "folds"}}
    benchlib.save_report(args.out, "bench_probe", res, render(res),
                         None if args.no_doc else args.doc, BEGIN, END, PROG)


if __name__ == "__main__":
    main()
