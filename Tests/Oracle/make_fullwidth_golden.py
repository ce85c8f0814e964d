"""A full-width, reduced-depth PaliGemma-3B-224 checkpoint and what transformers 5.23 computes with it.

The checkpoint has the real widths (SPEC §1.1: SigLIP So400m/14 at 224 px, width 1152, MLP 4304,
16 heads, 256 image tokens; Gemma-2B width 2048, MLP 16384, 8 heads, 1 KV head, head_dim 256,
vocabulary 257216) but 1 vision layer and 2 decoder layers. It is stored as the hub stores it: BF16,
several shards + model.safetensors.index.json, legacy tensor names (vision_tower.vision_model.*,
multi_modal_projector.*, language_model.model.*), the hub's config.json (layer counts reduced) and
preprocessor_config.json. That is ~1.5 GB, so it is NOT committed: every weight is a function of
(tensor name, element index) that this script and Tests/PaliModelsTests/FullWidthCheckpoint.swift
compute bit for bit, and only transformers' outputs are committed.

WEIGHT RECIPE (keep identical to FullWidthCheckpoint.swift)
  seed(N)   = FNV-1a 64 of the UTF-8 bytes of the on-disk tensor name N
              (offset basis 0xcbf29ce484222325, prime 0x100000001b3)
  z(N, i)   = the (i+1)-th output of SplitMix64 seeded with seed(N), i = row-major element index:
              x = seed + (i+1) * 0x9E3779B97F4A7C15 (mod 2^64);
              x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9; x = (x ^ (x >> 27)) * 0x94D049BB133111EB;
              z = x ^ (x >> 31)
  k(N, i)   = (z >> (64 - b)) - 2^(b-1), an integer in [-2^(b-1), 2^(b-1) - 1]
  value     = base + k * 2^-s, exact in BF16 (|k| <= 128, and for base 1: |k| <= 8 with s = 6)
  (b, base, s) per tensor, first matching rule:
    vision LayerNorm weight (…layer_norm1/2.weight, …post_layernorm.weight)  (4, 1, 6)   0.875 … 1.109
    Gemma RMSNorm weight (…layernorm.weight, language_model.model.norm.weight) (8, 0, 9)  ±0.25 around 0,
                                                                                 the model uses 1 + w
    any …bias                                                                  (8, 0, 10)  ±0.125
    …position_embedding.weight                                                 (8, 0, 8)   ±0.5
    …embed_tokens.weight                                                       (8, 0, EMBED_SHIFT)
    any other weight (linear [out, in], conv [out, in, kh, kw]); fan_in = product of dims after the
      first: (8, 0, 6 + floor(log2(fan_in)) // 2)    std ≈ 74 · 2^-s ≈ 1.2 … 1.8 / sqrt(fan_in)
  Uniform k has std ≈ 74 (b = 8). The scales were tuned so that greedy outputs vary: with
  ~1/sqrt(fan_in) weights and larger embeddings every prompt gave the same token 8 times; here the
  linear layers are a bit hotter than 1/sqrt(fan_in) (as make_model_goldens.py's initializer_range 0.2
  is) and the embedding (also the tied LM head) is scaled down (std ≈ 0.0011, ×sqrt(2048) in the
  model), so the 8 greedy tokens differ from each other and the top-2 gaps stay far above the error.
  golden.json records per tensor the checksum Σ_i bits_i · (i + 1) mod 2^64 (bits = the BF16 bit
  pattern as an unsigned integer), as a hex string, so a recipe mismatch names the tensor.

OUTPUTS (Tests/Fixtures/fullwidth/; small, committed)
  config.json, preprocessor_config.json (hub layout), tokenizer.model / tokenizer.json /
  tokenizer_config.json (the pg1-mqa fixture's tokenizer: <image> = 3001, set as image_token_index),
  image.png (the pg1-mqa fixture image, 45×37, resized to 224 by the processor),
  golden.safetensors (F32 unless noted; T prompt tokens, V = 257216):
    input_ids [T] (I64), pixel_values [3, 224, 224], greedy_tokens [8] (I64)
    logits_last [V]                prefill logits of the last prompt position
    logits_rows [P, V/16]          prefill logits at positions logits_positions (I64 [P]), every 16th id
    vision_norms [256]             L2 norm per image token of the vision tower output (post-LN)
    projector_norms [256]          … of the projector output (image rows of the decoder input)
    projector_rows [2, 2048]       projector output rows 0 and 255
    hidden_norms [T]               … of the residual stream after the last decoder layer
    final_norms [T]                … after the final RMSNorm (transformers' last_hidden_state)
  golden.json: prompt, tokens, per-step top-2 gaps of the greedy scores, shard layout, checksums.

Needs ~8 GB RAM and ~2 GB of temporary disk; a few minutes on 2 cores.
Re-run: .venv/bin/python Tests/Oracle/make_fullwidth_golden.py [--keep DIR]
"""
import argparse
import json
import os
import shutil
import tempfile

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import PaliGemmaForConditionalGeneration, PaliGemmaProcessor

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "Fixtures")
OUT = os.path.join(FIXTURES, "fullwidth")
SOURCE = os.path.join(FIXTURES, "models", "pg1-mqa")

