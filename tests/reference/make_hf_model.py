#!/usr/bin/python3
"""make_hf_model.py: writes tiny random GPT-2 models in Hugging Face's layout, for
tests/test_io_hf.c, together with the parameters each one must load to in thermo's
layout, computed here independently of the C code.

    /usr/bin/python3 tests/reference/make_hf_model.py OUTDIR

OUTDIR/<variant>/config.json + model.safetensors + expected.bin, where expected.bin is
the float32 parameter block in thermo's order (model.h: wte, wpe, ln1w, ln1b, qkvw,
qkvb, attprojw, attprojb, ln2w, ln2b, fcw, fcb, fcprojw, fcprojb, lnfw, lnfb; per-layer
tensors stacked; matmul weights (out, in), i.e. the transpose of HF's Conv1D (in, out)).
Variants: plain_f32, prefixed_f32 (transformer. names, mask buffers, tied lm_head),
plain_f16 (with bool mask buffers), prefixed_bf16, untied (lm_head differs from wte).
Also OUTDIR/llmc_f32.bin and llmc_bf16.bin, the same weights as llm.c's write_model
writes them, with llmc_*_expected.bin; and OUTDIR/f16_all.safetensors (every float16 bit pattern) with f16_all_expected.bin,
numpy's float16 -> float32 conversion of each.

The `safetensors` package is not installed, so the format is written by hand: u64
little-endian header length, JSON header, then the raw little-endian data."""
import json
import os
import struct
import sys

import numpy as np

L, H, C, V, T = 2, 4, 64, 500, 32  # V not a multiple of 128: llm.c pads wte


def bf16_round(a):
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def bf16_to_f32(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def write_safetensors(path, tensors, metadata, rng):
    """tensors: list of (name, dtype string, numpy array holding the stored bytes)."""
    order = list(range(len(tensors)))
    rng.shuffle(order)  # file order need not follow header order; loaders sort by offset
    header, blobs, at = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for i in order:
        name, dtype, arr = tensors[i]
        data = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [at, at + len(data)]}
        blobs.append(data)
        at += len(data)
    # write the header keys in a different order from the data, as real files do
    text = json.dumps(dict(sorted(header.items())), separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def hf_params(rng):
    """A random GPT-2 state dict in HF's names (no prefix) and shapes, float32."""
    n = lambda *s: (rng.standard_normal(s) * 0.5).astype(np.float32)
    p = {"wte.weight": n(V, C), "wpe.weight": n(T, C)}
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
    # a few values that stress the conversions: tiny (f16 subnormal), large, signed zero
    p["wte.weight"][0, :6] = [1e-7, -3e-6, 60000.0, -0.0, 0.0, 1e-30]
    return p


def thermo_block(p):
    """The parameter block thermo must hold after loading state dict p (float32 values)."""
    layer = lambda fmt, transpose: np.stack(
        [p[fmt.format(l)].T if transpose else p[fmt.format(l)] for l in range(L)])
    parts = [
        p["wte.weight"], p["wpe.weight"],
        layer("h.{}.ln_1.weight", False), layer("h.{}.ln_1.bias", False),
        layer("h.{}.attn.c_attn.weight", True), layer("h.{}.attn.c_attn.bias", False),
        layer("h.{}.attn.c_proj.weight", True), layer("h.{}.attn.c_proj.bias", False),
        layer("h.{}.ln_2.weight", False), layer("h.{}.ln_2.bias", False),
        layer("h.{}.mlp.c_fc.weight", True), layer("h.{}.mlp.c_fc.bias", False),
        layer("h.{}.mlp.c_proj.weight", True), layer("h.{}.mlp.c_proj.bias", False),
        p["ln_f.weight"], p["ln_f.bias"],
    ]
    return np.concatenate([np.ascontiguousarray(x, dtype=np.float32).ravel() for x in parts])


def config(**extra):
    c = {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"],
         "model_type": "gpt2", "n_ctx": T, "n_embd": C, "n_head": H, "n_inner": None,
         "n_layer": L, "n_positions": T, "vocab_size": V, "layer_norm_epsilon": 1e-05}
    c.update(extra)
    return c


def write_variant(outdir, name, p, dtype, prefix, masks, lm_head, rng, cfg=None):
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    stored, values = [], {}
    for k, v in p.items():
        if dtype == "F32":
            arr, val = v, v
        elif dtype == "F16":
            arr = v.astype(np.float16)
            val = arr.astype(np.float32)
        else:
            arr = bf16_round(v)
            val = bf16_to_f32(arr)
        stored.append((prefix + k, dtype, arr))
        values[k] = val
    if masks:
        for l in range(L):
            tril = np.tril(np.ones((T, T))).reshape(1, 1, T, T)
            if dtype == "F16":
                stored.append((f"{prefix}h.{l}.attn.bias", "BOOL", tril.astype(np.uint8)))
                stored.append((f"{prefix}h.{l}.attn.masked_bias", "F16", np.array(-1e4, np.float16)))
            else:
                stored.append((f"{prefix}h.{l}.attn.bias", "F32", tril.astype(np.float32)))
                stored.append((f"{prefix}h.{l}.attn.masked_bias", "F32", np.array(-1e4, np.float32)))
    if lm_head is not None:
        stored.append(("lm_head.weight", dtype, lm_head))
    write_safetensors(os.path.join(d, "model.safetensors"), stored, {"format": "pt"}, rng)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg or config(), f, indent=2)
    thermo_block(values).tofile(os.path.join(d, "expected.bin"))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_hf_model.py OUTDIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(1234)
    p = hf_params(rng)

    write_variant(out, "plain_f32", p, "F32", "", False, None, rng)
    write_variant(out, "prefixed_f32", p, "F32", "transformer.", True, p["wte.weight"], rng)
    write_variant(out, "plain_f16", p, "F16", "", True, None, rng,
                  cfg=config(n_ctx=None, layer_norm_epsilon=1e-6))  # n_positions only
    write_variant(out, "prefixed_bf16", p, "BF16", "transformer.", False,
                  bf16_round(p["wte.weight"]), rng)
    untied = p["wte.weight"].copy()
    untied[7, 3] += 1.0
    write_variant(out, "untied", p, "F32", "", False, untied, rng)

    # llm.c's write_model (train_gpt2.py): 256 int32 header, then the parameter block with
    # wte padded to a multiple of 128 rows with zeros; version 3 float32, 5 bfloat16
    Vp = (V + 127) // 128 * 128
    block = thermo_block(p)
    padded = np.concatenate([block[:V * C], np.zeros((Vp - V) * C, np.float32), block[V * C:]])
    for version, name in ((3, "llmc_f32.bin"), (5, "llmc_bf16.bin")):
        header = np.zeros(256, dtype=np.int32)
        header[:8] = [20240326, version, T, V, L, H, C, Vp]
        with open(os.path.join(out, name), "wb") as f:
            f.write(header.tobytes())
            f.write((padded if version == 3 else bf16_round(padded)).tobytes())
    block.tofile(os.path.join(out, "llmc_f32_expected.bin"))
    bf16_to_f32(bf16_round(block)).tofile(os.path.join(out, "llmc_bf16_expected.bin"))

    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    write_safetensors(os.path.join(out, "f16_all.safetensors"),
                      [("all", "F16", bits.view(np.float16))], None, rng)
    bits.view(np.float16).astype(np.float32).tofile(os.path.join(out, "f16_all_expected.bin"))
    print(f"wrote 5 GPT-2 variants (L={L} H={H} C={C} V={V} T={T}) and f16_all to {out}")


if __name__ == "__main__":
    main()
