#!/usr/bin/env python3
"""Goldens for scores and beam search: Tests/Fixtures/scores/goldens.json, from transformers 5.23
(float32, eager attention, batch 1, through PaliGemmaProcessor), on the tiny checkpoints of
make_model_goldens.py (PaliGemma 1 MQA, PaliGemma 2 with soft-caps, sharded BF16) and the shipped demo
model (which ends its answers with <eos> by itself).

Each case: {"model", "image", "prompt" (paths relative to the repository), "max_new_tokens",
"eos_token_id" (list), "beams", "tokens" (generated ids, the stop id included when produced),
"token_logprobs", "logprob"}:

  beams 1  greedy (`do_sample=False`). token_logprobs = compute_transition_scores(sequences, scores,
           normalize_logits=True): the log-softmax of each step's final logits (after Gemma 2's final
           soft-cap) at the chosen token, the stop id's step included; logprob = their sum.
  beams N  `num_beams=N` with the defaults length_penalty=1.0, early_stopping=False.
           token_logprobs = compute_transition_scores(sequences, scores, beam_indices) (beam search's
           scores are already log-softmaxed); logprob = sequences_scores, transformers' sequence score:
           sum(token_logprobs) / len(tokens) ** length_penalty (checked here).

The tiny random models never produce <eos> (id 1) in 16 tokens, so some cases give another id as
eos_token_id (a token the greedy answer produces a few steps in) to exercise how a stop id ends a greedy
answer and finishes beam hypotheses. Greedy cases stop before the first near-tie (top-2 logits within
1e-4 relative), as make_model_goldens.py does.

Re-run: nice -n 19 .venv/bin/python Tests/Oracle/make_score_goldens.py
"""
import json
import os

import torch
import transformers
from PIL import Image
from transformers import PaliGemmaForConditionalGeneration, PaliGemmaProcessor

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "scores", "goldens.json")
TINY = ["pg1-mqa", "pg2-softcap", "pg1-sharded-bf16"]


def load(model_dir):
    proc = PaliGemmaProcessor.from_pretrained(model_dir)
    model = PaliGemmaForConditionalGeneration.from_pretrained(model_dir, attn_implementation="eager",
                                                              dtype=torch.float32).eval()
    return proc, model


def inputs_for(proc, image, prompt):
    return proc(images=Image.open(os.path.join(ROOT, image)), text=prompt, return_tensors="pt")


@torch.no_grad()
def greedy(model, inputs, max_new_tokens, eos):
    gen = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                         output_scores=True, return_dict_in_generate=True)
    new = gen.sequences[0, inputs["input_ids"].shape[1]:].tolist()
    scores = model.compute_transition_scores(gen.sequences, gen.scores, normalize_logits=True)[0].tolist()
    assert len(scores) == len(new), (len(scores), len(new))
    keep = len(new)
    for step, s in enumerate(gen.scores):
        top = torch.topk(s[0], 2).values
        if top[0] - top[1] <= 1e-4 * max(1.0, top[0].abs().item()):
            print(f"  note: near-tie at new token {step}: the case keeps {step} tokens")
            keep = step
            break
    return new[:keep], scores[:keep]


@torch.no_grad()
def beam(model, inputs, max_new_tokens, eos, beams):
    gen = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=beams,
                         eos_token_id=eos, length_penalty=1.0, early_stopping=False,  # the defaults, said
                         output_scores=True, return_dict_in_generate=True)
    new = gen.sequences[0, inputs["input_ids"].shape[1]:].tolist()
    per_token = model.compute_transition_scores(gen.sequences, gen.scores, gen.beam_indices)[0].tolist()
    assert len(per_token) == len(new), (len(per_token), len(new))
    score = gen.sequences_scores[0].item()
    assert abs(sum(per_token) / len(new) - score) < 1e-5, (sum(per_token) / len(new), score)
    return new, per_token, score


def case(model_rel, image, prompt, max_new_tokens, eos, beams, tokens, token_logprobs, logprob):
    print(f"  {model_rel} {prompt!r} eos {eos} beams {beams}: {len(tokens)} tokens, logprob {logprob:.6f}")
    return {"model": model_rel, "image": image, "prompt": prompt, "max_new_tokens": max_new_tokens,
            "eos_token_id": eos, "beams": beams, "tokens": tokens,
            "token_logprobs": [round(x, 7) for x in token_logprobs], "logprob": round(logprob, 7)}


def main():
    cases = []
    for name in TINY:
        model_rel = f"Tests/Fixtures/models/{name}"
        proc, model = load(os.path.join(ROOT, model_rel))
        image = f"{model_rel}/image.png"
        for k, prompt in enumerate(["caption en", "detect red circle", ""]):
            inputs = inputs_for(proc, image, prompt)
            tokens, lps = greedy(model, inputs, 16, [1])
            cases.append(case(model_rel, image, prompt, len(tokens), [1], 1, tokens, lps, sum(lps)))
            # Another id as the stop id: the greedy answer's 6th token (not earlier in it).
            stop = next(t for i, t in enumerate(tokens) if i >= 5 and t not in tokens[:i])
            tokens_e, lps_e = greedy(model, inputs, 16, [stop])
            assert tokens_e[-1] == stop and len(tokens_e) < 16
            cases.append(case(model_rel, image, prompt, 16, [stop], 1, tokens_e, lps_e, sum(lps_e)))
            for beams in ([2, 3] if k < 2 else [4]):
                tokens_b, lps_b, score = beam(model, inputs, 12, [1], beams)
                cases.append(case(model_rel, image, prompt, 12, [1], beams, tokens_b, lps_b, score))
            # Beams that finish on a stop id: the greedy answer's 3rd token (not earlier in it).
            stop = next(t for i, t in enumerate(tokens) if i >= 2 and t not in tokens[:i])
            for beams in [3, 5]:
                tokens_b, lps_b, score = beam(model, inputs, 12, [stop], beams)
                cases.append(case(model_rel, image, prompt, 12, [stop], beams, tokens_b, lps_b, score))

    demo_rel = "models/paligemma-shapes"
    proc, model = load(os.path.join(ROOT, demo_rel))
    with open(os.path.join(ROOT, "Tests", "Fixtures", "demo", "expected.jsonl")) as f:
        scenes = [json.loads(line) for line in f][:8]
    for scene in scenes:
        image = f"Tests/Fixtures/demo/{scene['image']}"
        inputs = inputs_for(proc, image, scene["prompt"])
        tokens, lps = greedy(model, inputs, 40, [1])
        assert tokens == scene["tokens"], (tokens, scene["tokens"])
        cases.append(case(demo_rel, image, scene["prompt"], 40, [1], 1, tokens, lps, sum(lps)))
        for beams in [2, 4]:
            tokens_b, lps_b, score = beam(model, inputs, 40, [1], beams)
            cases.append(case(demo_rel, image, scene["prompt"], 40, [1], beams, tokens_b, lps_b, score))

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"transformers": transformers.__version__, "torch": torch.__version__,
                   "length_penalty": 1.0, "early_stopping": False, "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases -> {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
