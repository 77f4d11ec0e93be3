#!/usr/bin/env python3
"""bench_apply_cpu.py — the CPU backend's in-place apply
(culeace_eraser_apply through ctypes) at ranks 1, 4 and 16 on float16 and
float32 rows, the fast path against the general one (CULEACE_APPLY_KERNEL=
generic: two GEMMs per chunk), and against this machine's floor: a plain
numpy pass that reads and writes the same bytes (an in-place integer op on
the rows' bits: memory-bound, unlike numpy's emulated float16 arithmetic).

    python3 bench/bench_apply_cpu.py [--rows 65536] [--dim 1024] [--repeats 5]

Prints a markdown table (median of the repeats, after a warm-up)."""

import argparse
import os
import statistics
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "gpu"))
import bench_gpu as b  # noqa: E402  (the ctypes mirror of culeace.h)
from benchlib import timed_runs  # noqa: E402


def median_time(fn, repeats):
    return statistics.median(timed_runs(fn, repeats))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=65536)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--lib", default=os.path.join(HERE, "..", "build",
                                                  "libculeace.so"))
    a = ap.parse_args()
    cl = b.Culeace(a.lib)
    ctx = b.Ctx(cl, b.DEVICE_CPU)
    n, d = a.rows, a.dim
    rng = np.random.default_rng(0)
    x32 = rng.standard_normal((n, d), dtype=np.float32)
    rows = []
    for dt, code in (("float16", b.DT_F16), ("float32", b.DT_F32)):
        x = x32.astype(dt)
        bits = x.view(np.uint16 if x.itemsize == 2 else np.uint32)
        floor = median_time(lambda: np.bitwise_xor(bits, 0, out=bits),
                            a.repeats)
        for r in (1, 4, 16):
            lab = rng.integers(0, r + 1, 16384).astype(np.int32)
            er = b.culeace_fit(ctx, x[:16384], lab, 4096, "f32", classes=r + 1,
                               svd_tol=1e-6)

            def run():
                ctx.check(cl.lib.culeace_eraser_apply(ctx.h, er.h, x.ctypes.data,
                                                      code, n, d), "apply")
            fast = median_time(run, a.repeats)
            os.environ["CULEACE_APPLY_KERNEL"] = "generic"
            gen = median_time(run, a.repeats)
            os.environ.pop("CULEACE_APPLY_KERNEL")
            rows.append((dt, er.rank, fast, gen, floor, x.nbytes * 2))
            er.free()
    print(f"CPU in-place apply, {n} x {d} rows, median of {a.repeats}, "
          f"{os.cpu_count()} CPUs\n")
    print("| rows | rank | fast path ms | general (GEMM) ms | speed-up | "
          "numpy read+write floor ms | fast / floor |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for dt, r, fast, gen, floor, _ in rows:
        print(f"| {dt} | {r} | {fast * 1e3:.1f} | {gen * 1e3:.1f} | "
              f"{gen / fast:.2f} | {floor * 1e3:.1f} | {fast / floor:.2f} |")
    ctx.free()


if __name__ == "__main__":
    main()
