"""test_bad_inputs.py — every case of the bad-input catalogue
(tests/bad_inputs/make_bad_inputs.py) through the CLI: a non-zero exit, a
message naming the file/dataset/row and what was expected, no output or
temporary file left behind, and every input byte for byte as before. An
in-place apply may leave its checkpoint and journal (that is how it
resumes); the file itself must be unchanged, and rerunning without the
fault must give the one-shot result."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("CULEACE_BIN", str(ROOT / "build" / "culeace"))
sys.path.insert(0, str(ROOT / "tests" / "bad_inputs"))
import make_bad_inputs  # noqa: E402

pytestmark = pytest.mark.skipif(not Path(BIN).exists(),
                                reason=f"culeace binary not built ({BIN})")
RESUME_FILES = (".culeace-apply", ".culeace-journal")


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_inputs")
    return d, {c[0]: c for c in make_bad_inputs.make(str(d), BIN)}


def digests(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in Path(d).iterdir() if p.is_file()}


def case_names():
    """The catalogue's case names (parametrize needs them before the files
    exist); test_catalogue_is_complete checks them against make()."""
    return [
        "truncated HDF5 file", "not HDF5", "dims overflow the machine",
        "chunk index claims more bytes than the file",
        "layer axis longer than culeace handles", "zero rows", "d = 0", "labels of the wrong length",
        "labels of the wrong type", "labels above the int64 range",
        "one class", "NaN in activations",
        "value overflows float16 on write (to a new file)",
        "value overflows float16 on write (in place)",
        "eraser file with a missing field",
        "eraser file of another format version",
        "eraser file with inconsistent shapes",
        "eraser file with a non-finite matrix",
        "metadata that crashes libhdf5 (inspect)",
        "metadata that crashes libhdf5 (fit)",
        "metadata that crashes libhdf5 (apply, second file)",
        "job larger than --max-memory (fit)",
        "job larger than --max-memory (probe)",
        "job larger than --max-memory (apply)",
        "job larger than --max-memory (score)",
        "malformed --max-memory",
        "output path equal to the input",
        "disk full while fitting (file-size limit)",
        "disk full while copying for apply -o",
        "disk full while journaling an in-place apply",
    ]


def test_catalogue_is_complete(catalogue):
    assert sorted(catalogue[1]) == sorted(case_names())


@pytest.mark.parametrize("name", case_names())
def test_bad_input(catalogue, name):
    d, cases = catalogue
    _, argv, needles, limit = cases[name]
    for p in Path(d).iterdir():  # leftovers of an earlier case's resume files
        if p.name.endswith(RESUME_FILES):
            p.unlink()
    before = digests(d)
    r = make_bad_inputs.run_case(BIN, argv, limit)
    assert r.returncode > 0, f"exit {r.returncode} (signal?): {r.stderr}"
    assert "Sanitizer" not in r.stderr and "runtime error:" not in r.stderr, \
        r.stderr
    for n in needles:
        assert n in r.stderr, f"{n!r} not in the message: {r.stderr!r}"
    after = digests(d)
    new = sorted(set(after) - set(before))
    in_place = "--in-place" in argv
    assert all(in_place and n.endswith(RESUME_FILES) for n in new), \
        f"left behind: {new}"
    changed = [n for n in before if after.get(n) != before[n]]
    assert not changed, f"inputs modified: {changed}"


def test_in_place_resumes_after_disk_full(catalogue):
    """After the journal could not be written, the same command without the
    limit completes and gives exactly the one-shot result."""
    d, cases = catalogue
    _, argv, _, limit = cases["disk full while journaling an in-place apply"]
    r = make_bad_inputs.run_case(BIN, argv, limit)
    assert r.returncode > 0
    subprocess.run([BIN, *argv, "--quiet"], check=True, capture_output=True)
    target = argv[2]
    oneshot = Path(d) / "oneshot.h5"
    subprocess.run([BIN, "apply", argv[1], str(Path(d) / "good.h5"), "--x",
                    "/hidden", "-o", str(oneshot), "--quiet"], check=True,
                   capture_output=True)
    with h5py.File(target) as a, h5py.File(oneshot) as b:
        assert np.array_equal(a["hidden"][...], b["hidden"][...])
    assert not any(Path(target + s).exists() for s in RESUME_FILES)
    oneshot.unlink()


def test_odd_dataset_path(tmp_path):
    """Spaces, non-ASCII and ':' in dataset paths are fine end to end."""
    src = tmp_path / "odd.h5"
    x = np.random.default_rng(3).standard_normal((300, 8)).astype(np.float16)
    with h5py.File(src, "w") as f:
        f["acts dir/ü:x"] = x
        f["labels"] = (np.arange(300) % 2).astype(np.int64)
    er, out = tmp_path / "e.h5", tmp_path / "o.h5"
    subprocess.run([BIN, "fit", src, "--x", "/acts dir/ü:x", "--z", "/labels",
                    "-o", er, "--quiet"], check=True, capture_output=True)
    subprocess.run([BIN, "apply", er, src, "--x", "/acts dir/ü:x", "-o", out,
                    "--quiet"], check=True, capture_output=True)
    with h5py.File(out) as f:
        assert f["acts dir/ü:x"].shape == x.shape
        assert not np.array_equal(f["acts dir/ü:x"][...], x)


def test_max_memory_shrinks_blocks(catalogue):
    """A limit that forces small blocks still gives the same erasers (to
    float64 round-off with float64 block products: only the block split
    changes)."""
    d, _ = catalogue
    good = Path(d) / "good.h5"
    a, b = Path(d) / "mm-a.h5", Path(d) / "mm-b.h5"
    # 2 MiB: blocks of 682 rows instead of one 4000-row block
    for out, extra in ((a, []), (b, ["--max-memory", "2M"])):
        subprocess.run([BIN, "fit", good, "--x", "/hidden", "--z", "/labels",
                        "-o", out, "--quiet", "--precision", "f64", *extra],
                       check=True,
                       capture_output=True)
    with h5py.File(a) as fa, h5py.File(b) as fb:
        for name in fa["erasers"]:
            ea, eb = fa["erasers"][name], fb["erasers"][name]
            pa = ea["L"][...] @ ea["R"][...]
            pb = eb["L"][...] @ eb["R"][...]
            assert np.linalg.norm(pa - pb) <= 1e-10 * np.linalg.norm(pa)
    a.unlink()
    b.unlink()


def test_apply_out_disk_full_while_editing(tmp_path):
    """apply -o leaves the activation datasets it rewrites out of its copy,
    so a full disk can first show while the edit fills them: a real full
    filesystem (a 6 MiB tmpfs, mounted where the test may) gives a non-zero
    exit naming the temporary copy and the disk's error, no output or
    temporary file, and the input unchanged."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6M", "tmpfs",
                       str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        src = mnt / "d.h5"
        rng = np.random.default_rng(4)
        with h5py.File(src, "w") as f:  # 3.3 MB of rows: two copies do not fit
            f["hidden"] = rng.standard_normal((3200, 256)).astype(np.float32)
            f["labels"] = (np.arange(3200) % 2).astype(np.int64)
        er = tmp_path / "e.h5"
        subprocess.run([BIN, "fit", src, "--x", "/hidden", "--z", "/labels",
                        "-o", er, "--quiet"], check=True, capture_output=True)
        before = hashlib.sha256(src.read_bytes()).hexdigest()
        out = mnt / "out.h5"
        r = subprocess.run([BIN, "apply", er, src, "--x", "/hidden", "-o",
                            out, "--quiet"], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 1, r.stderr
        assert "No space left on device" in r.stderr, r.stderr
        assert "out.h5.tmp" in r.stderr and "/hidden" in r.stderr, r.stderr
        assert "nothing was written to the output" in r.stderr, r.stderr
        assert sorted(p.name for p in mnt.iterdir()) == ["d.h5"]
        assert hashlib.sha256(src.read_bytes()).hexdigest() == before
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
