#!/usr/bin/env python3
"""bench_probe_mpi.py — `culeace probe` under mpirun: the layer split against
the row split (docs/CLUSTER.md) on 1 and 2 ranks, next to the plain run, for
a many-layer and a one-layer job on the same dump, and the cost model
(docs/CLUSTER.md) from the one-rank run.

    python3 bench/bench_probe_mpi.py [--repeats 3] [--update-doc]

Runs are interleaved (one of each variant per round) so that load on the
machine spreads over all of them; each figure is a median over the rounds
with the spread. Both splits' fold accuracies are compared with the plain
run's. Writes bench/out/bench_probe_mpi.{json,md}; --update-doc
replaces the bench_probe_mpi section of docs/BENCHMARKS.md.
"""

import argparse
import json
import os
import shutil
import sys

import benchlib as B

PROG = "bench_probe_mpi"
DOC = os.path.join(B.ROOT, "docs", "BENCHMARKS.md")
BEGIN, END = "<!-- bench_probe_mpi:begin -->", "<!-- bench_probe_mpi:end -->"


def mpirun_cmd(n, args):
    return ["mpirun", "--oversubscribe", "-n", str(n), "--mca", "btl",
            "self,vader", "--mca", "pml", "ob1", *args]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=40000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--build", default=os.path.join(B.ROOT, "build"))
    ap.add_argument("--out", default=os.path.join(B.HERE, "out"))
    ap.add_argument("--update-doc", action="store_true")
    a = ap.parse_args()
    if not shutil.which("mpirun"):
        sys.exit(f"{PROG}: mpirun not found (apt-get install openmpi-bin)")
    B.use_build(a.build)
    culeace = os.path.join(a.build, "culeace")
    os.makedirs(a.out, exist_ok=True)
    dump = os.path.join(a.out, f"probe_mpi_{a.rows}x{a.dim}x{a.layers}.h5")
    want = {"rows": a.rows, "dim": a.dim, "layers": a.layers, "classes": 2,
            "signal": 0.8, "dtype": "float32", "seed": 0}
    B.ensure_dump(dump, want, ["labels"])
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    base = [culeace, "probe", dump, "--x", "/hidden", "--y", "/labels",
            "--device", "cpu", "--json", "--quiet"]
    m = a.layers
    variants = []  # (key, layers, label, command)
    for lay, sel in ((m, []), (1, ["--layers", "0"])):
        cmd = base + sel
        variants += [
            ((lay, "plain"), "plain (2 threads)", cmd),
            ((lay, "n1"), "`mpirun -n 1` (one rank: the plain run, bound "
             "to one core)", mpirun_cmd(1, cmd)),
            ((lay, "layers2"), "`mpirun -n 2 --split layers`",
             mpirun_cmd(2, cmd + ["--split", "layers"])),
            ((lay, "rows2"), "`mpirun -n 2 --split rows`",
             mpirun_cmd(2, cmd + ["--split", "rows"])),
        ]
    _, idle = B.wait_for_idle(0.3, 120, prog=PROG)
    la = {"before": B.loadavg(), "idle": idle}
    busy0, steal0, own0 = B.busy_jiffies(), B.steal_s(), B.own_cpu()
    import time
    t0 = time.perf_counter()
    times = {v[0]: [] for v in variants}
    outs = {}
    for r in range(a.repeats + 1):  # round 0 warms the page cache
        for key, _, cmd in variants:
            wall, _, out = B.run_timed(cmd, env=env, prog=PROG)
            if r > 0:
                times[key].append(wall)
            outs[key] = json.loads(out)
    wall = time.perf_counter() - t0
    la["after"] = B.loadavg()
    la["timed_wall_s"] = wall
    la["steal_s"] = B.steal_s() - steal0
    la["others_cpu_s"] = max(0.0, (B.busy_jiffies() - busy0) -
                             (B.own_cpu() - own0))

    def max_diff(x, y):  # accuracy points, over every layer and fold
        return max(abs(p - q) * 100
                   for L, M in zip(x["layers"], y["layers"])
                   for p, q in zip(L["accuracy"]["folds"],
                                   M["accuracy"]["folds"]))

    med = {k: B.summary(v) for k, v in times.items()}
    # Model from the one-rank run of all layers, T1 = med[(m, "n1")]: the
    # layer split gives rank r layers r, r + N, ...; with a layer's time
    # proportional to its L-BFGS iterations (the plain run's, most over
    # the folds) it takes T1 * max_r (its iterations) / (all iterations).
    # The row split takes T1 / N when the second core is as good as the
    # first and the per-step sums cost nothing.
    its = [L["max_iterations"] for L in outs[(m, "plain")]["layers"]]
    t1 = med[(m, "n1")]["median"]
    share = max(sum(its[r::2]) for r in range(2)) / sum(its)
    pred = {(m, "layers2"): t1 * share, (m, "rows2"): t1 / 2,
            (1, "layers2"): med[(1, "n1")]["median"],
            (1, "rows2"): med[(1, "n1")]["median"] / 2}
    folds = 5
    sum_bytes = 8 * (folds * (a.dim + 1) + folds)  # one evaluation's sums

    mach = B.machine(culeace)
    lines = [
        f"`culeace probe` (5 folds, logistic, defaults) of a {m}-layer dump "
        f"of {a.rows} x {a.dim} float32 rows (`data/make_dump.py --rows "
        f"{a.rows} --dim {a.dim} --layers {m} --classes 2 --signal 0.8 "
        f"--dtype float32`), all {m} layers and layer 0 alone, `--device "
        f"cpu`, Open MPI over shared memory (`--mca btl self,vader --mca "
        f"pml ob1`; mpirun binds each rank to a core, so a rank runs one "
        f"thread); {a.repeats} interleaved rounds after a warm-up: median "
        f"and min..max, wall seconds; run {mach['date']}, commit "
        f"{mach['commit']}.",
        "",
        "| run | layers | time s | spread s | vs plain | model s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for (key, label, _) in variants:
        s = med[key]
        lay = key[0]
        model = f"{pred[key]:.2f}" if key in pred else ""
        lines.append(
            f"| {label} | {lay} | {s['median']:.2f} | {s['min']:.2f}.."
            f"{s['max']:.2f} | {med[(lay, 'plain')]['median'] / s['median']:.2f}"
            f"x | {model} |")
    eff = {k: med[(k[0], "n1")]["median"] / (2 * med[k]["median"])
           for k in med if k[1] in ("layers2", "rows2")}
    lines += [
        "",
        f"- Fold accuracies against the plain run's, most |difference| over "
        f"every layer and fold: row split {max_diff(outs[(m, 'rows2')], outs[(m, 'plain')]):.3f} "
        f"points, layer split {max_diff(outs[(m, 'layers2')], outs[(m, 'plain')]):.3f} "
        f"(the float32 gradient sums add in another order with another "
        f"thread count; a held-out row near the boundary can flip).",
        f"- Parallel efficiency on 2 ranks, T(1 rank) / (2 T(2 ranks)): "
        f"{m} layers: layer split {eff[(m, 'layers2')]:.2f}, row split "
        f"{eff[(m, 'rows2')]:.2f}; 1 layer: layer split "
        f"{eff[(1, 'layers2')]:.2f} (one rank idles), row split "
        f"{eff[(1, 'rows2')]:.2f}.",
        f"- Model (\"model s\", docs/CLUSTER.md), from the one-rank run of "
        f"all layers (T1 = {t1:.2f} s): the layer split takes T1 times the "
        f"busiest rank's share of the L-BFGS iterations (the plain run's, per "
        f"layer {', '.join(map(str, its))}: {share:.2f} of them on one "
        f"rank), the launch aside; the row split takes T1 / 2 plus "
        f"t_sync, one agreement and one reduce + broadcast of {sum_bytes} "
        f"bytes (5 folds x (d + 1) doubles and the losses) per L-BFGS "
        f"evaluation, about {sum(its)} iterations over the {m} layers, "
        f"plus the gathers of the held-out predictions.",
    ]
    lines += B.context_lines(la, mach, f"Open MPI ({B.sh(['mpirun', '--version']).splitlines()[0]})")
    lines.append(f"- Command: `python3 bench/bench_probe_mpi.py --rows {a.rows} "
                 f"--dim {a.dim} --layers {m} --repeats {a.repeats}`")
    md = "\n".join(lines) + "\n"
    res = {"machine": mach, "times": {f"{k[0]}-{k[1]}": v
                                      for k, v in times.items()},
           "model": {f"{k[0]}-{k[1]}": v for k, v in pred.items()},
           "iterations": its, "load": la}
    B.save_report(a.out, PROG, res, md, DOC if a.update_doc else None, BEGIN,
                  END, prog=PROG)


if __name__ == "__main__":
    main()
