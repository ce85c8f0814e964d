"""Goldens for PaliWeights (Tests/Fixtures/weights), from the Python `safetensors` library,
torch and transformers 5.23. Deterministic and re-runnable:

    .venv/bin/python Tests/Oracle/make_weight_goldens.py

Writes:
  dtypes.safetensors           F32/BF16/F16 tensors with special values (written by safetensors.torch)
                               plus I64/I32 tensors, a scalar and empty tensors
  misaligned.safetensors       hand-assembled: a 3-byte U8 tensor first, so the F32/BF16/F16/I64
                               tensors after it start at odd offsets (the library's writer always
                               aligns, so this one is written byte by byte and read back with it)
  expected.safetensors         torch's F32 conversion of every float tensor above, named
                               "<file stem>/<tensor>"; I64/I32 are checked against the same
                               values stored as I64 ("<file stem>/<tensor>")
  tiny_sharded/                a tiny PaliGemma saved by transformers 5.23 `save_pretrained` with
                               a small max_shard_size: config.json, model-0000k-of-0000n.safetensors,
                               model.safetensors.index.json (5.x on-disk names: `vision_tower.*`)
  tiny_hub/model.safetensors   the same tensors under the hub's legacy names
                               (`vision_tower.vision_model.*`) plus a tied `language_model.lm_head.weight`
  configs/<case>/config.json   config files: hub-style PaliGemma 1 and 2 (modelled on the hub repos'
                               config.json, sparse text_config), configs saved by transformers 5.23,
                               and sparse edge cases
  configs/<case>/expected.json what transformers 5.23 resolves from that file:
                               PaliGemmaConfig.from_pretrained(dir) -> {"top", "text", "vision"} to_dict()
"""
import json
import os
import shutil
import struct

import numpy as np
import safetensors
import safetensors.torch
import torch
import transformers
from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration

assert transformers.__version__ == "5.23.0", transformers.__version__
assert safetensors.__version__ == "0.8.0", safetensors.__version__

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Fixtures", "weights")


def bits(dtype, patterns, shape):
    """A tensor of `dtype` with the given 16-bit patterns."""
    raw = torch.tensor(np.array(patterns, dtype=np.uint16).view(np.int16).astype(np.int16))
    return raw.view(dtype).reshape(shape)


# Special values, as bit patterns so nothing is rounded on the way in.
F32_BITS = [
    0x00000000, 0x80000000, 0x3F800000, 0xBF800000,  # 0, -0, 1, -1
    0x00000001, 0x807FFFFF, 0x00800000, 0x7F7FFFFF,  # min subnormal, -max subnormal, min normal, max
    0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001,  # inf, -inf, nan, -nan with payload
    0x3DCCCCCD, 0x3EAAAAAB, 0x40490FDB, 0xC7000000,  # 0.1, 1/3, pi, -32768
]
BF16_BITS = [
    0x0000, 0x8000, 0x3F80, 0xBF80,  # 0, -0, 1, -1
    0x0001, 0x807F, 0x0080, 0x7F7F,  # min subnormal, -max subnormal, min normal, max
    0x7F80, 0xFF80, 0x7FC0, 0xFFC1,  # inf, -inf, nan, -nan with payload
    0x3DCD, 0x3EAB, 0x4049, 0xC700,  # ~0.1, ~1/3, ~pi, -32768
]
F16_BITS = [
    0x0000, 0x8000, 0x3C00, 0xBC00,  # 0, -0, 1, -1
    0x0001, 0x83FF, 0x0400, 0x7BFF,  # min subnormal, -max subnormal, min normal, max (65504)
    0x7C00, 0xFC00, 0x7E00, 0xFE01,  # inf, -inf, nan, -nan with payload
    0x2E66, 0x3555, 0x4248, 0xF800,  # ~0.1, ~1/3, ~pi, -32768
]
I64_VALUES = [2, 257152, 9, 0, -1, 2**63 - 1, -(2**63), 1 << 40]
I32_VALUES = [0, 1, -1, 2**31 - 1, -(2**31), 257152]


