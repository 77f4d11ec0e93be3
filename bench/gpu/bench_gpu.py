#!/usr/bin/env python3
"""bench_gpu.py — culeace's CUDA backend vs concept-erasure on the GPU, and the
floors both are measured against, all measured on the machine it runs on.

Runs on a GPU machine with torch (scripts/gpu-check.sh calls it). It loads
libculeace.so with ctypes (env CULEACE_LIB, else build/libculeace.so) and
uses the public C API of include/culeace.h:

  floors   device-to-device copy bandwidth (bytes read + written), host to
           device bandwidth from pinned and from pageable memory, GEMM rates
           (float16 tensor cores, float32 without TF32, float64) on M^3, and
           torch.linalg.eigh (cuSOLVER) of an E x E float64 SPD matrix.
  fit      N x D float16 rows in host memory (planted binary concept, int32
           labels): culeace fitter on a CUDA context fed in blocks straight
           from the numpy array (and from a culeace_host_alloc page-locked
           copy), then finalize; vs concept-erasure's LeaceFitter on the GPU
           (float32; blocks moved with .cuda()), then .eraser. Floor:
           max(bytes / pinned H2D bandwidth, N D^2 / GEMM rate) + eigh(D).
           The two erasers must agree on a few rows (relative difference of
           the erased rows <= 1e-3; the edits themselves are reported).
  apply    the same rows resident on the GPU (float16): culeace_eraser_apply_
           device in place on torch's current stream vs concept-erasure's
           eraser(x) (factors cast to float16); bandwidth 2 N D 2 bytes /
           time as a fraction of the D2D copy; results must agree with
           concept-erasure's output (relative error <= 1e-2).

Sizes come from the environment (defaults in brackets): BENCH_N [1048576],
BENCH_D [4096], BENCH_BLOCK [65536], BENCH_REPEATS [3], BENCH_GEMM [8192],
BENCH_EIGH [4096], BENCH_COPY_MIB [2048], BENCH_H2D_MIB [1024],
BENCH_PRECISION [f32,tensor] (culeace block moments: f32, f64, tensor),
BENCH_RANK [16] (the second apply's rank; 0 or 1 skips it), BENCH_PINNED [1]
(also time culeace from page-locked memory), BENCH_SEED [0]. Every timing
is a median over repeats after one warm-up, with CUDA events (or a
synchronize on each side of a host timer).

  python3 bench/gpu/bench_gpu.py               # on the GPU machine
  python3 bench/gpu/bench_gpu.py --dry-run     # anywhere: tiny sizes on the
                                               # CPU (torch CPU, CPU context)

Writes every number to $OUT/bench_gpu.json (or /tmp/bench_gpu.json; --json
PATH) and prints a markdown table last. Exit status 1 when a check fails or
a part could not run (the JSON says which), 0 otherwise.
"""

import argparse
import ctypes
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PROG = "bench_gpu"

# ---- the C API through ctypes ------------------------------------------------------

CULEACE_OK = 0
CULEACE_ERR_STATE = -19
DEVICE_AUTO, DEVICE_CPU, DEVICE_CUDA = 0, 1, 2
DT_F32, DT_F16, DT_BF16, DT_F64 = 0, 1, 2, 3
METHOD_LEACE, METHOD_ORTH = 0, 1
PRECISION_F64, PRECISION_F32, PRECISION_TENSOR = 0, 1, 2
PRECISIONS = {"f64": PRECISION_F64, "f32": PRECISION_F32,
              "tensor": PRECISION_TENSOR}
# The GEMM rate each precision's moments run at (the fit floor's rate).
GEMM_OF = {"f64": "f64", "f32": "f32", "tensor": "f16"}
Z_CLASSES = 0

# Mirrors of the option/info structs of include/culeace.h. The init functions
# write into a generous buffer pre-filled with a sentinel: if the library's
# struct has grown past the mirror, the bytes after it change and we stop
# (see opts_buffer).


class CtxOpts(ctypes.Structure):
    _fields_ = [("device", ctypes.c_int), ("device_index", ctypes.c_int),
                ("n_threads", ctypes.c_int)]


class FitOpts(ctypes.Structure):
    _fields_ = [("method", ctypes.c_int), ("affine", ctypes.c_int),
                ("shrinkage", ctypes.c_int),
                ("constrain_cov_trace", ctypes.c_int),
                ("svd_tol", ctypes.c_double), ("precision", ctypes.c_int)]


class EraserInfo(ctypes.Structure):
    _fields_ = [("d", ctypes.c_int64), ("rank", ctypes.c_int64),
                ("z_dim", ctypes.c_int64), ("n_seen", ctypes.c_int64),
                ("n_classes", ctypes.c_int64), ("method", ctypes.c_int),
                ("affine", ctypes.c_int), ("shrinkage", ctypes.c_int),
                ("constrain_cov_trace", ctypes.c_int),
                ("svd_tol", ctypes.c_double)]


SENTINEL = 0xA5
OPTS_BYTES = 512


class CuleaceError(RuntimeError):
    pass


