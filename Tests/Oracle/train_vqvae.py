#!/usr/bin/env python3
"""The mask VQ-VAE of PaliGemma (SPEC §5.2), trained on the shapes' masks, saved as vae-oid.npz.

  nice -n 15 python Tests/Oracle/train_vqvae.py --out models/paligemma-shapes/vae-oid.npz

Architecture (the layout of Google's vae-oid.npz, PyTorch module names and weight layouts):
  encoder: 0,2,4,6  Conv2d k3 s2 p1, 1→16→32→64→128, each + ReLU (1,3,5,7)
           8, 9     ResBlocks (net.0 conv3x3, ReLU, net.2 conv3x3, ReLU, net.4 conv1x1; + skip)
           10       Conv2d k1 128→D
  _vq_vae._embedding  [128, D] codebook
  decoder: 0        Conv2d k1 D→128 + ReLU (1)
           2, 3     ResBlocks as above
           4,6,8,10 ConvTranspose2d k4 s2 p1, 128→128→64→32→16, each + ReLU (5,7,9,11)
           12       Conv2d k1 16→1
Input: a 64×64 mask in [0, 1] mapped to 2(x − 0.5); codes: the 4×4 grid of nearest codebook rows
(squared L2), row-major; decoder output: 64×64 "logits" trained towards ±1 (foreground > 0).

Training data: masks of shapes.py scenes drawn from training seeds (not 1000, 1001, 2000), each
object's mask cropped to its box and resized to 64×64. Loss: MSE of the decoder output to
2(x − 0.5), codebook + 0.25·commitment losses, straight-through gradients, and unused codes
restarted from random encoder outputs. Prints reconstruction IoU on held-out masks (seed 1000).
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shapes  # noqa: E402

NUM_CODES = 128


class ResBlock(nn.Module):
    def __init__(self, c=128):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1),
                                 nn.ReLU(), nn.Conv2d(c, c, 1))

    def forward(self, x):
        return x + self.net(x)


class VQ(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self._embedding = nn.Embedding(NUM_CODES, dim)
        self._embedding.weight.data.uniform_(-1.0 / NUM_CODES, 1.0 / NUM_CODES)


class MaskVQVAE(nn.Module):
    def __init__(self, dim=64):
        super().__init__()
        self.dim = dim
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(),
            ResBlock(), ResBlock(), nn.Conv2d(128, dim, 1))
        self._vq_vae = VQ(dim)
        self.decoder = nn.Sequential(
            nn.Conv2d(dim, 128, 1), nn.ReLU(), ResBlock(), ResBlock(),
            nn.ConvTranspose2d(128, 128, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 1, 1))

    def encode_z(self, masks):
        """masks [B, 64, 64] in [0, 1] → encoder output [B, D, 4, 4]."""
        return self.encoder(2.0 * (masks[:, None] - 0.5))

    def nearest(self, z):
        """z [B, D, 4, 4] → code indices [B, 16] (row-major)."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.dim)
        emb = self._vq_vae._embedding.weight
        d = (flat ** 2).sum(1, keepdim=True) - 2 * flat @ emb.t() + (emb ** 2).sum(1)[None]
        return d.argmin(1).view(z.shape[0], 16)

    @torch.no_grad()
    def encode(self, masks):
        return self.nearest(self.encode_z(masks))

    def decode(self, codes):
        """codes [B, 16] int → [B, 64, 64] decoder output (before any thresholding)."""
        e = self._vq_vae._embedding.weight[codes]  # [B, 16, D]
        e = e.view(codes.shape[0], 4, 4, self.dim).permute(0, 3, 1, 2)
        return self.decoder(e)[:, 0]


def save_npz(model, path):
    sd = {k.replace("_embedding.weight", "_embedding"): v.detach().cpu().numpy().astype(np.float32)
          for k, v in model.state_dict().items()}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, **sd)


def load_npz(path):
    z = np.load(path)
    dim = z["_vq_vae._embedding"].shape[1]
    m = MaskVQVAE(dim)
    m.load_state_dict({(k + ".weight" if k == "_vq_vae._embedding" else k): torch.from_numpy(z[k])
                       for k in z.files})
    return m.eval()


def mask_crops(seeds, per_seed):
    out = []
    for s in seeds:
        rng = np.random.default_rng(s)
        for _ in range(per_seed):
            _, objs = shapes.scene(rng)
            out += [shapes.mask_crop64(o["mask"], o["box"]) for o in objs]
    return torch.from_numpy(np.stack(out))


def iou(a, b):
    a, b = a.bool(), b.bool()
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="models/paligemma-shapes/vae-oid.npz")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    t0 = time.time()
    train = mask_crops(range(100, 140), 150)
    test = mask_crops([1000], 200)
    print(f"{len(train)} training masks, {len(test)} held-out, {time.time() - t0:.0f}s", flush=True)
    model = MaskVQVAE(a.dim)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=a.steps, pct_start=0.05)
    g = torch.Generator().manual_seed(0)
    usage = torch.zeros(NUM_CODES)
    for step in range(a.steps):
        idx = torch.randint(len(train), (a.batch,), generator=g)
        x = train[idx]
        # light augmentation: flips and transposes (the shapes are drawn at any rotation)
        if step % 2:
            x = x.flip(2)
        if step % 3 == 0:
            x = x.transpose(1, 2)
        z = model.encode_z(x)
        codes = model.nearest(z)
        e = model._vq_vae._embedding.weight[codes].view(a.batch, 4, 4, a.dim).permute(0, 3, 1, 2)
        zq = z + (e - z).detach()
        y = model.decoder(zq)[:, 0]
        rec = F.mse_loss(y, 2 * (x - 0.5))
        vq = F.mse_loss(e, z.detach()) + 0.25 * F.mse_loss(z, e.detach())
        loss = rec + vq
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        usage += torch.bincount(codes.flatten(), minlength=NUM_CODES).float()
        if step % 100 == 99 and step < a.steps * 0.8:
            dead = (usage == 0).nonzero().flatten()
            if len(dead):
                flat = z.detach().permute(0, 2, 3, 1).reshape(-1, a.dim)
                pick = flat[torch.randint(len(flat), (len(dead),), generator=g)]
                with torch.no_grad():
                    model._vq_vae._embedding.weight[dead] = pick + 0.01 * torch.randn_like(pick)
            usage.zero_()
        if step % 250 == 0 or step == a.steps - 1:
            with torch.no_grad():
                rec_t = model.decode(model.encode(test[:400]))
                m_iou = iou(rec_t > 0, test[:400] > 0.5).mean().item()
            print(f"step {step} loss {loss.item():.4f} rec {rec.item():.4f} held-out IoU {m_iou:.4f} "
                  f"{time.time() - t0:.0f}s", flush=True)
    model.eval()
    with torch.no_grad():
        codes = model.encode(test)
        rec_t = model.decode(codes)
        ious = iou(rec_t > 0, test > 0.5)
    print(f"held-out 64x64 reconstruction IoU: mean {ious.mean():.4f}, min {ious.min():.4f}, "
          f">=0.9: {(ious >= 0.9).float().mean():.3f}; codes used {len(codes.unique())}/{NUM_CODES}")
    save_npz(model, a.out)
    print("wrote", a.out, os.path.getsize(a.out), "bytes")


if __name__ == "__main__":
    main()
