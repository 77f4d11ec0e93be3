#!/usr/bin/env python3
"""bench_probe_gpu.py — a per-layer probe sweep on the GPU against the same
sweep on the CPU, scikit-learn and a PyTorch L-BFGS on the GPU, and the read
floor, in one run on one machine.

    python3 bench/gpu/bench_probe_gpu.py [--layers 32 --rows 20000 --dim 768]
        [--json OUT.json]

1. Makes a synthetic dump (data/make_dump.py: --layers L, /hidden/0 ..
   /hidden/{L-1} (n, d) float16, /labels, a planted binary concept whose
   strength varies by layer), then reads it once (page cache warm).
2. Times, wall clock around the subprocess, `culeace probe FILE --x /hidden
   --y /labels --folds K --C C --tol T --max-iter M --json --quiet` with
   `--device cuda` (--repeats times; the layers' probes fitted together, the
   default on a GPU), once more with `--batch-layers 1` (one layer at a
   time; its report must be the same), and `--device cpu` (once, all
   cores).
3. The peers on the first layers, with culeace's fold assignment:
   - scikit-learn as bench/bench_probe.py runs it (h5py + StandardScaler +
     LogisticRegression lbfgs, same C, tol, max_iter) on --sklearn-layers;
   - PyTorch on the GPU as a notebook would write it (the layer moved to the
     GPU as float32, standardised on the training rows, torch.optim.LBFGS
     with strong-Wolfe line search, history 10, on scikit-learn's objective:
     mean log-loss + |w|^2 / (2 C n)) on --torch-layers, after an untimed
     warm-up fit.
   Their times are per layer; the ratios compare per-layer times.
4. The floor: reading the layers' stored bytes through HDF5 (warm page
   cache, no conversion), which every run must do at least once; and both
   culeace sweeps again with --max-iter 1, whose time is what is not
   L-BFGS iterations (context, reading, standardisation, metrics).
Prints a markdown report (also under "markdown" in the JSON).
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, BENCH)

import benchlib  # noqa: E402


def log(msg):
    print(f"bench_probe_gpu: {msg}", file=sys.stderr, flush=True)


def timed(cmd, env=None):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"bench_probe_gpu: {' '.join(map(str, cmd))} exited "
                 f"{p.returncode}:\n{p.stderr[-2000:]}")
    return wall, p.stdout


def layer_accuracy(j):
    return {str(x["name"]): x["accuracy"]["mean"] for x in j["layers"]}


def torch_fit(torch, Xtr, ytr, C, tol, max_iter):
    """L-BFGS (strong Wolfe, history 10) on scikit-learn's objective over
    standardised rows; returns (w, b, iterations)."""
    n = Xtr.shape[0]
    w = torch.zeros(Xtr.shape[1], device=Xtr.device, requires_grad=True)
    b = torch.zeros((), device=Xtr.device, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=10,
                            tolerance_grad=tol, tolerance_change=1e-9,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        z = Xtr @ w + b
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(z, ytr)
                + (w @ w) / (2 * C * n))
        loss.backward()
        return loss
    opt.step(closure)
    return w, b, int(opt.state[opt._params[0]]["n_iter"])


def torch_peer(path, names, assign, C, tol, max_iter, device):
    """PyTorch L-BFGS logistic regression on the GPU per layer and fold,
    after an untimed warm-up fit on random rows (CUDA context, cuBLAS and
    the kernels this path launches)."""
    import h5py
    import numpy as np
    import torch
    dev = torch.device(device)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()
    g = torch.Generator(device="cpu").manual_seed(0)
    warm_x = torch.randn(2048, 64, generator=g).to(dev)
    torch_fit(torch, warm_x, (warm_x[:, 0] > 0).float(), C, tol, max_iter)
    sync()
    k_folds = int(assign.max()) + 1
    out = []
    with h5py.File(path, "r") as f:
        y_all = torch.as_tensor(f["/labels"][:].astype(np.float32), device=dev)
        for name in names:
            sync()
            t0 = time.perf_counter()
            X = torch.as_tensor(f["/hidden"][name][:], device=dev).float()
            accs, iters = [], []
            for k in range(k_folds):
                test = torch.as_tensor(assign == k, device=dev)
                train = torch.as_tensor(assign >= 0, device=dev) & ~test
                Xtr, ytr = X[train], y_all[train]
                mu = Xtr.mean(0)
                sd = Xtr.std(0, unbiased=False).clamp_min(1e-12)
                w, b, it = torch_fit(torch, (Xtr - mu) / sd, ytr, C, tol,
                                     max_iter)
                iters.append(it)
                with torch.no_grad():
                    z = ((X[test] - mu) / sd) @ w + b
                    accs.append(float(((z > 0).float() == y_all[test]).float()
                                      .mean()))
            sync()
            out.append({"name": name, "s": time.perf_counter() - t0,
                        "accuracy": accs, "n_iter": iters})
    return out


def render(r):
    p = r["params"]
    L = p["layers"]
    gpu = r["culeace_cuda"]["median"]
    dev = p["device"]
    rows = [(f"culeace `--device {dev}` (layers fitted together)", L, gpu)]
    if r.get("one_at_a_time"):
        rows.append((f"culeace `--device {dev} --batch-layers 1` (one layer "
                     f"at a time)", L, r["one_at_a_time"]["s"]))
    rows.append(("culeace `--device cpu`", L, r["culeace_cpu"]))
    if r.get("sklearn"):
        rows.append(("scikit-learn (lbfgs, CPU)", len(r["sklearn"]["layers"]),
                     r["sklearn"]["s"]))
    if r.get("torch"):
        rows.append((f"PyTorch L-BFGS on {dev}", len(r["torch"]),
                     sum(x["s"] for x in r["torch"])))
    per_gpu = gpu / L
    md = [f"{L} layers of {p['rows']} x {p['dim']} {p['dtype']}, "
          f"{p['folds']} folds, C {p['C']}, tol {p['tol']}, max_iter "
          f"{p['max_iter']}; culeace on the GPU: median of {p['repeats']} "
          f"({', '.join(f'{x:.2f}' for x in r['culeace_cuda']['all'])} s).",
          "",
          "| run | layers | s | s per layer | per-layer time / culeace GPU |",
          "|---|---:|---:|---:|---:|"]
    for name, n, s in rows:
        md.append(f"| {name} | {n} | {s:.2f} | {s / n:.3f} | "
                  f"{(s / n) / per_gpu:.1f} |")
    f1 = r["max_iter_1"]
    md += ["",
           f"The same sweeps stopped after one L-BFGS step (`--max-iter 1`: "
           f"context, reading, standardisation, metrics): {dev} "
           f"{f1['device']:.2f} s, cpu {f1['cpu']:.2f} s; so the L-BFGS "
           f"iterations take {gpu - f1['device']:.2f} s on {dev} and "
           f"{r['culeace_cpu'] - f1['cpu']:.2f} s on the CPU."]
    fl = r["floor"]
    md += ["",
           f"Floor: reading the {L} layers' stored bytes through HDF5 (warm "
           f"page cache, {fl['bytes'] / 1e9:.2f} GB): {fl['s']:.2f} s "
           f"({fl['gb_s']:.1f} GB/s); culeace on the GPU takes "
           f"{gpu / fl['s']:.1f}x that.",
           f"One layer at a time and together give the same report (every "
           f"fold's metrics): {'yes' if r['one_at_a_time']['same_report'] else 'NO'}.",
           f"Accuracy (mean over folds), most |difference| over layers: "
           f"culeace GPU vs CPU {r['acc_gpu_cpu']:.4f}"
           + (f", vs scikit-learn {r['acc_gpu_sklearn']:.4f}"
              if r.get("sklearn") else "")
           + (f", vs PyTorch {r['acc_gpu_torch']:.4f}" if r.get("torch")
              else "") + "."]
    return "\n".join(md)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--dtype", default="float16")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--C", type=float, default=1.0)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--sklearn-layers", type=int, default=2)
    ap.add_argument("--torch-layers", type=int, default=4)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default="/tmp/bench_probe_gpu")
    ap.add_argument("--json", default=None)
    ap.add_argument("--device", default="cuda",
                    help="culeace's and PyTorch's GPU (cpu: a dry run of the "
                    "script on a machine without one)")
    a = ap.parse_args()
    import numpy as np

    os.makedirs(a.out, exist_ok=True)
    culeace = os.environ.get("CULEACE_BIN", os.path.join(a.build, "culeace"))
    dump = os.path.join(a.out, "probe_gpu.h5")
    want = {"rows": a.rows, "dim": a.dim, "layers": a.layers,
            "dtype": a.dtype, "seed": 0}
    t0 = time.perf_counter()
    benchlib.ensure_dump(dump, want, ["/hidden/0", "/labels"])
    log(f"dump {time.perf_counter() - t0:.1f} s")
    names = [str(i) for i in range(a.layers)]
    rb = benchlib.read_bandwidth(dump, 1, names=[f"/hidden/{x}" for x in names])
    floor = {"bytes": rb["bytes"], "s": rb["h5py_raw"]["median"],
             "gb_s": rb["h5py_raw"]["gb_s"]}
    log(f"read floor {floor['s']:.2f} s")

    def probe_cmd(max_iter):
        return [culeace, "probe", dump, "--x", "/hidden", "--y", "/labels",
                "--folds", str(a.folds), "--C", repr(a.C), "--tol",
                repr(a.tol), "--max-iter", str(max_iter), "--json", "--quiet"]
    base = probe_cmd(a.max_iter)
    gpu_t, gpu_j = [], None
    for i in range(a.repeats):
        wall, out = timed(base + ["--device", a.device])
        gpu_t.append(wall)
        gpu_j = json.loads(out)
        log(f"culeace cuda {wall:.2f} s")
    # the fixed costs (context, reading, standardisation, metrics): the
    # same sweep stopped after one L-BFGS step
    fixed = {}
    for dev in (a.device, "cpu"):
        fixed[dev], _ = timed(probe_cmd(1) + ["--device", dev])
        log(f"culeace {dev} --max-iter 1: {fixed[dev]:.2f} s")
    # the layers one at a time on the device (the default fits them together)
    one_t, out = timed(base + ["--device", a.device, "--batch-layers", "1"])
    one_same = json.loads(out) == gpu_j
    log(f"culeace {a.device} --batch-layers 1: {one_t:.2f} s "
        f"(same report as together: {one_same})")
    cpu_t, out = timed(base + ["--device", "cpu"])
    cpu_j = json.loads(out)
    log(f"culeace cpu {cpu_t:.2f} s")
    acc_g, acc_c = layer_accuracy(gpu_j), layer_accuracy(cpu_j)
    assign = np.asarray(gpu_j["folds"]["assignment"], dtype=np.int64)
    if not np.array_equal(assign, np.asarray(cpu_j["folds"]["assignment"])):
        sys.exit("bench_probe_gpu: the GPU and CPU runs used other folds")
    folds_path = os.path.join(a.out, "folds.npy")
    np.save(folds_path, assign)
    res = {"params": vars(a), "floor": floor,
           "culeace_cuda": {"all": gpu_t, "median": float(np.median(gpu_t))},
           "culeace_cpu": cpu_t,
           "one_at_a_time": {"s": one_t, "same_report": one_same},
           "max_iter_1": {"device": fixed[a.device], "cpu": fixed["cpu"]},
           "acc_gpu_cpu": max(abs(acc_g[x] - acc_c[x]) for x in names),
           "culeace_cuda_json_layers": gpu_j["layers"]}
    if a.sklearn_layers > 0:
        sk = names[:a.sklearn_layers]
        _, out = timed([sys.executable, os.path.join(BENCH, "bench_probe.py"),
                        "--peer-worker", dump, "/hidden", "/labels",
                        ",".join(sk), folds_path, repr(a.C), repr(a.tol),
                        str(a.max_iter)])
        w = json.loads(out.strip().splitlines()[-1])
        res["sklearn"] = {"s": w["fit_s"], "layers": w["layers"]}
        res["acc_gpu_sklearn"] = max(
            abs(acc_g[x["name"]] - float(np.mean(x["accuracy"])))
            for x in w["layers"])
        log(f"scikit-learn {w['fit_s']:.2f} s for {len(sk)} layers")
    if a.torch_layers > 0:
        tl = torch_peer(dump, names[:a.torch_layers], assign, a.C, a.tol,
                        a.max_iter, a.device)
        res["torch"] = tl
        res["acc_gpu_torch"] = max(
            abs(acc_g[x["name"]] - float(np.mean(x["accuracy"]))) for x in tl)
        log(f"torch {sum(x['s'] for x in tl):.2f} s for {len(tl)} layers")
    res["markdown"] = render(res)
    print(res["markdown"])
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
