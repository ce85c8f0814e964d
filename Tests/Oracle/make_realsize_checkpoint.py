"""A random PaliGemma checkpoint of PaliGemma-3B-224's real shape, jobs for it, and transformers' answers.

Real shape, widths AND depths (the hub config.json of google/paligemma-3b-pt-224):
  SigLIP So400m/14 at 224 px: 27 layers, width 1152, MLP 4304, 16 heads, 256 image tokens;
  projector 1152 -> 2048;
  Gemma 2B: 18 layers, width 2048, MLP 16384, 8 heads, 1 KV head, head_dim 256, vocabulary 257216,
  image_token_index 257152 (as the hub config), bos 2, eos 1, pad 0. 2.92 B parameters.
Random weights under torch.manual_seed(--seed): transformers 5.23's PaliGemmaForConditionalGeneration
with its matrices and embeddings redrawn at scales that keep greedy answers varied (reinit()), made
directly in bf16 (never an f32 copy beside them), saved with save_pretrained(max_shard_size="5GB") as
the hub shards them:
  ROOT/bf16/  bf16 weights (5.8 GB), the PaliGemma 2 way;
  ROOT/f32/   the same values widened to f32 (11.7 GB), the PaliGemma 1 way.
Both hold the same numbers (the seed decides them), so their references are the same; with
--dtype both one transformers run serves both.

Each checkpoint folder also gets
  tokenizer.model              the pg1-mqa fixture's SentencePiece model (3000 pieces, <loc>/<seg> at
                               low ids; ids >= 3000 decode to nothing). It has no <image> piece: our
                               loader registers <image> at config.image_token_index = 257152.
  preprocessor_config.json     the hub's SiglipImageProcessor settings (224 px, mean/std 0.5, bicubic);
  generation_config.json       from save_pretrained;
  reference.json               transformers' greedy tokens per job (max_new_tokens 20, stop at eos),
                               computed in f32 (bf16 weights widened: what our engine computes), with
                               the top-2 logit gap of every step so a near tie can be told from a bug;
  realsize.json                what made the weights (script SHA-256, seed, dtype): the cache key.
and ROOT/jobs/ holds images/imgNN.png (deterministic PIL drawings of various sizes) and
manifest.jsonl ({"id", "image", "prompt"} with `caption en`-style prompts).

The reference builds each prompt the way PaliGemmaProcessor does ("<image>"x256 + <bos> + prompt + "\\n",
token_type_ids 0, i.e. a bidirectional prefix), with sentencepiece for the text and
SiglipImageProcessorPil (Pillow resize, what our engine matches) for the pixels; transformers' own
tokenizer cannot be used because the fixture tokenizer puts <image> at 3001.

Cached: re-running with the same script, seed and --images does nothing; a changed script remakes
everything; more or fewer --images remakes the jobs and the reference only.

    .venv/bin/python Tests/Oracle/make_realsize_checkpoint.py --dir out/realsize --dtype bf16|f32|both \\
        [--images 4] [--seed 0] [--threads N]

Memory (run it under `flock FILE` on a machine shared with other big jobs): ~7 GB to make and save the
bf16 weights, ~12 GB for the f32 reference and for saving f32. Time on 2 cores: ~2 min to make the
weights, 30-50 s per job of reference (4 jobs: 155 s).
"""
import argparse
import hashlib
import json
import os
import resource
import shutil
import sys
import time

import numpy as np
import sentencepiece as spm
import torch
from PIL import Image, ImageDraw
from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, SiglipImageProcessorPil

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "Fixtures", "models", "pg1-mqa")

# PaliGemma-3B-224 (hub config.json of google/paligemma-3b-pt-224).
VISION = dict(layers=27, width=1152, mlp=4304, heads=16, patch=14, image=224)
TEXT = dict(layers=18, width=2048, mlp=16384, heads=8, kv_heads=1, head_dim=256, vocab=257216)
IMAGE_TOKEN_INDEX = 257152
MAX_NEW_TOKENS = 20
GAIN, EMBED_STD = 1.5, 0.0007  # see reinit()
PROMPTS = ["caption en", "caption es", "describe en", "caption de", "answer en what is in the image?",
           "caption fr", "describe es", "answer en how many shapes are there?"]
