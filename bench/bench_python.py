#!/usr/bin/env python3
"""bench_python.py — the Python package against concept-erasure on torch CPU
tensors in one process, as a notebook would call them: fitting (update on
the whole tensor, then .eraser) and erasing (concept-erasure's eraser(x);
culeace's eraser(x), a new tensor, and apply_(x), in place), with the floor
the edit is measured against: a torch copy of the rows into a tensor
allocated beforehand (a read and a write of every byte, no page faults).

    python3 bench/bench_python.py [--rows 65536] [--dim 1024] [--repeats 5] [--update-doc]

Prints a markdown table (median and range of the repeats after a warm-up);
--update-doc writes it between the bench_python markers of
docs/BENCHMARKS.md."""

import argparse
import os
import statistics
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python_bindings"))
import culeace  # noqa: E402
from concept_erasure import LeaceFitter as CeFitter  # noqa: E402

import benchlib  # noqa: E402


def planted(n, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, d, generator=g)
    x[:, 0] += z
    return x, z


def stat(fn, repeats):
    ts = benchlib.timed_runs(fn, repeats)
    return statistics.median(ts), min(ts), max(ts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=65536)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--update-doc", action="store_true")
    a = ap.parse_args()
    n, d = a.rows, a.dim
    x32, z = planted(n, d)
    rows = []  # (what, dtype, (median, min, max), bytes moved)

    for dtype in (torch.float32, torch.float16):
        x = x32.to(dtype)
        name = str(dtype).replace("torch.", "")
        # fit: both accumulate float64 moments of float rows (concept-erasure
        # with dtype=float64, its reference configuration)
        rows.append(("fit: concept-erasure LeaceFitter(float64)", name, stat(
            lambda: CeFitter(d, 1, dtype=torch.float64).update(x, z).eraser, a.repeats), None))
        rows.append(("fit: culeace LeaceFitter", name, stat(
            lambda: culeace.LeaceFitter(d, 1).update(x, z).eraser, a.repeats), None))
        ours = culeace.LeaceFitter(d, 1).update(x, z).eraser
        theirs = CeFitter(d, 1, dtype=torch.float32).update(x32, z).eraser
        nbytes = 2 * x.numel() * x.element_size()
        if dtype == torch.float32:
            rows.append(("erase: concept-erasure eraser(x) (float32 factors)", name,
                         stat(lambda: theirs(x), a.repeats), nbytes))
        rows.append(("erase: culeace eraser(x) (new tensor)", name,
                     stat(lambda: ours(x), a.repeats), nbytes))
        y = x.clone()
        rows.append(("erase: culeace apply_(x) (in place)", name,
                     stat(lambda: ours.apply_(y), a.repeats), nbytes))
        dst = torch.empty_like(x)
        rows.append(("floor: dst.copy_(x) (read + write every byte)", name,
                     stat(lambda: dst.copy_(x), a.repeats), nbytes))

    floor = {r[1]: r[2][0] for r in rows if r[0].startswith("floor")}
    ce_fit = {r[1]: r[2][0] for r in rows if r[0].startswith("fit: concept")}
    ce_erase = [r[2][0] for r in rows if r[0].startswith("erase: concept")][0]
    lines = [f"{n} x {d} rows, rank-1 binary concept, torch {torch.__version__} "
             f"({torch.get_num_threads()} threads), {a.repeats} repeats after a "
             "warm-up: median and min..max.", "",
             "| what | dtype | time s | spread s | concept-erasure / this | x floor |",
             "|---|---|---:|---:|---:|---:|"]
    for what, dt, (med, lo, hi), nb in rows:
        if what.startswith("fit"):
            ratio = ce_fit[dt] / med
        elif what.startswith("erase") and dt == "float32":
            ratio = ce_erase / med
        else:
            ratio = None
        xf = med / floor[dt] if nb else None
        lines.append(f"| {what} | {dt} | {med:.4f} | {lo:.4f}..{hi:.4f} | "
                     f"{'' if ratio is None else f'{ratio:.2f}'} | "
                     f"{'' if xf is None else f'{xf:.2f}'} |")
    m = benchlib.machine(os.path.join(HERE, "..", "build", "culeace"))
    lines += ["", f"- Machine: {m['cpu']}, {m['cores']} cores; commit {m['commit']}, "
              f"{m['date']}; culeace {culeace.version()}, concept-erasure "
              f"{benchlib.pkg_version('concept-erasure')}, numpy {np.__version__}.",
              "- Command: `python3 bench/bench_python.py "
              f"--rows {n} --dim {d} --repeats {a.repeats}`"]
    md = "\n".join(lines) + "\n"
    print(md)
    if a.update_doc:
        benchlib.update_doc(os.path.join(HERE, "..", "docs", "BENCHMARKS.md"), md,
                            "<!-- bench_python:begin -->", "<!-- bench_python:end -->",
                            prog="bench_python")


if __name__ == "__main__":
    main()
