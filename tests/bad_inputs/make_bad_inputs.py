#!/usr/bin/env python3
"""make_bad_inputs.py — writes the bad-input catalogue: small files that are
wrong in one way each, and the culeace command that must refuse them.

    python3 tests/bad_inputs/make_bad_inputs.py DIR [--culeace BIN]

Each case is (name, argv after `culeace`, needles, limit): the command must
exit non-zero, its message must contain every needle (it names the file,
dataset or row, and what was expected), no file it would write may exist
afterwards, and every input file must be byte for byte as before. `limit`
is a file-size limit in bytes (RLIMIT_FSIZE: a full disk) or None.
tests/py/test_bad_inputs.py runs them; with --culeace this script runs them
itself and prints one line per case.
"""

import argparse
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np


def dump(path, x, labels, name="hidden"):
    with h5py.File(path, "w") as f:
        f[name] = x
        if labels is not None:
            f["labels"] = labels
    return path


def rows(n, d, seed=0, dtype="float16"):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)


def two_classes(n):
    return (np.arange(n) % 2).astype(np.int64)


def make(d, culeace):
    """Writes the catalogue's files into directory d; returns the cases.
    culeace: the CLI, used to make a valid eraser file to corrupt."""
    p = lambda name: os.path.join(d, name)  # noqa: E731
    good = dump(p("good.h5"), rows(4000, 64), two_classes(4000))
    er = p("good-erasers.h5")
    subprocess.run([culeace, "fit", good, "--x", "/hidden", "--z", "/labels",
                    "-o", er, "--quiet"], check=True, stdout=subprocess.DEVNULL)
    out = p("out.h5")
    fit = lambda src, *more: ["fit", src, "--x", "/hidden", "--z", "/labels",  # noqa: E731
                              "-o", out, *more]
    cases = []

    data = open(good, "rb").read()
    with open(p("truncated.h5"), "wb") as f:
        f.write(data[:len(data) // 2])
    cases.append(("truncated HDF5 file", fit(p("truncated.h5")),
                  ["truncated.h5", "truncated"], None))

    with open(p("text.h5"), "w") as f:
        f.write("not an HDF5 file\n")
    cases.append(("not HDF5", fit(p("text.h5")),
                  ["text.h5", "not an HDF5 file"], None))

    with h5py.File(p("huge.h5"), "w") as f:  # chunked: nothing is stored
        f.create_dataset("hidden", shape=(2**40, 2**30), dtype="f2",
                         chunks=(1, 16))
        f["labels"] = np.zeros(4, np.int64)
    cases.append(("dims overflow the machine", fit(p("huge.h5")),
                  ["huge.h5", "/hidden", "too many elements"], None))

    # a fuzzer's file whose chunk index claims a 4 GiB chunk in 6856 bytes
    # (libhdf5 would allocate that much to read it)
    shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                             "fuzz", "corpus", "fuzz_activations",
                             "oom-chunk-index-claims-4gib.h5"),
                p("chunk-claims.h5"))
    cases.append(("chunk index claims more bytes than the file",
                  ["fit", p("chunk-claims.h5"), "--x", "/acts", "--layer-axis",
                   "0", "--z", "/labels", "-o", out],
                  ["chunk-claims.h5", "/acts", "4278191638 bytes of chunks",
                   "file of 6856 bytes"], None))

    with h5py.File(p("many-layers.h5"), "w") as f:  # chunked: nothing stored
        f.create_dataset("hidden", shape=(2**27, 4, 8), dtype="f2",
                         chunks=(1, 4, 8))
        f["labels"] = two_classes(4)
    cases.append(("layer axis longer than culeace handles",
                  fit(p("many-layers.h5"), "--layer-axis", "0"),
                  ["many-layers.h5", "/hidden", "134217728 layers",
                   "more than culeace handles (65536)"], None))

    dump(p("zero-rows.h5"), np.zeros((0, 8), np.float16), np.zeros(0, np.int64))
    cases.append(("zero rows", fit(p("zero-rows.h5")),
                  ["zero-rows.h5", "no examples"], None))

    dump(p("zero-width.h5"), np.zeros((10, 0), np.float16), two_classes(10))
    cases.append(("d = 0", fit(p("zero-width.h5")),
                  ["zero-width.h5", "width d must be >= 1"], None))

    dump(p("short-labels.h5"), rows(20, 8), np.ones(19, np.int64))
    cases.append(("labels of the wrong length", fit(p("short-labels.h5")),
                  ["short-labels.h5", "19 rows", "20"], None))

    dump(p("string-labels.h5"), rows(20, 8), np.array([b"a", b"b"] * 10))
    cases.append(("labels of the wrong type", fit(p("string-labels.h5")),
                  ["string-labels.h5", "type string", "integer"], None))

    big = np.array([2**63, 2**64 - 1] * 10, np.uint64)  # would clip to one value
    dump(p("uint64-labels.h5"), rows(20, 8), big)
    cases.append(("labels above the int64 range", fit(p("uint64-labels.h5")),
                  ["uint64-labels.h5", "/labels", "row 0", "9223372036854775808",
                   "largest integer label"], None))

    dump(p("one-class.h5"), rows(20, 8), np.ones(20, np.int64))
    cases.append(("one class", fit(p("one-class.h5")),
                  ["one-class.h5", "only one class"], None))

    x = rows(300, 8)
    x[217, 5] = np.nan
    dump(p("nan.h5"), x, two_classes(300))
    cases.append(("NaN in activations", fit(p("nan.h5")),
                  ["nan.h5", "row 217", "column 5"], None))

    # An eraser that doubles column 0, on rows whose column 0 is near the
    # float16 maximum: the erased value does not fit float16.
    shutil.copy(er, p("doubling-erasers.h5"))
    with h5py.File(p("doubling-erasers.h5"), "r+") as f:
        g = f["erasers"][sorted(f["erasers"])[0]]
        L = np.zeros(g["L"].shape)
        R = np.zeros(g["R"].shape)
        L[0, 0], R[0, 0] = -1.0, 1.0
        g["L"][...], g["R"][...], g["bias"][...] = L, R, 0.0
    x = rows(4000, 64)
    x[1234, 0] = 40000.0
    dump(p("near-max.h5"), x, two_classes(4000))
    cases.append(("value overflows float16 on write (to a new file)",
                  ["apply", p("doubling-erasers.h5"), p("near-max.h5"),
                   "--x", "/hidden", "-o", out],
                  ["out.h5", "row 1234", "overflows float16", "column 0"], None))
    shutil.copy(p("near-max.h5"), p("near-max-in-place.h5"))
    cases.append(("value overflows float16 on write (in place)",
                  ["apply", p("doubling-erasers.h5"), p("near-max-in-place.h5"),
                   "--x", "/hidden", "--in-place"],
                  ["near-max-in-place.h5", "row 1234", "overflows float16",
                   "not written"], None))

    def bad_eraser(name, change):
        shutil.copy(er, p(name))
        with h5py.File(p(name), "r+") as f:
            change(f, f["erasers"][sorted(f["erasers"])[0]])
        return ["apply", p(name), good, "--x", "/hidden", "-o", out]

    cases.append(("eraser file with a missing field",
                  bad_eraser("no-R.h5", lambda f, g: g.__delitem__("R")),
                  ["no-R.h5", "/erasers/0000", "R (1 x 64)"], None))
    cases.append(("eraser file of another format version",
                  bad_eraser("version.h5", lambda f, g:
                             f.attrs.__setitem__("format_version", 99)),
                  ["version.h5", "format_version 99"], None))

    def wide_L(f, g):
        del g["L"]
        g["L"] = np.zeros((64, 2))
    cases.append(("eraser file with inconsistent shapes",
                  bad_eraser("shapes.h5", wide_L),
                  ["shapes.h5", "L (64 x 1)"], None))

    def nan_R(f, g):
        R = g["R"][...]
        R[0, 7] = np.nan
        g["R"][...] = R
    cases.append(("eraser file with a non-finite matrix",
                  bad_eraser("nan-R.h5", nan_R),
                  ["nan-R.h5", "non-finite"], None))

    # A fuzzer finding: reading this file's metadata makes libhdf5 1.10
    # dereference NULL (docs/SECURITY.md); the check process takes the hit.
    crash = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                         "fuzz", "libhdf5-crashes",
                         "accum-read-null-after-huge-alloc.h5")
    shutil.copy(crash, p("crashes-libhdf5.h5"))
    cases.append(("metadata that crashes libhdf5 (inspect)",
                  ["inspect", p("crashes-libhdf5.h5")],
                  ["crashes-libhdf5.h5", "crashed libhdf5", "nothing was read"],
                  None))
    cases.append(("metadata that crashes libhdf5 (fit)",
                  fit(p("crashes-libhdf5.h5")),
                  ["crashes-libhdf5.h5", "crashed libhdf5"], None))
    # apply checks its two files in check processes running side by side:
    # the crash in the second is reported, the good first one is not blamed
    cases.append(("metadata that crashes libhdf5 (apply, second file)",
                  ["apply", er, p("crashes-libhdf5.h5"), "--x", "/hidden",
                   "-o", out],
                  ["crashes-libhdf5.h5", "crashed libhdf5"], None))

    cases.append(("job larger than --max-memory (fit)",
                  fit(good, "--max-memory", "100K"),
                  ["width d = 64", "--max-memory 100 KiB",
                   "nothing was started"], None))
    cases.append(("job larger than --max-memory (probe)",
                  ["probe", good, "--x", "/hidden", "--y", "/labels",
                   "--max-memory", "1M"],
                  ["4000 rows x 64 features", "--max-memory 1.0 MiB"], None))
    # apply streams blocks of whole examples: one example of 64 token rows
    # must fit the quarter of the budget blocks get (the erasers are tiny)
    rng = np.random.default_rng(7)
    dump(p("tokens.h5"), rng.standard_normal((30, 64, 8)).astype("f2"),
         two_classes(30))
    subprocess.run([culeace, "fit", p("tokens.h5"), "--x", "/hidden",
                    "--tokens", "--z", "/labels", "-o", p("tokens-erasers.h5"),
                    "--quiet"], check=True, stdout=subprocess.DEVNULL)
    cases.append(("job larger than --max-memory (apply)",
                  ["apply", p("tokens-erasers.h5"), p("tokens.h5"), "--x",
                   "/hidden", "--tokens", "-o", out, "--max-memory", "16K"],
                  ["a block of one example (64 rows x 8",
                   "--max-memory 16 KiB", "nothing was started"], None))
    # score -o holds a layer's probabilities and row ids until it writes them
    subprocess.run([culeace, "probe", good, "--x", "/hidden", "--y", "/labels",
                    "--save", p("good-probes.h5"), "--quiet"], check=True,
                   stdout=subprocess.DEVNULL)
    cases.append(("job larger than --max-memory (score)",
                  ["score", p("good-probes.h5"), good, "--x", "/hidden", "-o",
                   out, "--max-memory", "100K"],
                  ["scoring the selected layers", "holds throughout",
                   "--max-memory 100 KiB", "nothing was started"], None))
    cases.append(("malformed --max-memory",
                  fit(good, "--max-memory", "lots"),
                  ["--max-memory", "'lots'"], None))

    cases.append(("output path equal to the input",
                  ["fit", good, "--x", "/hidden", "--z", "/labels", "-o", good],
                  ["input file"], None))

    cases.append(("disk full while fitting (file-size limit)",
                  fit(good), ["out.h5", "File too large"], 3000))
    cases.append(("disk full while copying for apply -o",
                  ["apply", er, good, "--x", "/hidden", "-o", out],
                  ["disk full or file-size limit"], 100000))
    shutil.copy(good, p("good-in-place.h5"))
    cases.append(("disk full while journaling an in-place apply",
                  ["apply", er, p("good-in-place.h5"), "--x", "/hidden",
                   "--in-place"],
                  ["journal", "File too large"], 20000))
    return cases


def run_case(culeace, argv, limit):
    def pre():
        if limit is not None:
            import resource
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return subprocess.run([culeace, *argv], capture_output=True, text=True,
                          preexec_fn=pre, timeout=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--culeace", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "build",
        "culeace"))
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    bad = 0
    for name, argv, needles, limit in make(a.dir, a.culeace):
        r = run_case(a.culeace, argv, limit)
        ok = r.returncode not in (0,) and r.returncode > 0 and \
            all(n in r.stderr for n in needles)
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'} {name}: exit {r.returncode}: "
              f"{r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ''}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
