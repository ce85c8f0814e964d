#!/usr/bin/env python3
"""Evaluate the shapes demo model with transformers, and write the Swift CI expectations and demo data.

  nice -n 15 python Tests/Oracle/eval_demo_model.py [--model models/paligemma-shapes] [--count 200]
      [--results /tmp/eval-1000.jsonl] [--no-fixtures] [--all-prompts]

1. Held-out evaluation: shapes.py seed 1000, --count scenes, one mixed prompt each (rendered into
   --eval-dir). Greedy generation (transformers 5.23, float32, eager attention, max 40 new tokens,
   batch 1, through PaliGemmaProcessor). Figures:
     caption   exact match of the decoded text with truth.caption
     detect    per truth object: IoU ≥ 0.5 with a predicted object of the same label; box from the
               <loc> bins as pixel = round(bin / 1024 · size) (y with H, x with W; the demo's rule)
     segment   per truth object: mask IoU ≥ 0.5, the 16 <seg> codes decoded by the model folder's
               vae-oid.npz and pasted into the box as the demo does (clip(m·0.5+0.5) → uint8 → PIL
               BICUBIC resize to the box → /255 → > 0.5), against the truth mask PNG.
2. Tests/Fixtures/demo/: seed 1001, 24 scenes rendered with shapes.py (mixed prompts), and
   expected.jsonl: per job {"id", "image", "prompt", "tokens" (greedy new token ids, <eos> included),
   "text" (decoded with skip_special_tokens=True: <loc>/<seg> kept), "min_margin" (the smallest
   top-1 − top-2 logit gap over the generated steps, to spot near-ties)}.
3. Launch/demo-data/: seed 2000, 36 scenes with mixed prompts (manifest.jsonl + images + masks).
"""
import argparse
import json
import os
import re
import shutil
import sys
import time

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import shapes  # noqa: E402
import train_vqvae  # noqa: E402

from transformers import PaliGemmaForConditionalGeneration, PaliGemmaProcessor  # noqa: E402

OBJ = re.compile(r"((?:<loc\d{4}>){4})((?:<seg\d{3}>){16})?\s*([^;<>]*)")


def parse(text, w, h):
    """Objects of a detect/segment answer: [{"label", "box" [x0,y0,x1,y1], "codes" or None}]."""
    objs = []
    for m in OBJ.finditer(text):
        y0, x0, y1, x1 = [int(v) for v in re.findall(r"<loc(\d{4})>", m.group(1))]
        box = [round(x0 / 1024 * w), round(y0 / 1024 * h), round(x1 / 1024 * w), round(y1 / 1024 * h)]
        codes = [int(v) for v in re.findall(r"<seg(\d{3})>", m.group(2))] if m.group(2) else None
        objs.append({"label": m.group(3).strip(), "box": box, "codes": codes})
    return objs


def paste(m64, box, h, w):
    x0, y0, x1, y1 = box
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    full = np.zeros((h, w), np.float32)
    if x1 > x0 and y1 > y0:
        m = np.clip(m64 * 0.5 + 0.5, 0, 1)
        im = Image.fromarray((m * 255).astype(np.uint8), mode="L").resize((x1 - x0, y1 - y0))
        full[y0:y1, x0:x1] = np.asarray(im, np.float32) / 255.0
    return full > 0.5


def mask_iou(a, b):
    u = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / u) if u else 0.0


class Runner:
    def __init__(self, model_dir):
        self.proc = PaliGemmaProcessor.from_pretrained(model_dir)
        self.model = PaliGemmaForConditionalGeneration.from_pretrained(
            model_dir, dtype=torch.float32, attn_implementation="eager").eval()
        self.vae = train_vqvae.load_npz(os.path.join(model_dir, "vae-oid.npz"))

    @torch.no_grad()
    def generate(self, image, prompt, max_new_tokens=40):
        inputs = self.proc(images=image, text=prompt, return_tensors="pt")
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                  output_scores=True, return_dict_in_generate=True)
        new = out.sequences[0, inputs["input_ids"].shape[1]:]
        top2 = [torch.topk(sc[0].float(), 2).values for sc in out.scores]
        self.last_margin = min(float(t[0] - t[1]) for t in top2)
        return new.tolist(), self.proc.decode(new, skip_special_tokens=True)

    @torch.no_grad()
    def decode_mask(self, codes):
        return self.vae.decode(torch.tensor([codes]))[0].numpy()