VISION_LAYERS, TEXT_LAYERS = 1, 2
DV, FV, HV, PATCH, SIZE = 1152, 4304, 16, 14, 224
D, F, H, KV, HD, VOCAB = 2048, 16384, 8, 1, 256, 257216
N_IMG = (SIZE // PATCH) ** 2
EMBED_SHIFT = 16
NEW_TOKENS = 8
PROMPTS = ["caption en", "describe en", "answer en what is this?", "detect cat"]

M64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15


def fnv1a64(name):
    h = 0xcbf29ce484222325
    for byte in name.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001b3) & M64
    return h


def rule(name, shape):
    """(bits, base, shift) of the recipe for one tensor (module docstring)."""
    if name.endswith(("layer_norm1.weight", "layer_norm2.weight", "post_layernorm.weight")):
        return 4, 1.0, 6
    if name.startswith("language_model.") and name.endswith("norm.weight"):
        return 8, 0.0, 9
    if name.endswith(".bias"):
        return 8, 0.0, 10
    if name.endswith("position_embedding.weight"):
        return 8, 0.0, 8
    if name.endswith("embed_tokens.weight"):
        return 8, 0.0, EMBED_SHIFT
    fan_in = int(np.prod(shape[1:]))
    return 8, 0.0, 6 + (fan_in.bit_length() - 1) // 2


def recipe_bf16(name, shape, chunk=1 << 23):
    """The tensor as BF16 bit patterns (uint16, row-major) and its checksum."""
    bits, base, shift = rule(name, shape)
    count = int(np.prod(shape))
    seed = np.uint64(fnv1a64(name))
    out = np.empty(count, dtype=np.uint16)
    checksum = 0
    with np.errstate(over="ignore"):
        for start in range(0, count, chunk):
            idx = np.arange(start + 1, min(count, start + chunk) + 1, dtype=np.uint64)
            x = seed + idx * np.uint64(GAMMA)
            x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            x ^= x >> np.uint64(31)
            k = (x >> np.uint64(64 - bits)).astype(np.int64) - (1 << (bits - 1))
            v = (base + k.astype(np.float64) * 2.0 ** -shift).astype(np.float32)
            b = (v.view(np.uint32) >> 16).astype(np.uint16)
            assert np.array_equal((b.astype(np.uint32) << 16).view(np.float32), v), f"{name}: not exact in BF16"
            out[start:start + len(b)] = b
            checksum += int((b.astype(np.uint64) * idx).sum(dtype=np.uint64))
    return out.reshape(shape), f"{checksum & M64:016x}"


def tensor_specs():
    """(on-disk name, shape) of every tensor, in shard order; shards split as the list says."""
    v = "vision_tower.vision_model."
    shard1 = [(v + "embeddings.patch_embedding.weight", [DV, 3, PATCH, PATCH]),
              (v + "embeddings.patch_embedding.bias", [DV]),
              (v + "embeddings.position_embedding.weight", [N_IMG, DV])]
    for i in range(VISION_LAYERS):
        p = f"{v}encoder.layers.{i}."
        shard1 += [(p + "layer_norm1.weight", [DV]), (p + "layer_norm1.bias", [DV])]
        for proj in "qkv":
            shard1 += [(p + f"self_attn.{proj}_proj.weight", [DV, DV]), (p + f"self_attn.{proj}_proj.bias", [DV])]
        shard1 += [(p + "self_attn.out_proj.weight", [DV, DV]), (p + "self_attn.out_proj.bias", [DV]),
                   (p + "layer_norm2.weight", [DV]), (p + "layer_norm2.bias", [DV]),
                   (p + "mlp.fc1.weight", [FV, DV]), (p + "mlp.fc1.bias", [FV]),
                   (p + "mlp.fc2.weight", [DV, FV]), (p + "mlp.fc2.bias", [DV])]
    shard1 += [(v + "post_layernorm.weight", [DV]), (v + "post_layernorm.bias", [DV]),
               ("multi_modal_projector.linear.weight", [D, DV]), ("multi_modal_projector.linear.bias", [D])]
    shards = [shard1, [("language_model.model.embed_tokens.weight", [VOCAB, D])]]
    for i in range(TEXT_LAYERS):
        p = f"language_model.model.layers.{i}."
        layer = [(p + "input_layernorm.weight", [D]),
                 (p + "self_attn.q_proj.weight", [H * HD, D]), (p + "self_attn.k_proj.weight", [KV * HD, D]),
                 (p + "self_attn.v_proj.weight", [KV * HD, D]), (p + "self_attn.o_proj.weight", [D, H * HD]),
                 (p + "post_attention_layernorm.weight", [D]),
                 (p + "mlp.gate_proj.weight", [F, D]), (p + "mlp.up_proj.weight", [F, D]),
                 (p + "mlp.down_proj.weight", [D, F])]
        shards.append(layer)
    shards[-1].append(("language_model.model.norm.weight", [D]))
    n = len(shards)
    return [(f"model-{k + 1:05d}-of-{n:05d}.safetensors", s) for k, s in enumerate(shards)]


