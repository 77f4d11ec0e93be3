"""record.py — runs a PyTorch model over prompts (or tokenized batches) and
streams pooled hidden states into an activation dump that `culeace fit`,
`probe`, `check` and `apply` read (docs/FORMAT.md, "Activation dumps"):

    record(model, prompts, [0, 3, "encoder.layer.5"], "acts.h5",
           tokenizer=tok, labels=y, groups=g)
    # culeace probe acts.h5 --x /hidden --y /labels --groups /groups

Layers: an int i is hidden_states[i] of model(..., output_hidden_states=True)
(0 = embedding output); a str is a module name from model.named_modules(),
captured with a forward hook (tuple outputs: element 0). Each layer's
output is (b, t, d) per batch; pooling turns it into
  mean    (b, d)     mean over the attention mask (CLS/SEP included)
  last    (b, d)     the last real token of each row (left or right padding)
  tokens  (b, T, d)  the real tokens moved to positions 0..len-1, zeros after,
                     with a uint8 (b, T) mask; T = longest input overall."""

from collections.abc import Mapping
import inspect
import itertools

import numpy as np

from ._native import version
from ._progress import Progress

POOLINGS = ("mean", "last", "tokens")


def _model_device(model):
    import torch
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")


def _hidden_count(model):
    """Number of hidden_states the model returns, from its config, or None."""
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    return n + 1 if isinstance(n, int) else None


def _check_layers(model, layers):
    """Validates `layers`; returns (int indices, module dict name -> module,
    order: the items of `layers` as given)."""
    if isinstance(layers, (str, int)) or not layers:
        raise ValueError("layers must be a non-empty list of ints (hidden_states indices) "
                         "and/or module names")
    ints, names = [], []
    for item in layers:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            ints.append(int(item))
        else:
            raise TypeError(f"layer {item!r}: expected an int or a module name (str)")
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        avail = [n for n in modules if n]
        shown = ", ".join(avail[:200])
        if len(avail) > 200:
            shown += f", ... ({len(avail) - 200} more)"
        raise ValueError(f"unknown module name(s) {', '.join(map(repr, missing))} in "
                         f"{type(model).__name__}; available: {shown}")
    if ints and not _takes_hidden_states(model):
        raise TypeError(f"{type(model).__name__}.forward takes no output_hidden_states: "
                        f"name modules (str layers) instead of indices {ints}")
    count = _hidden_count(model)
    if count is not None:
        _check_indices(ints, count)
    order = [int(x) if not isinstance(x, str) else x for x in layers]
    return ints, {n: modules[n] for n in names}, order


def _takes_hidden_states(model):
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return True  # cannot tell: let the call decide
    return any(p.name == "output_hidden_states" or p.kind is p.VAR_KEYWORD for p in params)


def _check_indices(ints, count):
    bad = [i for i in ints if not -count <= i < count]
    if bad:
        raise ValueError(f"hidden_states index {bad[0]} out of range: the model returns "
                         f"{count} hidden states (0 = embeddings, 1..{count - 1} = layers)")


def _layer_names(order, count):
    out = [x if isinstance(x, str) else str(x % count if x < 0 else x) for x in order]
    dup = next((n for n in out if out.count(n) > 1), None)
    if dup is not None:
        raise ValueError(f"layer {dup!r} is listed twice")
    return out


