#!/usr/bin/env python3
"""Train the shapes demo model: a tiny PaliGemma 1 (SigLIP + Gemma) from scratch on shapes.py scenes.

  nice -n 15 python Tests/Oracle/train_demo_model.py --minutes 95 --work /tmp/pg-train \
      --out models/paligemma-shapes

Steps:
 1. Tokenizer: a Gemma-style SentencePiece BPE model (sp_models.train: identity normalization, byte
    fallback, <pad>=0 <eos>=1 <bos>=2 <unk>=3, <loc0000>…<loc1023> and <seg000>…<seg127> as
    user-defined pieces) trained on the committed corpus Tests/Oracle/shapes_corpus.txt; the processor
    (PaliGemmaProcessor = GemmaTokenizer + SiglipImageProcessor of the model's size) is saved with it.
 2. Model: transformers' PaliGemmaForConditionalGeneration (PaliGemma 1 layout), random init.
 3. Data, generated on the fly from training seeds (10000 + k; seeds 1000, 1001, 2000 are held out):
    one scene per sample and one task drawn from caption / detect / segment, in PaliGemma's prefix-LM
    format: input = <image>×N <bos> prefix \\n suffix <eos>, token_type_ids 0 on the prefix and 1 on
    the suffix (transformers 5.x then attends bidirectionally over the prefix, causally over the
    suffix), loss on the suffix only. Suffixes (SPEC §5.1, §5.2):
      caption en      "a red circle and a blue square" (objects left to right)
      detect <label>  "<locY0><locX0><locY1><locX1> <label>", bin = clip(round(coord/size·1023))
      segment <label> "<loc>×4<seg>×16 <label>", codes = the VQ-VAE encoder on the box crop (64×64)
    Training-only helps: <loc> embeddings start smooth in the bin index (a random projection of
    sinusoids), and the loss on <loc> targets mixes in a Gaussian over neighbouring bins.
 4. AdamW, linear warmup then cosine decay over the wall-clock budget (--minutes); a checkpoint
    every --ckpt-minutes (resumable with --resume); at the end save_pretrained (BF16 safetensors)
    with the processor files, tokenizer.model and the VQ-VAE into --out.
"""
import argparse
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import shapes  # noqa: E402
import sp_models  # noqa: E402
import train_vqvae  # noqa: E402

from transformers import (GemmaTokenizer, PaliGemmaConfig, PaliGemmaForConditionalGeneration,  # noqa: E402
                          PaliGemmaProcessor, SiglipImageProcessor)

IMAGE_SIZE = 112
PATCH = 16
N_IMG = (IMAGE_SIZE // PATCH) ** 2
HELD_OUT_SEEDS = {1000, 1001, 2000}
TASK_P = {"caption": 0.25, "detect": 0.35, "segment": 0.40}


def build_processor(outdir, vocab_size=1500):
    """Train the SentencePiece model on the committed corpus and save the processor into outdir."""
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(HERE, "shapes_corpus.txt")) as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
    tokdir = os.path.join(outdir, "_tok")
    os.makedirs(tokdir, exist_ok=True)
    sp_models.train(os.path.join(tokdir, "tokenizer.model"), vocab_size=vocab_size, lines=lines)
    tok = GemmaTokenizer.from_pretrained(tokdir)
    ip = SiglipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=[0.5] * 3,
                              image_std=[0.5] * 3, resample=3)
    ip.image_seq_length = N_IMG
    proc = PaliGemmaProcessor(image_processor=ip, tokenizer=tok)
    proc.save_pretrained(outdir)
    shutil.copy(os.path.join(tokdir, "tokenizer.model"), os.path.join(outdir, "tokenizer.model"))
    shutil.rmtree(tokdir)
    return PaliGemmaProcessor.from_pretrained(outdir)


def make_config(proc):
    image_id = proc.tokenizer.convert_tokens_to_ids("<image>")
    vocab = max(len(proc.tokenizer), image_id + 1)
    hidden = 192
    return PaliGemmaConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=128, intermediate_size=512,
                           num_hidden_layers=4, num_attention_heads=4, image_size=IMAGE_SIZE, patch_size=PATCH,
                           vision_use_head=False, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6),
        text_config=dict(model_type="gemma", hidden_size=hidden, intermediate_size=768, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=1, head_dim=48, vocab_size=vocab,
                         hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6, rope_theta=10000.0,
                         max_position_embeddings=512),
        image_token_index=image_id, projection_dim=hidden, hidden_size=hidden,
        pad_token_id=0, bos_token_id=2, eos_token_id=1)