def hub_config(image_token_index):
    """google/paligemma-3b-pt-224's config.json with the layer counts reduced."""
    return {
        "_name_or_path": "final/",
        "architectures": ["PaliGemmaForConditionalGeneration"],
        "bos_token_id": 2, "eos_token_id": 1, "hidden_size": D, "ignore_index": -100,
        "image_token_index": image_token_index, "model_type": "paligemma", "pad_token_id": 0,
        "projection_dim": D,
        "text_config": {"hidden_size": D, "intermediate_size": F, "model_type": "gemma",
                        "num_attention_heads": H, "num_hidden_layers": TEXT_LAYERS, "num_image_tokens": N_IMG,
                        "num_key_value_heads": KV, "torch_dtype": "bfloat16", "vocab_size": VOCAB},
        "torch_dtype": "bfloat16", "transformers_version": "4.41.0.dev0",
        "vision_config": {"hidden_size": DV, "intermediate_size": FV, "model_type": "siglip_vision_model",
                          "num_attention_heads": HV, "num_hidden_layers": VISION_LAYERS, "num_image_tokens": N_IMG,
                          "patch_size": PATCH, "projection_dim": D, "projector_hidden_act": "gelu_fast",
                          "vision_use_head": False},
    }


PREPROCESSOR = {"do_convert_rgb": None, "do_normalize": True, "do_rescale": True, "do_resize": True,
                "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "SiglipImageProcessor",
                "image_seq_length": N_IMG, "image_std": [0.5, 0.5, 0.5], "processor_class": "PaliGemmaProcessor",
                "resample": 3, "rescale_factor": 0.00392156862745098, "size": {"height": SIZE, "width": SIZE}}


def write_fixture_files():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    for f in ("tokenizer.model", "tokenizer.json", "image.png"):
        shutil.copy(os.path.join(SOURCE, f), os.path.join(OUT, f))
    tok_config = json.load(open(os.path.join(SOURCE, "tokenizer_config.json")))
    tok_config.pop("vocab_file", None)  # an absolute path of the machine that made pg1-mqa
    with open(os.path.join(OUT, "tokenizer_config.json"), "w") as f:
        json.dump(tok_config, f, indent=2)
    image_id = json.load(open(os.path.join(SOURCE, "config.json")))["image_token_index"]
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(hub_config(image_id), f, indent=2)
    with open(os.path.join(OUT, "preprocessor_config.json"), "w") as f:
        json.dump(PREPROCESSOR, f, indent=2)
    return image_id


def write_checkpoint(directory):
    """The shards + index in `directory` (with the fixture's small files); returns shard info."""
    for f in os.listdir(OUT):
        shutil.copy(os.path.join(OUT, f), os.path.join(directory, f))
    weight_map, checksums, total, layout = {}, {}, 0, []
    for shard, specs in tensor_specs():
        tensors = {}
        for name, shape in specs:
            bits, checksums[name] = recipe_bf16(name, shape)
            tensors[name] = torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16)
            weight_map[name] = shard
            total += bits.nbytes
        save_file(tensors, os.path.join(directory, shard), metadata={"format": "pt"})
        layout.append({"file": shard, "tensors": [n for n, _ in specs],
                       "bytes": os.path.getsize(os.path.join(directory, shard))})
        print(f"  {shard}: {len(specs)} tensors, {layout[-1]['bytes'] / 1e6:.1f} MB")
        del tensors
    with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    return layout, checksums


def norms(t):
    return t.to(torch.float64).norm(dim=-1).to(torch.float32).contiguous()