def f32(patterns, shape):
    return torch.tensor(np.array(patterns, dtype=np.uint32).view(np.float32)).reshape(shape)


def write_dtypes():
    tensors = {
        "f32_special": f32(F32_BITS, [4, 4]),
        "bf16_special": bits(torch.bfloat16, BF16_BITS, [4, 4]),
        "f16_special": bits(torch.float16, F16_BITS, [2, 8]),
        "f16_all_subnormals": bits(torch.float16, list(range(1, 0x400, 7)) + [0x8000 | p for p in range(1, 0x400, 13)],
                                   [-1]),
        "bf16_ramp": torch.linspace(-3, 3, 37).to(torch.bfloat16),
        "f32_scalar": torch.tensor(2.5, dtype=torch.float32),
        "f32_empty": torch.zeros([0, 4], dtype=torch.float32),
        "input_ids": torch.tensor([I64_VALUES], dtype=torch.int64),
        "i32_values": torch.tensor(I32_VALUES, dtype=torch.int32),
    }
    safetensors.torch.save_file(tensors, os.path.join(ROOT, "dtypes.safetensors"), metadata={"format": "pt"})
    return tensors


def write_misaligned():
    """U8[3] first, so every later tensor starts at an odd data offset."""
    entries = [
        ("odd_u8", "U8", [3], bytes([1, 2, 3])),
        ("f32_after_odd", "F32", [2, 3], f32(F32_BITS[:6], [6]).numpy().tobytes()),
        ("bf16_after_odd", "BF16", [5], bits(torch.bfloat16, BF16_BITS[4:9], [5]).view(torch.int16).numpy().tobytes()),
        ("f16_after_odd", "F16", [5], bits(torch.float16, F16_BITS[4:9], [5]).view(torch.int16).numpy().tobytes()),
        ("i64_after_odd", "I64", [3], np.array(I64_VALUES[4:7], dtype="<i8").tobytes()),
    ]
    header, data = {"__metadata__": {"format": "pt", "note": "misaligned on purpose"}}, b""
    for name, dtype, shape, raw in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    js = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    js += b" " * ((8 - (8 + len(js)) % 8) % 8)
    path = os.path.join(ROOT, "misaligned.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)) + js + data)
    # The reference library must accept the file and agree with our intent.
    back = safetensors.torch.load_file(path)
    assert back["f32_after_odd"].numpy().tobytes() == entries[1][3]
    return back


def write_expected(groups):
    out = {}
    for stem, tensors in groups.items():
        for name, t in tensors.items():
            if t.dtype in (torch.float32, torch.float16, torch.bfloat16):
                out[f"{stem}/{name}"] = t.to(torch.float32).contiguous()
            elif t.dtype in (torch.int64, torch.int32):
                out[f"{stem}/{name}"] = t.to(torch.int64).contiguous()
    safetensors.torch.save_file(out, os.path.join(ROOT, "expected.safetensors"), metadata={"format": "pt"})


def tiny_model():
    torch.manual_seed(0)
    cfg = PaliGemmaConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                           num_attention_heads=2, image_size=14, patch_size=7, vision_use_head=False),
        text_config=dict(model_type="gemma", hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=8, vocab_size=40),
        image_token_index=39, projection_dim=16, hidden_size=16, pad_token_id=0, bos_token_id=2, eos_token_id=1)
    return PaliGemmaForConditionalGeneration(cfg).eval()