# (width, height) of the job images: smaller, larger and equal to 224, landscape and portrait.
SIZES = [(96, 64), (300, 200), (224, 224), (50, 80), (160, 120), (400, 256), (64, 64), (120, 180)]

PREPROCESSOR = {  # google/paligemma-3b-pt-224 preprocessor_config.json
    "do_convert_rgb": None, "do_normalize": True, "do_rescale": True, "do_resize": True,
    "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "SiglipImageProcessor",
    "image_seq_length": 256, "image_std": [0.5, 0.5, 0.5], "processor_class": "PaliGemmaProcessor",
    "resample": 3, "rescale_factor": 0.00392156862745098, "size": {"height": 224, "width": 224}}


def log(*a):
    print("make_realsize:", *a, file=sys.stderr, flush=True)


def script_sha():
    return hashlib.sha256(open(os.path.abspath(__file__), "rb").read()).hexdigest()


def peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # ru_maxrss is KiB on Linux


def config(vision_layers, text_layers):
    v, t = VISION, TEXT
    return PaliGemmaConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=v["width"], intermediate_size=v["mlp"],
                           num_hidden_layers=vision_layers, num_attention_heads=v["heads"],
                           image_size=v["image"], patch_size=v["patch"], vision_use_head=False,
                           hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6),
        text_config=dict(model_type="gemma", vocab_size=t["vocab"], hidden_size=t["width"],
                         intermediate_size=t["mlp"], num_hidden_layers=text_layers,
                         num_attention_heads=t["heads"], num_key_value_heads=t["kv_heads"],
                         head_dim=t["head_dim"], rms_norm_eps=1e-6, rope_theta=10000.0,
                         max_position_embeddings=8192, hidden_activation="gelu_pytorch_tanh"),
        image_token_index=IMAGE_TOKEN_INDEX, projection_dim=t["width"], hidden_size=t["width"],
        pad_token_id=0, bos_token_id=2, eos_token_id=1)


def probe(model):
    """A cheap fingerprint of the weights (first 4096 values of three tensors, as f32 bytes)."""
    sd = model.state_dict()
    h = hashlib.sha256()
    for name in sorted(sd):
        if name.endswith(("embed_tokens.weight", "layers.0.self_attn.q_proj.weight", "patch_embedding.weight")):
            h.update(sd[name].reshape(-1)[:4096].to(torch.float32).numpy().tobytes())
    return h.hexdigest()[:16]


def reinit(model):
    """Weights that make greedy answers vary. transformers' default init (normal, std 0.02) leaves the
    residual stream dominated by the token's own (x sqrt(2048)) embedding, and the tied head then
    repeats the last prompt token 20 times. Here, as in make_fullwidth_golden.py: every matrix
    (linear, conv) normal with std GAIN / sqrt(fan_in), biases std 0.02, the token embedding (also
    the LM head) std EMBED_STD, SigLIP's position embedding std 0.3; norms keep transformers' init
    (LayerNorm 1/0, Gemma RMSNorm 0, i.e. a scale of 1). Done in bf16, in place, seeded."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("embed_tokens.weight"):
                p.normal_(0.0, EMBED_STD)
            elif name.endswith("position_embedding.weight"):
                p.normal_(0.0, 0.3)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.02)
            elif p.dim() >= 2:
                p.normal_(0.0, GAIN / float(np.prod(p.shape[1:])) ** 0.5)


def build_bf16(seed, vision_layers, text_layers):
    """transformers' own init, with every parameter created in bf16 (5.8 GB, no f32 copy)."""
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        t0 = time.time()
        model = PaliGemmaForConditionalGeneration(config(vision_layers, text_layers)).eval()
    finally:
        torch.set_default_dtype(previous)
    model.config.dtype = torch.bfloat16
    reinit(model)
    params = sum(p.numel() for p in model.parameters())
    dtypes = {p.dtype for p in model.parameters()}
    assert dtypes == {torch.bfloat16}, dtypes
    log(f"initialised {params / 1e9:.3f} B parameters in bf16 in {time.time() - t0:.0f} s "
        f"(peak RSS {peak_rss_gb():.1f} GB)")
    return model


def write_small_files(directory):
    shutil.copy(os.path.join(FIXTURE, "tokenizer.model"), os.path.join(directory, "tokenizer.model"))
    with open(os.path.join(directory, "preprocessor_config.json"), "w") as f:
        json.dump(PREPROCESSOR, f, indent=2)