class Culeace:
    """The handful of culeace_* functions the benchmark uses."""

    def __init__(self, path):
        self.path = path
        self.lib = lib = ctypes.CDLL(path)
        P, I, I64, SZ = (ctypes.c_void_p, ctypes.c_int, ctypes.c_int64,
                         ctypes.c_size_t)
        pp = ctypes.POINTER(ctypes.c_void_p)
        sig = {
            "culeace_status_name": (ctypes.c_char_p, [I]),
            "culeace_version": (ctypes.c_char_p, []),
            "culeace_backends_compiled": (ctypes.c_char_p, []),
            "culeace_ctx_opts_init": (None, [P]),
            "culeace_ctx_create": (I, [P, pp, ctypes.c_char_p, SZ]),
            "culeace_ctx_free": (None, [P]),
            "culeace_ctx_last_error": (ctypes.c_char_p, [P]),
            "culeace_ctx_backend_name": (ctypes.c_char_p, [P]),
            "culeace_ctx_device_note": (ctypes.c_char_p, [P]),
            "culeace_fit_opts_init": (None, [P]),
            "culeace_fitter_create": (I, [P, I64, I64, I, P, pp]),
            "culeace_fitter_free": (None, [P]),
            "culeace_fitter_update_classes": (I, [P, P, I, I64, I64, P]),
            "culeace_fitter_rows": (I64, [P]),
            "culeace_fitter_finalize": (I, [P, pp]),
            "culeace_eraser_free": (None, [P]),
            "culeace_eraser_info_get": (I, [P, P]),
            "culeace_eraser_factors": (I, [P, P, P, P]),
            "culeace_eraser_apply": (I, [P, P, P, I, I64, I64]),
            "culeace_eraser_apply_device": (I, [P, P, P, I, I64, I64, P]),
            "culeace_host_alloc": (P, [P, SZ]),
            "culeace_host_free": (None, [P, P]),
        }
        missing = []
        for name, (res, args) in sig.items():
            try:
                fn = getattr(lib, name)
            except AttributeError:
                missing.append(name)
                continue
            fn.restype, fn.argtypes = res, args
        if missing:
            raise CuleaceError(f"{path} lacks {', '.join(missing)}")

    def status_name(self, s):
        return self.lib.culeace_status_name(s).decode()

    def version(self):
        return self.lib.culeace_version().decode()

    def backends(self):
        return self.lib.culeace_backends_compiled().decode()

    @staticmethod
    def opts_buffer(init, mirror):
        """Calls init on a sentinel-filled buffer; returns (buffer, mirror view).
        Fails if init wrote past sizeof(mirror): the header grew."""
        buf = (ctypes.c_uint8 * OPTS_BYTES)(*([SENTINEL] * OPTS_BYTES))
        init(buf)
        tail = bytes(buf)[ctypes.sizeof(mirror):]
        if any(b != SENTINEL for b in tail):
            raise CuleaceError(f"{init.__name__} wrote past the "
                               f"{ctypes.sizeof(mirror)} bytes of {mirror.__name__}:"
                               f" include/culeace.h changed, update the mirror")
        return buf, mirror.from_buffer(buf)

    def ctx_opts(self):
        buf, o = self.opts_buffer(self.lib.culeace_ctx_opts_init, CtxOpts)
        assert o.device == DEVICE_AUTO and o.n_threads == 0, \
            (o.device, o.n_threads)
        return buf, o

    def fit_opts(self):
        buf, o = self.opts_buffer(self.lib.culeace_fit_opts_init, FitOpts)
        # Known defaults (culeace.h): LEACE, svd_tol 0.01.
        assert o.method == METHOD_LEACE and abs(o.svd_tol - 0.01) < 1e-15, \
            (o.method, o.svd_tol)
        assert o.affine in (0, 1) and o.shrinkage in (0, 1) \
            and o.precision in PRECISIONS.values()
        return buf, o

    def check(self, status, what, ctx=None):
        if status != CULEACE_OK:
            msg = self.lib.culeace_ctx_last_error(ctx).decode() if ctx else ""
            raise CuleaceError(f"{what}: {self.status_name(status)}"
                               + (f": {msg}" if msg else ""))


class Ctx:
    def __init__(self, cl, device, index=0):
        self.cl = cl
        buf, o = cl.ctx_opts()
        o.device, o.device_index = device, index
        h = ctypes.c_void_p()
        err = ctypes.create_string_buffer(512)
        s = cl.lib.culeace_ctx_create(buf, ctypes.byref(h), err, len(err))
        if s != CULEACE_OK:
            raise CuleaceError(f"culeace_ctx_create(device={device}): "
                               f"{cl.status_name(s)}: {err.value.decode()}")
        self.h = h
        self.backend = cl.lib.culeace_ctx_backend_name(h).decode()
        self.note = cl.lib.culeace_ctx_device_note(h).decode()

    def check(self, s, what):
        self.cl.check(s, what, self.h)

    def free(self):
        if self.h:
            self.cl.lib.culeace_ctx_free(self.h)
            self.h = None


class Eraser:
    def __init__(self, ctx, h):
        self.ctx, self.h = ctx, h
        cl = ctx.cl
        buf = (ctypes.c_uint8 * OPTS_BYTES)()
        ctx.check(cl.lib.culeace_eraser_info_get(h, buf), "eraser_info_get")
        info = EraserInfo.from_buffer(buf)
        self.d, self.rank, self.n_seen = info.d, info.rank, info.n_seen
        self.info = {f: getattr(info, f) for f, _ in EraserInfo._fields_}
        self.L = np.zeros((self.d, max(self.rank, 1)), np.float64)
        self.R = np.zeros((max(self.rank, 1), self.d), np.float64)
        self.bias = np.zeros(self.d, np.float64)
        ctx.check(cl.lib.culeace_eraser_factors(
            h, self.L.ctypes.data, self.R.ctypes.data, self.bias.ctypes.data),
            "eraser_factors")
        self.L, self.R = self.L[:, :self.rank], self.R[:self.rank]

    def free(self):
        if self.h:
            self.ctx.cl.lib.culeace_eraser_free(self.h)
            self.h = None


def culeace_fit(ctx, x, labels, block, precision, classes=2, svd_tol=0.01):
    """Fits on x (n, d) host array (any buffer with .ctypes.data) in blocks;
    labels (n,) int32 in [0, classes). Returns an Eraser."""
    cl = ctx.cl
    n, d = x.shape
    dt = {np.dtype(np.float16): DT_F16, np.dtype(np.float32): DT_F32,
          np.dtype(np.float64): DT_F64}[x.dtype]
    buf, o = cl.fit_opts()
    # concept-erasure's LeaceFitter defaults.
    o.method, o.affine, o.shrinkage, o.constrain_cov_trace = METHOD_LEACE, 1, 1, 1
    o.svd_tol = svd_tol
    o.precision = PRECISIONS[precision]
    f = ctypes.c_void_p()
    ctx.check(cl.lib.culeace_fitter_create(ctx.h, d, classes, Z_CLASSES, buf,
                                           ctypes.byref(f)), "fitter_create")
    t0 = time.perf_counter()  # the update calls synchronise: host clock
    try:
        base, lbase = x.ctypes.data, labels.ctypes.data
        row = x.strides[0]
        for a in range(0, n, block):
            nb = min(block, n - a)
            ctx.check(cl.lib.culeace_fitter_update_classes(
                f, base + a * row, dt, nb, x.strides[0] // x.itemsize,
                lbase + a * 4), f"fitter_update_classes(rows {a}..{a + nb})")
        assert cl.lib.culeace_fitter_rows(f) == n
        t_rows = time.perf_counter() - t0
        e = ctypes.c_void_p()
        ctx.check(cl.lib.culeace_fitter_finalize(f, ctypes.byref(e)),
                  "fitter_finalize")
    finally:
        cl.lib.culeace_fitter_free(f)
    er = Eraser(ctx, e)
    er.t_rows, er.t_finalize = t_rows, time.perf_counter() - t0 - t_rows
    return er


