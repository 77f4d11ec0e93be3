"""test_readonly.py — outputs into a directory that cannot be written: each
command stops with a non-zero exit and a message naming the path and the
system's reason, leaves nothing in the directory, and leaves every input
byte for byte as it was; `probe` says so before it probes anything.

The directory is a read-only tmpfs when the tests run as root (which
ignores permission bits), with the in-place case's file bind-mounted
writable from elsewhere so that only the journal's directory refuses; as
another user it is a directory with mode 0555."""

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("CULEACE_BIN", str(ROOT / "build" / "culeace"))
SAMPLE = ROOT / "data" / "sample.h5"

pytestmark = pytest.mark.skipif(not Path(BIN).exists(),
                                reason=f"culeace binary not built ({BIN})")


def run(*args):
    return subprocess.run([BIN, *map(str, args), "--quiet"],
                          capture_output=True, text=True, timeout=300)


def sha(p):
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def _mount(*args):
    return subprocess.run(["mount", *map(str, args)], capture_output=True,
                          text=True).returncode == 0


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """work: inputs (sample copy, erasers, probes); ro: the read-only
    directory, holding `inplace.h5` (writable itself) for the in-place
    case; reason: the errno text the commands should report."""
    work = tmp_path_factory.mktemp("rw")
    shutil.copy(SAMPLE, work / "sample.h5")
    shutil.copy(SAMPLE, work / "inplace.h5")
    shutil.copy(SAMPLE, work / "nan.h5")  # fails at its first rows
    with h5py.File(work / "nan.h5", "r+") as f:
        ds = f["hidden"][sorted(f["hidden"])[0]]
        row = ds[5]
        row[3] = np.nan
        ds[5] = row
    for args in (["fit", work / "sample.h5", "--x", "/hidden", "--z",
                  "/labels", "-o", work / "e.h5"],
                 ["probe", work / "sample.h5", "--x", "/hidden", "--y",
                  "/labels", "--save", work / "p.h5"]):
        p = run(*args)
        assert p.returncode == 0, p.stderr
    ro = tmp_path_factory.mktemp("ro")
    mounted = []
    if os.geteuid() == 0:
        if not _mount("-t", "tmpfs", "-o", "size=16m", "tmpfs", ro):
            pytest.skip("running as root, which ignores permission bits, "
                        "and mount (for a read-only tmpfs) is not permitted")
        mounted.append(ro)
        (ro / "inplace.h5").touch()
        assert _mount("--bind", work / "inplace.h5", ro / "inplace.h5")
        mounted.insert(0, ro / "inplace.h5")
        assert _mount("-o", "remount,ro", ro)
        reason = "Read-only file system"
    else:
        os.symlink(work / "inplace.h5", ro / "inplace.h5")
        ro.chmod(0o555)
        reason = "Permission denied"
    yield work, ro, reason
    if mounted:
        for m in mounted:
            subprocess.run(["umount", str(m)], capture_output=True)
    else:
        ro.chmod(0o755)


# Inputs with a NaN in their first layer's rows: the output is refused
# before any row is read, so the error is the output's, not the NaN's.
CASES = {
    "fit -o": lambda w, r: ["fit", w / "nan.h5", "--x", "/hidden", "--z",
                            "/labels", "-o", r / "e.h5"],
    "apply -o": lambda w, r: ["apply", w / "e.h5", w / "nan.h5", "--x",
                              "/hidden", "-o", r / "out.h5"],
    "apply --in-place (journal)": lambda w, r: [
        "apply", w / "e.h5", r / "inplace.h5", "--x", "/hidden",
        "--in-place"],
    "probe --save": lambda w, r: ["probe", w / "nan.h5", "--x", "/hidden",
                                  "--y", "/labels", "--save", r / "p.h5"],
    "probe --csv": lambda w, r: ["probe", w / "nan.h5", "--x", "/hidden",
                                 "--y", "/labels", "--csv", r / "p.csv"],
    "probe --plot": lambda w, r: ["probe", w / "nan.h5", "--x", "/hidden",
                                  "--y", "/labels", "--plot", r / "p.svg"],
    "score -o": lambda w, r: ["score", w / "p.h5", w / "nan.h5", "--x",
                              "/hidden", "-o", r / "s.h5"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_read_only_output_directory(setup, case):
    work, ro, reason = setup
    before_ro = sorted(p.name for p in ro.iterdir())
    before = {p.name: sha(p) for p in work.iterdir() if p.is_file()}
    args = CASES[case](work, ro)
    p = run(*args)
    assert p.returncode == 1, (case, p.returncode, p.stderr)
    err = p.stderr
    assert reason in err, err
    assert str(ro) in err, err  # names the path it could not create
    assert "Traceback" not in err and "AddressSanitizer" not in err
    assert sorted(p.name for p in ro.iterdir()) == before_ro
    assert {p.name: sha(p) for p in work.iterdir() if p.is_file()} == before
    if case.startswith("apply --in-place"):
        assert ".culeace-" in err  # the journal or checkpoint it needed
    else:
        assert "cannot create" in err and "NaN" not in err, err


def test_in_place_on_a_read_only_file(tmp_path):
    """apply --in-place on a FILE that cannot be written, in a directory
    that can: the checkpoint is written before FILE is opened for writing,
    and when that open fails the command stops with the file and the
    system's reason named, removes the checkpoint, and leaves FILE as it
    was. (As root the file is bind-mounted read-only over itself.)"""
    shutil.copy(SAMPLE, tmp_path / "src.h5")
    shutil.copy(SAMPLE, tmp_path / "in.h5")
    p = run("fit", tmp_path / "src.h5", "--x", "/hidden", "--z", "/labels",
            "-o", tmp_path / "e.h5")
    assert p.returncode == 0, p.stderr
    target = tmp_path / "in.h5"
    mounted = False
    if os.geteuid() == 0:
        if not _mount("--bind", target, target):
            pytest.skip("running as root, which ignores permission bits, "
                        "and mount (for a read-only bind) is not permitted")
        mounted = True
        if not _mount("-o", "remount,ro,bind", target):
            subprocess.run(["umount", str(target)], capture_output=True)
            pytest.skip("cannot remount the bind read-only")
        reason = "Read-only file system"
    else:
        target.chmod(0o444)
        reason = "Permission denied"
    try:
        before = sha(target)
        listing = sorted(q.name for q in tmp_path.iterdir())
        p = run("apply", tmp_path / "e.h5", target, "--x", "/hidden",
                "--in-place")
        assert p.returncode == 1, (p.returncode, p.stderr)
        assert reason in p.stderr and "in.h5" in p.stderr, p.stderr
        assert "for writing" in p.stderr, p.stderr
        assert sha(target) == before
        assert sorted(q.name for q in tmp_path.iterdir()) == listing
    finally:
        if mounted:
            subprocess.run(["umount", str(target)], capture_output=True)
        else:
            target.chmod(0o644)