class _Hooks:
    """Forward hooks that keep each named module's output of one forward."""

    def __init__(self, modules):
        self.out = {}
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in modules.items()]

    def _hook(self, name):
        import torch

        def hook(module, args, output):
            if name in self.out:
                raise RuntimeError(f"module {name!r} ran more than once in one forward "
                                   f"pass; record() needs one output per batch")
            if isinstance(output, (tuple, list)):
                output = output[0]
            elif hasattr(output, "to_tuple"):  # transformers ModelOutput
                output = output.to_tuple()[0]
            if not torch.is_tensor(output):
                raise TypeError(f"module {name!r} returned a {type(output).__name__}, "
                                f"not a tensor")
            self.out[name] = output
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def _pool(h, mask, pooling, T):
    """h (b, t, d), mask (b, t) -> float32 (b, d), or ((b, T, d), uint8 (b, T))."""
    import torch
    keep = mask != 0                                        # (b, t)
    h = h.float()
    if pooling == "mean":
        m = mask.unsqueeze(-1).float()                      # (b, t, 1)
        return (h * m).sum(1) / m.sum(1)                    # (b, d)
    if pooling == "last":
        pos = torch.arange(h.shape[1], device=h.device)
        last = (pos * keep).amax(1)                         # (b,) last real position
        return h[torch.arange(h.shape[0], device=h.device), last]
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices  # real first
    lengths = keep.sum(1)                                   # (b,)
    h = torch.gather(h, 1, order.unsqueeze(-1).expand_as(h))
    valid = torch.arange(h.shape[1], device=h.device) < lengths.unsqueeze(1)  # (b, t)
    h = h.masked_fill(~valid.unsqueeze(-1), 0)
    if h.shape[1] < T:
        h = torch.nn.functional.pad(h, (0, 0, 0, T - h.shape[1]))
        valid = torch.nn.functional.pad(valid, (0, T - valid.shape[1]))
    return h[:, :T], valid[:, :T].to(torch.uint8)


def _string_batches(inputs, tokenizer, batch_size, max_length):
    kw = dict(padding=True, return_tensors="pt")
    if max_length is not None:
        kw.update(truncation=True, max_length=max_length)
    for i in range(0, len(inputs), batch_size):
        yield tokenizer(inputs[i:i + batch_size], **kw)


def _longest(inputs, tokenizer, max_length, chunk=1024):
    """Longest token count over all strings (after truncation)."""
    kw = dict(truncation=True, max_length=max_length) if max_length is not None else {}
    return max(len(ids) for i in range(0, len(inputs), chunk)
               for ids in tokenizer(inputs[i:i + chunk], **kw)["input_ids"])


def _to_device(batch, device, index):
    import torch
    if not isinstance(batch, Mapping):
        raise TypeError(f"input batch {index} is a {type(batch).__name__}: pass a list of "
                        f"strings (with tokenizer=) or an iterable of tokenized dict batches")
    if "attention_mask" not in batch:
        raise ValueError(f"input batch {index} has no attention_mask (keys: "
                         f"{', '.join(map(str, batch.keys()))})")
    out = {}
    for k, v in batch.items():
        if isinstance(v, (np.ndarray, list)):
            v = torch.as_tensor(np.asarray(v))
        out[k] = v.to(device) if torch.is_tensor(v) else v
    if out["attention_mask"].dim() != 2:
        raise ValueError(f"input batch {index}: attention_mask must be (batch, seq), got "
                         f"shape {tuple(out['attention_mask'].shape)}")
    return out


def _plan_inputs(inputs, tokenizer, batch_size, max_length, pooling):
    """-> (batch iterable, n or None, prompts or None, T or None)."""
    if isinstance(inputs, (str, bytes)):
        raise TypeError("inputs must be a list of strings or an iterable of batches, "
                        "not one string")
    if isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], str):
        bad = next((i for i, s in enumerate(inputs) if not isinstance(s, str)), None)
        if bad is not None:
            raise TypeError(f"inputs[{bad}] is a {type(inputs[bad]).__name__}, not a str")
        if tokenizer is None:
            raise ValueError("inputs are strings: pass tokenizer= to tokenize them")
        inputs = list(inputs)
        T = _longest(inputs, tokenizer, max_length) if pooling == "tokens" else None
        return _string_batches(inputs, tokenizer, batch_size, max_length), len(inputs), inputs, T
    if isinstance(inputs, (list, tuple)):
        if not inputs:
            raise ValueError("inputs is empty")
        n = sum(len(b["attention_mask"]) if isinstance(b, Mapping) and "attention_mask" in b
                else 0 for b in inputs)
    else:
        n = None
    if pooling == "tokens" and max_length is None:
        raise ValueError("pooling='tokens' with pre-tokenized batches needs max_length= "
                         "(the length T of the token axis)")
    return inputs, n, None, max_length