# ---- timing ------------------------------------------------------------------------

def summary(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs),
            "all": xs}


class Dev:
    """torch device helpers: event timing on CUDA, host clock on the CPU."""

    def __init__(self, torch, name):
        self.torch, self.name = torch, name
        self.cuda = name.startswith("cuda")

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def time_events(self, fn, repeats, warmup=1):
        """Seconds of fn() on the current stream, per call (events)."""
        t = self.torch
        for _ in range(warmup):
            fn()
        self.sync()
        out = []
        for _ in range(repeats):
            if self.cuda:
                a = t.cuda.Event(enable_timing=True)
                b = t.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                out.append(a.elapsed_time(b) / 1e3)
            else:
                t0 = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t0)
        return summary(out)

    def time_host(self, fn, repeats, warmup=1):
        """Seconds of fn() by the host clock with a synchronize each side."""
        for _ in range(warmup):
            fn()
            self.sync()
        out = []
        for _ in range(repeats):
            self.sync()
            t0 = time.perf_counter()
            fn()
            self.sync()
            out.append(time.perf_counter() - t0)
        return summary(out)


def log(msg):
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


# ---- floors ------------------------------------------------------------------------

def floors(torch, dev, p):
    """Measured ceilings of this machine."""
    t = torch
    res = {}
    g = t.Generator(device=dev.name).manual_seed(p["seed"] + 1)

    # D2D copy: bytes read + written.
    n = p["copy_mib"] * 2**20 // 2
    src = t.randn(n, device=dev.name, dtype=t.float16, generator=g)
    dst = t.empty_like(src)
    s = dev.time_events(lambda: dst.copy_(src), p["copy_repeats"])
    res["d2d"] = dict(s, bytes=2 * n * 2, gb_s=2 * n * 2 / s["median"] / 1e9)
    del src, dst

    # H2D: from pinned and from pageable host memory (filled from the device:
    # random, non-zero).
    n = p["h2d_mib"] * 2**20 // 2
    dsrc = t.randn(n, device=dev.name, dtype=t.float16, generator=g)
    ddst = t.empty_like(dsrc)
    for kind in ("pinned", "pageable"):
        pin = kind == "pinned" and dev.cuda
        host = t.empty(n, dtype=t.float16, pin_memory=pin)
        host.copy_(dsrc)
        dev.sync()
        s = dev.time_events(lambda: ddst.copy_(host, non_blocking=pin),
                            p["copy_repeats"])
        res[f"h2d_{kind}"] = dict(s, bytes=n * 2, gb_s=n * 2 / s["median"] / 1e9,
                                  pinned=bool(pin))
        del host
    del dsrc, ddst

    # GEMM rates on M^3 (2 M^3 flops): f16 (tensor cores), f32 without TF32, f64.
    m = p["gemm"]
    tf32 = t.backends.cuda.matmul.allow_tf32 if dev.cuda else None
    try:
        if dev.cuda:
            t.backends.cuda.matmul.allow_tf32 = False
        for name, dtype in (("f16", t.float16), ("f32", t.float32),
                            ("f64", t.float64)):
            a = t.randn(m, m, device=dev.name, dtype=dtype, generator=g)
            b = t.randn(m, m, device=dev.name, dtype=dtype, generator=g)
            c = t.empty(m, m, device=dev.name, dtype=dtype)
            s = dev.time_events(lambda: t.mm(a, b, out=c), p["gemm_repeats"])
            res[f"gemm_{name}"] = dict(s, m=m, tflops=2 * m**3 / s["median"] / 1e12)
            del a, b, c
    finally:
        if dev.cuda:
            t.backends.cuda.matmul.allow_tf32 = tf32

    # eigh of an SPD matrix (cuSOLVER syevd through torch), f64 and f32.
    e = p["eigh"]
    a = t.randn(e, e, device=dev.name, dtype=t.float64, generator=g)
    spd = a @ a.T / e + t.eye(e, device=dev.name, dtype=t.float64)
    del a
    for name, dtype in (("f64", t.float64), ("f32", t.float32)):
        m_ = spd.to(dtype)
        s = dev.time_host(lambda: t.linalg.eigh(m_), p["eigh_repeats"])
        res[f"eigh_{name}"] = dict(s, n=e)
        del m_
    del spd
    return res


# ---- data --------------------------------------------------------------------------

def make_data(torch, dev, p):
    """(x, labels, truth): x (n, d) float16 numpy (host), labels (n,) int32.
    Rows: correlated Gaussian with per-column scales and a non-zero mean, plus
    a planted direction whose sign is the label. Made on the device in
    blocks."""
    t = torch
    n, d, blk = p["n"], p["d"], p["block"]
    g = t.Generator(device=dev.name).manual_seed(p["seed"])
    f32 = dict(device=dev.name, dtype=t.float32)
    scale = t.exp(t.empty(d, **f32).uniform_(-1.0, 1.0, generator=g))
    mu = 0.5 * t.randn(d, generator=g, **f32)
    u = t.randn(d, generator=g, **f32)
    u /= u.norm()
    k = 8
    mix = 0.5 * t.randn(k, d, generator=g, **f32)
    x = np.empty((n, d), np.float16)
    labels = np.empty(n, np.int32)
    xt, lt = torch.from_numpy(x), torch.from_numpy(labels)
    for a in range(0, n, blk):
        b = min(n, a + blk)
        z = (t.rand(b - a, generator=g, **f32) < 0.5)
        xb = t.randn(b - a, d, generator=g, **f32) * scale + mu
        xb += t.randn(b - a, k, generator=g, **f32) @ mix
        xb += (2.0 * z.float() - 1.0)[:, None] * (1.5 * u * scale.mean())
        xt[a:b].copy_(xb.to(t.float16))
        lt[a:b].copy_(z.to(t.int32))
    dev.sync()
    return x, labels


