"""benchlib.py — helpers shared by the harnesses in bench/ (bench_fit.py,
bench_probe.py, sweep.py): timed subprocesses with their own peak RSS
(through culeace_bench_run, bench/run_rss.c), waiting for an
idle machine and accounting for other processes' CPU time, machine and
version info, synthetic dumps (data/make_dump.py), raw read bandwidth of a
dump's datasets, and the marker sections of docs/BENCHMARKS.md.

`prog` is the harness's name, used as the prefix of its messages.
"""

import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BLOCK_ROWS = 8192


# ---- timing ------------------------------------------------------------------------

RUNNER = os.path.join(ROOT, "build", "culeace_bench_run")


def use_build(build):
    """Takes culeace_bench_run (bench/run_rss.c) from the build folder."""
    global RUNNER
    RUNNER = os.path.join(build, "culeace_bench_run")


def _launch(cmd, env, out, err, prog):
    """Runs cmd under culeace_bench_run: a child's ru_maxrss would count the
    harness's own memory (the high-water mark survives fork and exec), the
    runner's child starts small. Returns (wall s, rusage-like namespace with
    ru_maxrss KiB, ru_utime, ru_stime; exit code)."""
    import tempfile
    import types
    if not os.access(RUNNER, os.X_OK):
        sys.exit(f"{prog}: {RUNNER} not found; build it with the project "
                 f"(cmake --build build)")
    fd, report = tempfile.mkstemp(prefix="bench_run_", suffix=".json")
    os.close(fd)
    try:
        t0 = time.perf_counter()
        p = subprocess.run([RUNNER, report] + [str(c) for c in cmd],
                           stdout=out, stderr=err, env=env)
        wall = time.perf_counter() - t0
        import json
        try:
            with open(report) as f:
                r = json.load(f)
        except (OSError, ValueError):
            r = {"maxrss_kib": 0, "utime_s": 0.0, "stime_s": 0.0}
    finally:
        os.remove(report)
    ru = types.SimpleNamespace(ru_maxrss=r["maxrss_kib"], ru_utime=r["utime_s"],
                               ru_stime=r["stime_s"])
    return wall, ru, p.returncode


def run_timed(cmd, env=None, prog="bench"):
    """Runs cmd; returns (wall seconds, peak RSS in MiB, stdout)."""
    wall, rss, out, _ = run_timed_big(cmd, env, prog)
    return wall, rss, out


def run_timed_big(cmd, env=None, prog="bench"):
    """Runs cmd with stdout to a temporary file (it may exceed a pipe's
    buffer). Returns (wall s, peak RSS MiB, stdout, rusage of cmd)."""
    import tempfile
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        wall, ru, rc = _launch(cmd, env, out, err, prog)
        out.seek(0)
        err.seek(0)
        text = out.read().decode()
        if rc != 0:
            sys.exit(f"{prog}: command failed ({rc}): "
                     f"{' '.join(map(str, cmd))}\n{err.read().decode()}")
    return wall, ru.ru_maxrss / 1024.0, text, ru


def timed_runs(fn, repeats):
    """Seconds of each of `repeats` calls of fn(), after one warm-up call."""
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return ts


def summary(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs),
            "all": xs}


def fmt_s(s):
    return f"{s['median']:.3f}", f"{s['min']:.3f}..{s['max']:.3f}"


# ---- load on the machine -----------------------------------------------------------

def loadavg():
    with open("/proc/loadavg") as f:
        return [float(v) for v in f.read().split()[:3]]


def busy_jiffies():
    """Non-idle CPU time of the whole machine so far, in seconds."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq (steal: the hypervisor's, and
    # guest time is already inside user)
    return (sum(v[:7]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def steal_s():
    """CPU time the hypervisor gave to others while this VM wanted it."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[7] / os.sysconf("SC_CLK_TCK")


def own_cpu():
    """CPU seconds used by this process and its waited-for children."""
    import resource
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def others_busy(seconds=2.0):
    """Cores' worth of CPU that other processes used over the next seconds."""
    b0, o0, t0 = busy_jiffies(), own_cpu(), time.perf_counter()
    time.sleep(seconds)
    return max(0.0, (busy_jiffies() - b0) - (own_cpu() - o0)) / (
        time.perf_counter() - t0)


def wait_for_idle(max_others, max_wait, prog="bench"):
    """Waits until other processes use under max_others cores (over 3 s)."""
    t0 = time.time()
    while True:
        busy = others_busy(3.0)
        if busy < max_others:
            return busy, True
        if time.time() - t0 >= max_wait:
            print(f"{prog}: other processes still use {busy:.2f} cores "
                  f"after {max_wait:.0f} s; timing anyway (recorded)",
                  file=sys.stderr)
            return busy, False
        print(f"{prog}: other processes use {busy:.2f} cores; waiting",
              file=sys.stderr)
        time.sleep(5)


# ---- machine -----------------------------------------------------------------------

def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def pkg_version(name):
    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine(culeace, packages=()):
    """Machine, versions, commit and date. packages: (key, distribution name)
    pairs whose installed versions are added after h5py's."""
    lscpu = sh(["lscpu"]) or ""
    model = re.search(r"^Model name:\s*(.+)$", lscpu, re.M)
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    version = sh([culeace, "--version"]) or ""
    kernel = re.search(r"BLAS kernel:\s*([A-Za-z0-9_]+)", version)
    commit = sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"])
    import h5py
    import numpy
    info = {
        "cpu": model.group(1).strip() if model else platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "os": platform.platform(),
        "culeace": version,
        "blas_kernel": kernel.group(1) if kernel else None,
        "openblas": sh(["dpkg-query", "-W", "-f", "${Version}",
                        "libopenblas0-pthread"]),
        "hdf5": h5py.version.hdf5_version,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "h5py": h5py.__version__,
    }
    for key, dist in packages:
        info[key] = pkg_version(dist)
    info["commit"] = (commit or "unknown") + ("+dirty" if dirty else "")
    info["date"] = datetime.datetime.now().astimezone().isoformat(
        timespec="seconds")
    return info


