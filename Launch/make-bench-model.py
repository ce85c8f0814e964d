"""A random PaliGemma checkpoint of chosen widths, for benchmarking layouts of `paligemma run`.

The tiny test fixtures are too small to time anything: their cost is all overhead. This writes a
model with the real checkpoint layout (config.json, model.safetensors, tokenizer.model, processor
config, as transformers' save_pretrained lays it out) at widths where compute dominates, reusing the
tokenizer of the pg1-mqa fixture. Random weights: the answers are gibberish, the timing is real.

    .venv/bin/python Launch/make-bench-model.py --out /tmp/bench-model \
        [--vision-width 384 --vision-layers 6 --image-size 224 --text-width 1024 --text-layers 6]
Needs torch and transformers (Tests/Oracle/requirements.txt).
"""
import argparse
import json
import os
import shutil

import torch
from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURE = os.path.join(ROOT, "Tests", "Fixtures", "models", "pg1-mqa")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--vision-width", type=int, default=384)
    ap.add_argument("--vision-mlp", type=int, default=1536)
    ap.add_argument("--vision-layers", type=int, default=6)
    ap.add_argument("--vision-heads", type=int, default=6)
    ap.add_argument("--text-width", type=int, default=1024)
    ap.add_argument("--text-mlp", type=int, default=4096)
    ap.add_argument("--text-layers", type=int, default=6)
    ap.add_argument("--text-heads", type=int, default=8)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    fixture_config = json.load(open(os.path.join(FIXTURE, "config.json")))
    image_id = fixture_config["image_token_index"]
    vocab = fixture_config["text_config"]["vocab_size"]
    torch.manual_seed(a.seed)
    cfg = PaliGemmaConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=a.vision_width,
                           intermediate_size=a.vision_mlp, num_hidden_layers=a.vision_layers,
                           num_attention_heads=a.vision_heads, image_size=a.image_size, patch_size=14,
                           vision_use_head=False, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6),
        text_config=dict(vocab_size=vocab, hidden_size=a.text_width, intermediate_size=a.text_mlp,
                         num_hidden_layers=a.text_layers, num_attention_heads=a.text_heads,
                         num_key_value_heads=1, head_dim=a.head_dim, rms_norm_eps=1e-6, rope_theta=10000.0,
                         max_position_embeddings=8192, hidden_activation="gelu_pytorch_tanh"),
        image_token_index=image_id, projection_dim=a.text_width, hidden_size=a.text_width,
        pad_token_id=0, bos_token_id=2, eos_token_id=1)
    model = PaliGemmaForConditionalGeneration(cfg).eval()
    shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out)
    model.save_pretrained(a.out)
    tokens = (a.image_size // 14) ** 2
    for name in ["tokenizer.model", "tokenizer.json", "tokenizer_config.json"]:
        src = os.path.join(FIXTURE, name)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(a.out, name))
    processor = json.load(open(os.path.join(FIXTURE, "processor_config.json")))
    image_processor = processor.get("image_processor", processor)
    image_processor["size"] = {"height": a.image_size, "width": a.image_size}
    if "image_seq_length" in image_processor:
        image_processor["image_seq_length"] = tokens
    if "image_seq_length" in processor:
        processor["image_seq_length"] = tokens
    json.dump(processor, open(os.path.join(a.out, "processor_config.json"), "w"), indent=2)
    params = sum(p.numel() for p in model.parameters())
    print(f"{a.out}: {params / 1e6:.1f} M parameters, {tokens} image tokens")


if __name__ == "__main__":
    main()
