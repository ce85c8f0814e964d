"""`paligemma bench`'s measurements through transformers on CPU, for Launch/bench-vs-transformers.sh.

Same shapes (the pg1-3b-224 / pg2-3b-224 presets of Sources/PaliModels/ModelPresets.swift, layer counts
optionally reduced), random float32 weights made in-process (uniform ±0.02, like RandomWeights), eager
attention, torch.set_num_threads(T), and the same measurement policy as BenchCommand.swift:
  timing        every phase: the fastest of --repeats timed runs (default 3) after its warm-up
  sgemm         2048³ matmul (A·Bᵀ), 1 warm-up then the fastest of max(5, --repeats) runs of 4
  vision        vision tower + projector (get_image_features); 1 warm-up at batch 1, then timed runs
                at batch 1 and at batch --vision-batch
  prefill       N image tokens + <bos> + --prompt-tokens text ids (1000, 1001, …) from precomputed image
                features (mm_encoder_outputs), prefix-LM mask (token_type_ids 0), KV cache, last-row
                logits
  decode        seconds per step over --decode-steps KV-cached steps (one token per sequence, all-row
                logits) at batch 1 and batch 8 after an untimed prefill (cache cropped back to the
                prefill before each timed run)
  generate      16 greedy tokens from an image (vision + prefill + 15 decode steps), min_new_tokens=16
Prints one JSON object with BenchCommand's keys; FLOP fractions use the same counts (FLOPs.swift).
Needs torch and transformers (Tests/Oracle/requirements.txt: pip install "torch==2.13.0+cpu").
"""
import argparse
import json
import sys
import time

import torch
from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration
from transformers.cache_utils import DynamicCache

VISION = dict(model_type="siglip_vision_model", hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
              num_attention_heads=16, image_size=224, patch_size=14, vision_use_head=False,
              hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)
TEXT = {
    "pg1-3b-224": dict(model_type="gemma", hidden_size=2048, intermediate_size=16384, num_hidden_layers=18,
                       num_attention_heads=8, num_key_value_heads=1, head_dim=256, vocab_size=257216,
                       hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6, rope_theta=10000.0),
    "pg2-3b-224": dict(model_type="gemma2", hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                       num_attention_heads=8, num_key_value_heads=4, head_dim=256, vocab_size=257216,
                       hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6, rope_theta=10000.0,
                       query_pre_attn_scalar=256, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                       sliding_window=4096),
}
IMAGE_TOKEN, BOS = 257152, 2


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def timed(body):
    start = time.perf_counter()
    body()
    return time.perf_counter() - start


REPEATS = 3


def best(body, n=None):
    """The fastest of n (default --repeats) timed runs."""
    return min(timed(body) for _ in range(max(1, n or REPEATS)))


