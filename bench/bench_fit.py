#!/usr/bin/env python3
"""bench_fit.py — times `culeace fit` against its peer and this machine's floor.

One command, one file, one run (see bench/README.md for the columns):

    python3 bench/bench_fit.py --rows 65536 --dim 1024 --dtype float16 \\
        --repeats 5 --out bench/out

1. Makes a synthetic dump with data/make_dump.py (one layer, planted binary
   concept: /hidden/0 (n, d) and /labels (n,)), or reuses the one in --out if
   its root attributes say it was made with the same parameters.
2. Times, interleaved repeat by repeat so drifting load hits all alike:
   - `culeace fit FILE --x /hidden --z /labels -o E.h5 --quiet` with
     --precision f64 and f32 (the default, auto, is f32 for float16/bfloat16
     rows and f64 for wider ones): wall time of the subprocess and
     its peak RSS (os.wait4's rusage of that child);
   - the peer, h5py + concept-erasure as a user writes it: read /hidden/0 in
     blocks of 8192 rows, torch.from_numpy(block.astype(np.float32)),
     LeaceFitter(d, 1, dtype=torch.float32 or torch.float64) with its
     defaults, .update(x, z) per block, then .eraser. Each repeat is a fresh
     interpreter; its fit is timed from after the imports, and the import
     time is reported on its own;
   - the floor: culeace_bench_floor N D 1 once per repeat (SYRK +
     eigendecomposition, and the Cholesky factorisation culeace whitens a
     well-conditioned covariance with, with the same OpenBLAS kernel the
     CLI picks), and
     after the repeats the raw read of the dataset's bytes (warm page cache)
     with h5py and with plain file reads.
   One untimed warm-up run of each variant goes first; it warms the page
   cache and writes the erasers compared in step 3.
3. Compares the erasers: max |P_culeace - P_ce| / max |P_ce| with
   P = I - L R (culeace's /erasers/0000/{L,R}) and P = I - proj_left @
   proj_right (concept-erasure), and the same for the bias.
4. Writes bench_fit.json and bench_fit.md to --out, prints the table, and
   (unless --no-doc) replaces the section of docs/BENCHMARKS.md between
   <!-- bench_fit:begin --> and <!-- bench_fit:end --> with bench_fit.md.

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
from benchlib import (BLOCK_ROWS, HERE, ROOT, busy_jiffies, fmt_s, loadavg,
                      own_cpu, read_bandwidth, steal_s, summary)

PROG = "bench_fit"
BEGIN, END = "<!-- bench_fit:begin -->", "<!-- bench_fit:end -->"


# ---- the peer, run in a fresh interpreter --------------------------------------------

def peer_worker(path, dtype_name, save):
    """h5py + concept-erasure fit of /hidden/0; prints one JSON line."""
    t0 = time.perf_counter()
    import h5py
    import numpy as np
    import torch
    from concept_erasure import LeaceFitter
    t1 = time.perf_counter()

    dtype = {"float32": torch.float32, "float64": torch.float64}[dtype_name]
    with h5py.File(path, "r") as f:
        ds = f["/hidden/0"]
        labels = f["/labels"][:]
        n, d = ds.shape
        fitter = LeaceFitter(d, 1, dtype=dtype)
        for a in range(0, n, BLOCK_ROWS):
            block = ds[a:a + BLOCK_ROWS]
            x = torch.from_numpy(block.astype(np.float32))
            z = torch.from_numpy(labels[a:a + BLOCK_ROWS])
            fitter.update(x, z)
        eraser = fitter.eraser
    t2 = time.perf_counter()

    if save:
        left = eraser.proj_left.double().numpy()
        right = eraser.proj_right.double().numpy()
        bias = (eraser.bias.double().numpy() if eraser.bias is not None
                else np.zeros(d))
        np.savez(save, P=np.eye(d) - left @ right, bias=bias,
                 rank=left.shape[1])
    print(json.dumps({"import_s": t1 - t0, "fit_s": t2 - t1,
                      "torch_threads": torch.get_num_threads()}))


# ---- helpers (the shared ones are in bench/benchlib.py) ---------------------------

def run_timed(cmd, env=None):
    """Runs cmd; returns (wall seconds, peak RSS in MiB, stdout)."""
    return benchlib.run_timed(cmd, env, prog=PROG)


def wait_for_idle(max_others, max_wait):
    """Waits until other processes use under max_others cores (over 3 s)."""
    return benchlib.wait_for_idle(max_others, max_wait, prog=PROG)


def machine(culeace):
    return benchlib.machine(culeace, packages=(
        ("torch", "torch"), ("concept_erasure", "concept-erasure")))


def ensure_dump(args, path):
    """Makes the dump, or reuses it when its attributes match the parameters."""
    want = {"rows": args.rows, "dim": args.dim, "layers": 1,
            "dtype": args.dtype, "layout": "group", "seed": args.seed}
    return benchlib.ensure_dump(path, want, ("/hidden/0", "/labels"))


def load_culeace(path):
    """(P, bias, rank) of culeace's first eraser: P = I - L R."""
    import h5py
    import numpy as np
    with h5py.File(path, "r") as f:
        g = f["/erasers/0000"]
        L, R, bias = g["L"][:], g["R"][:], g["bias"][:]
    P = np.eye(R.shape[1]) - L.astype(np.float64) @ R.astype(np.float64)
    return P, bias.astype(np.float64), int(L.shape[1])