# ---- fit ---------------------------------------------------------------------------

def peer_fit(torch, dev, xt, zt, block, LeaceFitter, dtype=None):
    """concept-erasure as a user writes it: LeaceFitter on the GPU (float32
    unless dtype says otherwise), blocks moved from a CPU tensor with .cuda()
    (converted there)."""
    n, d = xt.shape
    dtype = dtype or torch.float32
    fitter = LeaceFitter(d, 1, device=dev.name, dtype=dtype)
    for a in range(0, n, block):
        b = min(n, a + block)
        xb = xt[a:b].to(dev.name).to(dtype)
        zb = zt[a:b].to(dev.name).to(dtype)
        fitter.update(xb, zb)
    return fitter.eraser


def factors64(torch, dev, e):
    """(L (d, r), R (r, d), bias (d)) in float64 on dev, from a culeace
    Eraser or a concept-erasure LeaceEraser."""
    t = torch
    f64 = dict(device=dev.name, dtype=t.float64)
    if isinstance(e, Eraser):
        return (t.from_numpy(e.L).to(**f64), t.from_numpy(e.R).to(**f64),
                t.from_numpy(e.bias).to(**f64))
    L, R = e.proj_left.to(**f64), e.proj_right.to(**f64)
    b = e.bias.to(**f64) if e.bias is not None else t.zeros(L.shape[0], **f64)
    return L, R, b  # P = I - L R, edit = (x - b) R^T L^T


def compare_erasers(torch, dev, x_rows, ref, er):
    """x_rows: (S, d) float16 numpy rows; ref the reference eraser, er the
    one compared (either kind). Erased rows and edits in float64,
    P = I - L R, the bias, and both ranks."""
    t = torch
    x = t.from_numpy(x_rows).to(device=dev.name, dtype=t.float64)
    L, R, b = factors64(torch, dev, er)
    Lc, Rc, bc = factors64(torch, dev, ref)
    e1 = ((x - b) @ R.T) @ L.T
    e2 = ((x - bc) @ Rc.T) @ Lc.T
    y1, y2 = x - e1, x - e2
    eye = t.eye(x.shape[1], device=dev.name, dtype=t.float64)
    P1, P2 = eye - L @ R, eye - Lc @ Rc
    return {
        "rows_rel": float((y1 - y2).norm() / y2.norm()),
        "edit_rel": float((e1 - e2).norm() / e2.norm()),
        "P_maxrel": float((P1 - P2).abs().max() / P2.abs().max()),
        "bias_maxrel": float((b - bc).abs().max() / bc.abs().max()),
        "rank": int(L.shape[1]), "rank_ref": int(Lc.shape[1]),
    }


def bench_fit(torch, dev, cl, ctx, x, labels, p, LeaceFitter, res):
    """Times every variant once per round, rounds interleaved (the first is
    the warm-up). Variants: culeace per precision from the numpy array
    (pageable) and, with BENCH_PINNED, from a culeace_host_alloc copy;
    concept-erasure. Returns (results, erasers by variant)."""
    n, d, blk, reps = p["n"], p["d"], p["block"], p["repeats"]
    xt, zt = torch.from_numpy(x), torch.from_numpy(labels)
    variants = {}
    runs = []

    def cul_run(name, arr, prec, host_whiten=False):
        def fn():
            if host_whiten:  # the eraser's whitening built on the host
                os.environ["CULEACE_HOST_WHITEN"] = "1"
            try:
                variants[name] = culeace_fit(ctx, arr, labels, blk, prec)
            finally:
                os.environ.pop("CULEACE_HOST_WHITEN", None)
        return (name, fn)

    for prec in p["precisions"]:
        runs.append(cul_run(f"culeace_{prec}", x, prec))
    ptr = xp = pinned = None
    if p["pinned"]:
        ptr = cl.lib.culeace_host_alloc(ctx.h, x.nbytes)
        if not ptr:
            res["notes"].append("culeace_host_alloc(%d) failed: %s" % (
                x.nbytes, cl.lib.culeace_ctx_last_error(ctx.h).decode()))
        else:
            pinned = (ctypes.c_uint16 * (n * d)).from_address(ptr)
            xp = np.frombuffer(pinned, dtype=np.float16).reshape(n, d)
            np.copyto(xp, x)
            for prec in p["precisions"]:
                runs.append(cul_run(f"culeace_{prec}_pinned", xp, prec))
            if dev.cuda:  # before/after the whitening moved to the device
                prec = p["precisions"][0]
                runs.append(cul_run(f"culeace_{prec}_pinned_hostwhiten", xp,
                                    prec, host_whiten=True))

    def peer():
        variants["concept_erasure"] = peer_fit(torch, dev, xt, zt, blk,
                                               LeaceFitter)
    if LeaceFitter is not None:
        runs.append(("concept_erasure", peer))

    times = {k: [] for k, _ in runs}
    parts = {k: ([], []) for k, _ in runs}  # culeace: rows pass, finalize
    try:
        for it in range(reps + 1):  # the first round is the warm-up
            for name, fn in runs:
                old = variants.pop(name, None)
                if isinstance(old, Eraser):
                    old.free()
                dev.sync()
                t0 = time.perf_counter()
                fn()
                dev.sync()
                if it:
                    times[name].append(time.perf_counter() - t0)
                    v = variants.get(name)
                    if isinstance(v, Eraser):
                        parts[name][0].append(v.t_rows)
                        parts[name][1].append(v.t_finalize)
            log(f"fit round {it}/{reps} done" + (" (warm-up)" if not it else ""))
        out = {"variants": {k: summary(v) for k, v in times.items()}}
        for k, (rows_s, fin_s) in parts.items():
            if rows_s:
                out["variants"][k]["rows_median"] = statistics.median(rows_s)
                out["variants"][k]["finalize_median"] = statistics.median(fin_s)
        first = variants[f"culeace_{p['precisions'][0]}"]
        out["eraser"] = {"rank": first.rank, "n_seen": first.n_seen,
                         "info": first.info}
        # The reference: concept-erasure's LeaceFitter in float64 on the same
        # rows (once, untimed); every variant, concept-erasure's float32 one
        # included, is compared with it.
        out["agreement"] = {}
        if LeaceFitter is not None:
            t0 = time.perf_counter()
            ref = peer_fit(torch, dev, xt, zt, blk, LeaceFitter,
                           dtype=torch.float64)
            dev.sync()
            out["reference_s"] = time.perf_counter() - t0
            rng = np.random.default_rng(p["seed"] + 7)
            rows = x[np.sort(rng.choice(n, size=min(n, 1024), replace=False))]
            for k, v in variants.items():
                out["agreement"][k] = compare_erasers(torch, dev, rows, ref, v)
            del ref
        return out, variants
    finally:
        for k in list(variants):
            if "_pinned" in k:
                variants.pop(k).free()
        if ptr:
            del xp, pinned
            cl.lib.culeace_host_free(ctx.h, ptr)


