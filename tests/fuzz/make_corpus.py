#!/usr/bin/env python3
"""make_corpus.py — writes the fuzzers' seed corpora into
tests/fuzz/corpus/<target>/: small valid files of every kind each target
reads (they are committed; rerun after a format change).

    python3 tests/fuzz/make_corpus.py [--culeace build/culeace]
"""

import argparse
import os
import shutil
import subprocess
import tempfile

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def dumps(d):
    """Small activation dumps in each accepted layout; returns paths."""
    rng = np.random.default_rng(0)
    out = []
    p = os.path.join(d, "group.h5")
    with h5py.File(p, "w") as f:
        for l in range(2):
            f[f"hidden/{l}"] = rng.standard_normal((24, 8)).astype("f2")
        f["labels"] = (np.arange(24) % 3).astype(np.int64)
        f["groups"] = (np.arange(24) // 2).astype(np.int64)
    out.append(p)
    p = os.path.join(d, "dataset-f32.h5")
    with h5py.File(p, "w") as f:
        f["hidden"] = rng.standard_normal((16, 5)).astype("f4")
        f["labels"] = rng.standard_normal(16)
    out.append(p)
    p = os.path.join(d, "stacked-chunked.h5")
    with h5py.File(p, "w") as f:
        f.create_dataset("acts", data=rng.standard_normal((3, 20, 6)).astype("f4"),
                         chunks=(1, 5, 6), compression="gzip", shuffle=True)
        f["labels"] = (np.arange(20) % 2).astype(np.int32)
    out.append(p)
    p = os.path.join(d, "tokens.h5")
    with h5py.File(p, "w") as f:
        f["tokens/hidden"] = rng.standard_normal((6, 4, 8)).astype("f2")
        f["tokens/mask"] = (rng.random((6, 4)) < 0.7).astype(np.uint8)
        f["labels"] = (np.arange(6) % 2).astype(np.int64)
    out.append(p)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--culeace", default=os.path.join(HERE, "..", "..",
                                                      "build", "culeace"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        files = dumps(d)
        erasers = []
        for i, (src, x, extra) in enumerate([
                (files[0], "/hidden", []),
                (files[1], "/hidden", ["--no-affine"]),
                (files[2], "/acts", ["--layer-axis", "0", "--method", "orth"])]):
            e = os.path.join(d, f"erasers-{i}.h5")
            subprocess.run([a.culeace, "fit", src, "--x", x, "--z", "/labels",
                            "-o", e, "--quiet", *extra], check=True,
                           stdout=subprocess.DEVNULL)
            erasers.append(e)
        for target, seeds in (("fuzz_activations", files),
                              ("fuzz_inspect", files + erasers[:1]),
                              ("fuzz_eraser_file", erasers)):
            out = os.path.join(HERE, "corpus", target)
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            for s in seeds:
                shutil.copy(s, os.path.join(out, os.path.basename(s)))
            print(f"{out}: {len(seeds)} files")


if __name__ == "__main__":
    main()
