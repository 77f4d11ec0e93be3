#!/usr/bin/env python3
"""sweep_peers.py — the peers bench/sweep.py times, each run as a fresh
Python process the way a user writes it in a notebook today:

    sweep_peers.py fit   DUMP LAYERS SAVE        h5py + concept-erasure fit
    sweep_peers.py apply DUMP LAYERS ERASERS OUT h5py read + erase + write OUT
    sweep_peers.py apply DUMP LAYERS ERASERS -   the same, written back in place

DUMP holds /hidden/<name> (n, d) per layer and /labels (n,); LAYERS is a
comma-separated list of layer names. fit: concept_erasure.LeaceFitter in
float64 (culeace's moments and eraser are float64; its default block
products for float16 rows are float32, which the sweep's dP shows) with its
defaults
(LEACE, affine, shrinkage), one .update per 8192-row block read by h5py,
then .eraser; SAVE (or "-") receives every layer's proj_left, proj_right
and bias (torch.save). apply: those erasers, cast to float32, applied to
8192-row blocks read as float32 and written back in the file's dtype, to a
new file OUT (with /labels copied) or, with "-", into DUMP itself.

Each prints one JSON line: import_s (numpy, h5py, torch, concept-erasure)
and work_s (after the imports, to the last byte handed to HDF5, file
closed). Neither fsyncs: that is how users write it.
"""

import json
import sys
import time

BLOCK_ROWS = 8192


def fit(dump, layers, save):
    t0 = time.perf_counter()
    import h5py
    import numpy as np
    import torch
    from concept_erasure import LeaceFitter
    t1 = time.perf_counter()
    erasers = {}
    with h5py.File(dump, "r") as f:
        labels = f["/labels"][:]
        for name in layers:
            ds = f["/hidden"][name]
            n, d = ds.shape
            fitter = LeaceFitter(d, 1, dtype=torch.float64)
            for a in range(0, n, BLOCK_ROWS):
                x = torch.from_numpy(ds[a:a + BLOCK_ROWS].astype(np.float32))
                fitter.update(x, torch.from_numpy(labels[a:a + BLOCK_ROWS]))
            erasers[name] = fitter.eraser
    t2 = time.perf_counter()
    if save != "-":
        torch.save({k: {"proj_left": e.proj_left, "proj_right": e.proj_right,
                        "bias": e.bias} for k, e in erasers.items()}, save)
    return {"import_s": t1 - t0, "work_s": t2 - t1}


def apply(dump, layers, eraser_path, out):
    t0 = time.perf_counter()
    import h5py
    import numpy as np
    import torch
    from concept_erasure import LeaceEraser
    t1 = time.perf_counter()
    saved = torch.load(eraser_path)
    erasers = {k: LeaceEraser(v["proj_left"].float(), v["proj_right"].float(),
                              None if v["bias"] is None else v["bias"].float())
               for k, v in saved.items()}
    in_place = out == "-"
    src = h5py.File(dump, "r+" if in_place else "r")
    dst = src if in_place else h5py.File(out, "w")
    try:
        if not in_place:
            dst.create_dataset("/labels", data=src["/labels"][:])
        for name in layers:
            x_ds = src["/hidden"][name]
            y_ds = x_ds if in_place else dst.create_dataset(
                f"/hidden/{name}", shape=x_ds.shape, dtype=x_ds.dtype)
            n = x_ds.shape[0]
            for a in range(0, n, BLOCK_ROWS):
                x = torch.from_numpy(x_ds[a:a + BLOCK_ROWS].astype(np.float32))
                y_ds[a:a + BLOCK_ROWS] = erasers[name](x).numpy().astype(
                    x_ds.dtype)
    finally:
        if dst is not src:
            dst.close()
        src.close()
    t2 = time.perf_counter()
    return {"import_s": t1 - t0, "work_s": t2 - t1}


def main(argv):
    if len(argv) == 4 and argv[0] == "fit":
        res = fit(argv[1], argv[2].split(","), argv[3])
    elif len(argv) == 5 and argv[0] == "apply":
        res = apply(argv[1], argv[2].split(","), argv[3], argv[4])
    else:
        sys.exit(__doc__)
    print(json.dumps(res))


if __name__ == "__main__":
    main(sys.argv[1:])