# ---- apply -------------------------------------------------------------------------

def chunked_rel(torch, a, b, rows=65536):
    """||a - b|| / ||b|| in float64, in row chunks (no full-size temporaries)."""
    num = den = 0.0
    for i in range(0, a.shape[0], rows):
        x = a[i:i + rows].double()
        y = b[i:i + rows].double()
        num += float(((x - y) ** 2).sum())
        den += float((y ** 2).sum())
    return math.sqrt(num / den)


def bench_apply(torch, dev, cl, ctx, x, er, ce, p):
    """On a CPU device (--dry-run) the same flow runs with culeace_eraser_apply
    on the host tensor in place of the device call."""
    t = torch
    n, d = x.shape
    xg = t.from_numpy(x).to(dev.name, copy=True)  # (n, d) float16, resident

    if dev.cuda:
        stream = ctypes.c_void_p(t.cuda.current_stream().cuda_stream)

        def cul():
            ctx.check(cl.lib.culeace_eraser_apply_device(
                ctx.h, er.h, ctypes.c_void_p(xg.data_ptr()), DT_F16, n, d,
                stream), "eraser_apply_device")
    else:
        def cul():
            ctx.check(cl.lib.culeace_eraser_apply(
                ctx.h, er.h, ctypes.c_void_p(xg.data_ptr()), DT_F16, n, d),
                "eraser_apply")

    out = {"bytes": 2 * n * d * 2}
    # Reference check first, on the first application: concept-erasure's
    # output (float16 factors, as a float16 model would use it) vs culeace's.
    ce16 = None
    if ce is not None:
        from concept_erasure import LeaceEraser
        ce16 = LeaceEraser(ce.proj_left.half(), ce.proj_right.half(),
                           ce.bias.half() if ce.bias is not None else None)
        with t.no_grad():
            y_ce = ce16(xg)
    # And culeace's own float64 reference on a few rows.
    S = min(n, 4096)
    x0 = xg[:S].double().cpu().numpy()
    cul()
    dev.sync()
    ref = x0 - ((x0 - er.bias) @ er.R.T) @ er.L.T
    got = xg[:S].double().cpu().numpy()
    out["self_rel"] = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
    if ce16 is not None:
        out["vs_peer_rel"] = chunked_rel(t, xg, y_ce)
        del y_ce
        if dev.cuda:
            t.cuda.empty_cache()

        def peer():
            with t.no_grad():
                ce16(xg)
        s = dev.time_events(peer, p["apply_repeats"])
        out["concept_erasure"] = dict(s, gb_s=out["bytes"] / s["median"] / 1e9)
    s = dev.time_events(cul, p["apply_repeats"])
    out["culeace"] = dict(s, gb_s=out["bytes"] / s["median"] / 1e9)
    if dev.cuda:  # the general kernel, for comparison (kernels/apply.cu)
        os.environ["CULEACE_APPLY_KERNEL"] = "generic"
        try:
            s = dev.time_events(cul, p["apply_repeats"])
        finally:
            os.environ.pop("CULEACE_APPLY_KERNEL", None)
        out["culeace_generic"] = dict(s, gb_s=out["bytes"] / s["median"] / 1e9)
    del xg
    if dev.cuda:
        t.cuda.empty_cache()
    return out


def bench_apply_multi(torch, dev, cl, ctx, x, p):
    """Apply at rank r = BENCH_RANK (default 16): an eraser fitted by
    culeace on the first rows with r + 1 random classes; the peer is
    concept-erasure's LeaceEraser holding the same factors (its apply does
    not depend on how they were fitted)."""
    from concept_erasure import LeaceEraser
    t = torch
    r = p["rank_multi"]
    m = min(x.shape[0], 131072)
    rng = np.random.default_rng(p["seed"] + 11)
    labels = rng.integers(0, r + 1, size=m, dtype=np.int32)
    er = culeace_fit(ctx, x[:m], labels, p["block"], "f32", classes=r + 1,
                     svd_tol=1e-6)  # random classes: keep every real direction
    try:
        if er.rank != r:
            raise CuleaceError(f"{r + 1}-class eraser has rank {er.rank}, not {r}")
        f32 = dict(device=dev.name, dtype=t.float32)
        ce = LeaceEraser(t.from_numpy(er.L).to(**f32), t.from_numpy(er.R).to(**f32),
                         t.from_numpy(er.bias).to(**f32))
        out = bench_apply(torch, dev, cl, ctx, x, er, ce, p)
        out["rank"] = r
        return out
    finally:
        er.free()


# ---- dry run: the CPU-independent parts on a CPU context ---------------------------

