#!/usr/bin/env python3
"""Score a `paligemma run` over held-out shapes scenes, and compare it with transformers.

  .venv/bin/python Tests/Oracle/score_swift_run.py --scenes /tmp/shapes-eval-1000 --run /tmp/swift-eval \
      [--transformers /tmp/eval-1000.jsonl]

--scenes: a folder written by shapes.py (manifest.jsonl with "truth", images/, masks/).
--run: the --output-dir of `paligemma run --manifest SCENES/manifest.jsonl --max-tokens 40`.
--transformers: the per-job results of eval_demo_model.py (its "tokens" and "text"), to count
equal answers (greedy token ids and decoded text).

Figures use the Swift records only: caption exact match; detection: per truth object, IoU ≥ 0.5 of
the best record object with the same label (boxes as the record gives them, pixels of the original
image); segmentation: the record's COCO RLE mask (decoded with pycocotools) against the truth mask.
"""
import argparse
import glob
import json
import os

import sys

import numpy as np
from PIL import Image
from pycocotools import mask as cocomask

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shapes  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--transformers")
    a = ap.parse_args()
    jobs = {}
    with open(os.path.join(a.scenes, "manifest.jsonl")) as f:
        for line in f:
            job = json.loads(line)
            jobs[job["id"]] = job
    records = {}
    for shard in sorted(glob.glob(os.path.join(a.run, "shard-*.jsonl"))):
        with open(shard) as f:
            for line in f:
                r = json.loads(line)
                assert r["id"] not in records, f"{r['id']} twice"
                records[r["id"]] = r
    missing = sorted(set(jobs) - set(records))
    assert not missing, f"{len(missing)} jobs without a record, e.g. {missing[:3]}"
    stats = {"caption": [0, 0], "detect": [0, 0], "segment": [0, 0]}
    iou_sum = {"detect": 0.0, "segment": 0.0}
    errors = 0
    for jid, job in jobs.items():
        r = records[jid]
        if r["status"] != "ok":
            errors += 1
            continue
        kind = job["prompt"].split(" ")[0]
        if kind == "caption":
            stats["caption"][0] += r["text"] == job["truth"]["caption"]
            stats["caption"][1] += 1
            continue
        objects = r.get("objects", [])
        for t in job["truth"]["objects"]:
            best = 0.0
            for o in (o for o in objects if o["label"] == t["label"]):
                if kind == "detect":
                    best = max(best, shapes.box_iou(o["box"], t["box"]))
                elif "mask" in o:
                    truth = np.asarray(Image.open(os.path.join(a.scenes, t["mask"]))) > 127
                    rle = {"size": o["mask"]["size"], "counts": o["mask"]["counts"].encode()}
                    m = cocomask.decode(rle).astype(bool)
                    u = np.logical_or(m, truth).sum()
                    best = max(best, float(np.logical_and(m, truth).sum() / u) if u else 0.0)
            stats[kind][0] += best >= 0.5
            iou_sum[kind] += best
            stats[kind][1] += 1
    summary = {k: {"ok": v[0], "n": v[1], "rate": round(v[0] / v[1], 4) if v[1] else None} for k, v in stats.items()}
    for k, total in iou_sum.items():
        if stats[k][1]:
            summary[k]["mean_iou"] = round(total / stats[k][1], 4)
    summary["error_records"] = errors
    if a.transformers:
        same = same_tokens = total = 0
        diffs = []
        by_task = {}
        with open(a.transformers) as f:
            for line in f:
                t = json.loads(line)
                total += 1
                r = records[t["id"]]
                same += r.get("text") == t["text"]
                same_tokens += r.get("tokens") == t["tokens"]
                task = by_task.setdefault(jobs[t["id"]]["prompt"].split(" ")[0], [0, 0])
                task[0] += r.get("tokens") == t["tokens"]
                task[1] += 1
                if r.get("tokens") != t["tokens"] or r.get("text") != t["text"]:
                    diffs.append(t["id"])
        summary["equal_to_transformers"] = {"same_text": same, "same_tokens": same_tokens, "n": total,
                                            "same_tokens_by_task": {k: f"{v[0]}/{v[1]}" for k, v in sorted(by_task.items())},
                                            "differing": diffs[:10]}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
