"""test_crash_safety.py — `culeace apply` killed (SIGKILL) at random points,
many times over, never loses data:

  --in-place   each kill is followed by the same command, which resumes from
               the checkpoint and journal; the final file equals a one-shot
               apply bit for bit and opens in HDF5, and nothing is left over;
  -o OUT       an existing OUT stays byte for byte as it was until a run
               completes; the completed OUT equals the one-shot result.

Kill times are drawn from a seeded generator as fractions of an unkilled
run's duration (early fractions for --in-place, whose resumed runs have
less left to do), so the kills land in different phases (start-up, copy,
editing, journal, rename)."""

import os
import random
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


def make_case(tmp_path, dtype):
    dump = tmp_path / "d.h5"
    subprocess.run([sys.executable, str(MAKE_DUMP), "-o", str(dump), "--quiet",
                    "--rows", "60000", "--dim", "96", "--layers", "2",
                    "--dtype", dtype, "--layout", "group"], check=True)
    er = tmp_path / "e.h5"
    subprocess.run([BIN, "fit", dump, "--x", "/hidden", "--z", "/labels",
                    "-o", er, "--quiet"], check=True, capture_output=True)
    ref = tmp_path / "ref.h5"
    subprocess.run([BIN, "apply", er, dump, "--x", "/hidden", "-o", ref,
                    "--quiet"], check=True, capture_output=True)
    return dump, er, ref


def timed(cmd):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0


def kill_at(cmd, delay):
    """Runs cmd, SIGKILLs it after delay s; True if it was killed, False
    if it completed first (any other ending fails the test)."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    time.sleep(delay)
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
    _, err = p.communicate()
    if p.returncode == -signal.SIGKILL:
        return True
    assert p.returncode == 0, f"exit {p.returncode}: {err.decode()}"
    return False


def same_layers(a_path, b_path):
    with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
        for l in ("0", "1"):
            np.testing.assert_array_equal(a["hidden"][l][...],
                                          b["hidden"][l][...])


@pytest.mark.parametrize("dtype,seed", [("float16", 1), ("bfloat16", 2),
                                        ("float32", 3)])
def test_in_place_killed_many_times(tmp_path, dtype, seed):
    """Chains of kill + resume: each chain starts from a fresh copy of the
    dump and ends when a run completes, and must then equal the one-shot
    result; chains repeat until enough kills have landed (how many land in
    one chain depends on the machine's speed at that moment)."""
    dump, er, ref = make_case(tmp_path, dtype)
    ip = tmp_path / "ip.h5"
    cmd = [BIN, "apply", str(er), str(ip), "--x", "/hidden", "--in-place",
           "--quiet", "--block-rows", "256"]
    ip.write_bytes(dump.read_bytes())
    full = timed(cmd)  # an unkilled run (on a scratch copy, discarded)
    rng = random.Random(seed)
    kills = chains = 0
    ip.write_bytes(dump.read_bytes())
    for _ in range(40):
        if kill_at(cmd, rng.uniform(0.02, 0.5) * full):
            kills += 1
            with h5py.File(ip, "r"):  # still a readable HDF5 file
                pass
            continue
        chains += 1  # this run completed: the chain is done
        same_layers(ip, ref)
        assert not Path(str(ip) + ".culeace-apply").exists()
        assert not Path(str(ip) + ".culeace-journal").exists()
        if kills >= 4:
            break
        ip.write_bytes(dump.read_bytes())  # a new chain
    else:
        subprocess.run(cmd, check=True, capture_output=True)
        same_layers(ip, ref)
    assert kills >= 4, f"only {kills} kills landed (full run {full:.2f} s)"


def test_in_place_killed_at_start_leaves_file_as_it_was(tmp_path):
    """Kills around the moment an in-place apply writes its first
    checkpoint, a fresh copy each time: when no checkpoint was written yet,
    FILE is the input to the byte. (Opening an HDF5 file for writing sets
    an "open for write" bit in its superblock, so culeace opens FILE for
    writing only after the checkpoint exists; a kill in between used to
    leave that bit set.) Doubling delays find when the checkpoint appears
    (D), then 60 delays from D / 2 to 1.1 D sweep the time before it; some
    kills must land on either side."""
    dump, er, ref = make_case(tmp_path, "float32")
    before = dump.read_bytes()
    ip = tmp_path / "ip.h5"
    ckpt = Path(str(ip) + ".culeace-apply")
    cmd = [BIN, "apply", str(er), str(ip), "--x", "/hidden", "--in-place",
           "--quiet", "--block-rows", "64"]
    counts = {"early": 0, "late": 0}

    def killed_late(delay):
        ip.write_bytes(before)
        for leftover in (ckpt, Path(str(ip) + ".culeace-journal")):
            leftover.unlink(missing_ok=True)
        if not kill_at(cmd, delay):
            same_layers(ip, ref)  # finished: the whole edit
            return True
        if ckpt.exists():
            counts["late"] += 1
            return True
        counts["early"] += 1
        assert ip.read_bytes() == before, f"kill at {delay * 1e3:.1f} ms"
        return False

    D = 0.002
    while not killed_late(D):
        assert D < 30, "no checkpoint after 30 s"
        D *= 2
    for k in range(60):
        killed_late(D * (0.5 + 0.6 * k / 59))
    assert counts["early"] >= 1 and counts["late"] >= 1, (
        f"{counts} kills before / after the checkpoint: the delays missed "
        f"the window (D = {D * 1e3:.0f} ms)")


def test_copy_killed_keeps_old_output(tmp_path):
    dump, er, ref = make_case(tmp_path, "float16")
    out = tmp_path / "out.h5"
    out.write_bytes(dump.read_bytes())  # an older OUT, to be replaced
    old = out.read_bytes()
    cmd = [BIN, "apply", str(er), str(dump), "--x", "/hidden", "-o", str(out),
           "--quiet", "--block-rows", "256"]
    full = timed([BIN, "apply", str(er), str(dump), "--x", "/hidden", "-o",
                  str(tmp_path / "timing.h5"), "--quiet", "--block-rows",
                  "256"])
    rng = random.Random(7)
    kills = 0
    for _ in range(40):
        if kill_at(cmd, rng.uniform(0.02, 0.8) * full):
            kills += 1
            if out.read_bytes() != old:
                # killed after the rename, before exiting: then OUT must be
                # the whole new output (never a partial one)
                same_layers(out, ref)
                out.write_bytes(old)
            continue
        same_layers(out, ref)  # completed: the new OUT is whole
        if kills >= 4:
            break
        out.write_bytes(old)  # put the older OUT back and go on
    assert kills >= 4, f"only {kills} kills landed (full run {full:.2f} s)"
    # The killed runs' temporaries (OUT.tmpPID) cannot clean themselves up;
    # the completed runs leave none of their own.
    left = sorted(p.name for p in tmp_path.glob("out.h5.tmp*"))
    assert len(left) <= kills, left