def suffix_for(kind, objs, k, label, w, h, vae_codes):
    """The target text of a task (see the module docstring)."""
    if kind == "caption":
        return shapes.caption(objs)
    o = objs[k]
    s = shapes.loc_tokens(o["box"], w, h)
    if kind == "segment":
        s += "".join(f"<seg{c:03d}>" for c in vae_codes)
    return f"{s} {label}"


class Sampler:
    """Training samples from an endless stream of scenes (one Generator per training seed)."""

    def __init__(self, proc, vae, seed0=10000, scenes_per_seed=500, seed_step=1):
        self.proc, self.vae = proc, vae
        self.seed_step = seed_step
        self.tok = proc.tokenizer
        self.img_id = proc.tokenizer.convert_tokens_to_ids("<image>")
        self.seed, self.per, self.left = seed0, scenes_per_seed, 0
        self.rng = None
        self.task_rng = np.random.default_rng(seed0 + 7)
        self.kinds = []

    def _next_scene(self):
        if self.left == 0:
            assert self.seed not in HELD_OUT_SEEDS
            self.rng = np.random.default_rng(self.seed)
            self.seed += self.seed_step
            self.left = self.per
        self.left -= 1
        return shapes.scene(self.rng)

    def sample(self):
        img, objs = self._next_scene()
        h, w = img.shape[:2]
        kind = self.task_rng.choice(list(TASK_P), p=list(TASK_P.values()))
        if kind == "caption":
            prompt, k, label, codes = "caption en", None, None, None
        else:
            k = int(self.task_rng.integers(len(objs)))
            label = shapes.label_for(self.task_rng, objs[k])
            prompt = f"{kind} {label}"
            codes = None
            if kind == "segment":
                crop = torch.from_numpy(shapes.mask_crop64(objs[k]["mask"], objs[k]["box"]))[None]
                codes = self.vae.encode(crop)[0].tolist()
        suffix = suffix_for(kind, objs, k, label, w, h, codes)
        self.kinds.append(kind)
        return Image.fromarray(img), prompt, suffix

    def encode(self, prompt, suffix):
        p = self.tok.encode(prompt + "\n", add_special_tokens=False)
        s = self.tok.encode(suffix, add_special_tokens=False) + [self.tok.eos_token_id]
        ids = [self.img_id] * N_IMG + [self.tok.bos_token_id] + p + s
        return ids, len(ids) - len(s)

    def batch(self, n):
        imgs, seqs = [], []
        self.kinds = []
        for _ in range(n):
            im, prompt, suffix = self.sample()
            imgs.append(im)
            seqs.append(self.encode(prompt, suffix))
        return collate(self.proc, imgs, seqs)


def pixel_values(imgs):
    """What SiglipImageProcessor (slow, PIL) computes here: bicubic resize of the uint8 image, /255,
    (x − 0.5) / 0.5, CHW. Used by the data-loader workers (no processor call per batch)."""
    arr = np.stack([np.asarray(im.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC),
                               dtype=np.float32) for im in imgs])
    arr = (arr / 255.0 - 0.5) / 0.5
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


class WorkerStream(torch.utils.data.IterableDataset):
    """Batches from --workers processes, worker w reading training seeds 10000 + w + k·W."""

    def __init__(self, proc_dir, vae_path, batch, workers, seed_base):
        self.proc_dir, self.vae_path, self.batch_size, self.workers = proc_dir, vae_path, batch, workers
        self.seed_base = seed_base

    def __iter__(self):
        torch.set_num_threads(1)
        info = torch.utils.data.get_worker_info()
        w = info.id if info is not None else 0
        proc = PaliGemmaProcessor.from_pretrained(self.proc_dir)
        vae = train_vqvae.load_npz(self.vae_path)
        sampler = Sampler(proc, vae, seed0=self.seed_base + w, seed_step=self.workers)
        sampler.task_rng = np.random.default_rng(self.seed_base + 7 + 1000 * w)
        while True:
            imgs, seqs = [], []
            sampler.kinds = []
            for _ in range(self.batch_size):
                im, prompt, suffix = sampler.sample()
                imgs.append(im)
                seqs.append(sampler.encode(prompt, suffix))
            inputs, labels = pack(seqs)
            inputs["pixel_values"] = pixel_values(imgs)
            kinds = torch.tensor([list(TASK_P).index(k) for k in sampler.kinds])
            yield inputs, labels, kinds, sampler.seed


