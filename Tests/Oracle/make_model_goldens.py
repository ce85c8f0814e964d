"""Tiny random PaliGemma checkpoints and their transformers 5.23 outputs (float32, eager).

Writes Tests/Fixtures/models/<case>/ as save_pretrained lays a checkpoint out (config.json,
model.safetensors or BF16 shards + index (pg1-sharded-bf16), tokenizer.model, processor files) plus,
per prompt k, golden-k.safetensors and golden.json (image, prompt, tokens (greedy, 16 new), text:
the tokens decoded as sentencepiece does with special ids dropped (decode_new), text_transformers:
PaliGemmaProcessor.decode(tokens, skip_special_tokens=True), which differs on some invalid byte runs).

golden-k.safetensors (F32 unless noted; no batch dimension; N image tokens, T prompt tokens, L layers):
  pixel_values [3, S, S]; input_ids [T] (I64); logits [T, V] (prefill); greedy_tokens (I64)
  vision_hidden_0 .. vision_hidden_Lv [N, Dv]  SiglipVisionModel(output_hidden_states=True).hidden_states:
                                  0 = embeddings (patches + positions), k = after encoder layer k-1
                                  (transformers does not tie SigLIP's last entry to the output)
  vision_post_layernorm [N, Dv]   last_hidden_state (after post_layernorm)
  projector [N, D]                multi_modal_projector output = the image rows of text_hidden_0
                                  (transformers 5.x does not divide it by sqrt(D))
  text_hidden_0 .. text_hidden_L [T, D]  decoder residual stream: 0 = decoder input (image rows as the
                                  projector gives them, text rows = embedding x sqrt(D)), k = after decoder
                                  layer k-1. For k < L these are transformers' hidden_states[k]; transformers'
                                  hidden_states[L] is NOT the last layer's output but last_hidden_state (after
                                  the final RMSNorm: capture_outputs ties the last entry), so text_hidden_L is
                                  taken with a forward hook on the last layer instead
  text_final_norm [T, D]          transformers' hidden_states[L] = last_hidden_state (after the final norm)
The script checks each of those identities (hooks against the returned tuples) before writing.
Deterministic: the tokenizer is trained on the committed Tests/Oracle/corpus.txt; re-running rewrites
byte-identical files.
Re-run: .venv/bin/python Tests/Oracle/make_model_goldens.py
"""
import json
import os
import shutil
import sys

import numpy as np
import sentencepiece as spm
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import (GemmaTokenizer, PaliGemmaConfig, PaliGemmaForConditionalGeneration,
                          PaliGemmaProcessor, SiglipImageProcessor)

sys.path.insert(0, os.path.dirname(__file__))
import sp_models  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "Fixtures", "models")


def decode_new(sp, ids):
    """The engine's text for generated ids: sentencepiece's decode after dropping pad/eos/bos/unk and the
    added tokens past the model (<mask>, <image>), as transformers' slow GemmaTokenizer does (and
    big_vision's DecodeIds). transformers 5.x's fast decoder (ByteFallback) differs on invalid byte runs:
    <0x6E><0xD5> is "n\ufffd" here but "\ufffd\ufffd" there (one U+FFFD per byte of a run that is not
    valid UTF-8 as a whole); golden.json keeps that one as text_transformers."""
    special = {sp.pad_id(), sp.eos_id(), sp.bos_id(), sp.unk_id()}
    return sp.decode([i for i in ids if i < sp.get_piece_size() and i not in special])