def save(model, directory, stamp):
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    t0 = time.time()
    model.save_pretrained(directory, max_shard_size="5GB")
    write_small_files(directory)
    with open(os.path.join(directory, "realsize.json"), "w") as f:
        json.dump(stamp, f, indent=1)
    size = sum(os.path.getsize(os.path.join(directory, n)) for n in os.listdir(directory) if n.endswith(".safetensors"))
    log(f"saved {directory}: {size / 1e9:.2f} GB of safetensors in {time.time() - t0:.0f} s "
        f"(peak RSS {peak_rss_gb():.1f} GB)")


def make_jobs(jobs_dir, count):
    """Deterministic PNGs (gradient + shapes) and manifest.jsonl; returns the job list."""
    shutil.rmtree(jobs_dir, ignore_errors=True)
    os.makedirs(os.path.join(jobs_dir, "images"))
    rng = np.random.default_rng(1234)
    jobs = []
    for i in range(count):
        w, h = SIZES[i % len(SIZES)]
        y, x = np.mgrid[0:h, 0:w]
        c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = ((x / max(w - 1, 1) + y / max(h - 1, 1)) / 2)[..., None]
        base = (c0 * (1 - t) + c1 * t).astype(np.uint8)
        image = Image.fromarray(base, "RGB")
        draw = ImageDraw.Draw(image)
        for _ in range(1 + i % 4):
            x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
            x1, y1 = int(rng.integers(x0 + 4, w)), int(rng.integers(y0 + 4, h))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            [draw.rectangle, draw.ellipse][int(rng.integers(0, 2))]([x0, y0, x1, y1], fill=colour)
        name = f"img{i:02d}.png"
        image.save(os.path.join(jobs_dir, "images", name))
        jobs.append({"id": f"img{i:02d}", "image": f"images/{name}", "prompt": PROMPTS[i % len(PROMPTS)]})
    with open(os.path.join(jobs_dir, "manifest.jsonl"), "w") as f:
        for job in jobs:
            f.write(json.dumps(job) + "\n")
    return jobs