def run_transformers(directory, image_id):
    model = PaliGemmaForConditionalGeneration.from_pretrained(
        directory, dtype=torch.float32, attn_implementation="eager").eval()
    proc = PaliGemmaProcessor.from_pretrained(directory)
    assert proc.tokenizer.convert_tokens_to_ids("<image>") == image_id
    assert model.config.image_token_id == image_id
    # Every weight holds the recipe's value (BF16 → F32 is exact), tied head included.
    sd = model.state_dict()
    lm = model.model.language_model
    assert torch.equal(model.lm_head.weight, lm.embed_tokens.weight)
    assert lm.embed_tokens.weight.dtype == torch.float32
    x = lm.layers[0].self_attn.q_proj.weight
    ref, _ = recipe_bf16("language_model.model.layers.0.self_attn.q_proj.weight", list(x.shape))
    assert torch.equal(x, torch.from_numpy((ref.astype(np.uint32) << 16).view(np.float32))), "weights as loaded"
    print(f"  loaded: {sum(p.numel() for p in model.parameters()):,} parameters, {len(sd)} state-dict entries")

    image = Image.open(os.path.join(directory, "image.png"))
    for prompt in PROMPTS:
        inputs = proc(images=image, text=prompt, return_tensors="pt")
        ids = inputs["input_ids"][0]
        t = ids.shape[0]
        seen = {}
        hook = lm.layers[-1].register_forward_hook(lambda m, a, o: seen.__setitem__("h", o[0] if isinstance(o, tuple) else o))
        try:
            with torch.no_grad():
                vision = model.model.vision_tower(inputs["pixel_values"]).last_hidden_state[0]
                out = model(**inputs, output_hidden_states=True)
        finally:
            hook.remove()
        logits = out.logits[0]
        projector = out.image_hidden_states[0] if out.image_hidden_states.dim() == 3 else out.image_hidden_states
        with torch.no_grad():
            gen = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False, output_scores=True,
                                 return_dict_in_generate=True)
        new = gen.sequences[0, t:]
        assert torch.equal(gen.scores[0][0], logits[-1]) or torch.allclose(gen.scores[0][0], logits[-1], atol=1e-4)
        gaps = []
        for scores in gen.scores:
            top = torch.topk(scores[0], 2).values
            gaps.append((top[0] - top[1]).item() / scores[0].abs().max().item())
        distinct = len(set(new.tolist()))
        print(f"  {prompt!r}: T={t} tokens {new.tolist()} min top-2 gap / max|logit| {min(gaps):.2e}, "
              f"max|logit| {logits[-1].abs().max().item():.3f}")
        # The test allows 1e-4 × max |logit|: keep a prompt whose top-2 gaps are 10× that at every step.
        if len(new) == NEW_TOKENS and min(gaps) > 1e-3 and distinct >= 3:
            break
    else:
        raise SystemExit("no prompt gives 8 well-separated, varied greedy tokens: change the recipe or PROMPTS")

    positions = [0, N_IMG - 1, N_IMG, t - 2]
    tensors = {
        "input_ids": ids.to(torch.int64).contiguous(),
        "pixel_values": inputs["pixel_values"][0].contiguous(),
        "greedy_tokens": new.to(torch.int64).contiguous(),
        "logits_last": logits[-1].contiguous(),
        "logits_positions": torch.tensor(positions, dtype=torch.int64),
        "logits_rows": logits[positions][:, ::16].contiguous(),
        "vision_norms": norms(vision),
        "projector_norms": norms(projector),
        "projector_rows": projector[[0, N_IMG - 1]].contiguous(),
        "hidden_norms": norms(seen["h"][0]),
        "final_norms": norms(out.hidden_states[-1][0]),
    }
    info = {"prompt": prompt, "tokens": new.tolist(), "relative_top2_gaps": [float(f"{g:.4g}") for g in gaps],
            "max_abs_logit_last": logits[-1].abs().max().item()}
    return tensors, info


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", help="write the checkpoint here and keep it (default: a temporary directory)")
    a = ap.parse_args()
    torch.manual_seed(0)
    image_id = write_fixture_files()
    directory = a.keep or tempfile.mkdtemp(prefix="fullwidth-")
    os.makedirs(directory, exist_ok=True)
    try:
        print("writing the checkpoint to", directory)
        layout, checksums = write_checkpoint(directory)
        tensors, info = run_transformers(directory, image_id)
    finally:
        if not a.keep:
            shutil.rmtree(directory, ignore_errors=True)
    save_file(tensors, os.path.join(OUT, "golden.safetensors"))
    info.update({"image": "image.png", "new_tokens": NEW_TOKENS, "embed_shift": EMBED_SHIFT,
                 "shards": layout, "checksums": checksums})
    with open(os.path.join(OUT, "golden.json"), "w") as f:
        json.dump(info, f, indent=1)
    size = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {OUT}: {sorted(os.listdir(OUT))}, {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
