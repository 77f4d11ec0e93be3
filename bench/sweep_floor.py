"""sweep_floor.py — what the hardware allows, for bench/sweep.py: SYRK +
eigendecomposition (culeace_bench_floor, the OpenBLAS/LAPACKE the library
links) and the raw read + write of a dump's bytes, durable (fsync), the
way culeace's outputs are.

- syrk_eigh: dsyrk and ssyrk over `rows` rows, one d x d dsyevd and one
  d x d dpotrf (the Cholesky factorisation culeace's fit whitens with when
  the covariance is well conditioned). Above
  SYRK_ROWS_MAX rows the SYRK is timed on SYRK_ROWS_MAX rows and scaled by
  rows / SYRK_ROWS_MAX (SYRK's work is exactly linear in rows; the whole
  (n, d) float64 matrix would not fit in memory at the largest sizes).
- read: the file's bytes read in 8 MiB pieces (the page cache is warm: the
  sweep reads each dump once before timing it).
- copy: the file's bytes read and written to a new file in 8 MiB pieces,
  then fsync: one read and one write of everything `apply -o` must produce.
- in_place: each activation dataset's bytes read and written back at the
  same offset, then fsync: one read and one write of everything
  `apply --in-place` must change.
"""

import json
import os
import subprocess
import time

SYRK_ROWS_MAX = 32768
PIECE = 8 << 20


def syrk_eigh(floor_bin, rows, dim, env=None):
    """{'dsyrk_s', 'ssyrk_s', 'dsyevd_s', 'dpotrf_s', 'syrk_rows',
    'gflops' (dsyrk's), 'sgflops'} for (rows, dim)."""
    m = min(rows, SYRK_ROWS_MAX)
    out = subprocess.run([floor_bin, str(m), str(dim), "1", "fit"],
                         capture_output=True, text=True, check=True, env=env)
    j = json.loads(out.stdout)
    return {"dsyrk_s": j["dsyrk_s"] * rows / m,
            "ssyrk_s": j["ssyrk_s"] * rows / m, "dsyevd_s": j["dsyevd_s"],
            "dpotrf_s": j["dpotrf_s"], "syrk_rows": m,
            "gflops": j["dsyrk_gflops"], "sgflops": j["ssyrk_gflops"]}


def read(path):
    """Seconds to read path's bytes (page cache warm when it was read)."""
    buf = bytearray(PIECE)
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        while os.readv(fd, [buf]):
            pass
    finally:
        os.close(fd)
    return time.perf_counter() - t0


def copy(src, dst):
    """Seconds to read src and write its bytes to dst (new), fsynced."""
    buf = bytearray(PIECE)
    view = memoryview(buf)
    t0 = time.perf_counter()
    fi = os.open(src, os.O_RDONLY)
    fo = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        while True:
            k = os.readv(fi, [buf])
            if k == 0:
                break
            done = 0
            while done < k:
                done += os.write(fo, view[done:k])
        os.fsync(fo)
    finally:
        os.close(fi)
        os.close(fo)
    return time.perf_counter() - t0


def dataset_extents(path, names):
    """(offset, nbytes) of each contiguous dataset in names."""
    import h5py
    with h5py.File(path, "r") as f:
        out = []
        for name in names:
            ds = f[name]
            off = ds.id.get_offset()
            if ds.chunks is not None or off is None:
                raise ValueError(f"{path}:{name} is not stored contiguously")
            out.append((off, ds.id.get_storage_size()))
    return out


def in_place(path, extents):
    """Seconds to read each extent of path and write it back, fsynced."""
    buf = bytearray(PIECE)
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDWR)
    try:
        for off, nbytes in extents:
            pos, end = off, off + nbytes
            while pos < end:
                k = os.preadv(fd, [memoryview(buf)[:min(PIECE, end - pos)]], pos)
                if k == 0:
                    raise OSError(f"{path}: short read at {pos}")
                done = 0
                while done < k:
                    done += os.pwrite(fd, memoryview(buf)[done:k], pos + done)
                pos += k
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - t0
