#!/usr/bin/env python3
"""make_dump.py — synthetic activation dumps with a planted concept.

Writes an HDF5 file shaped like a model's hidden-state dump, with a concept
of known rank planted in it, at any size: rows are streamed in blocks, so
memory stays bounded (262144 x 4096 x several layers works).

Model of one row i with class y_i (and prompt group g_i) at layer l:

    x = mu_l + noise * scales + F_i A_l + H_{g_i} B_l + s_l * c_{y_i} U_l^T

  scales  per-dimension noise scales (lognormal, plus two "outlier"
          dimensions 20x larger, as in real transformer activations);
  F_i     8 latent factors per row, shared by all layers (loadings A_l);
  H_g     4 latent factors per prompt group (loadings B_l), when --groups;
  U_l     (d, r) orthonormal basis of the concept subspace at layer l;
  c_y     class codes (K, r), centred over the classes and scaled so that
          for K = 2 the two class means are exactly s_l noise-sd apart;
  s_l     signal of layer l in units of the noise sd along the concept:
          signal * (0.05 + 0.95 exp(-((l - peak) / width)^2 / 2)), peak at
          60% of the depth, so some layers encode the concept strongly and
          some barely. The concept rank is min(r, K - 1).

With --tokens T every row holds T token vectors (n, T, d); each row has a
random length 1..T, /mask (n, T) uint8 marks the valid tokens, and only valid
tokens carry the concept (padding is background only).

Layouts of the activations (NAME = --name, default "hidden"):
  stacked0  /NAME (L, n, [T,] d)
  stacked1  /NAME (n, L, [T,] d)
  group     /NAME/0 ... /NAME/{L-1}, each (n, [T,] d)
  single    /NAME (n, [T,] d) (needs --layers 1)
Labels are uniform over the classes unless --class-weights is given; with
--groups every prompt group has one label. Other datasets: /labels int64 (n,), /groups int64 (n,) (with --groups),
/mask uint8 (n, T) (with --tokens), /truth/basis float32 (L, d, r),
/truth/class_codes float64 (K, r), /truth/signal float64 (L,).
Root attributes describe the planted truth (concept_rank, signal_per_layer,
noise_sd_per_layer, strongest_layer, ...) and the arguments.

float16 is numpy's round-to-nearest-even astype; bfloat16 is rounded to
nearest even here and written as a 2-byte HDF5 float (sign 15, exponent at
7 size 8, mantissa at 0 size 7, bias 127). Output is deterministic for the
same arguments (including --block-rows).

Example:  python data/make_dump.py --rows 4000 --dim 64 --layers 2 \\
              --layout group --dtype float32 -o /tmp/dump.h5
"""

import argparse
import os
import sys
import time

import h5py
import numpy as np

N_FACTORS = 8
N_GROUP_FACTORS = 4
OUTLIER_SCALE = 20.0


# ---- 2-byte floats ----------------------------------------------------------------

def bf16_h5type():
    """HDF5 datatype for bfloat16 (IEEE-like, 8 exponent, 7 mantissa bits)."""
    t = h5py.h5t.IEEE_F32LE.copy()
    t.set_fields(15, 7, 8, 0, 7)
    t.set_offset(0)
    t.set_precision(16)
    t.set_size(2)
    t.set_ebias(127)
    return t


