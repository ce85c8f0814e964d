#!/usr/bin/env bash
# What several prompts per image cost: the demo model over the demo scenes with 3 prompts per image,
# once as 3 records of one prompt each (3 vision passes per image) and once as one entry with
# "prompts" (1 vision pass per image). Checks that both give the same tokens for every (image, prompt)
# and prints wall time, vision passes and per-role busy seconds of each. np 1 (every role in one
# process); `THREADS` (default: all cores) and `MAX_TOKENS` (default 20) may be set.
#   bash Launch/multi-prompt-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product paligemma >&2
bin=.build/release/paligemma
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work" <<'PY'
import json, os, sys
work = sys.argv[1]
data = os.path.abspath("Launch/demo-data")
prompts = ["caption en", "detect triangle ; circle", "segment star"]
entries = [json.loads(l) for l in open(os.path.join(data, "manifest.jsonl"))]
with open(os.path.join(work, "single.jsonl"), "w") as f:
    for e in entries:
        for i, p in enumerate(prompts):
            f.write(json.dumps({"id": f"{e['id']}#{i}", "image": os.path.join(data, e["image"]), "prompt": p}) + "\n")
with open(os.path.join(work, "multi.jsonl"), "w") as f:
    for e in entries:
        f.write(json.dumps({"id": e["id"], "image": os.path.join(data, e["image"]), "prompts": prompts}) + "\n")
PY
for kind in single multi; do
    "$bin" run --model models/paligemma-shapes --manifest "$work/$kind.jsonl" --output-dir "$work/out-$kind" \
        --max-tokens "${MAX_TOKENS:-20}" --threads "${THREADS:-$(nproc)}" --progress-interval 600 2>/dev/null
done
python3 - "$work" <<'PY'
import glob, json, os, sys
work = sys.argv[1]
def records(kind):
    out = {}
    for path in glob.glob(os.path.join(work, f"out-{kind}", "shard-*.jsonl")):
        for line in open(path):
            r = json.loads(line)
            key = r["id"] if kind == "single" else f"{r['id']}#{r['prompt_index']}"
            out[key] = r["tokens"]
    return out
single, multi = records("single"), records("multi")
same = single.keys() == multi.keys() and all(single[k] == multi[k] for k in single)
print(f"records: {len(single)} one prompt each, {len(multi)} from 3 prompts per entry; same tokens: {same}")
for kind in ("single", "multi"):
    s = json.load(open(os.path.join(work, f"out-{kind}", "stats.json")))
    roles = ", ".join(f"{name.split(': ')[1]} busy {r['busy_s']:.2f} s" for name, r in sorted(s["roles"].items()))
    print(f"{kind:6}: wall {s['wall_s']:.2f} s, vision passes {s.get('vision_images')}, "
          f"prefill {s['prefill_tokens']} tokens, decode {s['decode_tokens']} tokens; {roles}")
sys.exit(0 if same else 1)
PY
