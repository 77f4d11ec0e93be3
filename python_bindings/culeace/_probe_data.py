"""_probe_data.py — the inputs of a probe sweep (culeace.probe_layers) made
into what `culeace probe` works on: named layers of float rows (n, ..., d)
checked up front and converted one at a time to C-contiguous float32 (kept
rows, d); an optional row mask (padding tokens); labels mapped to classes
0..k-1 in ascending value order of the kept rows (src/io/labels.c), -1 on
masked rows; group ids as int64, and for token rows (n, t, d) without
groups each example's tokens as one group, as the CLI does."""

import numpy as np

from . import _arrays as A


def _host(a):
    """A torch tensor as a detached host numpy array; anything else as is."""
    if A.is_torch(a):
        a = a.detach().cpu()
        if a.dtype == A.torch_module().bfloat16:
            a = a.float()  # exact, as the library's bfloat16 -> float32
        return a.numpy()
    return a


def _shape_dtype(x):
    if A.is_torch(x):
        return tuple(x.shape), str(x.dtype).replace("torch.", "")
    x = x if isinstance(x, np.ndarray) else np.asarray(x)
    return x.shape, x.dtype.name


def named_layers(layers):
    """[(name, array)] from a dict name -> array, a list or one array."""
    if isinstance(layers, dict):
        items = [(str(k), v) for k, v in layers.items()]
    elif isinstance(layers, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(layers)]
    else:
        items = [("0", layers)]
    if not items:
        raise ValueError("no layers given: pass a dict name -> (n, d) array, "
                         "a list of arrays or one array")
    return items


def check_layers(items):
    """Checks every layer's dtype and shape; returns the common leading
    shape (n, ...) of the rows."""
    lead = None
    for name, x in items:
        shape, dtype = _shape_dtype(x)
        if dtype not in ("float16", "bfloat16", "float32", "float64"):
            raise TypeError(f"layer {name!r} has dtype {dtype}: probes take "
                            f"{A.FLOAT_TYPES} activations")
        if len(shape) < 2:
            raise ValueError(f"layer {name!r} has shape {shape}: expected "
                             "(n, d) or (n, ..., d) rows of features")
        if shape[-1] < 1:
            raise ValueError(f"layer {name!r} has no features (shape {shape})")
        if lead is None:
            lead = shape[:-1]
        elif shape[:-1] != lead:
            raise ValueError(f"layer {name!r} has shape {shape} but the first "
                             f"layer has rows {lead}: every layer needs the "
                             "same rows")
    if int(np.prod(lead)) == 0:
        raise ValueError(f"the layers have no rows (shape {lead} + (d,))")
    return lead


def layer_rows(name, x, keep):
    """The kept rows (keep: (rows,) bool or None for all) of layer x (n, ...,
    d) as C-contiguous float32 (kept rows, d), refusing non-finite values
    (the CLI's default)."""
    x = np.asarray(_host(x))
    d = x.shape[-1]
    x = x.reshape(-1, d)
    if keep is not None:
        x = x[keep]
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.nonzero(bad.any(axis=1))[0][0])
        if keep is not None:
            row = int(np.nonzero(keep)[0][row])
        raise ValueError(f"layer {name!r}: row {row} holds NaN or Inf; drop "
                         "or fix the non-finite rows before probing")
    return x


def _per_row(a, lead, what):
    """a of shape lead, or (lead[0],) repeated over the other leading axes,
    flattened to one value per row."""
    a = np.asarray(_host(a))
    rows = int(np.prod(lead))
    if a.shape == tuple(lead):
        return a.reshape(rows)
    if a.ndim == 1 and a.shape[0] == lead[0]:
        return np.repeat(a, rows // lead[0])
    want = f"({lead[0]},)" + ("" if len(lead) == 1 else f" or {tuple(lead)}")
    raise ValueError(f"{what} has shape {a.shape} but the layers have "
                     f"{lead[0]} examples (rows {tuple(lead)}): expected {want}")


def row_mask(mask, lead):
    """mask (n, ...) of the rows' leading shape as (rows,) bool, or None."""
    if mask is None:
        return None
    m = np.asarray(_host(mask))
    if m.shape != tuple(lead):
        raise ValueError(f"mask has shape {m.shape} but the layers' rows are "
                         f"{tuple(lead)}")
    m = m.reshape(-1) != 0
    if not m.any():
        raise ValueError("the mask keeps no rows")
    return m


def classes(y, lead, keep):
    """(classes (rows,) int32: 0..k-1 on kept rows, -1 on the others; class
    values (k,)): the kept rows' values in ascending order, like the CLI's
    label mapping."""
    y = _per_row(y, lead, "y")
    if y.dtype.kind in "fc":
        raise TypeError(f"y has dtype {y.dtype}: a probe needs class labels "
                        "(integers, strings or booleans), e.g. y.astype(int)")
    kept = y if keep is None else y[keep]
    try:
        values, inv = np.unique(kept, return_inverse=True)
    except TypeError as e:
        raise TypeError(f"y: the labels cannot be ordered ({e})") from None
    if len(values) < 2:
        raise ValueError(f"y has only one class (value {values[0].item()!r})"
                         "; a probe needs at least two")
    out = np.full(len(y), -1, dtype=np.int32)
    out[slice(None) if keep is None else keep] = inv.reshape(-1)
    return out, values


def group_ids(groups, lead):
    """(groups (rows,) int64 or None, unit): the user's group ids (dense
    indices in ascending order when they are not integers), else the
    example of each token row when rows have tokens."""
    if groups is not None:
        g = _per_row(groups, lead, "groups")
        if g.dtype.kind in "iub":
            return np.ascontiguousarray(g, dtype=np.int64), "group"
        if g.dtype.kind in "fc":
            raise TypeError(f"groups has dtype {g.dtype}: expected integer "
                            "or string group ids")
        _, inv = np.unique(g, return_inverse=True)
        return inv.reshape(-1).astype(np.int64), "group"
    rows = int(np.prod(lead))
    t = rows // lead[0]
    if t > 1:  # token rows: no example's tokens on both sides of a fold
        return np.repeat(np.arange(lead[0], dtype=np.int64), t), "example"
    return None, "row"