def dry_run(cl, torch, LeaceFitter, p, res):
    """Tiny sizes on the CPU: struct mirrors, fit, factors, host apply,
    apply_device refused with CULEACE_ERR_STATE, host_alloc on a CPU
    context, the peer comparison and the floors' code on torch's CPU."""
    dev = Dev(torch, "cpu")
    ctx = Ctx(cl, DEVICE_CPU)
    res["ctx"] = {"backend": ctx.backend, "note": ctx.note}
    try:
        x, labels = make_data(torch, dev, p)
        er = culeace_fit(ctx, x, labels, p["block"], p["precisions"][0])
        assert er.rank == 1 and er.n_seen == p["n"] and er.d == p["d"], er.info
        # host apply vs numpy reference
        xs = x[:257].copy()
        ref = xs.astype(np.float64)
        ref = ref - ((ref - er.bias) @ er.R.T) @ er.L.T
        ctx.check(cl.lib.culeace_eraser_apply(ctx.h, er.h, xs.ctypes.data, DT_F16,
                                              xs.shape[0], xs.shape[1]),
                  "eraser_apply")
        rel = float(np.linalg.norm(xs - ref) / np.linalg.norm(ref))
        assert rel < 1e-2, rel
        s = cl.lib.culeace_eraser_apply_device(ctx.h, er.h, xs.ctypes.data,
                                               DT_F16, xs.shape[0], xs.shape[1],
                                               None)
        assert s == CULEACE_ERR_STATE, cl.status_name(s)
        ptr = cl.lib.culeace_host_alloc(ctx.h, 1 << 20)
        assert ptr, "culeace_host_alloc on a CPU context returned NULL"
        ctypes.memset(ptr, 1, 1 << 20)
        cl.lib.culeace_host_free(ctx.h, ptr)
        res["dry_run"] = {"host_apply_rel": rel,
                          "apply_device_on_cpu": cl.status_name(s),
                          "eraser": er.info}
        if LeaceFitter is not None:
            ce = peer_fit(torch, dev, torch.from_numpy(x), torch.from_numpy(labels),
                          p["block"], LeaceFitter)
            res["dry_run"]["agreement"] = compare_erasers(torch, dev, x[:512], ce, er)
            ref = peer_fit(torch, dev, torch.from_numpy(x), torch.from_numpy(labels),
                           p["block"], LeaceFitter, dtype=torch.float64)
            res["dry_run"]["agreement_f64"] = compare_erasers(torch, dev, x[:512],
                                                              ref, er)
        # fit with pinned-style buffer (malloc on the CPU) through the same path
        fit, variants = bench_fit(torch, dev, cl, ctx, x, labels, p,
                                  LeaceFitter, res)
        res["fit"] = fit
        res["floors"] = floors(torch, dev, p)
        res["apply"] = bench_apply(torch, dev, cl, ctx, x,
                                   variants[f"culeace_{p['precisions'][0]}"],
                                   variants.get("concept_erasure"), p)
        if LeaceFitter is not None and p["rank_multi"] > 1:
            res["apply_multi"] = bench_apply_multi(torch, dev, cl, ctx, x, p)
        for v in variants.values():
            if isinstance(v, Eraser):
                v.free()
        er.free()
    finally:
        ctx.free()


# ---- report ------------------------------------------------------------------------

