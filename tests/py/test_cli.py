"""test_cli.py — the `culeace` command end to end on synthetic dumps of every
layout and dtype: fit -> apply (to a new file and in place) -> check, the
edited rows against a numpy application of the saved eraser, resuming a
killed in-place apply, and bad input (clear message, non-zero exit, nothing
left behind)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("CULEACE_BIN", str(ROOT / "build" / "culeace"))
MAKE_DUMP = ROOT / "data" / "make_dump.py"

pytestmark = pytest.mark.skipif(not Path(BIN).exists(),
                                reason=f"culeace binary not built ({BIN})")


def run(*args, check=True):
    p = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"culeace {' '.join(map(str, args))} failed "
                             f"({p.returncode}):\n{p.stderr}")
    return p


def make_dump(path, **kw):
    args = [sys.executable, str(MAKE_DUMP), "-o", str(path), "--quiet"]
    for k, v in kw.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    subprocess.run(args, check=True)
    return path


def bf16_to_f32(u16):
    return (u16.astype(np.uint32) << 16).view(np.float32)


def read_x(ds):
    """Reads a dataset as float64, decoding the 2-byte bfloat16 type."""
    t = ds.id.get_type()
    if isinstance(t, h5py.h5t.TypeFloatID) and t.get_size() == 2 and \
            t.get_fields()[3] == 8:  # 8-bit exponent: bfloat16
        raw = np.empty(ds.shape, np.uint16)
        ds.id.read(h5py.h5s.ALL, h5py.h5s.ALL, raw, mtype=t)
        return bf16_to_f32(raw).astype(np.float64)
    return ds[...].astype(np.float64)


def load_erasers(path):
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == b"culeace-erasers" or \
            f.attrs["format"] == "culeace-erasers"
        out = {}
        for name in sorted(f["erasers"]):
            g = f["erasers"][name]
            ln = g.attrs["layer_name"]
            ln = ln.decode() if isinstance(ln, bytes) else ln
            out[ln] = (g["L"][...], g["R"][...], g["bias"][...],
                       int(g.attrs["affine"]))
        return out


def numpy_apply(x, L, R, bias, affine):
    b = bias if affine else 0.0
    return x - ((x - b) @ R.T) @ L.T


LAYOUTS = [
    # (make_dump kwargs, culeace --x options, how to get layer l's rows)
    (dict(layout="group", name="hidden"), ["--x", "/hidden"],
     lambda f, l: f["hidden"][str(l)]),
    (dict(layout="stacked0", name="acts"), ["--x", "/acts", "--layer-axis", "0"],
     lambda f, l: f["acts"][l]),
    (dict(layout="stacked1", name="acts"), ["--x", "/acts", "--layer-axis", "1"],
     lambda f, l: f["acts"][:, l]),
]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("layout", range(len(LAYOUTS)))
def test_fit_apply_check_layouts(tmp_path, dtype, layout):
    kw, xopt, rows_of = LAYOUTS[layout]
    dump = make_dump(tmp_path / "d.h5", rows=1500, dim=24, layers=3,
                     dtype=dtype, classes=3, **kw)
    er = tmp_path / "e.h5"
    out = run("fit", dump, *xopt, "--z", "/labels", "-o", er, "--json",
              "--block-rows", 257)
    res = json.loads(out.stdout)
    assert [l["rows"] for l in res["layers"]] == [1500] * 3
    assert all(1 <= l["rank"] <= 3 for l in res["layers"])
    erased = tmp_path / "out.h5"
    run("apply", er, dump, *xopt, "-o", erased, "--quiet")
    ers = load_erasers(er)
    with h5py.File(dump, "r") as f0, h5py.File(erased, "r") as f1:
        np.testing.assert_array_equal(f0["labels"][...], f1["labels"][...])
        for l in range(3):
            x0 = read_x(rows_of(f0, l)) if False else None
            src = f0[kw["name"]]
            dst = f1[kw["name"]]
            x0 = read_x(src[str(l)]) if kw["layout"] == "group" else \
                (read_x(src)[l] if kw["layout"] == "stacked0" else read_x(src)[:, l])
            x1 = read_x(dst[str(l)]) if kw["layout"] == "group" else \
                (read_x(dst)[l] if kw["layout"] == "stacked0" else read_x(dst)[:, l])
            want = numpy_apply(x0, *ers[str(l)])
            # 2-byte types: one rounding of the result (plus float32 math)
            tol = {"float16": 2e-3, "bfloat16": 1.6e-2, "float32": 1e-5,
                   "float64": 1e-12}[dtype]
            scale = np.abs(want).max()
            assert np.abs(x1 - want).max() <= tol * scale, (dtype, l)
    chk = json.loads(run("check", er, dump, *xopt, "--z", "/labels",
                         "--json").stdout)
    for layer in chk["layers"]:
        ratio = layer["max_abs_cov_xz_after"] / layer["max_abs_cov_xz_before"]
        limit = {"float64": 1e-9, "float32": 1e-4, "float16": 5e-3,
                 "bfloat16": 5e-2}[dtype]
        assert ratio < limit, (dtype, layer)


@pytest.mark.parametrize("layout", ["group", "stacked0", "stacked1"])
def test_apply_out_some_layers_keeps_the_rest(tmp_path, layout):
    """apply -o copies FILE without the contiguous activation datasets whose
    every layer it edits, and the edit fills them from FILE. With --layers
    0,2: in the group layout datasets 0 and 2 are left to the edit and 1 is
    copied; a stacked dataset also holds layer 1, so it is copied whole.
    Edited layers equal the numpy edit, layer 1 and everything else (labels,
    an extra dataset written after the activations, attributes) equal FILE,
    and the output has no zero rows (a hole left unfilled)."""
    name = "hidden" if layout == "group" else "acts"
    dump = make_dump(tmp_path / "d.h5", rows=700, dim=20, layers=3,
                     dtype="float32", layout=layout, name=name)
    with h5py.File(dump, "a") as f:
        f.attrs["model"] = "tiny"
        f.create_dataset("after/tokens", data=np.arange(5000, dtype=np.int32))
    xopt = ["--x", f"/{name}"]
    if layout != "group":
        xopt += ["--layer-axis", layout[-1]]
    er = tmp_path / "e.h5"
    run("fit", dump, *xopt, "--z", "/labels", "-o", er, "--quiet")
    ers = load_erasers(er)
    erased = tmp_path / "out.h5"
    run("apply", er, dump, *xopt, "--layers", "0,2", "-o", erased, "--quiet")

    def layer(f, l):
        if layout == "group":
            return f[name][str(l)][...]
        return f[name][l] if layout == "stacked0" else f[name][:, l]

    with h5py.File(dump, "r") as f0, h5py.File(erased, "r") as f1:
        assert f1.attrs["model"] == f0.attrs["model"]
        np.testing.assert_array_equal(f1["after/tokens"][...],
                                      f0["after/tokens"][...])
        np.testing.assert_array_equal(f1["labels"][...], f0["labels"][...])
        np.testing.assert_array_equal(layer(f1, 1), layer(f0, 1))
        for l in (0, 2):
            x1 = layer(f1, l)
            assert not np.any(np.all(x1 == 0, axis=-1)), l
            want = numpy_apply(layer(f0, l).astype(np.float64), *ers[str(l)])
            assert np.abs(x1 - want).max() <= 1e-5 * np.abs(want).max(), l


@pytest.mark.parametrize("dtype,means", [("float16", "f32"),
                                         ("bfloat16", "f32"),
                                         ("float32", "f64"),
                                         ("float64", "f64")])
def test_fit_precision_auto(tmp_path, dtype, means):
    """--precision auto, the default, multiplies float16/bfloat16 blocks in
    float32 and float32/float64 blocks in float64: its erasers equal those
    of the precision it stands for, bit for bit. On 16-bit rows, erasing
    with them instead of float64-product erasers moves the erased rows by
    at most 1e-5 of max |x| (half an ulp of the type is 4.9e-4 of it for
    float16, 3.9e-3 for bfloat16), and the erased rows' covariance with z
    stays at float32's rounding level next to its size before erasure
    (1e-5; float64 products reach 1e-15)."""
    dump = make_dump(tmp_path / "d.h5", rows=3000, dim=48, layers=2,
                     dtype=dtype, seed=5)
    er = {}
    for prec in ("default", means, "f64"):
        out = tmp_path / f"e_{prec}.h5"
        extra = [] if prec == "default" else ["--precision", prec]
        run("fit", dump, "--x", "/hidden", "--z", "/labels", "-o", out,
            "--quiet", *extra)
        er[prec] = load_erasers(out)
    for name, got in er["default"].items():
        for a, b in zip(got[:3], er[means][name][:3]):
            assert np.array_equal(a, b), (dtype, name)
    if means == "f64":
        return
    with h5py.File(dump) as f:
        z = f["labels"][...].astype(np.float64)
        for name, got in er["default"].items():
            x = read_x(f["hidden"][name])
            a = numpy_apply(x, *got)
            b = numpy_apply(x, *er["f64"][name])
            moved = np.abs(a - b).max() / np.abs(x).max()
            assert moved <= 1e-5, (dtype, name, moved)
            zc = z - z.mean()
            before = np.abs((x - x.mean(0)).T @ zc).max()
            after = np.abs((a - a.mean(0)).T @ zc).max()
            assert after <= 1e-5 * before, (dtype, name, after / before)


def test_fit_precision_bad_value(tmp_path):
    p = run("fit", tmp_path / "absent.h5", "--x", "/hidden", "--z", "/labels",
            "-o", tmp_path / "e.h5", "--precision", "f16", check=False)
    assert p.returncode == 2
    assert "--precision must be auto, f64, f32 or tensor (got 'f16')" in \
        p.stderr
    assert not (tmp_path / "e.h5").exists()


def test_fit_stacked_compressed_layers_in_groups(tmp_path, make_dump):
    """The layers of one compressed stacked dataset are fitted in groups,
    block by block with every layer of the group (each chunk read once):
    the erasers equal those fitted from the same values stored one dataset
    per layer (1e-10 relative), with all layers in one group and in groups
    of two (--max-memory), and with a NaN row dropped in one layer only.
    Block products in float64: the two reads split the rows into different
    blocks, and float32 products (the default for float16 rows) would differ
    by their rounding."""
    kw = dict(rows=3000, dim=32, layers=3, dtype="float16", chunks=256,
              compress=4, seed=21)
    st = make_dump(tmp_path / "st.h5", layout="stacked1", **kw)
    gr = make_dump(tmp_path / "gr.h5", layout="group", **kw)
    with h5py.File(st, "r+") as f:  # row 11 of the last layer
        v = f["hidden"][11]
        v[2, 5] = np.inf
        f["hidden"][11] = v
    with h5py.File(gr, "r+") as f:
        name = sorted(f["hidden"])[2]
        v = f["hidden"][name][11]
        v[5] = np.inf
        f["hidden"][name][11] = v

    def projections(path):
        with h5py.File(path) as f:
            g = f["erasers"]
            return {g[k].attrs["layer_name"]: (g[k]["L"][...] @ g[k]["R"][...],
                                               g[k]["bias"][...]) for k in g}

    run("fit", gr, "--x", "/hidden", "--z", "/labels", "--drop-nonfinite",
        "--precision", "f64", "-o", tmp_path / "ref.h5")
    ref = projections(tmp_path / "ref.h5")
    # 175K: room for two fitters beside a finalisation (d = 32: 603-double
    # states), so the layers go in groups of 2 and 1
    for i, extra in enumerate(([], ["--max-memory", "175K"])):
        out = tmp_path / f"st{i}.h5"
        p = run("fit", st, "--x", "/hidden", "--layer-axis", "1", "--z",
                "/labels", "--drop-nonfinite", "--precision", "f64", "-o", out,
                "--json", *extra)
        rows = [L["rows"] for L in json.loads(p.stdout)["layers"]]
        assert rows == [3000, 3000, 2999]
        got = projections(out)
        assert sorted(got) == sorted(ref)
        for name in ref:
            for x, y in zip(got[name], ref[name]):
                err = np.abs(x - y).max() / np.abs(y).max()
                assert err <= 1e-10, (extra, name, err)


def test_apply_stacked_compressed_by_block(tmp_path, make_dump):
    """apply -o edits the layers of one compressed stacked dataset block by
    block with every layer of a block together (each chunk rewritten once):
    the output holds exactly the rows the same erasers write into the same
    values stored one dataset per layer."""
    kw = dict(rows=2000, dim=32, layers=3, dtype="float16", chunks=256,
              compress=4, seed=22)
    st = make_dump(tmp_path / "st.h5", layout="stacked1", **kw)
    gr = make_dump(tmp_path / "gr.h5", layout="group", **kw)
    er = tmp_path / "e.h5"
    run("fit", gr, "--x", "/hidden", "--z", "/labels", "-o", er)
    run("apply", er, gr, "--x", "/hidden", "-o", tmp_path / "gr-out.h5")
    run("apply", er, st, "--x", "/hidden", "--layer-axis", "1", "-o",
        tmp_path / "st-out.h5")
    with h5py.File(tmp_path / "st-out.h5") as f, \
            h5py.File(tmp_path / "gr-out.h5") as g, h5py.File(st) as s0:
        x = f["hidden"][...]
        assert not np.array_equal(x, s0["hidden"][...])  # edited
        for i in range(3):
            assert np.array_equal(x[:, i, :], g["hidden"][str(i)][...]), i


def test_in_place_equals_copy(tmp_path):
    dump = make_dump(tmp_path / "d.h5", rows=3000, dim=32, layers=2,
                     dtype="float16", layout="group")
    er = tmp_path / "e.h5"
    run("fit", dump, "--x", "/hidden", "--z", "/labels", "-o", er, "--quiet")
    run("apply", er, dump, "--x", "/hidden", "-o", tmp_path / "copy.h5",
        "--quiet")
    ip = tmp_path / "ip.h5"
    ip.write_bytes(dump.read_bytes())
    run("apply", er, ip, "--x", "/hidden", "--in-place", "--quiet",
        "--block-rows", 500)
    assert not (tmp_path / "ip.h5.culeace-apply").exists()
    assert not (tmp_path / "ip.h5.culeace-journal").exists()
    with h5py.File(tmp_path / "copy.h5", "r") as a, h5py.File(ip, "r") as b:
        for l in ("0", "1"):
            np.testing.assert_array_equal(a["hidden"][l][...], b["hidden"][l][...])


def test_killed_in_place_apply_resumes(tmp_path):
    dump = make_dump(tmp_path / "d.h5", rows=20000, dim=128, layers=2,
                     dtype="float32", layout="group")
    er = tmp_path / "e.h5"
    run("fit", dump, "--x", "/hidden", "--z", "/labels", "-o", er, "--quiet")
    run("apply", er, dump, "--x", "/hidden", "-o", tmp_path / "ref.h5",
        "--quiet")
    ip = tmp_path / "ip.h5"
    ip.write_bytes(dump.read_bytes())
    cmd = [BIN, "apply", str(er), str(ip), "--x", "/hidden", "--in-place",
           "--quiet", "--block-rows", "64"]
    kills = 0
    for delay in (0.02, 0.05, 0.1, 0.1, 0.2, 0.2):
        p = subprocess.Popen(cmd)
        time.sleep(delay)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        if p.wait() == 0:
            break  # finished: running it again would erase twice
        if not (tmp_path / "ip.h5.culeace-apply").exists():
            # killed before its first checkpoint: the file is the input, to
            # the byte. (culeace opens it for writing only after the
            # checkpoint is written: the open alone sets libhdf5's "open for
            # write" bit in the superblock.)
            assert ip.read_bytes() == dump.read_bytes()
    else:
        subprocess.run(cmd, check=True)
    assert kills >= 1, "the apply finished before it could be killed"
    assert not (tmp_path / "ip.h5.culeace-apply").exists()
    with h5py.File(tmp_path / "ref.h5", "r") as a, h5py.File(ip, "r") as b:
        for l in ("0", "1"):
            np.testing.assert_array_equal(a["hidden"][l][...], b["hidden"][l][...])


def test_tokens_with_mask(tmp_path):
    dump = make_dump(tmp_path / "d.h5", rows=600, dim=16, layers=2, tokens=5,
                     dtype="float32", layout="stacked0", name="acts")
    er = tmp_path / "e.h5"
    xopt = ["--x", "/acts", "--layer-axis", "0", "--tokens", "--mask", "/mask"]
    res = json.loads(run("fit", dump, *xopt, "--z", "/labels", "-o", er,
                         "--json").stdout)
    with h5py.File(dump, "r") as f:
        mask = f["mask"][...] != 0
        x0 = f["acts"][...].astype(np.float64)
    assert res["layers"][0]["rows"] == int(mask.sum())
    run("apply", er, dump, *xopt, "-o", tmp_path / "o.h5", "--quiet")
    ers = load_erasers(er)
    with h5py.File(tmp_path / "o.h5", "r") as f:
        x1 = f["acts"][...].astype(np.float64)
    for l in range(2):
        np.testing.assert_array_equal(x1[l][~mask], x0[l][~mask])
        want = numpy_apply(x0[l][mask], *ers[str(l)])
        assert np.abs(x1[l][mask] - want).max() <= 1e-5 * np.abs(want).max()


def test_layer_selection_and_single_dataset(tmp_path):
    dump = make_dump(tmp_path / "d.h5", rows=800, dim=16, layers=5,
                     dtype="float32", layout="group")
    er = tmp_path / "e.h5"
    res = json.loads(run("fit", dump, "--x", "/hidden", "--z", "/labels",
                         "--layers", "0,2-3", "-o", er, "--json").stdout)
    assert [l["name"] for l in res["layers"]] == ["0", "2", "3"]
    with h5py.File(dump, "r") as f:
        single = tmp_path / "s.h5"
        with h5py.File(single, "w") as g:
            g["x"] = f["hidden"]["2"][...]
            g["y"] = f["labels"][...]
    run("fit", single, "--x", "/x", "--z", "/y", "-o", tmp_path / "se.h5",
        "--quiet")
    run("apply", tmp_path / "se.h5", single, "--x", "/x", "-o",
        tmp_path / "so.h5", "--quiet")


def test_version_and_help():
    assert "backends: cpu" in run("--version").stdout
    for cmd in ("inspect", "fit", "apply", "check"):
        p = run(cmd, "--help")
        assert "usage: culeace " + cmd in p.stdout


# ---- bad input: clear message, non-zero exit, nothing left behind ---------

@pytest.fixture()
def small(tmp_path):
    dump = make_dump(tmp_path / "d.h5", rows=400, dim=8, layers=2,
                     dtype="float32", layout="group")
    er = tmp_path / "e.h5"
    run("fit", dump, "--x", "/hidden", "--z", "/labels", "-o", er, "--quiet")
    return tmp_path, dump, er


def expect_error(args, *needles):
    p = run(*args, check=False)
    assert p.returncode != 0, f"expected failure: {args}"
    # Under an ASan/UBSan build a report would also be a non-zero exit.
    assert "Sanitizer" not in p.stderr and "runtime error:" not in p.stderr, \
        p.stderr
    for n in needles:
        assert n in p.stderr, f"{n!r} not in message: {p.stderr!r}"
    return p


def listing(d):
    return sorted(os.listdir(d))


def test_missing_file_and_dataset(small):
    tmp, dump, er = small
    expect_error(["fit", tmp / "nope.h5", "--x", "/hidden", "--z", "/labels",
                  "-o", tmp / "o.h5"], "nope.h5")
    expect_error(["fit", dump, "--x", "/nothing", "--z", "/labels", "-o",
                  tmp / "o.h5"], "/nothing", "d.h5")
    expect_error(["fit", dump, "--x", "/hidden", "--z", "/nolabels", "-o",
                  tmp / "o.h5"], "/nolabels")
    assert not (tmp / "o.h5").exists()


def test_not_hdf5(small):
    tmp, dump, er = small
    junk = tmp / "junk.h5"
    junk.write_bytes(b"this is not an HDF5 file" * 100)
    expect_error(["inspect", junk], "junk.h5")
    expect_error(["apply", junk, dump, "--x", "/hidden", "-o", tmp / "o.h5"],
                 "junk.h5")
    assert not (tmp / "o.h5").exists()


def test_wrong_rank_and_label_length(small):
    tmp, dump, er = small
    f = tmp / "bad.h5"
    with h5py.File(f, "w") as g:
        g["x1"] = np.zeros(10, np.float32)
        g["x"] = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
        g["y9"] = np.arange(9) % 2
        g["one"] = np.zeros(10, np.int64)
        g["x3"] = np.zeros((2, 5, 4), np.float32)
    expect_error(["fit", f, "--x", "/x1", "--z", "/y9", "-o", tmp / "o.h5"],
                 "/x1")
    expect_error(["fit", f, "--x", "/x", "--z", "/y9", "-o", tmp / "o.h5"],
                 "/y9", "9", "10")
    expect_error(["fit", f, "--x", "/x", "--z", "/one", "-o", tmp / "o.h5"],
                 "/one", "one class")
    expect_error(["fit", f, "--x", "/x3", "--z", "/one", "-o", tmp / "o.h5"],
                 "ambiguous")
    assert not (tmp / "o.h5").exists()


def test_nonfinite_rows(tmp_path):
    f = tmp_path / "nan.h5"
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    y = rng.integers(0, 2, 300)
    x[123, 4] = np.nan
    x[200, 0] = np.inf
    with h5py.File(f, "w") as g:
        g["x"] = x
        g["y"] = y
    expect_error(["fit", f, "--x", "/x", "--z", "/y", "-o", tmp_path / "e.h5"],
                 "row 123", "column 4", "--drop-nonfinite")
    assert listing(tmp_path) == ["nan.h5"]
    res = json.loads(run("fit", f, "--x", "/x", "--z", "/y", "-o",
                         tmp_path / "e.h5", "--drop-nonfinite",
                         "--json").stdout)
    assert res["layers"][0]["rows"] == 298
    assert res["layers"][0]["dropped_nonfinite"] == 2
    expect_error(["apply", tmp_path / "e.h5", f, "--x", "/x", "-o",
                  tmp_path / "o.h5"], "row 123")
    assert not (tmp_path / "o.h5").exists()
    assert [p for p in listing(tmp_path) if "tmp" in p] == []
    run("apply", tmp_path / "e.h5", f, "--x", "/x", "-o", tmp_path / "o.h5",
        "--drop-nonfinite", "--quiet")
    with h5py.File(tmp_path / "o.h5", "r") as g:
        out = g["x"][...]
    assert np.isnan(out[123, 4]) and np.isinf(out[200, 0])
    assert np.isfinite(np.delete(out, [123, 200], axis=0)).all()


def test_eraser_width_mismatch(small):
    tmp, dump, er = small
    other = make_dump(tmp / "wide.h5", rows=100, dim=12, layers=2,
                      dtype="float32", layout="group")
    before = listing(tmp)
    expect_error(["apply", er, other, "--x", "/hidden", "-o", tmp / "o.h5"],
                 "d = 8", "d = 12")
    expect_error(["apply", er, other, "--x", "/hidden", "--in-place"],
                 "d = 8", "d = 12")
    assert listing(tmp) == before
    with h5py.File(other, "r") as g:
        assert "culeace" not in str(dict(g.attrs))


def test_output_is_input(small):
    tmp, dump, er = small
    digest = dump.read_bytes()
    expect_error(["apply", er, dump, "--x", "/hidden", "-o", dump],
                 "input file")
    expect_error(["fit", dump, "--x", "/hidden", "--z", "/labels", "-o", dump],
                 "input file")
    assert dump.read_bytes() == digest


def test_bad_options(small):
    tmp, dump, er = small
    expect_error(["fit", dump, "--x", "/hidden", "--z", "/labels", "-o",
                  tmp / "o.h5", "--layers", "7"], "layer 7")
    expect_error(["fit", dump, "--x", "/hidden", "--z", "/labels", "-o",
                  tmp / "o.h5", "--method", "magic"], "--method")
    expect_error(["apply", er, dump, "--x", "/hidden"], "-o OUT", "--in-place")
    assert not (tmp / "o.h5").exists()


def gpu_present():
    """True when nvidia-smi lists a GPU on this machine."""
    try:
        p = subprocess.run(["nvidia-smi", "-L"], capture_output=True,
                           text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return p.returncode == 0 and "GPU" in p.stdout


def test_device_cuda(small):
    """--device cuda: where there is a GPU, the fit runs there and gives the
    CPU's erasers (the edit L R and the bias, float64 fits, to 1e-8
    relative); where there is none, a clear error and no output."""
    tmp, dump, er = small
    args = ["fit", dump, "--x", "/hidden", "--z", "/labels", "-o",
            tmp / "o.h5", "--device", "cuda"]
    if not gpu_present():
        expect_error(args, "CUDA")
        assert not (tmp / "o.h5").exists()
        return
    p = run(*args)
    assert "device cuda" in p.stderr, p.stderr
    run("fit", dump, "--x", "/hidden", "--z", "/labels", "-o", tmp / "c.h5",
        "--device", "cpu")
    with h5py.File(tmp / "o.h5") as g, h5py.File(tmp / "c.h5") as c:
        names = sorted(c["erasers"])
        assert names and sorted(g["erasers"]) == names
        for n in names:
            eg, ec = g["erasers"][n], c["erasers"][n]
            pg = eg["L"][:] @ eg["R"][:]
            pc = ec["L"][:] @ ec["R"][:]
            assert np.linalg.norm(pg - pc) <= 1e-8 * np.linalg.norm(pc), n
            bg, bc = eg["bias"][:], ec["bias"][:]
            assert np.linalg.norm(bg - bc) <= 1e-8 * np.linalg.norm(bc), n


def test_in_place_refuses_compressed(tmp_path):
    dump = make_dump(tmp_path / "d.h5", rows=400, dim=8, layers=1,
                     dtype="float32", layout="group", chunks=100, compress=4)
    er = tmp_path / "e.h5"
    run("fit", dump, "--x", "/hidden", "--z", "/labels", "-o", er, "--quiet")
    digest = dump.read_bytes()
    expect_error(["apply", er, dump, "--x", "/hidden", "--in-place"],
                 "compressed", "-o OUT")
    assert dump.read_bytes() == digest
    run("apply", er, dump, "--x", "/hidden", "-o", tmp_path / "o.h5", "--quiet")


def test_corrupt_eraser_files(small):
    tmp, dump, er = small
    bad = tmp / "bad.h5"
    bad.write_bytes(er.read_bytes())
    with h5py.File(bad, "a") as g:
        g.attrs["format_version"] = 99
    expect_error(["apply", bad, dump, "--x", "/hidden", "-o", tmp / "o.h5"],
                 "format_version 99")
    bad.write_bytes(er.read_bytes())
    with h5py.File(bad, "a") as g:
        del g["erasers/0000/R"]
        g["erasers/0000/R"] = np.zeros((3, 3))
    expect_error(["apply", bad, dump, "--x", "/hidden", "-o", tmp / "o.h5"],
                 "wrong shape")
    bad.write_bytes(er.read_bytes())
    with h5py.File(bad, "a") as g:
        g["erasers/0000/bias"][0] = np.nan
    expect_error(["apply", bad, dump, "--x", "/hidden", "-o", tmp / "o.h5"],
                 "non-finite")
    assert not (tmp / "o.h5").exists()


def test_continuous_z(tmp_path):
    rng = np.random.default_rng(5)
    n, d = 2000, 10
    z = rng.normal(size=(n, 2))
    x = rng.normal(size=(n, d)) + z @ rng.normal(size=(2, d))
    f = tmp_path / "c.h5"
    with h5py.File(f, "w") as g:
        g["x"] = x
        g["z"] = z
    er = tmp_path / "e.h5"
    res = json.loads(run("fit", f, "--x", "/x", "--z", "/z", "-o", er,
                         "--json", "--svd-tol", "1e-9").stdout)
    assert res["layers"][0]["rank"] == 2
    chk = json.loads(run("check", er, f, "--x", "/x", "--z", "/z",
                         "--json").stdout)["layers"][0]
    assert chk["max_abs_cov_xz_after"] < 1e-10 * chk["max_abs_cov_xz_before"]
    assert chk["max_class_mean_gap_before"] is None  # no classes


def test_inspect_json(tmp_path):
    dump = make_dump(tmp_path / "d.h5", rows=300, dim=16, layers=3,
                     dtype="bfloat16", layout="group", groups=30)
    info = json.loads(run("inspect", dump, "--json").stdout)
    by_path = {d["path"]: d for d in info["datasets"]}
    assert by_path["/hidden/0"]["dtype"] == "bfloat16"
    assert by_path["/hidden/0"]["shape"] == [300, 16]
    assert by_path["/labels"]["role"].startswith("labels")
    assert sum(by_path["/labels"]["classes"].values()) == 300
    assert any(g["path"] == "/hidden" for g in info["layer_groups"])


def test_in_place_twice_is_a_no_op(tmp_path):
    """A finished in-place apply marks the datasets (attribute
    culeace_applied); the same command again changes nothing, even for
    float16 rows where a second erasure would round differently."""
    dump = make_dump(tmp_path / "d.h5", rows=2000, dim=16, layers=2,
                     dtype="float16", layout="group")
    er = tmp_path / "e.h5"
    run("fit", dump, "--x", "/hidden", "--z", "/labels", "-o", er, "--quiet")
    cmd = ["apply", er, dump, "--x", "/hidden", "--in-place"]
    run(*cmd, "--quiet")
    done = dump.read_bytes()
    p = run(*cmd)
    assert "already erased in place" in p.stderr, p.stderr
    assert dump.read_bytes() == done
    with h5py.File(dump, "r") as f:
        assert "culeace_applied" in f["hidden"]["0"].attrs


def test_library_search_paths_have_no_empty_entry():
    """The built binary and libraries look for their libraries only in the
    directories named in their RUNPATH/RPATH: no entry may be empty (the
    loader reads it as the current directory, so a libm.so.6 or
    libcuda.so.1 where culeace was run would be loaded) or relative."""
    if not shutil.which("readelf"):
        pytest.skip("readelf (binutils) not installed")
    here = Path(BIN).resolve().parent
    files = [Path(BIN).resolve()] + [here / n for n in (
        "libculeace.so", "libculeace_cuda.so") if (here / n).exists()]
    seen = 0
    for f in files:
        out = subprocess.run(["readelf", "-d", str(f)], capture_output=True,
                             text=True, check=True).stdout
        for m in re.finditer(r"\((?:RUNPATH|RPATH)\)\s+Library r\w*path: "
                             r"\[(.*)\]", out):
            seen += 1
            for entry in m.group(1).split(":"):
                assert entry, f"{f.name}: empty entry in [{m.group(1)}]"
                assert entry.startswith(("/", "$ORIGIN")), (
                    f"{f.name}: relative entry {entry!r}")
    assert seen >= 1, "no RUNPATH/RPATH found"
