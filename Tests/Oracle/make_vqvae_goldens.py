#!/usr/bin/env python3
"""Goldens for the VQ-VAE mask decoder (SPEC §5.2) on random weights: Tests/Fixtures/vqvae/.

  random-vae.npz       a random-weight decoder of the vae-oid.npz layout (train_vqvae.MaskVQVAE, D = 8):
                       `_vq_vae._embedding` [128, 8] and every `decoder.*` tensor (PyTorch layouts; the
                       encoder is left out to keep the fixture small). Weights are small multiples of a
                       power of two, so np.savez_compressed shrinks the file; they are plain float32.
  golden.safetensors   codes_K  I64 [16]      K = 0..3 (16 codes each, row-major 4×4)
                       mask_K   F32 [64, 64]  the decoder output before any thresholding (PyTorch f32)
                       the demo's paste (HF space `extract_objs`) of mask_0 / mask_1 into an H×W image:
                       box_K    I64 [4]       [x0, y0, x1, y1] pixels, x1/y1 exclusive
                       size     I64 [2]       [H, W]
                       pasted_soft_K F32 [H, W]  clip(m·0.5+0.5, 0, 1) → uint8 (trunc) → PIL resize to
                                                 (x1−x0, y1−y0), BICUBIC, mode L → /255, zeros outside
                       pasted_K U8 [H, W]     pasted_soft_K > 0.5 (0/1)

Run: .venv/bin/python Tests/Oracle/make_vqvae_goldens.py
"""
import os
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train_vqvae  # noqa: E402

OUT = os.path.join(HERE, "..", "Fixtures", "vqvae")


def quantised_(t, std, g):
    """Fill t with values k·2^e, |k| ≤ 15, of roughly the given std (exact in float32)."""
    e = 2.0 ** np.floor(np.log2(std / 4))
    k = torch.clamp(torch.round(torch.randn(t.shape, generator=g) * std / e), -15, 15)
    with torch.no_grad():
        t.copy_(k * e)


def paste(m64, box, h, w):
    x0, y0, x1, y1 = box
    m = np.clip(m64 * 0.5 + 0.5, 0, 1)
    im = Image.fromarray((m * 255).astype(np.uint8), mode="L")
    full = np.zeros((h, w), np.float32)
    if x1 > x0 and y1 > y0:
        r = im.resize((x1 - x0, y1 - y0))  # PIL's default filter for mode L: BICUBIC
        full[y0:y1, x0:x1] = np.asarray(r, np.float32) / 255.0
    return full


def main():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1234)
    model = train_vqvae.MaskVQVAE(dim=8).eval()
    for name, p in model.named_parameters():
        if not (name.startswith("decoder") or name.startswith("_vq_vae")):
            continue
        if name.startswith("_vq_vae"):
            quantised_(p, 1.0, g)
        elif name.endswith("weight"):
            if name.split(".")[1] in ("4", "6", "8", "10"):  # ConvTranspose2d: [in, out, kh, kw]
                fan_in = p.shape[0] * 4  # each output pixel sees in·(2×2) taps with k4 s2
            else:  # Conv2d: [out, in, kh, kw]
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
            quantised_(p, 1.3 / np.sqrt(fan_in), g)
        else:
            quantised_(p, 0.05, g)
    codes = [torch.arange(16) * 8 % 128, torch.full((16,), 37),
             torch.randint(0, 128, (16,), generator=g), torch.randint(0, 128, (16,), generator=g)]
    codes = [c.to(torch.int64) for c in codes]
    with torch.no_grad():
        outs = model.decode(torch.stack(codes))
        # centre the output so the paste threshold cuts through the masks
        model.decoder[12].bias -= outs.median()
        outs = model.decode(torch.stack(codes))
    os.makedirs(OUT, exist_ok=True)
    sd = {}
    for k, v in model.state_dict().items():
        if k.startswith("decoder") or k.startswith("_vq_vae"):
            sd[k.replace("_embedding.weight", "_embedding")] = v.numpy().astype(np.float32)
    np.savez_compressed(os.path.join(OUT, "random-vae.npz"), **sd)
    gold = {}
    for k, (c, m) in enumerate(zip(codes, outs)):
        gold[f"codes_{k}"] = c.contiguous()
        gold[f"mask_{k}"] = m.contiguous()
    h, w = 97, 131
    gold["size"] = torch.tensor([h, w], dtype=torch.int64)
    for k, box in enumerate([[10, 20, 70, 61], [3, 0, 131, 90]]):
        soft = paste(outs[k].numpy(), box, h, w)
        gold[f"box_{k}"] = torch.tensor(box, dtype=torch.int64)
        gold[f"pasted_soft_{k}"] = torch.from_numpy(soft)
        gold[f"pasted_{k}"] = torch.from_numpy((soft > 0.5).astype(np.uint8))
        print(f"box {box}: {int((soft > 0.5).sum())} of {(box[2] - box[0]) * (box[3] - box[1])} box pixels on")
    save_file(gold, os.path.join(OUT, "golden.safetensors"))
    for k, m in enumerate(outs):
        print(f"mask_{k}: range [{m.min():.3f}, {m.max():.3f}], >0: {(m > 0).float().mean():.2f}")
    for f in ("random-vae.npz", "golden.safetensors"):
        print(f, os.path.getsize(os.path.join(OUT, f)), "bytes")


if __name__ == "__main__":
    main()