def evaluate(runner, ddir, lines, results_path=None):
    stats = {"caption": [0, 0], "detect": [0, 0], "segment": [0, 0]}
    label_ok = [0, 0]
    ious = {"detect": [], "segment": []}
    recs = []
    t0 = time.time()
    for i, job in enumerate(lines):
        img = Image.open(os.path.join(ddir, job["image"])).convert("RGB")
        w, h = img.size
        tokens, text = runner.generate(img, job["prompt"])
        kind = job["prompt"].split(" ")[0]
        rec = {"id": job["id"], "prompt": job["prompt"], "text": text, "tokens": tokens,
               "min_margin": round(runner.last_margin, 5)}
        if kind == "caption":
            ok = text == job["truth"]["caption"]
            stats["caption"][0] += ok
            stats["caption"][1] += 1
            rec["ok"] = ok
        else:
            pred = parse(text, w, h)
            for t in job["truth"]["objects"]:
                same = [p for p in pred if p["label"] == t["label"]]
                label_ok[0] += bool(same)
                label_ok[1] += 1
                best = 0.0
                for p in same:
                    if kind == "detect":
                        best = max(best, shapes.box_iou(p["box"], t["box"]))
                    elif p["codes"] is not None:
                        truth = np.asarray(Image.open(os.path.join(ddir, t["mask"]))) > 127
                        m = paste(runner.decode_mask(p["codes"]), p["box"], h, w)
                        best = max(best, mask_iou(m, truth))
                ious[kind].append(best)
                stats[kind][0] += best >= 0.5
                stats[kind][1] += 1
                rec["iou"] = best
        recs.append(rec)
        if (i + 1) % 25 == 0:
            print(f"{i + 1}/{len(lines)} jobs, {time.time() - t0:.0f}s", flush=True)
    if results_path:
        with open(results_path, "w") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
    summary = {k: {"ok": v[0], "n": v[1], "rate": round(v[0] / v[1], 4) if v[1] else None}
               for k, v in stats.items()}
    for k in ious:
        summary[k]["mean_iou"] = round(float(np.mean(ious[k])), 4) if ious[k] else None
    summary["label_match"] = round(label_ok[0] / max(label_ok[1], 1), 4)
    summary["seconds"] = round(time.time() - t0, 1)
    return summary


def write_expected(runner, ddir, lines):
    with open(os.path.join(ddir, "expected.jsonl"), "w") as f:
        for job in lines:
            img = Image.open(os.path.join(ddir, job["image"])).convert("RGB")
            tokens, text = runner.generate(img, job["prompt"])
            f.write(json.dumps({"id": job["id"], "image": job["image"], "prompt": job["prompt"],
                                "tokens": tokens, "text": text,
                                "min_margin": round(runner.last_margin, 5)}) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "paligemma-shapes"))
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--eval-dir", default="/tmp/shapes-eval-1000")
    ap.add_argument("--results", default="/tmp/eval-1000.jsonl")
    ap.add_argument("--no-fixtures", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--all-prompts", action="store_true",
                    help="evaluate the caption and a detect and a segment job for every object of each scene")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    runner = Runner(a.model)
    shutil.rmtree(a.eval_dir, ignore_errors=True)
    lines = shapes.generate(1000, a.count, a.eval_dir, all_prompts=a.all_prompts)
    summary = evaluate(runner, a.eval_dir, lines, a.results)
    print(json.dumps(summary, indent=1), flush=True)
    if a.no_fixtures:
        return
    demo = os.path.join(ROOT, "Tests", "Fixtures", "demo")
    shutil.rmtree(demo, ignore_errors=True)
    write_expected(runner, demo, shapes.generate(1001, 24, demo))
    data = os.path.join(ROOT, "Launch", "demo-data")
    shutil.rmtree(data, ignore_errors=True)
    shapes.generate(2000, 36, data)
    print("wrote", demo, "and", data)


if __name__ == "__main__":
    main()
