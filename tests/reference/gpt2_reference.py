#!/usr/bin/env python3
"""gpt2_reference.py: the PyTorch oracle for the C engine.

Defines GPT-2 exactly as Hugging Face's GPT2LMHeadModel computes it (learned positions,
pre-LayerNorm blocks, gelu_new, causal attention scaled by 1/sqrt(head size), final
LayerNorm, output tied to wte), runs a tiny random model on a fixed batch and writes, in
the C engine's parameter order and (out, in) weight layout:
  config, inputs, targets (some ignored with -1), parameters, logits, loss, every
  parameter gradient, and the losses, grad norms and parameters of 3 AdamW steps
  (with global-norm clipping at 1.0, as torch.nn.utils.clip_grad_norm_).

usage: /usr/bin/python3 gpt2_reference.py OUT.bin [--seed S]
"""
import argparse
import struct

import torch
import torch.nn.functional as F

from gpt2_torch import ORDER, forward as gpt2_forward

MAGIC = 0x54524546  # "TREF"
VERSION = 1

L, NH, C, V, MAXT = 2, 4, 64, 512, 32
B, T = 3, 32
LR, BETA1, BETA2, EPS, WD, CLIP = 1e-3, 0.9, 0.95, 1e-8, 0.1, 1.0
STEPS = 3


def make_params(gen):
    def randn(*shape, std=0.02):
        return (torch.randn(*shape, generator=gen) * std).requires_grad_()

    # Non-trivial gains and biases so their gradients are exercised too.
    p = {
        "wte": randn(V, C),
        "wpe": randn(MAXT, C),
        "ln1w": (1.0 + torch.randn(L, C, generator=gen) * 0.1).requires_grad_(),
        "ln1b": randn(L, C, std=0.1),
        "qkvw": randn(L, 3 * C, C),
        "qkvb": randn(L, 3 * C),
        "attprojw": randn(L, C, C),
        "attprojb": randn(L, C),
        "ln2w": (1.0 + torch.randn(L, C, generator=gen) * 0.1).requires_grad_(),
        "ln2b": randn(L, C, std=0.1),
        "fcw": randn(L, 4 * C, C),
        "fcb": randn(L, 4 * C),
        "fcprojw": randn(L, C, 4 * C),
        "fcprojb": randn(L, C),
        "lnfw": (1.0 + torch.randn(C, generator=gen) * 0.1).requires_grad_(),
        "lnfb": randn(C, std=0.1),
    }
    return p


DECAY = {"wte", "wpe", "qkvw", "attprojw", "fcw", "fcprojw"}


def flat(tensors):
    return torch.cat([t.detach().reshape(-1) for t in tensors]).numpy().astype("<f4").tobytes()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1337)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(args.seed)

    p = make_params(gen)
    idx = torch.randint(0, V, (B, T), generator=gen)
    tgt = torch.randint(0, V, (B, T), generator=gen)
    tgt[0, :3] = -1  # padding that the loss ignores
    tgt[2, -1] = -1

    params0 = flat([p[n] for n in ORDER])
    logits = gpt2_forward(p, idx, NH)[0]
    loss = F.cross_entropy(logits.view(-1, V), tgt.view(-1), ignore_index=-1)
    loss.backward()
    logits_bytes = logits.detach().numpy().astype("<f4").tobytes()
    grads0 = flat([p[n].grad for n in ORDER])
    loss0 = loss.item()

    decay = [p[n] for n in ORDER if n in DECAY]
    no_decay = [p[n] for n in ORDER if n not in DECAY]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=(BETA1, BETA2), eps=EPS, foreach=False)
    step_losses, step_norms = [], []
    for _ in range(STEPS):
        opt.zero_grad()
        logits_s = gpt2_forward(p, idx, NH)[0]
        loss_s = F.cross_entropy(logits_s.view(-1, V), tgt.view(-1), ignore_index=-1)
        loss_s.backward()
        norm = torch.nn.utils.clip_grad_norm_([p[n] for n in ORDER], CLIP)
        opt.step()
        step_losses.append(loss_s.item())
        step_norms.append(norm.item())
    params3 = flat([p[n] for n in ORDER])

    with open(args.out, "wb") as f:
        f.write(struct.pack("<9i", MAGIC, VERSION, MAXT, V, L, NH, C, B, T))
        f.write(struct.pack("<i6f", STEPS, LR, BETA1, BETA2, EPS, WD, CLIP))
        f.write(idx.numpy().astype("<i4").tobytes())
        f.write(tgt.numpy().astype("<i4").tobytes())
        f.write(params0)
        f.write(logits_bytes)
        f.write(struct.pack("<f", loss0))
        f.write(grads0)
        f.write(struct.pack("<%df" % STEPS, *step_losses))
        f.write(struct.pack("<%df" % STEPS, *step_norms))
        f.write(params3)
    print("wrote %s: loss %.6f, step losses %s, grad norms %s" % (
        args.out, loss0, ["%.6f" % x for x in step_losses], ["%.4f" % x for x in step_norms]))


if __name__ == "__main__":
    main()
