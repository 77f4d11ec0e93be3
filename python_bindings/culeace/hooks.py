"""hooks.py — inference-time erasure: LEACE erasers attached to a PyTorch
model's modules by name, editing the hidden state in place as the model
runs.

where="output": a forward hook edits what the module returns (a tensor, or
element 0 of a tuple/list as Hugging Face layers return). where="input": a
forward pre-hook edits the hidden state entering the module (its first
positional argument, or the `hidden_states` keyword), i.e. the residual
stream before that layer.

The edit is in place (no copy) when autograd is not recording; when it is,
the hook returns the erased tensor computed with torch operations so that
gradients flow through the edit. Each eraser is used on the device of the
tensor it meets (the factors are copied to that GPU once)."""

from . import _arrays as A
from .leace import LeaceEraser


class ErasureHooks:
    """Erasers on a model's modules: attach()/detach(), or a `with` block.

    erasers: dict module name -> LeaceEraser. .calls counts the edits made
    per module since attach (a quick check that the hooks fired)."""

    def __init__(self, model, erasers, where="output"):
        if where not in ("output", "input"):
            raise ValueError(f"where must be 'output' or 'input', not {where!r}")
        modules = dict(model.named_modules())
        missing = [name for name in erasers if name not in modules]
        if missing:
            near = [m for m in modules if m and any(
                part in m for part in missing[0].split(".") if not part.isdigit())][:8]
            raise KeyError(f"no module named {missing[0]!r} in "
                           f"{type(model).__name__} (modules like: "
                           f"{', '.join(near) or ', '.join(list(modules)[1:9])})")
        for name, e in erasers.items():
            if not isinstance(e, LeaceEraser):
                raise TypeError(f"erasers[{name!r}] is a {type(e).__name__}, not a LeaceEraser")
        self.model, self.where = model, where
        self.erasers = dict(erasers)
        self._modules = {name: modules[name] for name in erasers}
        self._handles = []
        self._on_device = {}
        self.calls = {name: 0 for name in erasers}

    @property
    def attached(self):
        return bool(self._handles)

    def attach(self):
        if self._handles:
            raise RuntimeError("these erasure hooks are already attached")
        try:
            for name, module in self._modules.items():
                if self.where == "output":
                    h = module.register_forward_hook(self._output_hook(name))
                else:
                    h = module.register_forward_pre_hook(self._input_hook(name),
                                                         with_kwargs=True)
                self._handles.append(h)
        except BaseException:
            self.detach()
            raise
        self.calls = {name: 0 for name in self.erasers}
        return self

    def detach(self):
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self):
        return self.attach()

    def __exit__(self, *exc):
        self.detach()
        return False

    # ---- the edit ------------------------------------------------------------
    def _eraser_for(self, name, x):
        device = "cpu" if x.device.type == "cpu" else f"cuda:{x.device.index or 0}"
        key = (name, device)
        e = self._on_device.get(key)
        if e is None:
            e = self._on_device[key] = self.erasers[name].to(device)
        return e

    def _erase(self, name, x):
        """x erased: the same tensor edited in place, or a new one."""
        import torch
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"module {name!r} passed a {type(x).__name__} where "
                            "a hidden-state tensor was expected")
        e = self._eraser_for(name, x)
        if x.dim() == 0 or x.shape[-1] != e.dim:
            raise ValueError(f"the hidden state of {name!r} has shape "
                             f"{tuple(x.shape)} but the eraser was fitted on "
                             f"{e.dim} features")
        self.calls[name] += 1
        if x.requires_grad and torch.is_grad_enabled():
            return e._differentiable(x)
        try:
            A.rows_of(x, e.dim, writable=True)
        except ValueError:
            return e(x)  # rows not evenly spaced: erase a contiguous copy
        e.apply_(x)
        return x

    def _output_hook(self, name):
        def hook(module, args, output):
            if isinstance(output, (tuple, list)):
                first = self._erase(name, output[0])
                if first is output[0]:
                    return None
                return type(output)((first, *output[1:]))
            first = self._erase(name, output)
            return None if first is output else first
        return hook

    def _input_hook(self, name):
        def hook(module, args, kwargs):
            if args:
                first = self._erase(name, args[0])
                if first is not args[0]:
                    return (first, *args[1:]), kwargs
                return None
            if "hidden_states" in kwargs:
                first = self._erase(name, kwargs["hidden_states"])
                if first is not kwargs["hidden_states"]:
                    kwargs = dict(kwargs, hidden_states=first)
                    return args, kwargs
                return None
            raise TypeError(f"module {name!r} got no positional input and no "
                            "hidden_states keyword to erase")
        return hook


def erase(model, erasers, where="output"):
    """A `with` block during which the erasers edit the named modules'
    hidden states: `with culeace.erase(model, {"encoder.layer.3": e}): ...`"""
    return ErasureHooks(model, erasers, where)


def attach(model, erasers, where="output"):
    """Attaches the erasers now; call .detach() on the result to remove."""
    return ErasureHooks(model, erasers, where).attach()