def reference(model, jobs_dir, jobs, n_image_tokens):
    """Greedy tokens of every job through transformers in f32, one job at a time (no padding)."""
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    lm = model.model.language_model
    assert model.lm_head.weight.data_ptr() == lm.embed_tokens.weight.data_ptr(), "LM head not tied"
    sp = spm.SentencePieceProcessor(model_file=os.path.join(FIXTURE, "tokenizer.model"))
    processor = SiglipImageProcessorPil(**{k: v for k, v in PREPROCESSOR.items()
                                           if k not in ("image_processor_type", "processor_class", "image_seq_length")})
    out = {}
    t_all = time.time()
    for job in jobs:
        t0 = time.time()
        image = Image.open(os.path.join(jobs_dir, job["image"]))
        pixels = processor(images=image, return_tensors="pt")["pixel_values"].to(torch.float32)
        ids = [IMAGE_TOKEN_INDEX] * n_image_tokens + [2] + sp.encode(job["prompt"] + "\n")
        input_ids = torch.tensor([ids], dtype=torch.int64)
        with torch.no_grad():
            gen = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                 token_type_ids=torch.zeros_like(input_ids), pixel_values=pixels,
                                 max_new_tokens=MAX_NEW_TOKENS, do_sample=False, eos_token_id=1, pad_token_id=0,
                                 output_scores=True, return_dict_in_generate=True)
        new = gen.sequences[0, len(ids):].tolist()
        gaps = []
        for scores in gen.scores:
            top = torch.topk(scores[0], 2).values
            gaps.append(float(f"{(top[0] - top[1]).item() / scores[0].abs().max().item():.3g}"))
        out[job["id"]] = {"prompt_tokens": len(ids), "tokens": new, "relative_top2_gaps": gaps}
        log(f"  {job['id']} {job['prompt']!r}: {len(new)} tokens {new[:8]}... min relative top-2 gap "
            f"{min(gaps):.2e} ({time.time() - t0:.1f} s)")
    return out, time.time() - t_all


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True, help="root: ROOT/bf16, ROOT/f32, ROOT/jobs")
    ap.add_argument("--dtype", choices=["bf16", "f32", "both"], default="bf16")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--layers", help=argparse.SUPPRESS)  # "V,T": reduced depth, for trying the script out
    a = ap.parse_args()
    if not 1 <= a.images <= 64:
        ap.error("--images must be in 1..64")
    torch.set_num_threads(a.threads)
    vision_layers, text_layers = (VISION["layers"], TEXT["layers"]) if not a.layers else map(int, a.layers.split(","))
    dtypes = ["bf16", "f32"] if a.dtype == "both" else [a.dtype]
    root = os.path.abspath(a.dir)
    jobs_dir = os.path.join(root, "jobs")
    stamp = {"script_sha256": script_sha(), "seed": a.seed, "vision_layers": vision_layers,
             "text_layers": text_layers, "transformers": __import__("transformers").__version__,
             "torch": torch.__version__}

    def read(path):
        try:
            return json.load(open(path))
        except (OSError, ValueError):
            return None

    def weights_ok(d):
        s = read(os.path.join(root, d, "realsize.json"))
        return s is not None and all(s.get(k) == v for k, v in stamp.items())

    def reference_ok(d):
        r = read(os.path.join(root, d, "reference.json"))
        return (r is not None and r.get("script_sha256") == stamp["script_sha256"] and r.get("images") == a.images
                and os.path.exists(os.path.join(jobs_dir, "manifest.jsonl")))

    todo_weights = [d for d in dtypes if not weights_ok(d)]
    todo_reference = [d for d in dtypes if d in todo_weights or not reference_ok(d)]
    if not todo_weights and not todo_reference:
        log(f"cached: {', '.join(os.path.join(root, d) for d in dtypes)} ({a.images} jobs in {jobs_dir})")
        return
    os.makedirs(root, exist_ok=True)
    if todo_weights:
        model = build_bf16(a.seed, vision_layers, text_layers)
        fingerprint = probe(model)
        for d in ["bf16", "f32"]:
            if d not in todo_weights:
                continue
            if d == "f32":
                model = model.float()  # in place, tensor by tensor: never a second full copy
                model.config.dtype = torch.float32
            save(model, os.path.join(root, d), dict(stamp, dtype=d, fingerprint=fingerprint))
        model = model.float()
    else:
        source = os.path.join(root, dtypes[0])
        t0 = time.time()
        model = PaliGemmaForConditionalGeneration.from_pretrained(source, dtype=torch.float32).eval()
        fingerprint = read(os.path.join(source, "realsize.json")).get("fingerprint")
        assert probe(model) == fingerprint, f"{source}: weights do not match realsize.json"
        log(f"loaded {source} as f32 in {time.time() - t0:.0f} s")
    # Both dtypes hold the same values: a bf16 weight widened to f32 is exact.
    for d in dtypes:
        s = read(os.path.join(root, d, "realsize.json"))
        assert s is not None and s.get("fingerprint") == fingerprint, f"{d}: other weights than the model in memory"

    jobs = make_jobs(jobs_dir, a.images)
    n_image_tokens = (VISION["image"] // VISION["patch"]) ** 2
    log(f"transformers reference: {len(jobs)} jobs, f32, greedy, {MAX_NEW_TOKENS} new tokens, {a.threads} threads")
    per_job, seconds = reference(model, jobs_dir, jobs, n_image_tokens)
    result = {"script_sha256": stamp["script_sha256"], "images": a.images, "max_new_tokens": MAX_NEW_TOKENS,
              "compute_dtype": "float32", "weights": "bf16 values (f32 checkpoint: the same values widened)",
              "transformers": stamp["transformers"], "torch": stamp["torch"], "threads": a.threads,
              "seconds": round(seconds, 1), "peak_rss_gb": round(peak_rss_gb(), 2),
              "manifest": os.path.join(jobs_dir, "manifest.jsonl"), "jobs": per_job}
    for d in dtypes:
        with open(os.path.join(root, d, "reference.json"), "w") as f:
            json.dump(result, f, indent=1)
    log(f"reference: {seconds:.0f} s, peak RSS {peak_rss_gb():.1f} GB; written to "
        f"{', '.join(os.path.join(root, d, 'reference.json') for d in dtypes)}")


if __name__ == "__main__":
    main()