def write_checkpoints():
    model = tiny_model()
    sharded = os.path.join(ROOT, "tiny_sharded")
    shutil.rmtree(sharded, ignore_errors=True)
    model.save_pretrained(sharded, max_shard_size="8KB")
    os.remove(os.path.join(sharded, "generation_config.json"))
    index = json.load(open(os.path.join(sharded, "model.safetensors.index.json")))
    assert len(set(index["weight_map"].values())) >= 3, "want at least three shards"

    # The same tensors under the hub's legacy names, plus a tied lm_head copy.
    state = {}
    for shard in sorted(set(index["weight_map"].values())):
        state.update(safetensors.torch.load_file(os.path.join(sharded, shard)))
    legacy = {}
    for name, t in state.items():
        if name.startswith("vision_tower.") and not name.startswith("vision_tower.vision_model."):
            name = "vision_tower.vision_model." + name[len("vision_tower."):]
        legacy[name] = t
    legacy["language_model.lm_head.weight"] = legacy["language_model.model.embed_tokens.weight"].clone()
    hub = os.path.join(ROOT, "tiny_hub")
    shutil.rmtree(hub, ignore_errors=True)
    os.makedirs(hub)
    safetensors.torch.save_file(legacy, os.path.join(hub, "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(os.path.join(sharded, "config.json"), os.path.join(hub, "config.json"))


# Hub-style configs, modelled on google/paligemma-3b-pt-224 / -448 and google/paligemma2-{3b,28b}-pt-*
# config.json (sparse text_config: no head_dim / hidden_activation for PaliGemma 1).
def pg1_hub(image_size):
    tokens = (image_size // 14) ** 2
    vision = {"hidden_size": 1152, "intermediate_size": 4304, "model_type": "siglip_vision_model",
              "num_attention_heads": 16, "num_hidden_layers": 27, "num_image_tokens": tokens, "patch_size": 14,
              "projection_dim": 2048, "projector_hidden_act": "gelu_fast", "vision_use_head": False}
    if image_size != 224:
        vision["image_size"] = image_size
    return {
        "_name_or_path": "final/", "architectures": ["PaliGemmaForConditionalGeneration"],
        "bos_token_id": 2, "eos_token_id": 1, "hidden_size": 2048, "ignore_index": -100,
        "image_token_index": 257152, "model_type": "paligemma", "pad_token_id": 0, "projection_dim": 2048,
        "text_config": {"hidden_size": 2048, "intermediate_size": 16384, "model_type": "gemma",
                        "num_attention_heads": 8, "num_hidden_layers": 18, "num_image_tokens": tokens,
                        "num_key_value_heads": 1, "torch_dtype": "float32", "vocab_size": 257216},
        "torch_dtype": "float32", "transformers_version": "4.41.0.dev0",
        "vision_config": vision,
    }


def pg2_hub(image_size, width, layers, heads, kv_heads, mlp, head_dim=None, query_scalar=256):
    tokens = (image_size // 14) ** 2
    text = {"attn_logit_softcapping": 50.0, "cache_implementation": "hybrid", "eos_token_id": [1, 107],
            "final_logit_softcapping": 30.0, "hidden_act": "gelu_pytorch_tanh",
            "hidden_activation": "gelu_pytorch_tanh", "hidden_size": width, "intermediate_size": mlp,
            "model_type": "gemma2", "num_attention_heads": heads, "num_hidden_layers": layers,
            "num_image_tokens": tokens, "num_key_value_heads": kv_heads, "query_pre_attn_scalar": query_scalar,
            "sliding_window": 4096, "torch_dtype": "bfloat16", "vocab_size": 257216}
    if head_dim is not None:
        text["head_dim"] = head_dim
    return {
        "_vocab_size": 257152, "architectures": ["PaliGemmaForConditionalGeneration"],
        "bos_token_id": 2, "eos_token_id": 1, "hidden_size": 2048, "image_token_index": 257152,
        "model_type": "paligemma", "num_hidden_layers": layers, "pad_token_id": 0, "projection_dim": width,
        "text_config": text, "torch_dtype": "bfloat16", "transformers_version": "4.47.0.dev0",
        "vision_config": {"hidden_size": 1152, "image_size": image_size, "intermediate_size": 4304,
                          "model_type": "siglip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 27,
                          "num_image_tokens": tokens, "num_positions": tokens, "patch_size": 14,
                          "projection_dim": width, "torch_dtype": "bfloat16", "vision_use_head": False},
    }


def saved_pg2_tiny():
    """A PaliGemma 2-style config as transformers 5.23 writes it (layer_types, rope_parameters spelled out)."""
    cfg = PaliGemmaConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, image_size=28, patch_size=14, vision_use_head=False),
        text_config=dict(model_type="gemma2", hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=400,
                         query_pre_attn_scalar=16, sliding_window=8, rope_theta=10000.0),
        image_token_index=399, projection_dim=64, hidden_size=64, pad_token_id=0, bos_token_id=2, eos_token_id=1)
    return cfg


CONFIG_CASES = {
    "pg1_224_hub": pg1_hub(224),
    "pg1_448_hub": pg1_hub(448),
    "pg2_3b_224_hub": pg2_hub(224, 2304, 26, 8, 4, 9216),
    "pg2_28b_896_hub": pg2_hub(896, 4608, 46, 32, 16, 36864, head_dim=128, query_scalar=144),
    # Every sub-config absent: PaliGemmaConfig's own defaults for text/vision apply.
    "defaults_only": {"model_type": "paligemma"},
    # A present-but-sparse dict: the sub-config class's defaults apply, not PaliGemma's.
    "sparse_gemma2": {"model_type": "paligemma", "projection_dim": 2304, "text_config": {"model_type": "gemma2"},
                      "vision_config": {"model_type": "siglip_vision_model"}},
    # Legacy spellings: hidden_act "gelu" (rewritten to tanh GELU for Gemma 1), top-level rope_theta,
    # rope_scaling null, image_token_id alias, eos list.
    "legacy_keys": {"model_type": "paligemma", "image_token_id": 300, "projection_dim": 64,
                    "text_config": {"model_type": "gemma", "hidden_size": 64, "intermediate_size": 128,
                                    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
                                    "head_dim": 16, "vocab_size": 320, "hidden_act": "gelu",
                                    "rope_theta": 20000.0, "rope_scaling": None, "eos_token_id": [1, 107],
                                    "pad_token_id": None},
                    "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                      "num_attention_heads": 4, "image_size": 28, "patch_size": 14}},
    # 5.x rope_parameters dict and explicit layer_types.
    "rope_parameters": {"model_type": "paligemma", "projection_dim": 2304,
                        "text_config": {"model_type": "gemma2", "num_hidden_layers": 4,
                                        "rope_parameters": {"rope_type": "default", "rope_theta": 5000.0},
                                        "layer_types": ["full_attention", "sliding_attention",
                                                        "full_attention", "full_attention"],
                                        "sliding_window": 512}},
}


def to_plain(obj):
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def resolved(cfg):
    top = cfg.to_dict()
    text, vision = top.pop("text_config"), top.pop("vision_config")
    return to_plain({"top": top, "text": text, "vision": vision})


def write_configs():
    base = os.path.join(ROOT, "configs")
    shutil.rmtree(base, ignore_errors=True)
    cases = dict(CONFIG_CASES)
    for name, cfg_dict in cases.items():
        d = os.path.join(base, name)
        os.makedirs(d)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg_dict, f, indent=2, sort_keys=True)
            f.write("\n")
    # Saved by transformers itself.
    saved = {"tiny_saved": tiny_model().config, "pg2_tiny_saved": saved_pg2_tiny()}
    for name, cfg in saved.items():
        d = os.path.join(base, name)
        cfg.save_pretrained(d)
    for name in sorted(os.listdir(base)):
        d = os.path.join(base, name)
        cfg = PaliGemmaConfig.from_pretrained(d)
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump(resolved(cfg), f, indent=1, sort_keys=True)
            f.write("\n")


def main():
    os.makedirs(ROOT, exist_ok=True)
    dtypes = write_dtypes()
    misaligned = write_misaligned()
    write_expected({"dtypes": dtypes, "misaligned": misaligned})
    write_checkpoints()
    write_configs()
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(ROOT) for f in fs)
    print(f"wrote {ROOT} ({total} bytes)")
    assert total < 200_000


if __name__ == "__main__":
    main()
