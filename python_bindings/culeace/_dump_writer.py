"""_dump_writer.py — writes an activation dump (docs/FORMAT.md, "Activation
dumps") batch by batch, crash-safely: everything goes to OUT.tmp<pid>, which
is renamed onto OUT only by commit(); abort() (or any failure) removes it and
leaves OUT untouched.

Layout (n examples, T tokens, d width):
  /hidden/<name>   (n, d) or (n, T, d)   float16 / float32, one per layer
  /mask            uint8 (n, T)           1 = real token (token-level only)
  /labels, /groups int64 (n,)             when given
  /prompts         vlen utf-8 str (n,)    when given
With n known the datasets have their final shape; with n unknown (None) they
are chunked and grow along axis 0 as batches arrive."""

import errno
import os

import h5py
import numpy as np

DTYPES = {"float16": np.float16, "float32": np.float32}


def parse_dtype(dtype):
    """'float16' / 'float32' (numpy or torch dtypes too) -> numpy dtype."""
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            pass
    if name not in DTYPES:
        hint = (" (bfloat16 has no numpy dtype: record float32, or write the raw bits "
                "as docs/FORMAT.md shows)") if name == "bfloat16" else ""
        raise ValueError(f"dtype {dtype!r} is not supported: use 'float16' or 'float32'{hint}")
    return np.dtype(DTYPES[name])


def int_column(what, values, n):
    """values -> int64 (n,) array; n None skips the length check."""
    a = np.asarray(values)
    if a.ndim != 1:
        raise ValueError(f"{what} must be one value per example (1-D), got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{what} has {a.shape[0]} values but the inputs have {n} examples")
    if a.dtype.kind == "f" and a.size and not (np.isfinite(a).all() and (a == np.round(a)).all()):
        raise ValueError(f"{what} must be integers, got non-integer floats")
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{what} must be integers, got dtype {a.dtype}")
    return a.astype(np.int64)


def str_column(what, values, n):
    """values -> list of str (n,); n None skips the length check."""
    vals = list(values)
    if n is not None and len(vals) != n:
        raise ValueError(f"{what} has {len(vals)} values but the inputs have {n} examples")
    bad = next((i for i, v in enumerate(vals) if not isinstance(v, str)), None)
    if bad is not None:
        raise TypeError(f"{what}[{bad}] is a {type(vals[bad]).__name__}, not a str")
    return vals


class DumpWriter:
    """DumpWriter(out_path, n, dtype, overwrite): add(layers, mask) per
    batch, then commit(labels, groups, prompts) or abort()."""

    CHUNK_BYTES = 1 << 20  # target chunk size when n is unknown

    def __init__(self, out_path, n, dtype, overwrite=False):
        self.path = os.fspath(out_path)
        if not overwrite and os.path.exists(self.path):
            raise FileExistsError(errno.EEXIST, f"{self.path} exists (pass overwrite=True "
                                  f"to replace it)", self.path)
        self.n, self.dtype, self.overwrite, self.rows = n, parse_dtype(dtype), overwrite, 0
        self.tmp = f"{self.path}.tmp{os.getpid()}"
        self.f = h5py.File(self.tmp, "w")
        self.ds = None  # name -> dataset, created with the first batch

    def _create(self, name, row_shape, dtype):
        if self.n is not None:
            return self.f.create_dataset(name, shape=(self.n,) + row_shape, dtype=dtype)
        row_bytes = int(np.prod(row_shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        chunk_rows = max(1, min(4096, self.CHUNK_BYTES // max(row_bytes, 1)))
        return self.f.create_dataset(name, shape=(0,) + row_shape, dtype=dtype,
                                     maxshape=(None,) + row_shape,
                                     chunks=(chunk_rows,) + row_shape)

    def add(self, layers, mask=None):
        """layers: name -> float array (b, d) or (b, T, d), same b for all;
        mask: uint8 (b, T) for token-level dumps, else None."""
        b = next(iter(layers.values())).shape[0]
        if self.ds is None:
            self.ds = {f"hidden/{k}": self._create(f"hidden/{k}", v.shape[1:], self.dtype)
                       for k, v in layers.items()}
            if mask is not None:
                self.ds["mask"] = self._create("mask", mask.shape[1:], np.uint8)
        if self.n is not None and self.rows + b > self.n:
            raise ValueError(f"the inputs gave more than the {self.n} examples expected")
        items = [(f"hidden/{k}", v.astype(self.dtype, copy=False)) for k, v in layers.items()]
        if mask is not None:
            items.append(("mask", mask.astype(np.uint8, copy=False)))
        for key, arr in items:
            ds = self.ds[key]
            if arr.shape[1:] != ds.shape[1:]:
                raise ValueError(f"/{key}: a batch has rows of shape {arr.shape[1:]} but "
                                 f"earlier rows were {ds.shape[1:]}")
            if self.n is None:
                ds.resize(self.rows + b, axis=0)
            ds[self.rows:self.rows + b] = arr
        self.rows += b

    def set_attrs(self, attrs):
        for k, v in attrs.items():
            self.f.attrs[k] = v

    def commit(self, labels=None, groups=None, prompts=None):
        """Checks the row count, writes the per-example columns, closes,
        syncs and renames the temp file onto out_path. Returns out_path."""
        if self.rows == 0:
            raise ValueError("the inputs held no examples")
        if self.n is not None and self.rows != self.n:
            raise ValueError(f"the inputs gave {self.rows} examples but {self.n} were expected")
        n = self.rows
        for name, vals in (("labels", labels), ("groups", groups)):
            if vals is not None:
                self.f.create_dataset(name, data=int_column(name, vals, n))
        if prompts is not None:
            self.f.create_dataset("prompts", data=str_column("prompts", prompts, n),
                                  dtype=h5py.string_dtype("utf-8"))
        self.f.close()
        fd = os.open(self.tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if not self.overwrite and os.path.exists(self.path):
            raise FileExistsError(errno.EEXIST, f"{self.path} appeared while recording "
                                  f"(pass overwrite=True to replace it)", self.path)
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self):
        """Closes and removes the temp file (out_path is never touched)."""
        try:
            if self.f.id.valid:
                self.f.close()
        finally:
            if os.path.exists(self.tmp):
                os.remove(self.tmp)