def hidden_states(model, inputs, logits):
    """Per-layer states of the vision tower, the projector and the decoder (see the module docstring),
    each checked against forward hooks on the layers so that the meaning of every index is certain."""
    vision = model.model.vision_tower
    decoder = model.model.language_model
    seen = {}

    def keep(key):
        def hook(module, args, output):
            seen[key] = (output[0] if isinstance(output, tuple) else output).detach().clone()
        return hook

    def keep_input(key):
        def hook(module, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            seen[key] = x.detach().clone()
        return hook

    handles = [vision.embeddings.register_forward_hook(keep("v_embed"))]
    handles += [l.register_forward_hook(keep(f"v{i}")) for i, l in enumerate(vision.encoder.layers)]
    handles += [decoder.layers[0].register_forward_pre_hook(keep_input("t_in"), with_kwargs=True)]
    handles += [l.register_forward_hook(keep(f"t{i}")) for i, l in enumerate(decoder.layers)]
    try:
        with torch.no_grad():
            v = vision(inputs["pixel_values"], output_hidden_states=True)
            projected = model.model.multi_modal_projector(v.last_hidden_state)
            out = model(**inputs, output_hidden_states=True)
    finally:
        for h in handles:
            h.remove()
    lv, lt = len(vision.encoder.layers), len(decoder.layers)
    vh, th = v.hidden_states, out.hidden_states
    assert len(vh) == lv + 1 and len(th) == lt + 1, (len(vh), len(th))
    # Vision: 0 = embeddings, k = after layer k-1, the last one not tied to the post-LN output.
    assert torch.equal(vh[0], seen["v_embed"])
    for i in range(lv):
        assert torch.equal(vh[i + 1], seen[f"v{i}"]), f"vision hidden {i + 1}"
    assert not torch.allclose(vh[lv], v.last_hidden_state)
    assert torch.equal(projected, out.image_hidden_states), "projector output"
    # Decoder: 0 = input, k = after layer k-1 for k < L, L = after the final norm.
    assert torch.equal(th[0], seen["t_in"])
    image = inputs["input_ids"][0] == model.config.image_token_id
    assert torch.equal(th[0][0][image], projected[0]), "image rows enter unscaled"
    scale = torch.tensor(model.config.text_config.hidden_size ** 0.5, dtype=torch.float32)
    embedded = decoder.embed_tokens.weight[inputs["input_ids"][0][~image]] * scale
    assert torch.equal(th[0][0][~image], embedded), "text rows are embeddings x sqrt(D)"
    for i in range(lt - 1):
        assert torch.equal(th[i + 1], seen[f"t{i}"]), f"text hidden {i + 1}"
    with torch.no_grad():
        normed = decoder.norm(seen[f"t{lt - 1}"])
    assert torch.equal(th[lt], normed) and not torch.allclose(th[lt], seen[f"t{lt - 1}"])
    assert torch.equal(out.logits[0], logits)

    result = {f"vision_hidden_{i}": vh[i][0] for i in range(lv + 1)}
    result["vision_post_layernorm"] = v.last_hidden_state[0]
    result["projector"] = projected[0]
    result.update({f"text_hidden_{i}": th[i][0] for i in range(lt)})
    result[f"text_hidden_{lt}"] = seen[f"t{lt - 1}"][0]
    result["text_final_norm"] = th[lt][0]
    return {k: t.to(torch.float32).contiguous() for k, t in result.items()}


def make_case(name, text_config, seed, image_size=28, bf16_shards=False):
    out = os.path.join(ROOT, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    tokdir = os.path.join(out, "_tok")
    os.makedirs(tokdir)
    sp_models.train(os.path.join(tokdir, "tokenizer.model"), vocab_size=3000)  # >= ~2350: see sp_models
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
    sp = spm.SentencePieceProcessor(model_file=os.path.join(out, "tokenizer.model"))
    rng = np.random.default_rng(seed)
    arr = (rng.random((37, 45, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(os.path.join(out, "image.png"))
    cases = []
    for k, prompt in enumerate(["caption en", "detect red circle", ""]):
        img = Image.open(os.path.join(out, "image.png"))
        inputs = proc(images=img, text="<image>" * 0 + prompt, return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits[0]
            gen = model.generate(**inputs, max_new_tokens=16, do_sample=False, output_scores=True,
                                 return_dict_in_generate=True)
        new = gen.sequences[0, inputs["input_ids"].shape[1]:]
        # No near-ties: the engine (logits within ~1e-6 relative) must pick the same greedy tokens, so
        # the golden stops before the first step whose top two scores are within 1e-4 (relative).
        for step, scores in enumerate(gen.scores):
            top = torch.topk(scores[0], 2).values
            if top[0] - top[1] <= 1e-4 * max(1.0, top[0].abs().item()):
                print(f"  note: near-tie at new token {step}: golden keeps {step} tokens")
                new = new[:step]
                break
        tensors = {"pixel_values": inputs["pixel_values"][0].contiguous(),
                   "input_ids": inputs["input_ids"][0].to(torch.int64).contiguous(),
                   "logits": logits.contiguous(),
                   "greedy_tokens": new.to(torch.int64).contiguous()}
        tensors.update(hidden_states(model, inputs, logits))
        save_file(tensors, os.path.join(out, f"golden-{k}.safetensors"))
        text, text_transformers = decode_new(sp, new.tolist()), proc.decode(new, skip_special_tokens=True)
        if text != text_transformers:
            print(f"  note: sentencepiece {text!r} != transformers {text_transformers!r}")
        cases.append({"file": f"golden-{k}.safetensors", "image": "image.png", "prompt": prompt,
                      "text": text, "text_transformers": text_transformers, "tokens": new.tolist()})
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
