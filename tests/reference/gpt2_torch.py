"""gpt2_torch.py: the GPT-2 forward pass in plain PyTorch, shared by the reference generators
(gpt2_reference.py for the engine's gradients, distill_reference.py for distillation). The
parameters are a dict of stacked per-layer tensors named as in ORDER, the layout
src/model/gpt2.c uses."""
import math

import torch
import torch.nn.functional as F

ORDER = ["wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
         "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb"]


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def forward(p, idx, n_head):
    """(logits, last hidden state after ln_f), as GPT2LMHeadModel with output_hidden_states;
    the width and the number of layers come from the parameters."""
    b, t = idx.shape
    c = p["wte"].shape[1]
    hs = c // n_head
    x = p["wte"][idx] + p["wpe"][:t]
    mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
    for l in range(p["ln1w"].shape[0]):
        h = F.layer_norm(x, (c,), p["ln1w"][l], p["ln1b"][l], eps=1e-5)
        qkv = h @ p["qkvw"][l].T + p["qkvb"][l]
        q, k, v = qkv.split(c, dim=2)
        q = q.view(b, t, n_head, hs).transpose(1, 2)
        k = k.view(b, t, n_head, hs).transpose(1, 2)
        v = v.view(b, t, n_head, hs).transpose(1, 2)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        att = att.masked_fill(~mask, torch.finfo(att.dtype).min)
        att = torch.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)
        x = x + (y @ p["attprojw"][l].T + p["attprojb"][l])
        h = F.layer_norm(x, (c,), p["ln2w"][l], p["ln2b"][l], eps=1e-5)
        h = gelu_new(h @ p["fcw"][l].T + p["fcb"][l])
        x = x + (h @ p["fcprojw"][l].T + p["fcprojb"][l])
    x = F.layer_norm(x, (c,), p["lnfw"], p["lnfb"], eps=1e-5)
    return x @ p["wte"].T, x