def render(res):
    p, fl = res["params"], res.get("floors", {})
    lines = [f"GPU bench ({res['machine'].get('gpu', 'cpu')}, {res['machine'].get('date')}): "
             f"fit/apply {p['n']} x {p['d']} float16, block {p['block']}, "
             f"{p['repeats']} repeats after a warm-up, medians.", ""]
    if fl:
        lines += ["| floor | value |", "|---|---:|"]
        for k, unit in (("d2d", "GB/s"), ("h2d_pinned", "GB/s"),
                        ("h2d_pageable", "GB/s")):
            if k in fl:
                lines.append(f"| {k.replace('_', ' ')} | {fl[k]['gb_s']:.1f} {unit} |")
        for k in ("gemm_f16", "gemm_f32", "gemm_f64"):
            if k in fl:
                lines.append(f"| {k.replace('_', ' ')} {fl[k]['m']}^3 | "
                             f"{fl[k]['tflops']:.4g} TFLOP/s |")
        for k in ("eigh_f64", "eigh_f32"):
            if k in fl:
                lines.append(f"| {k.replace('_', ' ')} {fl[k]['n']} | "
                             f"{fl[k]['median']:.3f} s |")
        lines.append("")
    fit = res.get("fit")
    if fit:
        floors_s = res.get("fit_floor", {}).get("s", {})
        fv = fit["variants"]
        lines += ["| fit | time s | min..max s | rows pass s | finalize s "
                  "| peer / this | x floor |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        peer = fv.get("concept_erasure", {}).get("median")
        for k, s in fv.items():
            if k == "concept_erasure":
                label, prec = "concept-erasure f32 (.cuda() blocks)", "f32"
            else:
                prec = k.split("_")[1]
                label = (f"culeace {prec}, " + ("culeace_host_alloc rows"
                         if "_pinned" in k else "numpy rows")
                         + (", whitening on the host" if k.endswith("_hostwhiten")
                            else ""))
            ratio = f"{peer / s['median']:.2f}" if peer else ""
            xf = (f"{s['median'] / floors_s[prec]:.2f}" if prec in floors_s
                  else "")
            rp = (f"{s['rows_median']:.3f} | {s['finalize_median']:.3f}"
                  if "rows_median" in s else " | ")
            lines.append(f"| {label} | {s['median']:.3f} | {s['min']:.3f}.."
                         f"{s['max']:.3f} | {rp} | {ratio} | {xf} |")
        ff = res.get("fit_floor")
        if ff:
            for prec, v in ff["s"].items():
                lines.append(f"| floor {prec}: max(H2D pinned {ff['h2d_s']:.3f}, "
                             f"{GEMM_OF[prec]} GEMM {ff['gemm_s'][prec]:.3f}) + "
                             f"eigh f64 {ff['eigh_s']:.3f} | {v:.3f} | | | | | 1.00 |")
        for k, ag in fit.get("agreement", {}).items():
            lines.append(f"- {k} vs concept-erasure float64: erased rows rel "
                         f"{ag['rows_rel']:.1e}, edits rel {ag['edit_rel']:.1e}, "
                         f"P max rel {ag['P_maxrel']:.1e}, bias "
                         f"{ag['bias_maxrel']:.1e}, rank {ag['rank']} vs "
                         f"{ag['rank_ref']}")
        lines.append("")
    d2d = fl.get("d2d", {}).get("gb_s")
    for key in ("apply", "apply_multi"):
        ap = res.get(key)
        if not (ap and "culeace" in ap):
            continue
        rank = ap.get("rank", 1)
        lines += [f"| apply in place (rank {rank}, f16) | time ms | GB/s | of D2D |",
                  "|---|---:|---:|---:|"]
        for k, label in (("culeace", "culeace_eraser_apply (host, dry run)"
                          if p.get("dry_run") else "culeace_eraser_apply_device"),
                         ("culeace_generic", "culeace, general kernel "
                          "(CULEACE_APPLY_KERNEL=generic)"),
                         ("concept_erasure", "concept-erasure eraser(x) f16")):
            if k in ap:
                s = ap[k]
                frac = f"{s['gb_s'] / d2d:.2f}" if d2d else ""
                lines.append(f"| {label} | {s['median'] * 1e3:.2f} | "
                             f"{s['gb_s']:.0f} | {frac} |")
        lines.append("")
        lines.append(f"- apply rank {rank}: culeace vs its float64 reference rel "
                     f"{ap['self_rel']:.1e}" + (
                         f", vs concept-erasure output rel {ap['vs_peer_rel']:.1e}"
                         if "vs_peer_rel" in ap else ""))
        lines.append("")
    if res["checks"]:
        lines.append("")
        lines.append("| check | value | limit | ok |")
        lines.append("|---|---:|---:|---|")
        for c in res["checks"]:
            lines.append(f"| {c['name']} | {c['value']:.2e} | {c['limit']:.0e} | "
                         f"{'yes' if c['ok'] else 'NO'} |")
    for e in res["errors"]:
        lines.append(f"- ERROR {e}")
    return "\n".join(lines) + "\n"


# ---- main --------------------------------------------------------------------------

def env_int(name, default):
    return int(os.environ.get(name, default))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true",
                    help="tiny sizes on the CPU (CPU context, torch on the CPU)")
    ap.add_argument("--lib", default=os.environ.get(
        "CULEACE_LIB", os.path.join(ROOT, "build", "libculeace.so")))
    ap.add_argument("--json", default=os.path.join(
        os.environ.get("OUT") or "/tmp", "bench_gpu.json"))
    ap.add_argument("--no-floors", action="store_true")
    args = ap.parse_args()

    dry = args.dry_run
    p = {
        "n": env_int("BENCH_N", 8192 if dry else 1048576),
        "d": env_int("BENCH_D", 64 if dry else 4096),
        "block": env_int("BENCH_BLOCK", 1000 if dry else 65536),
        "repeats": env_int("BENCH_REPEATS", 2 if dry else 3),
        "apply_repeats": env_int("BENCH_APPLY_REPEATS", 3 if dry else 10),
        "copy_repeats": env_int("BENCH_COPY_REPEATS", 3 if dry else 10),
        "gemm": env_int("BENCH_GEMM", 256 if dry else 8192),
        "gemm_repeats": env_int("BENCH_GEMM_REPEATS", 3 if dry else 10),
        "eigh": env_int("BENCH_EIGH", 128 if dry else 4096),
        "eigh_repeats": env_int("BENCH_EIGH_REPEATS", 2 if dry else 3),
        "copy_mib": env_int("BENCH_COPY_MIB", 16 if dry else 2048),
        "h2d_mib": env_int("BENCH_H2D_MIB", 16 if dry else 1024),
        "precisions": os.environ.get("BENCH_PRECISION", "f32,tensor").split(","),
        "rank_multi": env_int("BENCH_RANK", 16),
        "pinned": env_int("BENCH_PINNED", 1),
        "seed": env_int("BENCH_SEED", 0),
        "dry_run": dry,
    }
    if not p["precisions"] or any(q not in PRECISIONS for q in p["precisions"]):
        sys.exit(f"{PROG}: BENCH_PRECISION: comma-separated f32, f64, tensor")

    import torch
    res = {"params": p, "errors": [], "notes": [], "checks": [],
           "command": "python3 bench/gpu/bench_gpu.py" + (" --dry-run" if dry else "")}
    res["machine"] = {
        "host": platform.node(), "python": platform.python_version(),
        "torch": torch.__version__, "numpy": np.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cuda_available": torch.cuda.is_available(),
    }
    try:
        from importlib import metadata
        res["machine"]["concept_erasure"] = metadata.version("concept-erasure")
    except Exception:
        res["machine"]["concept_erasure"] = None
    try:
        from concept_erasure import LeaceFitter
    except ImportError as e:
        LeaceFitter = None
        res["errors"].append(f"concept-erasure not importable ({e}): peer skipped")

    def check(name, value, limit):
        ok = bool(value <= limit) and not math.isnan(value)
        res["checks"].append({"name": name, "value": value, "limit": limit, "ok": ok})

    def apply_checks(label, a):
        """An apply result's checks, and each timing as a fraction of the
        device copy rate."""
        check(f"{label}: culeace vs its f64 reference", a["self_rel"], 1e-2)
        if "vs_peer_rel" in a:
            check(f"{label}: culeace vs concept-erasure output",
                  a["vs_peer_rel"], 1e-2)
        d2d = res.get("floors", {}).get("d2d", {}).get("gb_s")
        for k in ("culeace", "culeace_generic", "concept_erasure"):
            if d2d and k in a:
                a[k]["of_d2d"] = a[k]["gb_s"] / d2d

    try:
        cl = Culeace(args.lib)
        res["machine"]["culeace"] = cl.version()
        res["machine"]["culeace_backends"] = cl.backends()
        res["machine"]["culeace_lib"] = os.path.abspath(args.lib)
    except (OSError, CuleaceError) as e:
        res["errors"].append(f"loading {args.lib}: {e}")
        cl = None

    if dry:
        if cl is not None:
            try:
                dry_run(cl, torch, LeaceFitter, p, res)
                ag = res["dry_run"].get("agreement")
                if ag:
                    check("dry fit: erased rows vs concept-erasure", ag["rows_rel"], 1e-3)
                check("dry host apply vs f64 reference",
                      res["dry_run"]["host_apply_rel"], 1e-2)
                for k, ag in res["fit"]["agreement"].items():
                    check(f"dry fit: erased rows, {k} vs concept-erasure float64",
                          ag["rows_rel"], 1e-3)
                check("dry fit: erased rows vs concept-erasure float64",
                      res["dry_run"]["agreement_f64"]["rows_rel"], 1e-6)
                a = res["apply"]
                check("dry apply (host): culeace vs its f64 reference",
                      a["self_rel"], 1e-2)
                if "vs_peer_rel" in a:
                    check("dry apply (host): culeace vs concept-erasure output",
                          a["vs_peer_rel"], 1e-2)
                a = res.get("apply_multi")
                if a:
                    check(f"dry apply rank {a['rank']} (host) vs f64 reference",
                          a["self_rel"], 1e-2)
                    check(f"dry apply rank {a['rank']} (host) vs concept-erasure",
                          a["vs_peer_rel"], 1e-2)
            except Exception as e:
                traceback.print_exc()
                res["errors"].append(f"dry run: {type(e).__name__}: {e}")
        finish(res, args.json)
        return

    if not torch.cuda.is_available():
        res["errors"].append("torch sees no CUDA device (use --dry-run off a GPU)")
        finish(res, args.json)
        return
    dev = Dev(torch, "cuda")
    props = torch.cuda.get_device_properties(0)
    res["machine"].update(gpu=props.name, sms=props.multi_processor_count,
                          gpu_mem_gib=round(props.total_memory / 2**30, 1),
                          torch_cuda=torch.version.cuda)
    log(f"{props.name}, torch {torch.__version__}, culeace "
        f"{res['machine'].get('culeace')} ({res['machine'].get('culeace_backends')})")

    if not args.no_floors:
        try:
            t0 = time.time()
            res["floors"] = floors(torch, dev, p)
            log(f"floors done ({time.time() - t0:.1f} s)")
        except Exception as e:
            traceback.print_exc()
            res["errors"].append(f"floors: {type(e).__name__}: {e}")

    ctx = None
    if cl is not None:
        try:
            ctx = Ctx(cl, DEVICE_CUDA, torch.cuda.current_device())
            res["ctx"] = {"backend": ctx.backend, "note": ctx.note}
        except CuleaceError as e:
            res["errors"].append(str(e))

    t0 = time.time()
    x, labels = make_data(torch, dev, p)
    log(f"data {p['n']} x {p['d']} float16 made ({time.time() - t0:.1f} s)")

    variants = {}
    if ctx is not None:
        try:
            fit, variants = bench_fit(torch, dev, cl, ctx, x, labels, p,
                                      LeaceFitter, res)
            res["fit"] = fit
            for k, ag in fit["agreement"].items():
                if k != "concept_erasure":
                    check(f"fit: erased rows, {k} vs concept-erasure float64",
                          ag["rows_rel"], 1e-3)
        except Exception as e:
            traceback.print_exc()
            res["errors"].append(f"fit: {type(e).__name__}: {e}")
        fl = res.get("floors", {})
        if fl and "fit" in res:
            n, d = p["n"], p["d"]
            bytes_ = n * d * 2 + n * 4
            flops = float(n) * d * d
            h2d_s = bytes_ / (fl["h2d_pinned"]["gb_s"] * 1e9)
            eig = fl["eigh_f64"]["median"] * (d / p["eigh"]) ** 3
            gemm_s = {prec: flops / (fl[f"gemm_{GEMM_OF[prec]}"]["tflops"] * 1e12)
                      for prec in sorted(set(p["precisions"]) | {"f32", "tensor"})}
            ff = res["fit_floor"] = {
                "bytes": bytes_, "flops": flops, "h2d_s": h2d_s,
                "gemm_s": gemm_s, "eigh_s": eig,
                "s": {k: max(h2d_s, v) + eig for k, v in gemm_s.items()},
                "eigh_scaled_from": p["eigh"]}
            fv = res["fit"]["variants"]
            ratios = {}
            for k, v in fv.items():
                prec = "f32" if k == "concept_erasure" else k.split("_")[1]
                ratios[f"{k}_x_floor_{prec}"] = v["median"] / ff["s"][prec]
                if k != "concept_erasure" and "concept_erasure" in fv:
                    ratios[f"concept_erasure_over_{k}"] = (
                        fv["concept_erasure"]["median"] / v["median"])
            res["fit_ratios"] = ratios
        main_er = variants.get(f"culeace_{p['precisions'][0]}")
        if main_er is not None:
            res["apply_eraser"] = f"culeace_{p['precisions'][0]}"
            try:
                res["apply"] = bench_apply(torch, dev, cl, ctx, x, main_er,
                                           variants.get("concept_erasure"), p)
                apply_checks("apply", res["apply"])
            except Exception as e:
                traceback.print_exc()
                res["errors"].append(f"apply: {type(e).__name__}: {e}")
        if "apply" in res and p["rank_multi"] > 1:
            try:
                res["apply_multi"] = bench_apply_multi(torch, dev, cl, ctx, x, p)
                apply_checks(f"apply rank {res['apply_multi']['rank']}",
                             res["apply_multi"])
            except Exception as e:
                traceback.print_exc()
                res["errors"].append(f"apply rank {p['rank_multi']}: "
                                     f"{type(e).__name__}: {e}")
        for v in variants.values():
            if isinstance(v, Eraser):
                v.free()
        ctx.free()
    finish(res, args.json)


def finish(res, path):
    md = render(res)
    res["markdown"] = md
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    with open(path, "w") as f:
        json.dump(res, f, indent=2, default=str)
    print(md)
    print(f"{PROG}: wrote {path}", file=sys.stderr)
    bad = res["errors"] or any(not c["ok"] for c in res["checks"])
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
