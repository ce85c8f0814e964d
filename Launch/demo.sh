#!/usr/bin/env bash
# The README's first command: on a fresh machine, installs what is missing, builds, and runs the batch
# job under mpirun with the shipped demo model (models/paligemma-shapes: a small PaliGemma trained on
# synthetic scenes) over the committed demo scenes (Launch/demo-data: captions, detection and
# segmentation prompts), then writes the HTML report and prints a summary.
#   OUT_DIR=out/demo NP=3 bash Launch/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash Launch/setup.sh
swift build -c release --product paligemma
bin=.build/release/paligemma
model=models/paligemma-shapes
data=Launch/demo-data
out=${OUT_DIR:-out/demo}
cores=$(nproc)
rm -rf "$out"

args=(run --model "$model" --manifest "$data/manifest.jsonl" --output-dir "$out" --max-tokens 40
      --shard-size 12 --progress-interval 5)
np=${NP:-3}
if [ "$np" -gt 1 ] && command -v mpirun >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
    # Rank 0 coordinates, rank 1 encodes images, rank 2 runs the decoder: the decoder gets the cores.
    cmd=(mpirun -np "$np" --bind-to none "$bin" "${args[@]}" --threads "$cores" --vision-threads 1)
else
    cmd=("$bin" "${args[@]}")
fi
echo "== ${cmd[*]}"
"${cmd[@]}"

echo "== $bin report --output-dir $out"
"$bin" report --output-dir "$out"

echo
echo "== summary"
if command -v python3 >/dev/null 2>&1; then
    python3 - "$out" "$data/manifest.jsonl" <<'EOF'
import glob, json, os, sys
out, manifest = sys.argv[1], sys.argv[2]
truth = {}
with open(manifest) as f:
    for line in f:
        job = json.loads(line)
        truth[job["id"]] = job.get("truth", {})
records = [json.loads(l) for s in sorted(glob.glob(os.path.join(out, "shard-*.jsonl"))) for l in open(s)]
ok = [r for r in records if r["status"] == "ok"]
captions = [r for r in ok if r["prompt"].startswith("caption")]
exact = sum(r["text"] == truth.get(r["id"], {}).get("caption") for r in captions)
with_objects = sum(bool(r.get("objects")) for r in ok if not r["prompt"].startswith("caption"))
stats = json.load(open(os.path.join(out, "stats.json")))
print(f"{len(records)} records ({len(ok)} ok, {len(records) - len(ok)} errors) in {stats['wall_s']:.1f} s, "
      f"{stats['images_per_s']:.2f} images/s")
print(f"captions equal to the scene's truth: {exact}/{len(captions)}; "
      f"detect/segment answers with objects: {with_objects}/{len(ok) - len(captions)}")
for r in ok[:4]:
    print(f"  {r['id']}  {r['prompt']!r:28} -> {r['text'][:70]!r}")
EOF
else
    echo "$(cat "$out"/shard-*.jsonl | wc -l) records in $out"
fi
echo "report: $(cd "$out" && pwd)/report.html"
