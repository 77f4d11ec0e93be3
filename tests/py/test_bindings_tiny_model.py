"""test_bindings_tiny_model.py — the erasure hooks in a small randomly
initialised BERT (transformers only: no model download), on the CPU and,
where there is a GPU, on CUDA in float32, float16 and bfloat16: the erased
layer's token states have no cross-covariance with the labels, and the
model's output equals the reference computed by hand (the layer's clean
output erased on the CPU in float64, then the rest of the model)."""

import numpy as np
import pytest

import culeace

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers", reason="transformers builds the tiny model")

D = 64


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=D, num_hidden_layers=3,
                                  num_attention_heads=4, intermediate_size=128,
                                  max_position_embeddings=32)
    model = transformers.BertModel(cfg).eval()
    n, t = 64, 12
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 2, (n,), generator=g)
    ids = torch.randint(5, 50, (n, t), generator=g)
    ids[:, 1] = 2 + y  # the concept: token 2 or 3 in position 1
    mask = torch.ones(n, t, dtype=torch.long)
    mask[n // 2:, t - 3:] = 0  # some padding
    batch = {"input_ids": ids, "attention_mask": mask}
    with torch.no_grad():
        hs = model(**batch, output_hidden_states=True).hidden_states
    m = mask.bool()
    yy = y[:, None].expand(m.shape)[m]
    eraser = culeace.LeaceFitter(D, 1).update(hs[2][m], yy).eraser
    return model, batch, m, yy.double().numpy(), eraser, hs


def devices():
    out = ["cpu"]
    if torch.cuda.is_available() and culeace.cuda_available():
        out.append("cuda")
    return out


def cross_cov(h, y):
    h = h.double().cpu().numpy()
    return np.abs((h - h.mean(0)).T @ (y - y.mean())).max() / len(y)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_hook_on_a_tiny_bert(tiny, device, dtype):
    if device not in devices():
        pytest.skip("no CUDA device visible to torch, or libculeace without CUDA: "
                    "the GPU half skips")
    if device == "cpu" and dtype == "float16":
        pytest.skip("float16 matmuls on the CPU are not what models run")
    model, batch, m, y, eraser, hs = tiny
    dt = getattr(torch, dtype)
    net = __import__("copy").deepcopy(model).to(device, dt)
    b = {k: v.to(device) for k, v in batch.items()}
    with torch.no_grad():
        clean = net(**b, output_hidden_states=True).hidden_states
        with culeace.erase(net, {"encoder.layer.1": eraser}) as hooks:
            out = net(**b, output_hidden_states=True)
        assert hooks.calls["encoder.layer.1"] == 1
        # reference: layer 1's clean output erased by hand on the CPU in float64,
        # put in place by a plain torch hook, and the rest of the model run on it
        x = clean[2].double().cpu().numpy()
        want2 = torch.from_numpy(eraser(x)).to(device, dt)
        layer1 = dict(net.named_modules())["encoder.layer.1"]
        h = layer1.register_forward_hook(
            lambda mod, args, o: (want2, *o[1:]) if isinstance(o, tuple) else want2)
        try:
            want3 = net(**b, output_hidden_states=True).hidden_states[3]
        finally:
            h.remove()
    got2 = out.hidden_states[2]
    tol = {"float32": 1e-4, "float16": 4e-3, "bfloat16": 3e-2}[dtype]
    scale = float(want2.abs().max())
    assert float((got2.double() - want2.double()).abs().max()) <= tol * scale
    c0 = cross_cov(clean[2][m.to(device)].float(), y)
    c1 = cross_cov(got2[m.to(device)].float(), y)
    assert c1 <= {"float32": 1e-4, "float16": 0.02, "bfloat16": 0.05}[dtype] * c0, (c0, c1)
    assert float((out.hidden_states[3].double() - want3.double()).abs().max()) <= \
        10 * tol * float(want3.abs().max())