# ---- data --------------------------------------------------------------------------

def ensure_dump(path, want, need):
    """Makes the dump with data/make_dump.py --KEY VALUE for each item of want
    (and --quiet), or reuses the file at path when its root attributes equal
    want and it holds the datasets in need. Returns True when it made it."""
    import h5py
    if os.path.exists(path):
        try:
            with h5py.File(path, "r") as f:
                have = {k: f.attrs.get(k) for k in want}
                have = {k: (v.decode() if isinstance(v, bytes) else
                            v.item() if hasattr(v, "item") else v)
                        for k, v in have.items()}
                ok = have == want and all(n in f for n in need)
        except OSError:
            ok = False
        if ok:
            return False
        os.remove(path)
    cmd = [sys.executable, os.path.join(ROOT, "data", "make_dump.py")]
    for k, v in want.items():
        cmd += [f"--{k}", str(v)]
    cmd += ["-o", path, "--quiet"]
    subprocess.run(cmd, check=True)
    return True


def read_bandwidth(path, repeats, names=("/hidden/0",)):
    """Times reading the stored bytes of the datasets in names (all of one
    shape and type), page cache warm (read once first).

    h5py: DatasetID.read of 8192-row hyperslabs with the file's own datatype as
    the memory type (no conversion) into a preallocated (n, d) unsigned array
    (one, reused for every dataset). file: the same bytes with readinto() at
    each dataset's offset, when all are stored contiguously. "bytes" is the
    total over the datasets."""
    import h5py
    import numpy as np
    with h5py.File(path, "r") as f:
        dss = [f[name] for name in names]
        ds = dss[0]
        n, d = ds.shape
        item = ds.dtype.itemsize
        for other in dss[1:]:
            if other.shape != ds.shape or other.dtype != ds.dtype:
                raise ValueError("read_bandwidth: datasets differ in shape/type")
        buf = np.empty((n, d), dtype=np.dtype(f"u{item}"))
        offsets = [x.id.get_offset() if x.chunks is None else None for x in dss]

        def h5_read():
            for x in dss:
                mtype = x.id.get_type()
                for a in range(0, n, BLOCK_ROWS):
                    b = min(n, a + BLOCK_ROWS)
                    fs = x.id.get_space()
                    fs.select_hyperslab((a, 0), (b - a, d))
                    ms = h5py.h5s.create_simple((b - a, d))
                    x.id.read(ms, fs, buf[a:b], mtype=mtype)

        def file_read():
            flat = buf.reshape(-1).view(np.uint8)
            row_bytes = d * item
            with open(path, "rb", buffering=0) as fh:
                for offset in offsets:
                    fh.seek(offset)
                    for a in range(0, n, BLOCK_ROWS):
                        b = min(n, a + BLOCK_ROWS)
                        view = memoryview(flat[a * row_bytes:b * row_bytes])
                        got = 0
                        while got < len(view):
                            k = fh.readinto(view[got:])
                            if not k:
                                raise OSError("short read")
                            got += k

        out = {"bytes": n * d * item * len(dss)}
        readers = [("h5py_raw", h5_read)]
        if all(o is not None for o in offsets):
            readers.append(("file", file_read))
        for name, fn in readers:
            fn()  # warm
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            out[name] = summary(ts)
            out[name]["gb_s"] = out["bytes"] / out[name]["median"] / 1e9
    return out


# ---- docs/BENCHMARKS.md ------------------------------------------------------------

def update_doc(doc, md, begin, end, prog="bench"):
    """Replaces the text between the begin and end markers of doc with md."""
    with open(doc) as f:
        text = f.read()
    a, b = text.find(begin), text.find(end)
    if a < 0 or b < a:
        sys.exit(f"{prog}: {doc} lacks the {begin} ... {end} markers")
    text = text[:a + len(begin)] + "\n" + md + text[b:]
    tmp = doc + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, doc)


def save_report(out, stem, res, md, doc, begin, end, prog="bench"):
    """Writes OUT/STEM.json (res) and OUT/STEM.md (md), replaces the doc's
    section between the markers with md unless doc is None, prints md."""
    import json
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{stem}.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(out, f"{stem}.md"), "w") as f:
        f.write(md)
    if doc is not None:
        update_doc(doc, md, begin, end, prog=prog)
    print(md)


def context_lines(la, m, versions):
    """The report's closing lines shared by every harness: load during the
    timing, machine, and versions (versions: the harness's own packages,
    already formatted, e.g. "torch 2.15.0, concept-erasure 0.2.4")."""
    return [
        f"- Load average before timing {la['before'][0]:.2f} "
        f"{la['before'][1]:.2f} {la['before'][2]:.2f}, after "
        f"{la['after'][0]:.2f} {la['after'][1]:.2f} {la['after'][2]:.2f}"
        + ("" if la["idle"] else " (machine was not idle when timing began)")
        + f"; other processes used {la['others_cpu_s']:.1f} CPU s in the "
        f"{la['timed_wall_s']:.0f} s of timing ("
        f"{la['others_cpu_s'] / la['timed_wall_s']:.2f} cores on average); "
        f"steal {la['steal_s']:.1f} s.",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; "
        f"{m['os']}; OpenBLAS {m['openblas']}, kernel {m['blas_kernel']}.",
        f"- Versions: {m['culeace']}; Python {m['python']}, numpy {m['numpy']}, "
        f"h5py {m['h5py']} (HDF5 {m['hdf5']}), {versions}.",
    ]