def flops(v, d, tokens):
    """Vision (+ projector) and prefill (+ one head row) FLOPs, as Sources/PaliModels/FLOPs.swift counts."""
    n = (v["image_size"] // v["patch_size"]) ** 2
    w, m, L = v["hidden_size"], v["intermediate_size"], v["num_hidden_layers"]
    vision = 2 * n * 3 * v["patch_size"] ** 2 * w + L * (2 * n * w * (4 * w + 2 * m) + 4 * n * n * w)
    vision += 2 * n * w * d["hidden_size"]
    D, F, H, K, hd = d["hidden_size"], d["intermediate_size"], d["num_attention_heads"], d["num_key_value_heads"], d["head_dim"]
    per_token = 2 * D * (2 * H * hd + 2 * K * hd) + 2 * 3 * D * F
    prefill = d["num_hidden_layers"] * (tokens * per_token + 4 * tokens * tokens * H * hd) + 2 * D * d["vocab_size"]
    return vision, prefill


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="pg1-3b-224",
                    choices=[f"{k[:-4]}-{s}" for k in sorted(TEXT) for s in (224, 448, 896)])
    ap.add_argument("--vision-layers", type=int)
    ap.add_argument("--text-layers", type=int)
    ap.add_argument("--prompt-tokens", type=int, default=8)
    ap.add_argument("--decode-steps", type=int, default=8)
    ap.add_argument("--vision-batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per phase; the fastest counts")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    family, size = a.preset.rsplit("-", 1)
    v, d = dict(VISION, image_size=int(size)), dict(TEXT[family + "-224"])
    if a.vision_layers is not None:
        v["num_hidden_layers"] = a.vision_layers
    if a.text_layers is not None:
        d["num_hidden_layers"] = a.text_layers
    config = PaliGemmaConfig(vision_config=v, text_config=d, image_token_index=IMAGE_TOKEN,
                             projection_dim=d["hidden_size"], hidden_size=d["hidden_size"],
                             pad_token_id=0, bos_token_id=BOS, eos_token_id=1)

    n = 2048
    x, y = torch.rand(n, n), torch.rand(n, n)
    torch.mm(x, y.t())
    global REPEATS
    REPEATS = max(1, a.repeats)
    sgemm = 2 * n ** 3 * 4 / best(lambda: [torch.mm(x, y.t()) for _ in range(4)], max(5, REPEATS)) / 1e9
    log(f"torch matmul: {sgemm:.1f} GFLOP/s; making random weights…")

    # Random weights without transformers' (slow) initialisers: allocate on meta, then fill.
    with torch.device("meta"):
        model = PaliGemmaForConditionalGeneration._from_config(config, attn_implementation="eager",
                                                               dtype=torch.float32)
    model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.02, 0.02)
    model.tie_weights()
    with torch.no_grad():
        _reinit_buffers(model)
    model.eval()

    s, nimg = v["image_size"], (v["image_size"] // v["patch_size"]) ** 2

    def pixels(b):
        i = torch.arange(b * 3 * s * s)
        return ((i * 7919) % 255).to(torch.float32).reshape(b, 3, s, s) / 127.5 - 1

    report = {"preset": a.preset, "vision_layers": v["num_hidden_layers"], "text_layers": d["num_hidden_layers"],
              "torch_threads": torch.get_num_threads(), "sgemm_gflops": round(sgemm, 1),
              "repeats": REPEATS}
    with torch.inference_mode():
        features = lambda px: model.model.get_image_features(px)
        features(pixels(1))
        p1, pb = pixels(1), pixels(a.vision_batch)
        v1 = best(lambda: features(p1))
        vb = best(lambda: features(pb))

        ids = torch.tensor([[IMAGE_TOKEN] * nimg + [BOS] + [1000 + i for i in range(a.prompt_tokens)]])
        image_out = features(p1)

        def prefill(batch=1):
            cache = DynamicCache(config=model.config.get_text_config())
            out = model(input_ids=ids.expand(batch, -1), mm_encoder_outputs={"image": _repeat(image_out, batch)},
                        token_type_ids=torch.zeros_like(ids).expand(batch, -1), past_key_values=cache,
                        use_cache=True, logits_to_keep=1)
            return out.past_key_values

        prefill_s = best(prefill)

        def decode(batch):
            cache = prefill(1)
            if batch > 1:
                cache.batch_repeat_interleave(batch)
            n_prompt = ids.shape[1]

            def steps():
                extra = cache.get_seq_length() - n_prompt
                if extra > 0:
                    cache.crop(-extra)   # transformers 5.x: a negative count removes that many tokens
                for step in range(a.decode_steps):
                    tok = torch.full((batch, 1), 1000 + step, dtype=torch.long)
                    model(input_ids=tok, past_key_values=cache, use_cache=True, logits_to_keep=1)
            return best(steps) / a.decode_steps

        d1, d8 = decode(1), decode(8)
        e2e = best(lambda: model.generate(input_ids=ids, pixel_values=p1, token_type_ids=torch.zeros_like(ids),
                                           max_new_tokens=16, min_new_tokens=16, do_sample=False))

    vf, pf = flops(v, d, ids.shape[1])
    pct = lambda f, t: round(f / t / 1e9 / sgemm, 3)
    report.update({
        "vision": {"images_per_s_batch1": round(1 / v1, 3), f"images_per_s_batch{a.vision_batch}": round(a.vision_batch / vb, 3),
                   "seconds_batch1": round(v1, 3), "fraction_of_sgemm_batch1": pct(vf, v1),
                   f"fraction_of_sgemm_batch{a.vision_batch}": pct(vf * a.vision_batch, vb)},
        "prefill": {"tokens": ids.shape[1], "seconds": round(prefill_s, 3),
                    "tokens_per_s": round(ids.shape[1] / prefill_s, 1), "fraction_of_sgemm": pct(pf, prefill_s)},
        "decode": {"seconds_per_step_batch1": round(d1, 3), "tokens_per_s_batch1": round(1 / d1, 3),
                   "seconds_per_step_batch8": round(d8, 3), "tokens_per_s_batch8": round(8 / d8, 3)},
        "generate_16_tokens_seconds": round(e2e, 3),
    })
    print(json.dumps(report, indent=2, sort_keys=True))


def _repeat(image_out, batch):
    if batch == 1:
        return image_out
    image_out = type(image_out)(**{k: v for k, v in image_out.items()})
    image_out.pooler_output = image_out.pooler_output.repeat(batch, 1, 1)
    return image_out


def _reinit_buffers(model):
    """to_empty leaves buffers (RoPE inv_freq, Gemma's embed_scale, SigLIP position_ids) holding garbage
    (denormals and huge values that would distort the timing): rebuild them as the constructors do,
    and refuse to time a model with a buffer this does not know."""
    done = set()
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if hasattr(module, "inv_freq"):
            fresh = type(module)(module.config)
            for b in ("inv_freq", "original_inv_freq"):
                getattr(module, b).copy_(getattr(fresh, b))
                done.add(prefix + b)
            module.attention_scaling = fresh.attention_scaling
        if isinstance(getattr(module, "embed_scale", None), torch.Tensor):
            module.embed_scale.fill_(module.scalar_embed_scale)
            done.add(prefix + "embed_scale")
        if isinstance(getattr(module, "position_ids", None), torch.Tensor):
            module.position_ids.copy_(torch.arange(module.position_ids.shape[-1]).expand_as(module.position_ids))
            done.add(prefix + "position_ids")
    unknown = [n for n, _ in model.named_buffers() if n not in done]
    assert not unknown, f"buffers left uninitialised by to_empty: {unknown}"


if __name__ == "__main__":
    main()
