"""test_mpi.py — the commands under mpirun (docs/CLUSTER.md). fit: 1-4 ranks
give the erasers of the plain fit (1e-10 relative, float64, 1001 rows that
no rank count divides, several layers, token rows with a mask); a read
error in one rank's rows only (a chunk whose Fletcher32 checksum fails) and
a rank killed mid-job both fail the whole job with a clear message and
leave no output or temporary file; a batch script's own environment (no
srun step) is not an MPI launch; scripts/slurm/*.sbatch run through an srun
stand-in. probe and apply -o: the plain run's results. apply --in-place:
1-4 ranks leave the very file a plain in-place apply leaves (float32,
float16, token rows with a mask); a rank killed in its write turn is
finished by a rerun on another number of ranks (or none) to that same
file; a bad row on one rank fails the job with its message and leaves the
file untouched or resumable. Shared memory only (btl self + vader/sm)."""

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("CULEACE_BIN", str(ROOT / "build" / "culeace"))
MPIRUN = shutil.which("mpirun")


def _build_mpi():
    if not Path(BIN).exists():
        return None
    p = subprocess.run([BIN, "--version"], capture_output=True, text=True)
    v = p.stdout.split("MPI: ")[-1].rstrip(")\n") if "MPI: " in p.stdout \
        else "none"
    return None if v == "none" else v


MPI_NAME = _build_mpi()
pytestmark = [
    pytest.mark.skipif(not Path(BIN).exists(),
                       reason=f"culeace binary not built ({BIN})"),
    pytest.mark.skipif(Path(BIN).exists() and MPI_NAME is None,
                       reason="culeace was built without MPI (CULEACE_MPI=OFF "
                              "or no MPI library at configure time)"),
    pytest.mark.skipif(MPIRUN is None, reason="mpirun not found (Debian: "
                                              "apt-get install openmpi-bin)"),
]

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1",
           OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
if "ASAN_OPTIONS" in ENV:  # the sanitizer build: Open MPI's own leaks
    supp = Path(__file__).with_name("lsan_openmpi.supp")
    ENV["LSAN_OPTIONS"] = ":".join(filter(None, [
        ENV.get("LSAN_OPTIONS"), f"suppressions={supp}"]))
    ENV["ASAN_OPTIONS"] += ":fast_unwind_on_malloc=0"  # whole stacks
    ENV["OMPI_MCA_mca_base_component_disable_dlclose"] = "1"
    ENV["PMIX_MCA_mca_base_component_disable_dlclose"] = "1"


def _shm_btl():
    """Open MPI's shared-memory transport: vader in 4.x, sm from 5.0."""
    p = subprocess.run(["ompi_info"], capture_output=True, text=True)
    return "vader" if "btl: vader" in p.stdout else "sm"


def mpirun(k, *args, env=None, popen=False):
    cmd = [MPIRUN, "--oversubscribe", "-n", str(k), "--mca", "btl",
           f"self,{_shm_btl()}", "--mca", "pml", "ob1", BIN, *map(str, args)]
    if popen:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env=env or ENV)
    return subprocess.run(cmd, capture_output=True, text=True, env=env or ENV,
                          timeout=120)


def projections(path):
    """layer name -> (L R, bias): sign-free parts of each eraser."""
    with h5py.File(path, "r") as f:
        g = f["erasers"]
        out = {}
        for k in g:
            name = g[k].attrs["layer_name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            out[name] = (g[k]["L"][...] @ g[k]["R"][...], g[k]["bias"][...])
        return out


def assert_same_erasers(a, b):
    pa, pb = projections(a), projections(b)
    assert sorted(pa) == sorted(pb)
    for name in pa:
        for x, y in zip(pa[name], pb[name]):
            err = np.abs(x - y).max() / max(np.abs(y).max(), 1e-300)
            assert err <= 1e-10, f"layer {name}: relative difference {err:.2e}"


def leftovers(tmp, stem):
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith(stem))


CASES = {
    # name: (make_dump kwargs, fit options)
    "rows": (dict(rows=1001, dim=24, layers=3, layout="group",
                  dtype="float64", classes=3),
             ["--x", "/hidden"]),
    "tokens": (dict(rows=1001, dim=16, layers=2, layout="stacked1",
                    dtype="float64", tokens=3),
               ["--x", "/hidden", "--layer-axis", "1", "--tokens",
                "--mask", "/mask"]),
}


