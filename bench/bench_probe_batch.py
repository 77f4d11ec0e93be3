#!/usr/bin/env python3
"""bench_probe_batch.py — `culeace probe` with every layer's probes fitted
together (`--batch-layers L`) against one layer at a time (`--batch-layers
1`), on the same dumps, on the device asked for.

    python3 bench/bench_probe_batch.py [--device cpu|cuda] [--repeats 3]
                                       [--update-doc]

Two dumps (data/make_dump.py, float16, binary planted concept): many small
layers (24 x 2000 x 256), where a GPU's per-step latency weighs most, and
the probe benchmark's shape (12 x 20000 x 768). Per dump the two runs are
interleaved round by round (a warm-up round first) and must give the same
JSON report, which is checked. Each figure is a median over the rounds with
the spread; peak RSS is the command's own. Writes
bench/out/bench_probe_batch_<device>.{json,md}; --update-doc replaces the
bench_probe_batch_<device> section of docs/BENCHMARKS.md.
"""

import argparse
import json
import os
import time

import benchlib as B

PROG = "bench_probe_batch"
DOC = os.path.join(B.ROOT, "docs", "BENCHMARKS.md")
SHAPES = ((2000, 256, 24), (20000, 768, 12))  # rows, dim, layers


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--build", default=os.path.join(B.ROOT, "build"))
    ap.add_argument("--out", default=os.path.join(B.HERE, "out"))
    ap.add_argument("--update-doc", action="store_true")
    a = ap.parse_args()
    B.use_build(a.build)
    culeace = os.path.join(a.build, "culeace")
    os.makedirs(a.out, exist_ok=True)
    stem = f"{PROG}_{a.device.split(':')[0]}"
    _, idle = B.wait_for_idle(0.3, 120, prog=PROG)
    la = {"before": B.loadavg(), "idle": idle}
    busy0, steal0, own0 = B.busy_jiffies(), B.steal_s(), B.own_cpu()
    t0 = time.perf_counter()
    rows_out, res = [], {}
    for n, d, L in SHAPES:
        dump = os.path.join(a.out, f"probe_batch_{n}x{d}x{L}.h5")
        B.ensure_dump(dump, {"rows": n, "dim": d, "layers": L,
                             "dtype": "float16", "classes": 2,
                             "signal": 0.8, "seed": 0}, ["labels"])
        base = [culeace, "probe", dump, "--x", "/hidden", "--y", "/labels",
                "--device", a.device, "--json", "--quiet"]
        times = {1: [], L: []}
        rss, reports = {}, {}
        for r in range(a.repeats + 1):  # round 0 warms the page cache
            for b in (1, L):
                wall, mib, out = B.run_timed(base + ["--batch-layers", str(b)],
                                             prog=PROG)
                if r > 0:
                    times[b].append(wall)
                rss[b] = mib
                reports[b] = json.loads(out)
        same = reports[1] == reports[L]
        its = sum(x["max_iterations"] for x in reports[1]["layers"])
        s1, sL = B.summary(times[1]), B.summary(times[L])
        res[f"{n}x{d}x{L}"] = {"one": times[1], "all": times[L],
                               "rss_mib": rss, "same_report": same,
                               "iterations": its}
        rows_out.append(
            f"| {L} x {n} x {d} | {s1['median']:.3f} | {s1['min']:.3f}.."
            f"{s1['max']:.3f} | {sL['median']:.3f} | {sL['min']:.3f}.."
            f"{sL['max']:.3f} | {s1['median'] / sL['median']:.2f} | "
            f"{rss[1]:.0f} / {rss[L]:.0f} | {its} | "
            f"{'yes' if same else 'NO'} |")
    la["after"] = B.loadavg()
    la["timed_wall_s"] = time.perf_counter() - t0
    la["steal_s"] = B.steal_s() - steal0
    la["others_cpu_s"] = max(0.0, (B.busy_jiffies() - busy0) -
                             (B.own_cpu() - own0))
    mach = B.machine(culeace)
    lines = [
        f"`culeace probe --device {a.device}` (5 folds, logistic, defaults) "
        f"with all layers' probes fitted together (`--batch-layers L`) and "
        f"one layer at a time (`--batch-layers 1`), float16 dumps of a binary "
        f"planted concept (`data/make_dump.py --dtype float16 --classes 2 "
        f"--signal 0.8`, one dataset per layer); {a.repeats} interleaved "
        f"rounds after a warm-up: median and min..max, wall seconds of the "
        f"whole command; run {mach['date']}, commit {mach['commit']}.",
        "",
        "| layers x rows x d | one at a time s | spread | together s | "
        "spread | one / together | peak RSS MiB (one / together) | "
        "L-BFGS iterations (sum over layers) | same report |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        *rows_out,
        "",
        "- \"same report\": the two runs' JSON reports (every fold's metrics, "
        "iterations) are equal.",
    ]
    lines += B.context_lines(la, mach, "no peer packages")
    lines.append(f"- Command: `python3 bench/bench_probe_batch.py --device "
                 f"{a.device} --repeats {a.repeats}`")
    md = "\n".join(lines) + "\n"
    B.save_report(a.out, stem, {"machine": mach, "load": la, "runs": res}, md,
                  DOC if a.update_doc else None, f"<!-- {stem}:begin -->",
                  f"<!-- {stem}:end -->", prog=PROG)


if __name__ == "__main__":
    main()