def f32_to_bf16_bits(a):
    """float32 array -> uint16 bfloat16 bits, round to nearest even."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    r = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))
         >> np.uint32(16)).astype(np.uint16)
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    if nan.any():
        r[nan] = ((u[nan] >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16)
    return r


def bf16_bits_to_f32(b):
    """uint16 bfloat16 bits -> float32 (exact)."""
    return (np.asarray(b, dtype=np.uint32) << np.uint32(16)).view(np.float32)


# ---- the planted truth -------------------------------------------------------------

def signal_profile(n_layers, signal):
    """Signal per layer: a bump peaking at 60% depth over a 5% floor."""
    if n_layers == 1:
        return np.array([signal])
    layers = np.arange(n_layers)
    peak = round(0.6 * (n_layers - 1))
    width = max(1.0, n_layers / 4)
    return signal * (0.05 + 0.95 * np.exp(-0.5 * ((layers - peak) / width) ** 2))


def class_codes(rng, k, r):
    """(K, r) centred class codes; for K = 2 the means are 1 apart."""
    if k == 2:
        c = np.zeros((2, r))
        c[0, 0], c[1, 0] = -0.5, 0.5
        return c
    c = rng.standard_normal((k, r))
    c -= c.mean(axis=0)
    return c / np.sqrt(np.mean(np.sum(c * c, axis=1)))


class Layer:
    """Per-layer parameters (all O(d) or O(d r) memory)."""

    def __init__(self, seed, layer, d, r, codes, signal, groups):
        rng = np.random.default_rng([seed, 1, layer])
        self.mu = rng.normal(0.0, 1.0, d).astype(np.float32)
        scales = np.exp(rng.normal(0.0, 0.5, d))
        scales[rng.choice(d, size=min(2, d), replace=False)] = OUTLIER_SCALE
        self.scales = scales.astype(np.float32)
        self.A = (rng.standard_normal((N_FACTORS, d)) / np.sqrt(N_FACTORS)).astype(np.float32)
        self.B = ((rng.standard_normal((N_GROUP_FACTORS, d)) / np.sqrt(N_GROUP_FACTORS))
                  .astype(np.float32) if groups else None)
        self.U, _ = np.linalg.qr(rng.standard_normal((d, r)))
        self.noise_sd = self._noise_sd()
        self.signal = signal
        # class shifts (K, d): s_l * noise_sd * c_y U^T
        self.shift = (signal * self.noise_sd * codes @ self.U.T).astype(np.float32)

    def _noise_sd(self):
        """RMS sd of the background along the concept basis vectors."""
        var = []
        for u in self.U.T:
            v = np.sum((u * self.scales) ** 2) + np.sum((self.A @ u) ** 2)
            if self.B is not None:
                v += np.sum((self.B @ u) ** 2)
            var.append(v)
        return float(np.sqrt(np.mean(var)))


# ---- rows ---------------------------------------------------------------------------

def assign_labels(args):
    """Labels (n,) and groups (n,) or None; O(n) memory."""
    rng = np.random.default_rng([args.seed, 2])
    n, k, w = args.rows, args.classes, args.class_weights
    if not args.groups:
        if w is not None:
            return rng.choice(k, size=n, p=w).astype(np.int64), None
        return rng.integers(0, k, size=n).astype(np.int64), None
    if w is not None:
        group_label = rng.choice(k, size=args.groups, p=w)
    else:
        group_label = rng.permutation(args.groups) % k
    groups = rng.integers(0, args.groups, size=n).astype(np.int64)
    return group_label[groups].astype(np.int64), groups


def make_block(args, layer, lp, start, rows, labels, groups, factors, gfac, lengths):
    """Activations of one row block at one layer: (rows, [T,] d) float32."""
    rng = np.random.default_rng([args.seed, 3, layer, start])
    t = args.tokens or 1
    d = args.dim
    x = rng.standard_normal((rows, t, d), dtype=np.float32)
    x *= lp.scales
    x += lp.mu
    x += (factors @ lp.A)[:, None, :]
    if gfac is not None:
        x += (gfac[groups[start:start + rows]] @ lp.B)[:, None, :]
    shift = lp.shift[labels[start:start + rows]][:, None, :]
    if args.tokens:
        valid = np.arange(t)[None, :] < lengths[:, None]
        amp = rng.uniform(0.5, 1.5, size=(rows, t)).astype(np.float32) * valid
        x += shift * amp[:, :, None]
        return x
    x += shift
    return x[:, 0, :]


def encode(x, dtype):
    """float32 block -> array in the storage dtype (bf16 as uint16 bits)."""
    if dtype == "bfloat16":
        return f32_to_bf16_bits(x)
    return x.astype(np.dtype(dtype), copy=False)


# ---- HDF5 output ----------------------------------------------------------------------

def dataset_shapes(args):
    """{path: shape} of the activation datasets, and the layer-slicing rule."""
    n, L, d = args.rows, args.layers, args.dim
    tok = (args.tokens,) if args.tokens else ()
    name = "/" + args.name.strip("/")
    if args.layout == "stacked0":
        return {name: (L, n) + tok + (d,)}
    if args.layout == "stacked1":
        return {name: (n, L) + tok + (d,)}
    if args.layout == "group":
        return {f"{name}/{l}": (n,) + tok + (d,) for l in range(L)}
    return {name: (n,) + tok + (d,)}


def create_dataset(f, path, shape, args, row_axis):
    """Creates one activation dataset (chunked/compressed as asked)."""
    kw = {}
    chunks = args.chunks
    if args.compress and not chunks:
        chunks = max(1, min(args.rows, (1 << 20) // (np.prod(shape[row_axis + 1:]) * 4)))
    if chunks:
        c = [1] * len(shape)
        c[row_axis] = min(chunks, args.rows)
        c[row_axis + 1:] = shape[row_axis + 1:]
        kw["chunks"] = tuple(c)
    if args.compress:
        kw["compression"], kw["compression_opts"] = "gzip", args.compress
    if args.dtype == "bfloat16":
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        if chunks:
            dcpl.set_chunk(kw["chunks"])
            if args.compress:
                dcpl.set_deflate(args.compress)
        space = h5py.h5s.create_simple(shape)
        parent = f.require_group(os.path.dirname(path) or "/")
        dsid = h5py.h5d.create(parent.id, os.path.basename(path).encode(),
                               bf16_h5type(), space, dcpl=dcpl)
        return h5py.Dataset(dsid)
    return f.create_dataset(path, shape=shape, dtype=np.dtype(args.dtype), **kw)


def write_slab(dset, index, data, dtype):
    """dset[index] = data; bfloat16 bits go in raw, without conversion."""
    if dtype != "bfloat16":
        dset[index] = data
        return
    fspace = dset.id.get_space()
    start = [s.start if isinstance(s, slice) else s for s in index]
    count = [s.stop - s.start if isinstance(s, slice) else 1 for s in index]
    fspace.select_hyperslab(tuple(start), tuple(count))
    mspace = h5py.h5s.create_simple(tuple(count))
    dset.id.write(mspace, fspace, np.ascontiguousarray(data).reshape(count),
                  mtype=bf16_h5type())


def slab_index(args, layer, start, rows):
    """Index tuple of a (rows, [T,] d) block of one layer in its dataset."""
    rest = (slice(0, args.tokens),) if args.tokens else ()
    rows_sl = slice(start, start + rows)
    full_d = (slice(0, args.dim),)
    if args.layout == "stacked0":
        return (layer, rows_sl) + rest + full_d
    if args.layout == "stacked1":
        return (rows_sl, layer) + rest + full_d
    return (rows_sl,) + rest + full_d


def write_truth(f, args, layers, codes, signal, labels):
    """Planted-truth datasets and root attributes."""
    g = f.create_group("truth")
    g.create_dataset("basis", data=np.stack([lp.U for lp in layers]).astype(np.float32))
    g.create_dataset("class_codes", data=codes)
    g.create_dataset("signal", data=signal)
    a = f.attrs
    a["generator"] = "data/make_dump.py"
    a["command"] = " ".join(sys.argv)
    if args.class_weights is not None:
        a["class_weights"] = args.class_weights
    for key in ("rows", "dim", "layers", "tokens", "classes", "rank", "groups", "seed"):
        a[key] = np.int64(getattr(args, key))
    a["dtype"], a["layout"], a["x_name"] = args.dtype, args.layout, args.name
    a["layer_axis"] = np.int64({"stacked0": 0, "stacked1": 1}.get(args.layout, -1))
    a["concept_rank"] = np.int64(min(args.rank, args.classes - 1))
    a["signal"] = np.float64(args.signal)
    a["signal_per_layer"] = signal
    a["noise_sd_per_layer"] = np.array([lp.noise_sd for lp in layers])
    a["strongest_layer"] = np.int64(np.argmax(signal))
    a["weakest_layer"] = np.int64(np.argmin(signal))
    a["class_counts"] = np.bincount(labels, minlength=args.classes).astype(np.int64)
    a["description"] = ("synthetic activations: class-dependent mean shift of "
                        "s_l noise-sd in an r-dim subspace per layer (see "
                        "data/make_dump.py)")


def generate(args):
    """Writes the whole file, streaming row blocks."""
    labels, groups = assign_labels(args)
    rng = np.random.default_rng([args.seed, 0])
    codes = class_codes(rng, args.classes, args.rank)
    signal = signal_profile(args.layers, args.signal)
    gfac = (np.random.default_rng([args.seed, 4]).standard_normal(
        (args.groups, N_GROUP_FACTORS)).astype(np.float32) if args.groups else None)
    layers = [Layer(args.seed, l, args.dim, args.rank, codes, signal[l], args.groups)
              for l in range(args.layers)]
    tmp = args.out + ".tmp"
    t0 = time.time()
    with h5py.File(tmp, "w") as f:
        row_axis = 1 if args.layout == "stacked0" else 0
        dsets = {p: create_dataset(f, p, s, args, row_axis)
                 for p, s in dataset_shapes(args).items()}
        paths = list(dsets)
        f.create_dataset("labels", data=labels)
        if groups is not None:
            f.create_dataset("groups", data=groups)
        mask = (f.create_dataset("mask", shape=(args.rows, args.tokens), dtype=np.uint8)
                if args.tokens else None)
        for start in range(0, args.rows, args.block_rows):
            rows = min(args.block_rows, args.rows - start)
            brng = np.random.default_rng([args.seed, 5, start])
            factors = brng.standard_normal((rows, N_FACTORS), dtype=np.float32)
            lengths = None
            if args.tokens:
                lengths = brng.integers(1, args.tokens + 1, size=rows)
                mask[start:start + rows] = (np.arange(args.tokens)[None, :]
                                            < lengths[:, None]).astype(np.uint8)
            for l, lp in enumerate(layers):
                x = make_block(args, l, lp, start, rows, labels, groups, factors,
                               gfac, lengths)
                dset = dsets[paths[l]] if args.layout == "group" else dsets[paths[0]]
                write_slab(dset, slab_index(args, l, start, rows),
                           encode(x, args.dtype), args.dtype)
            if not args.quiet:
                done = start + rows
                print(f"\r{done}/{args.rows} rows  {time.time() - t0:.1f}s",
                      end="", file=sys.stderr, flush=True)
        write_truth(f, args, layers, codes, signal, labels)
    os.replace(tmp, args.out)
    if not args.quiet:
        print(f"\nwrote {args.out}", file=sys.stderr)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Synthetic activation dump with a planted concept.")
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--dtype", default="float32",
                    choices=["float16", "bfloat16", "float32", "float64"])
    ap.add_argument("--layout", default="group",
                    choices=["stacked0", "stacked1", "group", "single"])
    ap.add_argument("--name", default="hidden", help="activation dataset/group name")
    ap.add_argument("--tokens", type=int, default=0, help="tokens per row (0: row-level)")
    ap.add_argument("--classes", type=int, default=2)
    ap.add_argument("--class-weights", default=None,
                    help="relative class frequencies w0,w1,... (default: equal)")
    ap.add_argument("--rank", type=int, default=1, help="rank r of the concept subspace")
    ap.add_argument("--signal", type=float, default=2.0,
                    help="peak separation in noise sd (binary class means)")
    ap.add_argument("--groups", type=int, default=0, help="prompt groups (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunks", type=int, default=0, help="rows per chunk (0: contiguous)")
    ap.add_argument("--compress", type=int, default=0, help="gzip level (0: none)")
    ap.add_argument("--block-rows", type=int, default=0,
                    help="rows generated per block (0: about 64 MiB of float32)")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args(argv)
    if min(args.rows, args.dim, args.layers, args.rank) < 1 or args.classes < 2:
        ap.error("--rows, --dim, --layers, --rank must be >= 1 and --classes >= 2")
    if args.rank > args.dim:
        ap.error("--rank must be <= --dim")
    if args.layout == "single" and args.layers != 1:
        ap.error("--layout single needs --layers 1")
    if args.groups and args.groups < args.classes:
        ap.error("--groups must be >= --classes (labels are constant per group)")
    if args.tokens < 0 or args.chunks < 0 or not 0 <= args.compress <= 9:
        ap.error("bad --tokens/--chunks/--compress")
    if args.class_weights is not None:
        w = np.array([float(v) for v in args.class_weights.split(",")])
        if len(w) != args.classes or (w < 0).any() or w.sum() <= 0:
            ap.error("--class-weights needs --classes non-negative numbers")
        args.class_weights = w / w.sum()
    if args.block_rows <= 0:
        args.block_rows = max(1, (1 << 24) // ((args.tokens or 1) * args.dim))
    return args


if __name__ == "__main__":
    generate(parse_args())