@pytest.fixture(scope="module")
def plain(tmp_path_factory, make_dump):
    """Each case's dump and its plain (no mpirun) fit."""
    tmp = tmp_path_factory.mktemp("mpi")
    out = {}
    for name, (kw, opts) in CASES.items():
        dump = make_dump(tmp / f"{name}.h5", **kw)
        ref = tmp / f"{name}-plain.h5"
        p = subprocess.run([BIN, "fit", dump, *opts, "--z", "/labels", "-o",
                            ref, "--device", "cpu", "--json"],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        rows = [lay["rows"] for lay in json.loads(p.stdout)["layers"]]
        out[name] = (dump, opts, ref, rows)
    return out


@pytest.mark.parametrize("case,k", [("rows", 1), ("rows", 2), ("rows", 3),
                                    ("rows", 4), ("tokens", 3)])
def test_ranks_match_plain_fit(plain, tmp_path, case, k):
    dump, opts, ref, rows = plain[case]
    out = tmp_path / "e.h5"
    p = mpirun(k, "fit", dump, *opts, "--z", "/labels", "-o", out,
               "--device", "cpu", "--json", "--block-rows", "128")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    # one rank is the plain fit (no MPI_Init); more report the ranks
    assert res.get("mpi_ranks", 1) == k
    assert [lay["rows"] for lay in res["layers"]] == rows
    if case == "rows":
        assert rows == [1001] * 3
    assert_same_erasers(out, ref)
    assert leftovers(tmp_path, "e.h5") == ["e.h5"]


def corrupt_dump(path, n=1001, d=16, bad_row=700):
    """A Fletcher32-checksummed dump (chunks of 100 rows) with one byte of
    the chunk holding bad_row flipped: reading those rows fails in HDF5."""
    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as f:
        y = rng.integers(0, 2, n)
        f["labels"] = y
        f.create_dataset("x", data=rng.normal(size=(n, d)) + 0.5 * y[:, None],
                         chunks=(100, d), fletcher32=True)
    with h5py.File(path, "r") as f:
        off = f["x"].id.get_chunk_info_by_coord((bad_row, 0)).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(off + 8)
        b = fh.read(1)
        fh.seek(off + 8)
        fh.write(bytes([b[0] ^ 0xFF]))
    return path


def test_read_error_on_one_rank_fails_the_job(tmp_path):
    dump = corrupt_dump(tmp_path / "bad.h5")  # row 700: rank 1 of 2's half
    out = tmp_path / "out.h5"
    p = mpirun(2, "fit", dump, "--x", "/x", "--z", "/labels", "-o", out,
               "--device", "cpu")
    assert p.returncode != 0
    err = p.stderr
    assert "(rank 1 of 2): error: cannot read examples [500, 1001)" in err, err
    assert "Fletcher32" in err
    assert "(rank 0 of 2): error: cannot read" not in err  # its rows are fine
    assert "rank 1 of 2 failed (its message above); nothing written" in err
    assert leftovers(tmp_path, "out.h5") == []
    # the same rows only on rank 0 (first half) fit fine: the bad chunk is
    # what failed, nothing else
    good = tmp_path / "half.h5"
    with h5py.File(dump, "r") as f, h5py.File(good, "w") as g:
        g["x"] = f["x"][:500]
        g["labels"] = f["labels"][:500]
    p = mpirun(2, "fit", good, "--x", "/x", "--z", "/labels", "-o", out,
               "--device", "cpu", "--quiet")
    assert p.returncode == 0, p.stderr


def test_killed_rank_fails_the_job(plain, tmp_path):
    dump, opts, _, _ = plain["rows"]
    out, pidfile = tmp_path / "out.h5", tmp_path / "rank1.pid"
    env = dict(ENV, CULEACE_TEST_MPI_STALL=f"1:{pidfile}")
    p = mpirun(3, "fit", dump, *opts, "--z", "/labels", "-o", out,
               "--device", "cpu", env=env, popen=True)
    try:
        t0 = time.time()
        while not (pidfile.exists() and pidfile.read_text().endswith("\n")):
            assert p.poll() is None, p.communicate()[1]
            assert time.time() - t0 < 60, "rank 1 never reached its stall"
            time.sleep(0.05)
        os.kill(int(pidfile.read_text()), signal.SIGKILL)  # mid-job
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode != 0
    assert "rank 1" in stderr and "signal 9" in stderr, stderr
    assert "wrote" not in stdout
    assert leftovers(tmp_path, "out.h5") == []


def test_batch_script_environment_is_not_an_mpi_launch(plain, tmp_path):
    """sbatch's own shell has SLURM_NTASKS and SLURM_PROCID but no srun
    step: a plain `culeace fit` there must not initialise MPI."""
    dump, opts, ref, _ = plain["rows"]
    out = tmp_path / "e.h5"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_", "PMI", "SLURM_"))}
    env.update(SLURM_NTASKS="4", SLURM_PROCID="0", SLURM_JOB_ID="1")
    p = subprocess.run([BIN, "fit", dump, *opts, "--z", "/labels", "-o", out,
                        "--device", "cpu", "--json"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "mpi_ranks" not in json.loads(p.stdout)
    assert_same_erasers(out, ref)


def fake_srun(tmp):
    """An `srun` on PATH that drops its --options and runs the command
    under mpirun with 2 ranks (the scripts give srun --opt=value only)."""
    d = tmp / "bin"
    d.mkdir()
    cmd = " ".join([MPIRUN, "--oversubscribe", "-n", "2", "--mca", "btl",
                    f"self,{_shm_btl()}", "--mca", "pml", "ob1"])
    (d / "srun").write_text("#!/bin/bash\nwhile [[ $1 == --* ]]; do shift; "
                            f"done\nexec {cmd} \"$@\"\n")
    (d / "srun").chmod(0o755)
    return dict(ENV, PATH=f"{d}:{os.environ['PATH']}", CULEACE=BIN,
                SLURM_CPUS_PER_TASK="1", FIT_ARGS="--device cpu")


def test_slurm_scripts(plain, tmp_path):
    dump, opts, ref, _ = plain["rows"]
    env = fake_srun(tmp_path)
    out = tmp_path / "fit.h5"
    p = subprocess.run(["bash", ROOT / "scripts/slurm/fit.sbatch"], env=dict(
        env, FILE=str(dump), OUT=str(out)), capture_output=True, text=True,
        timeout=120)
    assert p.returncode == 0, p.stderr
    assert "(2 MPI ranks)" in p.stdout
    assert_same_erasers(out, ref)
    lst = tmp_path / "sweep.txt"
    lst.write_text(f"# file layers labels [out]\n\n{dump} all /labels\n"
                   f"{dump} 0,2 /labels {tmp_path / 'two.h5'}\n")
    for task, expect in (("1", tmp_path / "rows-labels.erasers.h5"),
                         ("2", tmp_path / "two.h5")):
        p = subprocess.run(["bash", ROOT / "scripts/slurm/sweep-array.sbatch"],
                           env=dict(env, LIST=str(lst), OUTDIR=str(tmp_path),
                                    SLURM_ARRAY_TASK_ID=task),
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        got, want = projections(expect), projections(ref)
        assert sorted(got) == (["0", "1", "2"] if task == "1" else ["0", "2"])
        for name in got:
            for x, y in zip(got[name], want[name]):
                assert np.abs(x - y).max() <= 1e-10 * np.abs(y).max()
    p = subprocess.run(["bash", ROOT / "scripts/slurm/sweep-array.sbatch"],
                       env=dict(env, LIST=str(lst), SLURM_ARRAY_TASK_ID="3"),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "has no line 3" in p.stderr


def test_quadratic_ranks_match_plain_fit(plain, tmp_path):
    """Quadratic LEACE sharded: each class's moments merged per class."""
    dump, opts, _, _ = plain["rows"]
    outs = {}
    for k in (1, 3):
        out = tmp_path / f"q{k}.h5"
        p = mpirun(k, "fit", dump, *opts, "--z", "/labels", "-o", out,
                   "--method", "quadratic", "--device", "cpu",
                   "--block-rows", "100")
        assert p.returncode == 0, p.stderr
        outs[k] = out
    with h5py.File(outs[1], "r") as a, h5py.File(outs[3], "r") as b:
        assert sorted(a["erasers"]) == sorted(b["erasers"])
        for g in a["erasers"]:
            # the moments agree to rounding; the maps come out of a
            # fixed-point iteration (3 classes) that amplifies it
            for name, tol in (("class_means", 1e-10), ("ot_maps", 1e-7),
                              ("target_mean", 1e-10)):
                x, y = b["erasers"][g][name][...], a["erasers"][g][name][...]
                err = np.abs(x - y).max() / np.abs(y).max()
                assert err <= tol, f"{g}/{name}: relative difference {err:.2e}"


def probe_run(k, dump, *args):
    """`culeace probe --json` on k ranks (k = 0: without mpirun)."""
    base = ["probe", dump, "--x", "/hidden", "--y", "/labels", "--device",
            "cpu", "--json", "--control", "--erase", *args]
    if k == 0:
        p = subprocess.run([BIN, *map(str, base)], capture_output=True,
                           text=True, env=ENV, timeout=300)
    else:
        p = mpirun(k, *base)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_probe_layers_over_ranks_match_plain(plain, tmp_path, k):
    """Layers split over k ranks (4 ranks for 3 layers: one idle): the same
    folds, control labels and accuracies as the plain run, fold by fold;
    losses and the saved probes to float32 L-BFGS rounding; outputs written
    once, by rank 0. (mpirun binds ranks to cores, so BLAS and OpenMP
    sum in another order even on one rank; the probes stop at the
    gradient tolerance 1e-4, so their coefficients agree to ~1e-5 of
    their size, not to rounding.)"""
    dump = plain["rows"][0]
    ref = probe_run(0, dump, "--save", tmp_path / "ref.h5")
    got = probe_run(k, dump, "--save", tmp_path / "p.h5", "--csv",
                    tmp_path / "p.csv", "--split", "layers")
    assert got.get("mpi_ranks", 1) == k
    assert got.get("mpi_split", "layers") == "layers"
    assert [L["name"] for L in got["layers"]] == [L["name"] for L in ref["layers"]]
    for a, b in zip(got["layers"], ref["layers"]):
        assert a["rows"] == b["rows"]
        for key in ("accuracy", "balanced_accuracy", "majority",
                    "control_accuracy", "erased_accuracy"):
            assert a[key]["folds"] == b[key]["folds"], (a["name"], key)
        assert a["erase_fit_rows"] == b["erase_fit_rows"]
        assert np.allclose(a["log_loss"]["folds"], b["log_loss"]["folds"],
                           rtol=1e-4)
    with h5py.File(tmp_path / "p.h5") as f, h5py.File(tmp_path / "ref.h5") as g:
        assert sorted(f["probes"]) == sorted(g["probes"])
        for name in g["probes"]:
            x, y = f["probes"][name], g["probes"][name]
            assert x.attrs["layer_name"] == y.attrs["layer_name"]
            for ds in ("coef", "intercept", "mean", "scale"):
                scale = np.abs(y[ds][...]).max()
                assert np.abs(x[ds][...] - y[ds][...]).max() <= 1e-3 * scale
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 4
    assert leftovers(tmp_path, "p.") == ["p.csv", "p.h5"]


def assert_same_probes(a, b, tol):
    """The probe files a and b hold the same layers, with coefficients,
    intercepts and standardisation equal to tol of each one's size."""
    with h5py.File(a) as f, h5py.File(b) as g:
        assert sorted(f["probes"]) == sorted(g["probes"])
        for name in g["probes"]:
            x, y = f["probes"][name], g["probes"][name]
            assert x.attrs["layer_name"] == y.attrs["layer_name"]
            for ds in ("coef", "intercept", "mean", "scale"):
                scale = max(np.abs(y[ds][...]).max(), 1e-12)
                err = np.abs(x[ds][...] - y[ds][...]).max() / scale
                assert err <= tol, f"{name}/{ds}: {err:.2e}"


def assert_same_metrics(got, ref, exact=("accuracy", "balanced_accuracy",
                                         "majority", "control_accuracy",
                                         "erased_accuracy")):
    assert [L["name"] for L in got["layers"]] == [L["name"] for L in ref["layers"]]
    for a, b in zip(got["layers"], ref["layers"]):
        assert a["rows"] == b["rows"]
        for key in exact:
            if b.get(key) is not None:
                assert a[key]["folds"] == b[key]["folds"], (a["name"], key)
        # the rows of every rank: each fold's eraser saw all its training rows
        assert a["erase_fit_rows"] == b["erase_fit_rows"]
        assert np.allclose(a["log_loss"]["folds"], b["log_loss"]["folds"],
                           rtol=1e-4)
        if b.get("auroc") is not None:
            assert np.allclose(a["auroc"]["folds"], b["auroc"]["folds"],
                               atol=1e-3)
        if b.get("mdl"):
            for key in ("online_bits", "uniform_bits"):
                assert a["mdl"][key] == pytest.approx(b["mdl"][key], rel=1e-4)
            assert a["mdl"]["blocks"] == b["mdl"]["blocks"]


@pytest.fixture(scope="module")
def probe_refs(plain, tmp_path_factory, make_dump):
    """Dumps for the row split and their plain probe runs (JSON, --save):
    3 classes in float64 (plain's "rows"), and 2 classes in float16 with
    40 prompt groups."""
    tmp = tmp_path_factory.mktemp("probe-rows")
    binary = make_dump(tmp / "binary.h5", rows=1001, dim=16, layers=2,
                       layout="group", dtype="float16", groups=40, seed=5)
    out = {}
    for name, dump, extra in (("classes3", plain["rows"][0], ["--mdl"]),
                              ("binary", binary,
                               ["--groups", "/groups", "--balanced"])):
        ref = tmp / f"{name}-ref.h5"
        out[name] = (dump, extra, ref, probe_run(0, dump, *extra, "--save", ref))
    return out


@pytest.mark.parametrize("case,k", [("classes3", 1), ("classes3", 2),
                                    ("classes3", 3), ("classes3", 4),
                                    ("binary", 3)])
def test_probe_rows_over_ranks_match_plain(probe_refs, tmp_path, case, k):
    """--split rows on k ranks (1001 rows: no k divides them): every rank
    fits every probe of a layer on its rows, the sums of each L-BFGS step
    added over the ranks. The folds' accuracies, majority, control and
    erased accuracies are the plain run's exactly; log-loss, AUROC and MDL
    codelengths and the saved probes agree to the probes' tolerance (the
    sums over rows are added in another order)."""
    dump, extra, ref_h5, ref = probe_refs[case]
    got = probe_run(k, dump, *extra, "--save", tmp_path / "p.h5", "--csv",
                    tmp_path / "p.csv", "--split", "rows")
    if k > 1:
        assert got["mpi_ranks"] == k and got["mpi_split"] == "rows"
    assert_same_metrics(got, ref)
    assert_same_probes(tmp_path / "p.h5", ref_h5, 1e-3)
    layers = len(ref["layers"])
    assert len((tmp_path / "p.csv").read_text().splitlines()) == layers + 1
    assert leftovers(tmp_path, "p.") == ["p.csv", "p.h5"]


def test_probe_rows_erase_moments_both_paths(tmp_path, make_dump):
    """--split rows with --erase: the folds' moments merged over the ranks
    (default), and each fold's training rows summed and merged (when the
    folds' states would exceed a quarter of --max-memory: 300K here), give
    the plain run's erased accuracies, and every fold's eraser saw the
    fold's training rows of all ranks."""
    dump = make_dump(tmp_path / "m.h5", rows=400, dim=64, layers=2,
                     classes=3, rank=2, signal=3.0, seed=31)
    ref = probe_run(0, dump)
    for extra in ([], ["--max-memory", "300K"]):
        got = probe_run(2, dump, "--split", "rows", *extra)
        for a, b in zip(got["layers"], ref["layers"]):
            train = [b["rows"] - size for size in ref["folds"]["sizes"]]
            assert a["erase_fit_rows"] == b["erase_fit_rows"] == train
            assert a["erased_accuracy"]["folds"] == \
                b["erased_accuracy"]["folds"], (extra, a["name"])


@pytest.mark.parametrize("split,k", [("rows", 3), ("layers", 2)])
def test_probe_batches_of_layers_over_ranks(probe_refs, tmp_path, split, k):
    """--batch-layers under MPI: with rows split, the ranks fit a batch of
    layers together (one sum over the ranks per L-BFGS step for all of
    them); with layers split, each rank batches its own layers. Both give
    exactly the report and probes of one layer at a time in the same
    split (2 ranks for 3 layers split: rank 0 batches two)."""
    dump, extra, _, _ = probe_refs["classes3"]
    one = probe_run(k, dump, *extra, "--save", tmp_path / "one.h5",
                    "--split", split, "--batch-layers", "1")
    got = probe_run(k, dump, *extra, "--save", tmp_path / "all.h5",
                    "--split", split, "--batch-layers", "3")
    assert got["mpi_split"] == split
    assert got.pop("saved") == str(tmp_path / "all.h5")
    assert got == {k: v for k, v in one.items() if k != "saved"}
    assert_same_probes(tmp_path / "all.h5", tmp_path / "one.h5", 0)


@pytest.mark.parametrize("kind,tol", [("logistic", 1e-4),
                                      ("diffmeans", 1e-9)])
def test_probe_rows_tight_tolerance_is_the_plain_fit(plain, tmp_path, kind,
                                                     tol):
    """At a tight tolerance (the float64 sums) the row split's probes are
    the plain run's: the split changes the order of the sums, not the
    problem. Logistic probes stop where float64 makes no more progress
    (about 50 iterations here, for any --tol below 1e-8), which leaves
    their coefficients ~3e-5 of their size apart between summation
    orders; diffmeans (class means and a Newton step size) to rounding."""
    dump = plain["rows"][0]
    args = ["--probe", kind, "--tol", "1e-10", "--max-iter", "3000"]
    ref = probe_run(0, dump, *args, "--save", tmp_path / "ref.h5")
    got = probe_run(3, dump, *args, "--save", tmp_path / "p.h5", "--split",
                    "rows")
    assert_same_metrics(got, ref)
    assert_same_probes(tmp_path / "p.h5", tmp_path / "ref.h5", tol)


def test_probe_rows_rank_without_rows(tmp_path):
    """2 examples of 60 token rows on 3 ranks: rank 0 (which gathers the
    predictions) holds no rows, rank 1 and 2 an example each; the results
    are the plain run's."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (2, 60))
    x = rng.normal(size=(2, 60, 8)).astype("f4")
    x[..., 0] += 2 * y
    dump = tmp_path / "two.h5"
    with h5py.File(dump, "w") as f:
        f["x"], f["y"] = x, y
    args = ["probe", dump, "--x", "/x", "--tokens", "--y", "/y", "--folds",
            "2", "--device", "cpu", "--json", "--erase", "--mdl"]
    p = subprocess.run([BIN, *map(str, args), "--save", tmp_path / "r.h5"],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert p.returncode == 0, p.stderr
    ref = json.loads(p.stdout)
    p = mpirun(3, *args, "--save", tmp_path / "p.h5", "--split", "rows")
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert got["mpi_split"] == "rows"
    assert_same_metrics(got, ref)
    assert_same_probes(tmp_path / "p.h5", tmp_path / "r.h5", 1e-3)


@pytest.mark.parametrize("ranks,args,split", [
    (2, [], "rows"),                # 3 layers on 2 ranks: one would idle
    (3, [], "layers"),              # one layer each
    (2, ["--split", "layers"], "layers"),
    (3, ["--split", "rows"], "rows"),
    (3, ["--max-memory", "100K"], "rows"),  # a whole layer does not fit
])
def test_probe_split_auto(plain, ranks, args, split):
    """--split auto splits rows when the layer split would leave a rank
    idle for more than a tenth of the time or a whole layer does not fit
    --max-memory; the table names the split."""
    dump = plain["rows"][0]
    base = ["probe", dump, "--x", "/hidden", "--y", "/labels", "--device",
            "cpu", "--max-iter", "5", *args]
    p = mpirun(ranks, *base, "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["mpi_split"] == split
    p = mpirun(ranks, *base)
    assert p.returncode == 0, p.stderr
    assert f"{split} split over {ranks} MPI ranks" in p.stdout


def test_probe_rows_refusals(plain, tmp_path):
    """--erase-method inlp/rlace fit on a whole layer: --split rows refuses
    them before anything is written (auto picks the layers); a bad --split
    is a usage error."""
    dump = plain["rows"][0]
    base = ["probe", dump, "--x", "/hidden", "--y", "/labels", "--device",
            "cpu", "--csv", tmp_path / "o.csv"]
    p = mpirun(2, *base, "--erase-method", "inlp", "--split", "rows")
    assert p.returncode != 0
    assert "--split rows: --erase-method inlp fits on a whole layer" in p.stderr
    assert leftovers(tmp_path, "o.") == []
    p = subprocess.run([BIN, *map(str, base), "--split", "columns"],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert "--split must be auto, layers or rows (got 'columns')" in p.stderr


def fletcher_dump(path, bad_layer="1", bad_row=300):
    """600 rows, layers "0" and "1" (Fletcher32 chunks of 100 rows), with a
    flipped byte in bad_layer's chunk holding bad_row."""
    rng = np.random.default_rng(4)
    with h5py.File(path, "w") as f:
        y = rng.integers(0, 2, 600)
        f["labels"] = y
        for name in ("0", "1"):
            f.create_dataset(f"hidden/{name}", chunks=(100, 8), fletcher32=True,
                             data=rng.normal(size=(600, 8)) + y[:, None])
    with h5py.File(path, "r") as f:
        off = f[f"hidden/{bad_layer}"].id.get_chunk_info_by_coord(
            (bad_row, 0)).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(off + 8)
        b = fh.read(1)
        fh.seek(off + 8)
        fh.write(bytes([b[0] ^ 0xFF]))
    return path


def test_probe_rows_read_error_on_one_rank_fails_the_job(tmp_path):
    """--split rows: layer 1's row 300 (rank 1 of 2's half) is unreadable.
    Rank 1 fails after layer 0, rank 0 is told in the layer's first
    collective; every rank exits non-zero and no output is left."""
    dump = fletcher_dump(tmp_path / "bad.h5")
    outs = ["--csv", tmp_path / "o.csv", "--save", tmp_path / "o.h5",
            "--plot", tmp_path / "o.svg"]
    p = mpirun(2, "probe", dump, "--x", "/hidden", "--y", "/labels",
               "--device", "cpu", "--split", "rows", "--erase", *outs)
    assert p.returncode != 0
    assert "(rank 1 of 2): error:" in p.stderr and "Fletcher32" in p.stderr
    assert "(rank 0 of 2): error: cannot read" not in p.stderr
    assert "rank 1 of 2 failed (its message above); nothing written" in p.stderr
    assert leftovers(tmp_path, "o.") == []


def test_probe_rows_killed_rank_fails_the_job(plain, tmp_path):
    """--split rows: rank 1 of 3 killed (SIGKILL) after the first layer's
    rows: the launcher ends the job, which exits non-zero; no output, not
    even a temporary --save file, is left."""
    dump = plain["rows"][0]
    stall_and_kill(["probe", dump, "--x", "/hidden", "--y", "/labels",
                    "--device", "cpu", "--split", "rows", "--save",
                    tmp_path / "o.h5", "--csv", tmp_path / "o.csv"],
                   1, tmp_path / "rank1.pid", 3)
    assert leftovers(tmp_path, "o.") == []


def test_probe_read_error_on_one_rank_fails_the_job(tmp_path):
    """Layer 1's rows are unreadable (a bad Fletcher32 chunk): the rank that
    owns it (layers split) fails, every rank exits non-zero, no output is
    left."""
    dump = fletcher_dump(tmp_path / "bad.h5")
    outs = ["--csv", tmp_path / "o.csv", "--save", tmp_path / "o.h5",
            "--plot", tmp_path / "o.svg"]
    p = mpirun(2, "probe", dump, "--x", "/hidden", "--y", "/labels",
               "--device", "cpu", *outs)
    assert p.returncode != 0
    assert "(rank 1 of 2): error:" in p.stderr and "Fletcher32" in p.stderr
    assert "rank 1 of 2 failed (its message above); nothing written" in p.stderr
    assert leftovers(tmp_path, "o.") == []
    # layer 0 alone probes fine (auto splits its rows over both ranks)
    p = mpirun(2, "probe", dump, "--x", "/hidden", "--y", "/labels",
               "--device", "cpu", "--layers", "0", *outs)
    assert p.returncode == 0, p.stderr


def test_score_refused_under_launcher(plain, tmp_path):
    """score is not sharded: under mpirun with 2 ranks it stops before
    writing anything rather than race on the same output."""
    dump = plain["rows"][0]
    out = tmp_path / "out.h5"
    copy = tmp_path / "copy.h5"
    copy.write_bytes(Path(dump).read_bytes())
    p = mpirun(2, "score", tmp_path / "any.h5", copy, "--x", "/hidden", "-o",
               out)
    assert p.returncode != 0
    assert "score is not sharded under MPI" in p.stderr, p.stderr
    assert leftovers(tmp_path, "out.h5") == []
    assert copy.read_bytes() == Path(dump).read_bytes()


def read_layers(path):
    with h5py.File(path, "r") as f:
        out = {}
        f.visititems(lambda name, obj: out.__setitem__(name, obj[...])
                     if isinstance(obj, h5py.Dataset) else None)
        return out


@pytest.mark.parametrize("case,k", [("rows", 2), ("rows", 3), ("rows", 4),
                                    ("tokens", 3)])
def test_apply_over_ranks_matches_plain(plain, tmp_path, case, k):
    """apply -o with examples split over k ranks and rank-ordered writes:
    the output equals the plain apply's, dataset by dataset, bit for bit."""
    dump, opts, ref_erasers, _ = plain[case]
    layer_opts = list(opts)
    ref = tmp_path / "ref.h5"
    p = subprocess.run([BIN, "apply", ref_erasers, dump, *layer_opts, "-o",
                        ref, "--device", "cpu", "--json"], capture_output=True,
                       text=True, env=ENV)
    assert p.returncode == 0, p.stderr
    ref_res = json.loads(p.stdout)
    out = tmp_path / "out.h5"
    p = mpirun(k, "apply", ref_erasers, dump, *layer_opts, "-o", out,
               "--device", "cpu", "--block-rows", "90", "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)  # one report, from rank 0
    assert res["mpi_ranks"] == k
    a, b = read_layers(out), read_layers(ref)
    assert sorted(a) == sorted(b)
    for name in b:
        assert np.array_equal(a[name], b[name]), name
    assert res["layers"] == ref_res["layers"]  # counts summed over ranks
    assert leftovers(tmp_path, "out.h5") == ["out.h5"]


def test_apply_quadratic_over_ranks(plain, tmp_path):
    """Labelled erasers (quadratic) under MPI: each rank maps its rows
    with their labels."""
    dump, opts, _, _ = plain["rows"]
    er = tmp_path / "q.h5"
    p = subprocess.run([BIN, "fit", dump, *opts, "--z", "/labels", "--method",
                        "quadratic", "-o", er, "--device", "cpu"],
                       capture_output=True, text=True, env=ENV)
    assert p.returncode == 0, p.stderr
    ref, out = tmp_path / "ref.h5", tmp_path / "out.h5"
    p = subprocess.run([BIN, "apply", er, dump, *opts, "--z", "/labels", "-o",
                        ref, "--device", "cpu"], capture_output=True,
                       text=True, env=ENV)
    assert p.returncode == 0, p.stderr
    p = mpirun(3, "apply", er, dump, *opts, "--z", "/labels", "-o", out,
               "--device", "cpu", "--block-rows", "100")
    assert p.returncode == 0, p.stderr
    a, b = read_layers(out), read_layers(ref)
    for name in b:
        assert np.array_equal(a[name], b[name]), name


def test_apply_bad_row_on_one_rank_fails_the_job(plain, tmp_path):
    """A NaN in rank 1's examples: every rank exits non-zero with rank 1's
    message naming the row, and neither OUT nor the temporary copy is
    left."""
    dump, opts, ref_erasers, _ = plain["rows"]
    bad = tmp_path / "bad.h5"
    bad.write_bytes(Path(dump).read_bytes())
    with h5py.File(bad, "r+") as f:
        x = f["hidden/1"][...]
        x[800, 3] = np.nan
        f["hidden/1"][...] = x
    out = tmp_path / "out.h5"
    p = mpirun(2, "apply", ref_erasers, bad, *opts, "-o", out, "--device",
               "cpu", "--block-rows", "100")
    assert p.returncode != 0
    assert "(rank 1 of 2): error:" in p.stderr and "row 800" in p.stderr, p.stderr
    assert "rank 1 of 2 failed (its message above); nothing written" in p.stderr
    assert leftovers(tmp_path, "out.h5") == []


# ---- apply --in-place -------------------------------------------------------

IN_PLACE = {
    # name: (make_dump kwargs, layer options, --block-rows)
    "f32": (dict(rows=1001, dim=24, layers=3, layout="group",
                 dtype="float32", classes=3), ["--x", "/hidden"], 100),
    # chunks of 64 rows: blocks of different ranks share chunks
    "f16": (dict(rows=1001, dim=24, layers=2, layout="group",
                 dtype="float16", classes=2, chunks=64), ["--x", "/hidden"],
            100),
    "tokens": (dict(rows=1001, dim=16, layers=2, layout="stacked1",
                    dtype="float32", tokens=3),
               ["--x", "/hidden", "--layer-axis", "1", "--tokens", "--mask",
                "/mask"], 90),
}


@pytest.fixture(scope="module")
def in_place(tmp_path_factory, make_dump):
    """Each case's dump, erasers, and the file a plain in-place apply
    leaves (the reference every MPI run must reproduce byte for byte)."""
    tmp = tmp_path_factory.mktemp("inplace")
    out = {}
    for name, (kw, opts, block) in IN_PLACE.items():
        dump = make_dump(tmp / f"{name}.h5", **kw)
        er = tmp / f"{name}-erasers.h5"
        p = subprocess.run([BIN, "fit", dump, *opts, "--z", "/labels", "-o",
                            er, "--device", "cpu", "--quiet"],
                           capture_output=True, text=True, env=ENV)
        assert p.returncode == 0, p.stderr
        ref = tmp / f"{name}-ref.h5"
        shutil.copyfile(dump, ref)
        args = ["apply", er, ref, *opts, "--in-place", "--device", "cpu",
                "--block-rows", str(block)]
        p = subprocess.run([BIN, *map(str, args), "--json"],
                           capture_output=True, text=True, env=ENV)
        assert p.returncode == 0, p.stderr
        out[name] = dict(dump=dump, erasers=er, ref=ref, block=block,
                         opts=opts, result=json.loads(p.stdout))
    return out


def in_place_args(case, path, *more):
    return ["apply", case["erasers"], path, *case["opts"], "--in-place",
            "--device", "cpu", "--block-rows", str(case["block"]), *more]


def journal_files(path):
    return [p for p in (Path(f"{path}.culeace-apply"),
                        Path(f"{path}.culeace-journal")) if p.exists()]


@pytest.mark.parametrize("name,k", [("f32", 1), ("f32", 2), ("f32", 3),
                                    ("f32", 4), ("f16", 1), ("f16", 2),
                                    ("f16", 3), ("f16", 4), ("tokens", 3)])
def test_apply_in_place_over_ranks_matches_plain(in_place, tmp_path, name,
                                                 k):
    """apply --in-place with the blocks dealt over k ranks (1001 examples:
    no k divides them, and the last round has fewer blocks than ranks):
    the file is byte for byte the one a plain in-place apply leaves, the
    counts are summed over the ranks, the report names the ranks and no
    checkpoint or journal is left."""
    case = in_place[name]
    ip = tmp_path / "ip.h5"
    shutil.copyfile(case["dump"], ip)
    p = mpirun(k, *in_place_args(case, ip, "--json"))
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)  # one report, from rank 0
    assert res.get("mpi_ranks", 1) == k  # one rank is the plain apply
    assert res["in_place"] is True
    assert res["layers"] == case["result"]["layers"]
    assert ip.read_bytes() == case["ref"].read_bytes()
    assert journal_files(ip) == []
    # the table names the ranks too; a finished file is not erased again
    p = mpirun(k, *in_place_args(case, ip))
    assert p.returncode == 0, p.stderr
    assert "already erased in place by this same command" in p.stderr
    assert f"edited in place: {ip}" in p.stdout
    assert (f"({k} MPI ranks)" in p.stdout) == (k > 1), p.stdout
    assert ip.read_bytes() == case["ref"].read_bytes()


def stall_and_kill(args, rank, pidfile, k):
    """Runs `mpirun -n k culeace ARGS` with rank `rank` stalling where the
    command's CULEACE_TEST_MPI_STALL hook is (apply --in-place: after its
    first write) and SIGKILLs that rank there; the job must fail."""
    env = dict(ENV, CULEACE_TEST_MPI_STALL=f"{rank}:{pidfile}")
    p = mpirun(k, *args, env=env, popen=True)
    try:
        t0 = time.time()
        while not (pidfile.exists() and pidfile.read_text().endswith("\n")):
            assert p.poll() is None, p.communicate()[1]
            assert time.time() - t0 < 60, f"rank {rank} never stalled"
            time.sleep(0.05)
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode != 0
    assert f"rank {rank}" in stderr and "signal 9" in stderr, stderr
    return stdout, stderr


def examples(path, layer):
    with h5py.File(path, "r") as f:
        return f["hidden"][layer][...]


@pytest.mark.parametrize("name,stalled,rerun", [("f32", 1, 2), ("f16", 1, 0),
                                                ("f16", 2, 4), ("f32", 0, 1)])
def test_apply_in_place_killed_rank_resumes(in_place, tmp_path, name,
                                           stalled, rerun):
    """Rank R of 3 SIGKILLed in its first write turn, after its block is
    written and before the checkpoint moves past it (the test hook): the
    job fails, the checkpoint names that block and the journal holds its
    original rows. The same command on another number of ranks (0: without
    mpirun) puts them back, finishes, and leaves the one-shot file."""
    case = in_place[name]
    ip = tmp_path / "ip.h5"
    shutil.copyfile(case["dump"], ip)
    args = in_place_args(case, ip)
    stall_and_kill(args, stalled, tmp_path / "stalled.pid", 3)
    # rank R's first block: examples [R b, (R + 1) b) of layer 0
    b = case["block"]
    lo, hi = stalled * b, (stalled + 1) * b
    ckpt = Path(f"{ip}.culeace-apply").read_text().splitlines()
    assert ckpt[-1] == f"next 0 {lo}", ckpt
    assert Path(f"{ip}.culeace-journal").exists()
    now, orig, ref = (examples(p, "0") for p in (ip, case["dump"], case["ref"]))
    assert np.array_equal(now[:hi], ref[:hi])  # ranks 0..R wrote
    assert np.array_equal(now[hi:], orig[hi:])  # the others had not
    # erasing rank R's rows a second time does not give the one-shot
    # result, so the rerun must restore them from the journal
    twice = tmp_path / "twice.h5"
    shutil.copyfile(case["ref"], twice)
    with h5py.File(twice, "r+") as f:  # no mark: a plain file to erase
        for ds in f["hidden"].values():
            del ds.attrs["culeace_applied"]
    subprocess.run([BIN, *map(str, in_place_args(case, twice))], check=True,
                   capture_output=True, env=ENV)
    assert not np.array_equal(examples(twice, "0")[lo:hi], ref[lo:hi])
    if rerun:
        p = mpirun(rerun, *args)
    else:
        p = subprocess.run([BIN, *map(str, args)], capture_output=True,
                           text=True, env=ENV)
    assert p.returncode == 0, p.stderr
    assert "resuming an interrupted in-place apply at layer 0, example " \
        f"{lo}" in p.stderr, p.stderr
    assert ip.read_bytes() == case["ref"].read_bytes()
    assert journal_files(ip) == []


def fnv1a(data):
    h = 1469598103934665603
    for byte in data:
        h = ((h ^ byte) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def test_apply_in_place_resumes_a_first_format_journal(in_place, tmp_path):
    """A journal in the first format (magic "UCULJRNL", byte-wise FNV-1a
    checksum), as an older culeace leaves it when killed, is still restored
    by the rerun; the same journal with one byte of its block changed fails
    the checksum and is not restored."""
    import struct
    case = in_place["f16"]
    b = case["block"]
    for corrupt in (False, True):
        ip = tmp_path / f"ip{int(corrupt)}.h5"
        shutil.copyfile(case["dump"], ip)
        args = in_place_args(case, ip)
        stall_and_kill(args, 1, tmp_path / f"s{int(corrupt)}.pid", 2)
        jpath = Path(f"{ip}.culeace-journal")
        raw = jpath.read_bytes()
        magic, item, ex, n, _ = struct.unpack("<QqqQQ", raw[:40])
        assert magic == 0x324C4E524A4C5543  # "CULJRNL2": the current format
        assert (item, ex, n) == (0, b, len(raw) - 40)
        body = bytearray(raw[40:])
        checksum = fnv1a(body)
        if corrupt:
            body[len(body) // 2] ^= 0x40
        jpath.write_bytes(struct.pack("<QqqQQ", 0x4C4E524A4C554355, item, ex,
                                      n, checksum) + bytes(body))
        p = subprocess.run([BIN, *map(str, args)], capture_output=True,
                           text=True, env=ENV)
        assert p.returncode == 0, p.stderr
        assert f"resuming an interrupted in-place apply at layer 0, example " \
            f"{b}" in p.stderr, p.stderr
        same = ip.read_bytes() == case["ref"].read_bytes()
        assert same != corrupt  # restored, or (checksum failed) erased twice
        assert journal_files(ip) == []


def test_apply_in_place_journal_with_a_longer_tail(in_place, tmp_path):
    """The journal is overwritten from its start block after block, not
    truncated, so a block's record can be followed by the tail of a longer
    earlier one: its header's length decides, and the rerun restores the
    block from it."""
    case = in_place["f16"]
    b = case["block"]
    ip = tmp_path / "ip.h5"
    shutil.copyfile(case["dump"], ip)
    args = in_place_args(case, ip)
    stall_and_kill(args, 1, tmp_path / "s.pid", 2)
    jpath = Path(f"{ip}.culeace-journal")
    jpath.write_bytes(jpath.read_bytes() + bytes(range(256)) * 64)
    p = subprocess.run([BIN, *map(str, args)], capture_output=True,
                       text=True, env=ENV)
    assert p.returncode == 0, p.stderr
    assert f"resuming an interrupted in-place apply at layer 0, example " \
        f"{b}" in p.stderr, p.stderr
    assert ip.read_bytes() == case["ref"].read_bytes()
    assert journal_files(ip) == []


@pytest.mark.parametrize("bad_example,written", [(150, 0), (750, 600)])
def test_apply_in_place_bad_row_on_one_rank(in_place, tmp_path, bad_example,
                                            written):
    """A NaN in rank 1's rows (2 ranks, blocks of 100 examples): the job
    fails with rank 1's message naming the row, every rank exits non-zero,
    and the file is untouched (the NaN in rank 1's first block: nothing was
    written) or edited exactly up to the checkpoint, where a rerun resumes
    (here with --drop-nonfinite, on 3 ranks) and ends with the file a
    plain one-shot apply with --drop-nonfinite leaves."""
    case = in_place["f32"]
    bad = tmp_path / "bad.h5"
    shutil.copyfile(case["dump"], bad)
    with h5py.File(bad, "r+") as f:
        f["hidden/0"][bad_example, 3] = np.nan
    orig = examples(bad, "0")
    before = bad.read_bytes()
    ip = tmp_path / "ip.h5"
    shutil.copyfile(bad, ip)
    p = mpirun(2, *in_place_args(case, ip))
    assert p.returncode != 0
    assert f"(rank 1 of 2): error: {ip}: /hidden/0: row {bad_example} has " \
        "a non-finite value" in p.stderr, p.stderr
    assert "rank 1 of 2 failed (its message above)" in p.stderr
    ckpt = Path(f"{ip}.culeace-apply").read_text().splitlines()
    assert ckpt[-1] == f"next 0 {written}", ckpt
    now, ref = examples(ip, "0"), examples(case["ref"], "0")
    assert np.array_equal(now[:written], ref[:written])
    assert np.array_equal(now[written:], orig[written:], equal_nan=True)
    if written == 0:
        assert ip.read_bytes() == before  # untouched
    one_shot = tmp_path / "one.h5"
    shutil.copyfile(bad, one_shot)
    p = subprocess.run([BIN, *map(str, in_place_args(case, one_shot)),
                        "--drop-nonfinite"], capture_output=True, text=True,
                       env=ENV)
    assert p.returncode == 0, p.stderr
    p = mpirun(3, *in_place_args(case, ip, "--drop-nonfinite", "--json"))
    assert p.returncode == 0, p.stderr
    assert ip.read_bytes() == one_shot.read_bytes()
    assert journal_files(ip) == []


def rank_pids(mpirun_pid):
    """The culeace processes mpirun started (its children on this node)."""
    pids = []
    for task in Path(f"/proc/{mpirun_pid}/task").glob("*"):
        try:
            pids += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return pids


def test_apply_in_place_killed_at_random_resumes(make_dump, tmp_path):
    """Chains of runs on 2-4 ranks, each SIGKILLing one random rank at a
    random time (mpirun then ends the others), each followed by the same
    command on another number of ranks (sometimes none): every chain ends
    with the file of a one-shot plain in-place apply, byte for byte."""
    dump = make_dump(tmp_path / "d.h5", rows=20000, dim=64, layers=2,
                     layout="group", dtype="float16")
    er = tmp_path / "e.h5"
    subprocess.run([BIN, "fit", dump, "--x", "/hidden", "--z", "/labels",
                    "-o", er, "--quiet"], check=True, capture_output=True,
                   env=ENV)
    ref, ip = tmp_path / "ref.h5", tmp_path / "ip.h5"
    args = ["apply", er, ip, "--x", "/hidden", "--in-place", "--quiet",
            "--device", "cpu", "--block-rows", "200"]
    shutil.copyfile(dump, ref)
    subprocess.run([BIN, *map(str, args[:2]), ref, *map(str, args[3:])],
                   check=True, capture_output=True, env=ENV)
    shutil.copyfile(dump, ip)
    t0 = time.perf_counter()
    assert mpirun(3, *args).returncode == 0
    full = time.perf_counter() - t0
    assert ip.read_bytes() == ref.read_bytes()
    rng = random.Random(11)
    kills = 0
    shutil.copyfile(dump, ip)
    for _ in range(40):
        k = rng.choice([0, 2, 3, 4])
        if k == 0:  # a plain rerun finishes the chain
            subprocess.run([BIN, *map(str, args)], check=True,
                           capture_output=True, env=ENV)
        else:
            p = mpirun(k, *args, popen=True)
            time.sleep(rng.uniform(0.1, 0.7) * full)
            pids = rank_pids(p.pid)
            if p.poll() is None and pids:
                os.kill(rng.choice(pids), signal.SIGKILL)
            _, err = p.communicate(timeout=60)
            if p.returncode != 0:
                assert "signal 9" in err, err
                kills += 1
                with h5py.File(ip, "r"):  # still a readable HDF5 file
                    pass
                continue
        assert ip.read_bytes() == ref.read_bytes()  # the chain is done
        assert journal_files(ip) == []
        if kills >= 4:
            break
        shutil.copyfile(dump, ip)  # a new chain
    else:  # the last chain, finished without mpirun
        subprocess.run([BIN, *map(str, args)], check=True,
                       capture_output=True, env=ENV)
        assert ip.read_bytes() == ref.read_bytes()
    assert kills >= 4, f"only {kills} kills landed (full run {full:.2f} s)"
