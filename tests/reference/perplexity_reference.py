#!/usr/bin/python3
"""perplexity_reference.py: perplexity and bits per byte by thermo's recipe (evaluate.h),
computed in PyTorch on a tiny random GPT-2 written as a Hugging Face directory, for
tests/test_evaluate_perplexity.c.

    /usr/bin/python3 tests/reference/perplexity_reference.py OUTDIR --ids-file IDS \
        --bytes N --tokenizer-dir DIR --case N:CTX [--case N:CTX ...] [--seed 7]

IDS holds the text's token ids (whitespace-separated) as thermo's tokenizer gave them
(flags 0: no EOT added); N is the text's byte count. Each --case scores the first N ids
with windows of CTX tokens. Writes OUTDIR/model (config.json, model.safetensors,
vocab.json, merges.txt; L=2, H=2, C=32, V=50257, 64 positions, the weights of
gpt2_greedy_reference.py's plain_f32 for the seed) and OUTDIR/expected.json: a list of
{n, ctx, windows, predicted, nll_sum, perplexity, bits_per_byte}, one per case.

The recipe, written here independently of the C code: consecutive non-overlapping
windows of CTX ids, a shorter last window kept if it has >= 2 ids; in a window w the
model sees w[:-1] and is scored on w[1:] with F.cross_entropy (sum, float64 accumulation
of float32 per-token losses); perplexity = exp(total / predicted); bits_per_byte = total /
ln 2 / N bytes."""
import argparse
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_greedy_reference as g  # noqa: E402  (the HF-layout forward and file writers)


def score(sd, ids, ctx, n_bytes):
    total, predicted, windows = 0.0, 0, 0
    for start in range(0, len(ids), ctx):
        w = ids[start:start + ctx]
        if len(w) < 2:
            break
        logits = g.forward(sd, w[:-1])  # (T, V)
        losses = F.cross_entropy(logits, torch.tensor(w[1:]), reduction="none")
        total += float(losses.double().sum())
        predicted += len(w) - 1
        windows += 1
    return {"n": len(ids), "ctx": ctx, "windows": windows, "predicted": predicted, "nll_sum": total,
            "perplexity": math.exp(total / predicted), "bits_per_byte": total / math.log(2) / n_bytes}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--ids-file", required=True)
    ap.add_argument("--bytes", type=int, required=True)
    ap.add_argument("--tokenizer-dir", required=True)
    ap.add_argument("--case", action="append", required=True, help="N:CTX")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    with open(args.ids_file) as f:
        ids = [int(x) for x in f.read().split()]
    torch.set_num_threads(1)
    sd = g.hf_state_dict(args.seed)
    d = os.path.join(args.out, "model")
    os.makedirs(d, exist_ok=True)
    g.write_safetensors(os.path.join(d, "model.safetensors"), [(k, "F32", v) for k, v in sd.items()])
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(g.config(), f, indent=2)
    shutil.copyfile(os.path.join(args.tokenizer_dir, "encoder.json"), os.path.join(d, "vocab.json"))
    shutil.copyfile(os.path.join(args.tokenizer_dir, "vocab.bpe"), os.path.join(d, "merges.txt"))
    results = []
    with torch.no_grad():
        for case in args.case:
            n, ctx = (int(x) for x in case.split(":"))
            if n > len(ids) or not 2 <= ctx <= g.NPOS:
                raise SystemExit("perplexity_reference.py: bad --case %s (%d ids, ctx 2..%d)" % (case, len(ids), g.NPOS))
            r = score(sd, ids[:n], ctx, args.bytes)
            print("n %d ctx %d: %d windows, %d predicted, perplexity %.6f, %.6f bits/byte" %
                  (n, ctx, r["windows"], r["predicted"], r["perplexity"], r["bits_per_byte"]))
            results.append(r)
    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