def record(model, inputs, layers, out_path, *, tokenizer=None, pooling="mean", labels=None,
           groups=None, batch_size=32, max_length=None, dtype="float16", prompts=None,
           attrs=None, progress=None, overwrite=False):
    """Runs `model` (eval mode, no grad, on its own device) over `inputs` and
    writes each layer in `layers`, pooled, to out_path (HDF5; see the module
    doc and docs/FORMAT.md). inputs: a list of strings (tokenizer required,
    batches of batch_size, padding=True, truncated to max_length when given)
    or an iterable of tokenized dict batches holding attention_mask.
    labels, groups: int (n,); prompts: str (n,) (default: the string
    inputs); attrs: extra root attributes. progress: None = bar on a
    terminal stderr, True/False = always/never. The file appears only when
    complete; an existing out_path is replaced only with overwrite=True.
    Returns out_path."""
    import torch  # torch and h5py are needed here only (extra "record")

    from ._dump_writer import DumpWriter, int_column, parse_dtype, str_column
    if pooling not in POOLINGS:
        raise ValueError(f"pooling {pooling!r}: use one of {', '.join(POOLINGS)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
        raise ValueError(f"max_length must be a positive int or None, got {max_length!r}")
    np_dtype = parse_dtype(dtype)
    ints, modules, order = _check_layers(model, layers)
    batches, n, string_prompts, T = _plan_inputs(inputs, tokenizer, batch_size, max_length, pooling)
    prompts = string_prompts if prompts is None else prompts
    if n is not None:  # fail before running the model
        labels = None if labels is None else int_column("labels", labels, n)
        groups = None if groups is None else int_column("groups", groups, n)
        prompts = None if prompts is None else str_column("prompts", prompts, n)
    device = _model_device(model)
    writer = DumpWriter(out_path, n, np_dtype, overwrite)
    hooks, was_training = None, model.training
    try:
        writer.set_attrs({"model_class": type(model).__name__, "pooling": pooling,
                          "culeace_version": version(), "dtype": np_dtype.name,
                          "generator": "culeace.record", **(attrs or {})})
        hooks = _Hooks(modules)
        model.eval()
        names = None
        with torch.no_grad(), Progress(n, "record", progress) as bar:
            for index, batch in enumerate(batches):
                batch = _to_device(batch, device, index)
                mask = batch["attention_mask"]
                if pooling != "tokens" and bool((mask.sum(1) == 0).any()):
                    raise ValueError(f"input batch {index} has a row with no real token "
                                     f"(attention_mask all zero)")
                if pooling == "tokens" and int(mask.sum(1).max()) > T:
                    raise ValueError(f"input batch {index} has a row of "
                                     f"{int(mask.sum(1).max())} tokens, more than max_length={T}")
                hooks.out.clear()
                out = model(**batch, output_hidden_states=True) if ints else model(**batch)
                states = getattr(out, "hidden_states", None) if ints else None
                if ints and states is None:
                    raise TypeError(f"{type(model).__name__} returned no hidden_states: "
                                    f"name modules (str layers) instead of indices")
                if names is None:
                    count = len(states) if ints else None
                    if ints:
                        _check_indices(ints, count)
                    names = _layer_names(order, count)
                    writer.set_attrs({"layers": names} | ({"token_length": T} if T else {}))
                ran = [x for x in modules if x not in hooks.out]
                if ran:
                    raise RuntimeError(f"module {ran[0]!r} did not run in the forward pass")
                raw = [hooks.out[x] if isinstance(x, str) else states[x] for x in order]
                pooled, tok_mask = {}, None
                for name, h in zip(names, raw):
                    if h.dim() != 3 or tuple(h.shape[:2]) != tuple(mask.shape):
                        raise ValueError(f"layer {name!r} output has shape {tuple(h.shape)}; "
                                         f"expected (batch, seq, hidden) with (batch, seq) = "
                                         f"{tuple(mask.shape)}")
                    p = _pool(h, mask, pooling, T)
                    if pooling == "tokens":
                        p, tok_mask = p
                    pooled[name] = p.cpu().numpy()
                writer.add(pooled, None if tok_mask is None else tok_mask.cpu().numpy())
                bar.update(mask.shape[0])
        return writer.commit(labels, groups, prompts)
    except BaseException:
        writer.abort()
        raise
    finally:
        if hooks is not None:
            hooks.remove()
        model.train(was_training)