def pack(seqs):
    """Right-padded input_ids / attention_mask / token_type_ids and labels (-100 outside the suffix)
    of (token ids, prefix length) pairs."""
    L = max(len(s) for s, _ in seqs)
    B = len(seqs)
    ids = torch.zeros(B, L, dtype=torch.long)
    att = torch.zeros(B, L, dtype=torch.long)
    tt = torch.zeros(B, L, dtype=torch.long)
    labels = torch.full((B, L), -100, dtype=torch.long)
    for i, (s, plen) in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        att[i, :len(s)] = 1
        tt[i, plen:len(s)] = 1
        labels[i, plen:len(s)] = torch.tensor(s[plen:])
    return dict(input_ids=ids, attention_mask=att, token_type_ids=tt), labels


def collate(proc, imgs, seqs):
    inputs, labels = pack(seqs)
    inputs["pixel_values"] = proc.image_processor(images=imgs, return_tensors="pt")["pixel_values"]
    return inputs, labels


def smooth_loc_init(model, proc, n_freq=12, seed=0):
    """<loc> embeddings as a random projection of sinusoids of the bin index (similar bins, similar rows)."""
    emb = model.get_input_embeddings().weight
    loc0 = proc.tokenizer.convert_tokens_to_ids("<loc0000>")
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(1024, dtype=torch.float32)[:, None] / 1023.0
    freqs = torch.arange(1, n_freq + 1, dtype=torch.float32)[None] * math.pi / 2
    feats = torch.cat([torch.sin(t * freqs), torch.cos(t * freqs)], 1)  # [1024, 2F]
    proj = torch.randn(2 * n_freq, emb.shape[1], generator=g)
    rows = feats @ proj
    rows = rows / rows.std() * emb.std()
    with torch.no_grad():
        emb[loc0:loc0 + 1024] = rows + 0.1 * emb[loc0:loc0 + 1024]


def loss_fn(model, inputs, labels, loc0, sigma=6.0, mix=0.3, kinds=None):
    out = model.model(**inputs, use_cache=False)
    sel = labels[:, 1:] != -100
    hsel = out.last_hidden_state[:, :-1][sel]
    tgt = labels[:, 1:][sel]
    dev = labels.device
    row = torch.arange(labels.shape[0], device=dev)[:, None].expand_as(sel)[sel]
    logits = model.lm_head(hsel).float()
    ce = F.cross_entropy(logits, tgt, reduction="none")
    is_loc = (tgt >= loc0) & (tgt < loc0 + 1024)
    if is_loc.any() and mix > 0:
        bins = (tgt[is_loc] - loc0).float()
        grid = torch.arange(1024, dtype=torch.float32, device=dev)
        soft = torch.exp(-0.5 * ((grid[None] - bins[:, None]) / sigma) ** 2)
        soft = soft / soft.sum(1, keepdim=True)
        lp = F.log_softmax(logits[is_loc], -1)[:, loc0:loc0 + 1024]
        soft_ce = -(soft * lp).sum(1)
        ce = ce.clone()
        ce[is_loc] = (1 - mix) * ce[is_loc] + mix * soft_ce
    with torch.no_grad():
        acc = (logits.argmax(-1) == tgt).float().mean().item() if kinds is not None else 0.0
        per = {}
        if kinds is not None:
            for kind in TASK_P:
                rows = [i for i, k in enumerate(kinds) if k == kind]
                if rows:
                    msk = torch.isin(row, torch.tensor(rows, device=dev))
                    per[kind] = ce[msk].mean().item()
            if is_loc.any():
                near = ((logits[is_loc][:, loc0:loc0 + 1024].argmax(-1) - (tgt[is_loc] - loc0)).abs() <= 16)
                per["loc_near16"] = near.float().mean().item()
    return ce.mean(), acc, per


def check_prefix_lm(model, sampler):
    """The suffix must not leak into the prefix: logits at the prefix end equal a prefix-only forward,
    and every suffix position equals a step-by-step cached forward (as generate runs)."""
    model.eval()
    inputs, labels = sampler.batch(1)
    plen = int((inputs["token_type_ids"][0] == 0).sum())
    with torch.no_grad():
        full = model(**inputs).logits[0]
        pre = {k: (v[:, :plen] if k != "pixel_values" else v) for k, v in inputs.items()}
        out = model(**pre, use_cache=True)
        d0 = (out.logits[0, -1] - full[plen - 1]).abs().max().item()
        past, d1 = out.past_key_values, 0.0
        ids = inputs["input_ids"][0]
        for t in range(plen, min(len(ids), plen + 6)):
            o = model(input_ids=ids[None, t:t + 1], past_key_values=past, use_cache=True,
                      attention_mask=torch.ones(1, t + 1, dtype=torch.long),
                      position_ids=torch.tensor([[t + 1]]))
            past = o.past_key_values
            d1 = max(d1, (o.logits[0, -1] - full[t]).abs().max().item())
    print(f"prefix-LM check: prefix-end max|Δ| {d0:.2e}, cached suffix steps max|Δ| {d1:.2e}", flush=True)
    assert d0 < 1e-4 and d1 < 1e-4, "prefix-LM masking is not what inference uses"
    model.train()


