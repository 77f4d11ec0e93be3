#!/usr/bin/env python3
"""make_io_fixtures.py — writes tests/fixtures/io_h5py.h5, the h5py-written
activation dump that tests/c/test_io_roundtrip.c reads back.

It pins down how h5py encodes what users actually write: float16 through
numpy (h5py's custom 2-byte IEEE type), bfloat16 as a custom HDF5 float type
built with h5py's low-level API (fields 15,7,8,0,7, bias 127; the file says
"float", not "int"), bool as h5py's enum, gzip/shuffle/fletcher32 chunks.

Every value comes from one formula that C evaluates identically in float32
(an integer divided by 17, correctly rounded in IEEE arithmetic), then is
rounded to the 2-byte type to nearest even on both sides:

    v(l, i, j, k) = float32(((l*131 + i*31 + j*7 + k*3) % 97) - 48) / float32(17)

Usage: python3 tests/py/make_io_fixtures.py [OUT]   (default
tests/fixtures/io_h5py.h5 next to this script's tests/ directory).
"""
import os
import sys

import h5py
import numpy as np

N, D, L, T = 37, 24, 3, 4


def vals(l, n, t, d):
    """(n, t, d) float32 values of layer l from the formula above."""
    i = np.arange(n).reshape(n, 1, 1)
    j = np.arange(t).reshape(1, t, 1)
    k = np.arange(d).reshape(1, 1, d)
    a = ((l * 131 + i * 31 + j * 7 + k * 3) % 97) - 48
    return a.astype(np.float32) / np.float32(17)


def to_bf16_bits(x):
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def bf16_type():
    t = h5py.h5t.IEEE_F32LE.copy()
    t.set_fields(15, 7, 8, 0, 7)
    t.set_size(2)
    t.set_ebias(127)
    return t


def write_bf16(group, name, bits, chunks=None):
    """Creates a bfloat16 dataset and writes raw bits (no conversion)."""
    tid = bf16_type()
    space = h5py.h5s.create_simple(bits.shape)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    if chunks:
        dcpl.set_chunk(chunks)
        dcpl.set_shuffle()
        dcpl.set_deflate(4)
    dsid = h5py.h5d.create(group.id, name.encode(), tid, space, dcpl=dcpl)
    dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(bits), mtype=tid)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, "..", "fixtures", "io_h5py.h5")
    x = vals(0, N, 1, D)[:, 0, :]  # (N, D)
    with h5py.File(out, "w") as f:
        f.attrs["formula"] = ("v(l,i,j,k) = float32(((l*131 + i*31 + j*7 + "
                              "k*3) % 97) - 48) / float32(17)")
        # single datasets (n, d), layer 0
        f.create_dataset("f16", data=x.astype(np.float16))
        f.create_dataset("f16_gzip", data=x.astype(np.float16), chunks=(8, 8),
                         compression="gzip", shuffle=True, fletcher32=True)
        f.create_dataset("f32", data=x, chunks=(5, 24), compression="gzip")
        f.create_dataset("f64", data=x.astype(np.float64))
        write_bf16(f, "bf16", to_bf16_bits(x))
        write_bf16(f, "bf16_gzip", to_bf16_bits(x), chunks=(8, 8))
        # f16 special values: subnormals, max, -0, inf (row 0 of /f16_special)
        sp = np.array([[2.0 ** -24, 2.0 ** -20, -(2.0 ** -14), 65504.0,
                        -0.0, np.inf, -np.inf, 1.0 / 3.0]], dtype=np.float16)
        f.create_dataset("f16_special", data=np.repeat(sp, 2, axis=0))
        # stacked (L, n, d) float16, layer axis 0
        st = np.stack([vals(l, N, 1, D)[:, 0, :] for l in range(L)])
        f.create_dataset("stack", data=st.astype(np.float16))
        # token-level (n, t, d) float16 + bool mask (n, t)
        f.create_dataset("tok", data=vals(0, N, T, D).astype(np.float16),
                         chunks=(4, T, D), compression="gzip")
        mask = (np.arange(N)[:, None] * 3 + np.arange(T)[None, :]) % 5 != 0
        f.create_dataset("tok_mask", data=mask)
        # group of per-layer datasets, natural order layer_2 < layer_10;
        # the dataset named layer_{m} holds formula layer m
        g = f.create_group("layers")
        for m in (10, 2, 0):
            g.create_dataset("layer_%d" % m,
                             data=vals(m, N, 1, D)[:, 0, :].astype(np.float16))
        g.create_group("not_a_layer")  # sub-groups are skipped
        # labels
        f.create_dataset("y", data=np.array([3, 7, 9])[np.arange(N) % 3]
                         .astype(np.int64))
        f.create_dataset("y_bool", data=np.arange(N) % 4 == 1)
        f.create_dataset("z", data=np.stack([np.arange(N) / 4.0,
                                             -np.arange(N) / 2.0], 1)
                         .astype(np.float32))
        f.create_dataset("prompt_id", data=(np.arange(N) // 2).astype(np.int32))
    print("wrote", out, os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main()
