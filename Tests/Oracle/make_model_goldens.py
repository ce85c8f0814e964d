"""Tiny random PaliGemma checkpoints and their transformers 5.23 outputs (float32, eager).

Writes Tests/Fixtures/models/<case>/ as save_pretrained lays a checkpoint out (config.json,
model.safetensors or BF16 shards + index (pg1-sharded-bf16), tokenizer.model, processor files) plus golden.safetensors (pixel_values,
input_ids, logits [T, V], greedy_tokens) and golden.json (image, prompt, text).
Re-run: .venv/bin/python Tests/Oracle/make_model_goldens.py
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import (GemmaTokenizer, PaliGemmaConfig, PaliGemmaForConditionalGeneration,
                          PaliGemmaProcessor, SiglipImageProcessor)

sys.path.insert(0, os.path.dirname(__file__))
import sp_models  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "Fixtures", "models")


def make_case(name, text_config, seed, image_size=28, bf16_shards=False):
    out = os.path.join(ROOT, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    tokdir = os.path.join(out, "_tok")
    os.makedirs(tokdir)
    sp_models.train(os.path.join(tokdir, "tokenizer.model"))
    tok = GemmaTokenizer.from_pretrained(tokdir)
    n_img = (image_size // 14) ** 2
    ip = SiglipImageProcessor(size={"height": image_size, "width": image_size}, image_mean=[0.5] * 3,
                              image_std=[0.5] * 3, resample=3)
    ip.image_seq_length = n_img
    proc = PaliGemmaProcessor(image_processor=ip, tokenizer=tok)
    image_id = proc.tokenizer.convert_tokens_to_ids("<image>")
    vocab = max(len(proc.tokenizer), image_id + 1)
    torch.manual_seed(seed)
    cfg = PaliGemmaConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=4, image_size=image_size, patch_size=14,
                           vision_use_head=False, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6),
        text_config=dict(vocab_size=vocab, rms_norm_eps=1e-6, rope_theta=10000.0, initializer_range=0.2,
                         **text_config),
        image_token_index=image_id, projection_dim=text_config["hidden_size"],
        hidden_size=text_config["hidden_size"], pad_token_id=0, bos_token_id=2, eos_token_id=1)
    model = PaliGemmaForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.add_(torch.randn_like(p) * 0.3)
            if "embed_tokens" in n:
                p.mul_(0.3)
    if bf16_shards:
        # Weights stored as BF16 in several shards; goldens from the f32 model holding the same
        # (bf16-rounded) values, so an engine converting BF16 → F32 must match to f32 tolerances.
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).to(torch.float32))
        model.to(torch.bfloat16).save_pretrained(out, max_shard_size="60KB")
    else:
        model.save_pretrained(out)
    proc.save_pretrained(out)
    shutil.copy(os.path.join(tokdir, "tokenizer.model"), os.path.join(out, "tokenizer.model"))
    shutil.rmtree(tokdir)
    model = PaliGemmaForConditionalGeneration.from_pretrained(out, attn_implementation="eager",
                                                              dtype=torch.float32).eval()
    rng = np.random.default_rng(seed)
    arr = (rng.random((37, 45, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(os.path.join(out, "image.png"))
    cases = []
    for k, prompt in enumerate(["caption en", "detect red circle", ""]):
        img = Image.open(os.path.join(out, "image.png"))
        inputs = proc(images=img, text="<image>" * 0 + prompt, return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits[0]
            gen = model.generate(**inputs, max_new_tokens=16, do_sample=False)
        new = gen[0, inputs["input_ids"].shape[1]:]
        save_file({"pixel_values": inputs["pixel_values"][0].contiguous(),
                   "input_ids": inputs["input_ids"][0].to(torch.int64).contiguous(),
                   "logits": logits.contiguous(),
                   "greedy_tokens": new.to(torch.int64).contiguous()},
                  os.path.join(out, f"golden-{k}.safetensors"))
        cases.append({"file": f"golden-{k}.safetensors", "image": "image.png", "prompt": prompt,
                      "text": proc.decode(new, skip_special_tokens=True), "tokens": new.tolist()})
        print(name, repr(prompt), new.tolist(), repr(cases[-1]["text"]))
    with open(os.path.join(out, "golden.json"), "w") as f:
        json.dump(cases, f, indent=1)


if __name__ == "__main__":
    make_case("pg1-mqa", dict(model_type="gemma", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                              hidden_activation="gelu_pytorch_tanh"), seed=1)
    make_case("pg2-softcap", dict(model_type="gemma2", hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                                  num_attention_heads=4, num_key_value_heads=2, head_dim=24,
                                  query_pre_attn_scalar=20, attn_logit_softcapping=5.0,
                                  final_logit_softcapping=3.0, sliding_window=8,
                                  hidden_activation="gelu_pytorch_tanh"), seed=2)
    make_case("pg1-sharded-bf16", dict(model_type="gemma", hidden_size=64, intermediate_size=128,
                                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
                                       head_dim=16, hidden_activation="gelu_pytorch_tanh"),
              seed=3, image_size=42, bf16_shards=True)