def check_processor_tokens(sampler):
    im, prompt, suffix = sampler.sample()
    enc = sampler.proc(images=im, text=prompt, suffix=suffix, return_tensors="pt")
    ids, plen = sampler.encode(prompt, suffix)
    assert enc["input_ids"][0].tolist() == ids, (enc["input_ids"][0].tolist(), ids)
    assert enc["token_type_ids"][0].tolist() == [0] * plen + [1] * (len(ids) - plen)
    print("processor tokens == training tokens:", repr(prompt), repr(suffix), flush=True)


def save_final(model, proc, out, vae_path, work):
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        if f not in ("README.md",):
            p = os.path.join(out, f)
            shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    m = PaliGemmaForConditionalGeneration(model.config)
    m.load_state_dict(model.state_dict())
    m.to(torch.bfloat16).save_pretrained(out)
    proc.save_pretrained(out)
    shutil.copy(os.path.join(work, "processor", "tokenizer.model"), os.path.join(out, "tokenizer.model"))
    shutil.copy(vae_path, os.path.join(out, "vae-oid.npz"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=95)
    ap.add_argument("--work", default="/tmp/pg-train")
    ap.add_argument("--out", default="models/paligemma-shapes")
    ap.add_argument("--vae", default="models/paligemma-shapes/vae-oid.npz")
    ap.add_argument("--processor", default=None,
                    help="load the processor (tokenizer) from this folder instead of training it")
    ap.add_argument("--init", default=None, help="start from this float32 state dict (.pt)")
    ap.add_argument("--state-out", default=None,
                    help="also write the float32 state dict here at every checkpoint and at the end")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--ckpt-minutes", type=float, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--workers", type=int, default=0, help="data-loader processes (0: in the training process)")
    ap.add_argument("--seed-base", type=int, default=10000, help="first training seed of the worker streams")
    ap.add_argument("--tasks", default=None,
                    help="task shares caption,detect,segment (default %s)" % ",".join(map(str, TASK_P.values())))
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--bench", type=int, default=0, help="time this many steps and exit")
    a = ap.parse_args()
    assert a.seed_base >= 10000, "seeds below 10000 hold the held-out sets"
    if a.tasks:
        shares = [float(x) for x in a.tasks.split(",")]
        assert len(shares) == 3 and abs(sum(shares) - 1) < 1e-6, "--tasks wants three shares that sum to 1"
        TASK_P.update(zip(list(TASK_P), shares))
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    os.makedirs(a.work, exist_ok=True)
    vae_path = os.path.join(a.work, "vae-oid.npz")
    if not a.resume:
        shutil.copy(a.vae, vae_path)
    vae = train_vqvae.load_npz(vae_path)
    proc_dir = os.path.join(a.work, "processor")
    if a.resume:
        proc = PaliGemmaProcessor.from_pretrained(proc_dir)
    elif a.processor:
        proc = PaliGemmaProcessor.from_pretrained(a.processor)
        proc.save_pretrained(proc_dir)
        shutil.copy(os.path.join(a.processor, "tokenizer.model"), os.path.join(proc_dir, "tokenizer.model"))
        proc = PaliGemmaProcessor.from_pretrained(proc_dir)
    else:
        proc = build_processor(proc_dir)
    cfg = make_config(proc)
    model = PaliGemmaForConditionalGeneration(cfg)
    model.config._attn_implementation = "sdpa"
    loc0 = proc.tokenizer.convert_tokens_to_ids("<loc0000>")
    n_params = sum(p.numel() for p in model.parameters())
    print(f"vocab {cfg.text_config.vocab_size}, image token {cfg.image_token_index}, params {n_params / 1e6:.2f}M, "
          f"device {dev}, torch {torch.__version__}", flush=True)
    sampler = Sampler(proc, vae)
    check_processor_tokens(sampler)
    check_prefix_lm(model, sampler)
    im, _, _ = sampler.sample()
    d = (pixel_values([im]) - sampler.proc.image_processor(images=[im], return_tensors="pt")["pixel_values"]).abs().max()
    print(f"worker pixel values vs {type(sampler.proc.image_processor).__name__}: max|Δ| {d:.2e}", flush=True)
    if dev.type == "cpu":
        assert d < 1e-5, "the workers' pixel values are not the processor's"
    if a.init:
        model.load_state_dict(torch.load(a.init, map_location="cpu"))
        print(f"initialised from {a.init}", flush=True)
    else:
        smooth_loc_init(model, proc)
    if a.workers > 0:
        stream = WorkerStream(proc_dir, vae_path, a.batch, a.workers, a.seed_base)
        loader = iter(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=a.workers,
                                                  pin_memory=dev.type == "cuda", prefetch_factor=4,
                                                  persistent_workers=True))
        kind_names = list(TASK_P)

        def next_batch():
            inputs, labels, kinds, _ = next(loader)
            return inputs, labels, [kind_names[k] for k in kinds.tolist()]
    else:
        def next_batch():
            inputs, labels = sampler.batch(a.batch)
            return inputs, labels, sampler.kinds

    model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.98), weight_decay=0.01)
    state = {"step": 0, "elapsed": 0.0, "sampler_seed": sampler.seed, "log": [], "args": vars(a)}
    ck = os.path.join(a.work, "ckpt.pt")
    if a.resume and os.path.exists(ck):
        c = torch.load(ck, weights_only=False)
        model.load_state_dict(c["model"])
        opt.load_state_dict(c["opt"])
        state = c["state"]
        sampler.seed = state["sampler_seed"] + 1
        print(f"resumed at step {state['step']}, {state['elapsed'] / 60:.1f} min", flush=True)

    def save_state():
        if a.state_out:
            sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
            torch.save(sd, a.state_out + ".tmp")
            os.replace(a.state_out + ".tmp", a.state_out)
            with open(a.state_out + ".log.json", "w") as f:
                json.dump(state, f)

    budget = a.minutes * 60
    model.train()
    t_start = time.time() - state["elapsed"]
    t_ck = time.time()
    run_loss = run_acc = None
    run_per = {}
    while True:
        elapsed = time.time() - t_start
        if a.bench and state["step"] >= a.bench:
            break
        if not a.bench and elapsed >= budget:
            break
        step = state["step"]
        frac = min(elapsed / budget, 1.0)
        lr = a.lr * min(1.0, (step + 1) / a.warmup) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        t0 = time.time()
        inputs, labels, kinds = next_batch()
        inputs = {k: v.to(dev, non_blocking=True) for k, v in inputs.items()}
        labels = labels.to(dev, non_blocking=True)
        t1 = time.time()
        log_now = (state["step"] + 1) % 25 == 0 or a.bench
        loss, acc, per = loss_fn(model, inputs, labels, loc0, kinds=kinds if log_now else None)
        for k, v in per.items():
            run_per[k] = v if k not in run_per else 0.8 * run_per[k] + 0.2 * v
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state["step"] += 1
        if log_now:
            lv = loss.item()
            t2 = time.time()
            run_loss = lv if run_loss is None else 0.8 * run_loss + 0.2 * lv
            run_acc = acc if run_acc is None else 0.8 * run_acc + 0.2 * acc
            rec = dict(step=state["step"], min=round(elapsed / 60, 2), lr=lr, loss=round(run_loss, 4),
                       acc=round(run_acc, 4), **{k: round(v, 3) for k, v in run_per.items()},
                       data_s=round(t1 - t0, 3), step_s=round(t2 - t1, 3),
                       samples=state["step"] * a.batch)
            state["log"].append(rec)
            if state["step"] % 100 == 0 or a.bench:
                print(json.dumps(rec), flush=True)
        if time.time() - t_ck > a.ckpt_minutes * 60:
            state["elapsed"] = time.time() - t_start
            state["sampler_seed"] = sampler.seed
            if a.workers == 0:
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state}, ck + ".tmp")
                os.replace(ck + ".tmp", ck)
                save_final(model, proc, os.path.join(a.work, "latest"), vae_path, a.work)
            save_state()
            t_ck = time.time()
            print(f"checkpoint at step {state['step']}", flush=True)
    if a.bench:
        return
    state["elapsed"] = time.time() - t_start
    state["sampler_seed"] = sampler.seed
    save_state()
    model.to("cpu")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state}, ck)
    save_final(model, proc, a.out, vae_path, a.work)
    with open(os.path.join(a.work, "train_log.json"), "w") as f:
        json.dump(state, f)
    print(f"done: {state['step']} steps, {state['step'] * a.batch} samples, {state['elapsed'] / 60:.1f} min -> {a.out}",
          flush=True)


if __name__ == "__main__":
    main()