def load_ce(path):
    """(P, bias, rank) saved by the peer: P = I - proj_left @ proj_right."""
    import numpy as np
    z = np.load(path)
    return z["P"], z["bias"], int(z["rank"])


def compare(a, b):
    """max |a - b| / max |b| for P and for the bias; b is the reference."""
    import numpy as np
    return {"P": float(np.abs(a[0] - b[0]).max() / np.abs(b[0]).max()),
            "bias": float(np.abs(a[1] - b[1]).max() / np.abs(b[1]).max()),
            "rank": a[2], "rank_ref": b[2]}


# ---- report ----------------------------------------------------------------------

def render(res):
    m, p = res["machine"], res["params"]
    t, fl, rd, ag = res["times"], res["floor"], res["read"], res["agreement"]
    floor, la = res["floor_s"], res["load"]
    lines = [
        f"Fit of one layer, {p['rows']} x {p['dim']} {p['dtype']} (binary "
        f"concept), {p['repeats']} repeats: median and min..max; run "
        f"{m['date']}, commit {m['commit']}.", "",
        "| what | time s | spread s | peer / culeace | peer f64 / culeace | "
        "x floor | x own floor | peak RSS MiB | dP vs peer, same precision | "
        "dP vs peer f64 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    own = res["own_floor_s"]
    auto = "f32" if p["dtype"] in ("float16", "bfloat16") else "f64"
    for prec in ("f64", "f32"):
        s = t[f"culeace_{prec}"]
        med, spr = fmt_s(s["wall"])
        peer = t[f"ce_{prec}"]["fit"]["median"] / s["wall"]["median"]
        p64 = t["ce_f64"]["fit"]["median"] / s["wall"]["median"]
        note = " (= the default, auto, here)" if prec == auto else ""
        lines.append(
            f"| culeace fit --precision {prec}{note} | {med} | {spr} | "
            f"{peer:.2f} | {p64:.2f} | "
            f"{s['wall']['median'] / floor[prec]:.2f} | "
            f"{s['wall']['median'] / own[prec]:.2f} | "
            f"{s['rss_mib']['max']:.0f} | "
            f"{ag[f'culeace_{prec}_vs_ce_{prec}']['P']:.1e} | "
            f"{ag[f'culeace_{prec}_vs_ce_f64']['P']:.1e} |")
    for prec, tname in (("f64", "float64"), ("f32", "float32")):
        s = t[f"ce_{prec}"]
        med, spr = fmt_s(s["fit"])
        vs64 = "0" if prec == "f64" else f"{ag['ce_f32_vs_ce_f64']['P']:.1e}"
        lines.append(
            f"| h5py + concept-erasure {tname} (after imports) | {med} | {spr} "
            f"| | | {s['fit']['median'] / floor[prec]:.2f} | | "
            f"{s['rss_mib']['max']:.0f} | | {vs64} |")
    for prec, syrk in (("f64", "dsyrk"), ("f32", "ssyrk")):
        lines.append(
            f"| floor {prec}: max(read, {syrk}) + dsyevd | {floor[prec]:.3f} | "
            f"| | | 1.00 | | | | |")
    for prec, syrk in (("f64", "dsyrk"), ("f32", "ssyrk")):
        lines.append(
            f"| own floor {prec}: max(read, {syrk}) + dpotrf | {own[prec]:.3f} "
            f"| | | | | 1.00 | | | |")
    lines.append("")
    ci = t["ce_f32"]["import_s"]
    lines.append(
        f"- Peer: imports (numpy, h5py, torch, concept_erasure) "
        f"{ci['median']:.2f} s median, not in its time above; whole peer "
        f"process f32 {t['ce_f32']['wall']['median']:.2f} s, f64 "
        f"{t['ce_f64']['wall']['median']:.2f} s; peak RSS includes torch; "
        f"torch threads {t['ce_f32']['torch_threads']}.")

    def part(k):
        return f"{fl[k]['median']:.3f} s ({fl[k]['min']:.3f}..{fl[k]['max']:.3f})"
    lines.append(
        f"- Floor parts (culeace_bench_floor {p['rows']} {p['dim']} 1, once per "
        f"repeat, OPENBLAS_CORETYPE={fl['coretype']}): dsyrk {part('dsyrk_s')}"
        f" = {fl['dsyrk_gflops']:.0f} GFLOP/s, ssyrk {part('ssyrk_s')} = "
        f"{fl['ssyrk_gflops']:.0f} GFLOP/s (n d^2 flops), dsyevd({p['dim']}) "
        f"{part('dsyevd_s')}, ssyevd({p['dim']}) {part('ssyevd_s')}, "
        f"dpotrf({p['dim']}) {part('dpotrf_s')}. \"x floor\" is against "
        f"SYRK + dsyevd (an eigendecomposition in float64, as concept-erasure "
        f"runs); culeace whitens a well-conditioned covariance by its "
        f"float64 Cholesky factor instead, so \"x own floor\" is against SYRK "
        f"+ dpotrf, the kernels it runs.")
    rl = (f"- Read of the dataset's {rd['bytes'] / 2**20:.0f} MiB, page cache "
          f"warm: h5py with the file's own 2-byte type (no conversion) into a "
          f"preallocated uint16 array, 8192-row blocks, "
          f"{rd['h5py_raw']['median']:.3f} s ({rd['h5py_raw']['gb_s']:.1f} GB/s)")
    if "file" in rd:
        rl += (f"; plain file reads of the same bytes "
               f"{rd['file']['median']:.3f} s ({rd['file']['gb_s']:.1f} GB/s)")
    lines.append(rl + ". The floor takes the h5py figure and leaves out the "
                 "2-byte float conversion.")
    lines.append(
        f"- dP = max |P - P_ref| / max |P_ref|, P = I - L R. Bias: culeace vs "
        f"peer f64 {ag['culeace_f64_vs_ce_f64']['bias']:.1e}, f32 vs f32 "
        f"{ag['culeace_f32_vs_ce_f32']['bias']:.1e}. culeace f32 vs culeace "
        f"f64: P {ag['culeace_f32_vs_culeace_f64']['P']:.1e}. Eraser rank: "
        f"culeace {ag['culeace_f64_vs_ce_f64']['rank']}, concept-erasure "
        f"{ag['culeace_f64_vs_ce_f64']['rank_ref']}.")
    lines += benchlib.context_lines(la, m, f"torch {m['torch']}, concept-erasure {m['concept_erasure']}")
    lines.append(f"- Command: `{res['command']}`")
    return "\n".join(lines) + "\n"


# ---- main ------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=65536)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--dtype", default="float16",
                    choices=["float16", "bfloat16", "float32", "float64"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--dump", default=None,
                    help="dump path (default: OUT/dump_ROWSxDIM_DTYPE.h5)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="folder with culeace and culeace_bench_floor")
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs", "BENCHMARKS.md"))
    ap.add_argument("--no-doc", action="store_true",
                    help="do not update the doc's bench_fit section")
    ap.add_argument("--max-others", type=float, default=0.1,
                    help="wait until other processes use fewer cores than this")
    ap.add_argument("--max-wait", type=float, default=300,
                    help="seconds to wait for an idle machine before timing anyway")
    ap.add_argument("--peer-worker", nargs=3, metavar=("FILE", "DTYPE", "SAVE"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    benchlib.use_build(args.build)

    if args.peer_worker:
        path, dtype, save = args.peer_worker
        peer_worker(path, dtype, save if save != "-" else None)
        return

    culeace = os.path.join(args.build, "culeace")
    floor_bin = os.path.join(args.build, "culeace_bench_floor")
    for exe in (culeace, floor_bin):
        if not os.access(exe, os.X_OK):
            sys.exit(f"bench_fit: {exe} not found; build with "
                     f"`cmake --build {args.build}`")
    os.makedirs(args.out, exist_ok=True)
    dump = args.dump or os.path.join(
        args.out, f"dump_{args.rows}x{args.dim}_{args.dtype}.h5")
    t0 = time.time()
    made = ensure_dump(args, dump)
    print(f"bench_fit: dump {dump} ({'made' if made else 'reused'}, "
          f"{time.time() - t0:.1f} s)", file=sys.stderr)

    info = machine(culeace)
    coretype = os.environ.get("OPENBLAS_CORETYPE") or info["blas_kernel"]
    cmd_line = "python3 bench/bench_fit.py " + " ".join(
        f"--{k} {getattr(args, k)}" for k in ("rows", "dim", "dtype", "repeats"))

    def culeace_cmd(prec):
        return [culeace, "fit", dump, "--x", "/hidden", "--z", "/labels", "-o",
                os.path.join(args.out, f"erasers_{prec}.h5"), "--precision",
                prec, "--quiet"]

    def peer_cmd(prec, save):
        return [sys.executable, os.path.abspath(__file__), "--peer-worker", dump,
                {"f64": "float64", "f32": "float32"}[prec], save or "-"]

    env = dict(os.environ)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    floor_cmd = [floor_bin, str(args.rows), str(args.dim), "1"]

    others_before, idle = wait_for_idle(args.max_others, args.max_wait)
    load_before = loadavg()
    print(f"bench_fit: load average {load_before}", file=sys.stderr)
    busy0, own0, steal0 = busy_jiffies(), own_cpu(), steal_s()
    clock0 = time.perf_counter()

    # Warm-up: page cache, the shared libraries, and the erasers to compare.
    for prec in ("f64", "f32"):
        run_timed(culeace_cmd(prec))
        run_timed(peer_cmd(prec, os.path.join(args.out, f"ce_{prec}.npz")))

    # One repeat = every variant once, the floor included, so that the
    # machine's drift (this is a VM) hits them alike.
    times = {f"{w}_{p}": {"wall": [], "rss_mib": [], "fit": [], "import_s": []}
             for w in ("culeace", "ce") for p in ("f64", "f32")}
    floor_runs = {k: [] for k in ("ssyrk_s", "dsyrk_s", "dsyevd_s", "ssyevd_s",
                                  "dpotrf_s")}
    floor_rss = 0.0
    for r in range(args.repeats):
        for prec in ("f64", "f32"):
            wall, rss, _ = run_timed(culeace_cmd(prec))
            times[f"culeace_{prec}"]["wall"].append(wall)
            times[f"culeace_{prec}"]["rss_mib"].append(rss)
            wall, rss, out = run_timed(peer_cmd(prec, None))
            w = json.loads(out.strip().splitlines()[-1])
            c = times[f"ce_{prec}"]
            c["wall"].append(wall)
            c["rss_mib"].append(rss)
            c["fit"].append(w["fit_s"])
            c["import_s"].append(w["import_s"])
            c["torch_threads"] = w["torch_threads"]
        _, rss, out = run_timed(floor_cmd, env=env)
        floor_rss = max(floor_rss, rss)
        fo = json.loads(out)
        for k in floor_runs:
            floor_runs[k].append(fo[k])
        print(f"bench_fit: repeat {r + 1}/{args.repeats} done", file=sys.stderr)
    for v in times.values():
        for k in ("wall", "rss_mib", "fit", "import_s"):
            v[k] = summary(v[k]) if v[k] else None
    rd = read_bandwidth(dump, args.repeats)
    clock = time.perf_counter() - clock0
    load_after = loadavg()
    others_cpu = max(0.0, (busy_jiffies() - busy0) - (own_cpu() - own0))
    steal = steal_s() - steal0

    flops = float(args.rows) * args.dim * args.dim  # SYRK, as floor.c counts
    fl = {k: summary(v) for k, v in floor_runs.items()}
    fl.update({"repeats": args.repeats, "coretype": coretype,
               "rss_mib": floor_rss,
               "ssyrk_gflops": flops / fl["ssyrk_s"]["median"] / 1e9,
               "dsyrk_gflops": flops / fl["dsyrk_s"]["median"] / 1e9})
    read_s = rd["h5py_raw"]["median"]
    floor_s = {"f64": max(read_s, fl["dsyrk_s"]["median"])
               + fl["dsyevd_s"]["median"],
               "f32": max(read_s, fl["ssyrk_s"]["median"])
               + fl["dsyevd_s"]["median"]}
    # the kernels culeace runs: the SYRK, then a Cholesky factorisation
    own_s = {p: floor_s[p] - fl["dsyevd_s"]["median"]
             + fl["dpotrf_s"]["median"] for p in ("f64", "f32")}

    er = {f"culeace_{p}": load_culeace(os.path.join(args.out, f"erasers_{p}.h5"))
          for p in ("f64", "f32")}
    er.update({f"ce_{p}": load_ce(os.path.join(args.out, f"ce_{p}.npz"))
               for p in ("f64", "f32")})
    agreement = {f"{a}_vs_{b}": compare(er[a], er[b]) for a, b in (
        ("culeace_f64", "ce_f64"), ("culeace_f32", "ce_f32"),
        ("culeace_f32", "ce_f64"), ("ce_f32", "ce_f64"),
        ("culeace_f32", "culeace_f64"))}

    res = {"params": {"rows": args.rows, "dim": args.dim, "dtype": args.dtype,
                      "seed": args.seed, "repeats": args.repeats,
                      "block_rows_peer": BLOCK_ROWS, "dump": dump},
           "command": cmd_line, "machine": info,
           "load": {"before": load_before, "after": load_after, "idle": idle,
                    "others_cores_before": others_before,
                    "others_cpu_s": others_cpu, "steal_s": steal,
                    "timed_wall_s": clock},
           "times": times, "floor": fl, "read": rd, "floor_s": floor_s,
           "own_floor_s": own_s,
           "agreement": agreement}
    benchlib.save_report(args.out, "bench_fit", res, render(res),
                         None if args.no_doc else args.doc, BEGIN, END, PROG)


if __name__ == "__main__":
    main()
