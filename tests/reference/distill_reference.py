#!/usr/bin/env python3
"""distill_reference.py: the PyTorch oracle for distillation (issue 18).

A tiny random teacher GPT-2 (3 blocks); the student is built as Hugging Face's
examples/research_projects/distillation/scripts/extract.py does (blocks [0, 2] copied with
wte, wpe, ln_f). On a fixed batch it writes the student's logits at init and, in float64,
the loss of distiller.py's step() and every student gradient, for two teachers:
  dense:  KLDivLoss(batchmean)(log_softmax(s/T), softmax(t/T))·T² + CE + CosineEmbeddingLoss
          of the last hidden states, over the rows whose target is not -1;
  top-k:  the teacher's top-k log-probabilities at T = 1 (as a cache stores them), the rest
          of the mass spread evenly over the other ids, tempered as a whole; no cosine.
Layout: parameters in the C engine's order and (out, in) weight layout, little-endian.

usage: /usr/bin/python3 distill_reference.py OUT.bin [--seed S]
"""
import argparse
import struct

import torch
import torch.nn.functional as F

from gpt2_torch import ORDER, forward as gpt2_forward

MAGIC = 0x54534944  # "DIST"
VERSION = 1

L, NH, C, V, MAXT = 3, 2, 32, 96, 16
B, T = 2, 16
LAYERS = [0, 2]
K = 16
TEMP, A_KL, A_CE, A_COS = 2.0, 0.5, 0.5, 0.3

PER_LAYER = set(ORDER) - {"wte", "wpe", "lnfw", "lnfb"}


def make_teacher(gen):
    def randn(*shape, std=0.02):
        return torch.randn(*shape, generator=gen) * std

    # larger weights than GPT-2's init so that teacher and student disagree visibly
    return {
        "wte": randn(V, C, std=0.3), "wpe": randn(MAXT, C, std=0.1),
        "ln1w": 1.0 + torch.randn(L, C, generator=gen) * 0.1, "ln1b": randn(L, C, std=0.1),
        "qkvw": randn(L, 3 * C, C, std=0.2), "qkvb": randn(L, 3 * C, std=0.05),
        "attprojw": randn(L, C, C, std=0.2), "attprojb": randn(L, C, std=0.05),
        "ln2w": 1.0 + torch.randn(L, C, generator=gen) * 0.1, "ln2b": randn(L, C, std=0.1),
        "fcw": randn(L, 4 * C, C, std=0.2), "fcb": randn(L, 4 * C, std=0.05),
        "fcprojw": randn(L, C, 4 * C, std=0.1), "fcprojb": randn(L, C, std=0.05),
        "lnfw": 1.0 + torch.randn(C, generator=gen) * 0.1, "lnfb": randn(C, std=0.1),
    }


def extract(teacher):
    """extract.py: the chosen blocks, with embeddings and the final norm copied."""
    return {n: (teacher[n][LAYERS].clone() if n in PER_LAYER else teacher[n].clone()) for n in ORDER}


def flat(tensors):
    return torch.cat([t.detach().reshape(-1) for t in tensors]).float().numpy().astype("<f4").tobytes()


def distill_loss(sp, idx, tgt, t_logits, t_hidden, topk=None):
    s_logits, s_hidden = gpt2_forward(sp, idx, NH)
    sel = tgt.view(-1) != -1
    s = s_logits.view(-1, V)[sel]
    ce = F.cross_entropy(s_logits.view(-1, V), tgt.view(-1), ignore_index=-1)
    if topk is None:
        t = t_logits.view(-1, V)[sel]
        kl = F.kl_div(F.log_softmax(s / TEMP, dim=-1), F.softmax(t / TEMP, dim=-1), reduction="batchmean") * TEMP**2
        sh, th = s_hidden.view(-1, C)[sel], t_hidden.view(-1, C)[sel]
        cos = F.cosine_embedding_loss(sh, th, torch.ones(sh.shape[0], dtype=sh.dtype))
        total = A_KL * kl + A_CE * ce + A_COS * cos
    else:
        ids, logp = topk
        ids, logp = ids[sel], logp[sel]
        # the teacher's full log-probabilities: the k kept, the rest of the mass spread evenly
        rest = (1.0 - logp.exp().sum(dim=-1, keepdim=True)).clamp_min(1e-12)
        full = torch.log(rest / (V - K)).expand(-1, V).clone()
        full.scatter_(1, ids, logp)
        kl = F.kl_div(F.log_softmax(s / TEMP, dim=-1), F.softmax(full / TEMP, dim=-1), reduction="batchmean") * TEMP**2
        cos = torch.tensor(float("nan"))
        total = A_KL * kl + A_CE * ce
    for n in ORDER:
        sp[n].grad = None
    total.backward()
    return [total.item(), kl.item(), ce.item(), cos.item()], flat([sp[n].grad for n in ORDER])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1337)
    args = ap.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(args.seed)
    teacher = make_teacher(gen)
    idx = torch.randint(0, V, (B, T), generator=gen)
    tgt = torch.randint(0, V, (B, T), generator=gen)
    tgt[0, :3] = -1
    tgt[1, -1] = -1

    teacher64 = {n: teacher[n].double() for n in ORDER}
    with torch.no_grad():
        t_logits, t_hidden = gpt2_forward(teacher64, idx, NH)
        full_logp = F.log_softmax(t_logits.view(-1, V), dim=-1)
        topv, topi = full_logp.topk(K, dim=-1)
        topv = topv.float().double()  # the C side reads float32 values
    student = extract(teacher)
    with torch.no_grad():
        s_logits0, _ = gpt2_forward(student, idx, NH)

    dense_parts, dense_grads = distill_loss({n: extract(teacher64)[n].requires_grad_() for n in ORDER},
                                            idx, tgt, t_logits, t_hidden)
    topk_parts, topk_grads = distill_loss({n: extract(teacher64)[n].requires_grad_() for n in ORDER},
                                          idx, tgt, t_logits, t_hidden, (topi, topv))

    with open(args.out, "wb") as f:
        f.write(struct.pack("<10i", MAGIC, VERSION, MAXT, V, L, NH, C, B, T, K))
        f.write(struct.pack("<i", len(LAYERS)) + struct.pack("<%di" % len(LAYERS), *LAYERS))
        f.write(struct.pack("<4f", TEMP, A_KL, A_CE, A_COS))
        f.write(idx.numpy().astype("<i4").tobytes())
        f.write(tgt.numpy().astype("<i4").tobytes())
        f.write(flat([teacher[n] for n in ORDER]))
        f.write(flat([student[n] for n in ORDER]))
        f.write(s_logits0.numpy().astype("<f4").tobytes())
        f.write(struct.pack("<4f", *dense_parts))
        f.write(dense_grads)
        f.write(topi.numpy().astype("<i4").tobytes())
        f.write(topv.numpy().astype("<f4").tobytes())
        f.write(struct.pack("<4f", *topk_parts))
        f.write(topk_grads)
    print("wrote %s: dense loss %s, top-%d loss %s" % (
        args.out, ["%.6f" % x for x in dense_parts], K, ["%.6f" % x for x in topk_parts]))


if __name__ == "__main__":
    main()
