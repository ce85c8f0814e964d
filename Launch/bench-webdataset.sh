#!/usr/bin/env bash
# WebDataset shards against loose files: the demo model labels N samples of the demo scenes (default
# 10,000: the 36 scenes over and over, each sample its own key) once from WebDataset tars
# (`--shards`, 1,000 samples a shard, png + json members) and once from the same images as loose
# files through a JSONL manifest, in each layout asked for, and prints images/s side by side with
# rank 0's CPU seconds (under mpirun: what reading the tars costs the coordinator) and the vision
# ranks' busy seconds.
#
#   bash Launch/bench-webdataset.sh [N]
#
# Environment: LAYOUTS (default "1 3": np 1, and mpirun -np 3 = 1 vision rank + 1 stage; "np:V" runs
# mpirun -np np --vision-ranks V, e.g. "4:2 10:8"), MAX_TOKENS (default 8), PROMPT (default
# "caption en"), PALIGEMMA (binary; default .build/release/paligemma, built when missing), MPIRUN.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
bin=${PALIGEMMA:-.build/release/paligemma}
[ -x "$bin" ] || swift build -c release --product paligemma >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work" "$n" <<'PY'
import io, json, os, sys, tarfile
work, n = sys.argv[1], int(sys.argv[2])
data = os.path.abspath("Launch/demo-data")
scenes = [json.loads(l) for l in open(os.path.join(data, "manifest.jsonl"))]
images = [open(os.path.join(data, s["image"]), "rb").read() for s in scenes]
os.makedirs(os.path.join(work, "shards"))
os.makedirs(os.path.join(work, "loose"))
def add(tar, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))
with open(os.path.join(work, "manifest.jsonl"), "w") as manifest:
    for shard in range((n + 999) // 1000):
        with tarfile.open(os.path.join(work, "shards", f"{shard:05d}.tar"), "w") as tar:
            for i in range(shard * 1000, min(n, (shard + 1) * 1000)):
                key, scene = f"{i:09d}", i % len(scenes)
                add(tar, f"{key}.png", images[scene])
                add(tar, f"{key}.json", json.dumps({"scene": scenes[scene]["id"]}).encode())
                path = os.path.join(work, "loose", f"{key}.png")
                with open(path, "wb") as f:
                    f.write(images[scene])
                manifest.write(json.dumps({"id": f"{shard:05d}/{key}", "image": path}) + "\n")
PY
shards="$work/shards/{00000..$(printf %05d $(( (n + 999) / 1000 - 1 )))}.tar"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
common=(--model models/paligemma-shapes --prompt "${PROMPT:-caption en}" --max-tokens "${MAX_TOKENS:-8}"
        --progress-interval 600)
# A warm-up run (the first run on a machine times the GEMM kernels for the model's shapes: not in the figures).
head -n 36 "$work/manifest.jsonl" > "$work/warm.jsonl"
"$bin" run "${common[@]}" --manifest "$work/warm.jsonl" --output-dir "$work/warm" 2>/dev/null
printf '%-10s %-9s %9s %9s %11s %s\n' layout input wall_s images/s rank0_cpu_s "vision busy s"
for layout in ${LAYOUTS:-1 3}; do
    np=${layout%%:*}
    for input in manifest shards; do
        out="$work/out-$np-$input"
        if [ "$input" = manifest ]; then args=(--manifest "$work/manifest.jsonl"); else args=(--shards "$shards"); fi
        if [ "$np" = 1 ]; then
            "$bin" run "${common[@]}" "${args[@]}" --output-dir "$out" 2>"$out.log" || { tail "$out.log"; exit 1; }
        else
            vr=()
            [ "$layout" != "$np" ] && vr=(--vision-ranks "${layout#*:}")
            ${MPIRUN:-mpirun} -np "$np" --oversubscribe --bind-to none \
                sh -c 'exec /usr/bin/time -f "%U %S" -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' "$out.cpu" \
                "$bin" run "${common[@]}" "${args[@]}" "${vr[@]}" --output-dir "$out" 2>"$out.log" \
                || { tail "$out.log"; exit 1; }
        fi
        python3 - "$out" "$layout" "$input" "$n" <<'PY'
import glob, json, os, sys
out, layout, kind, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = json.load(open(os.path.join(out, "stats.json")))
ids = [json.loads(l)["id"] for p in glob.glob(os.path.join(out, "*.jsonl")) for l in open(p)]
assert len(ids) == n == len(set(ids)), f"{len(ids)} records, {len(set(ids))} ids, {n} samples"
roles = s.get("roles", {})
cpu = out + ".cpu.0"
coord = f"{sum(map(float, open(cpu).read().split()[-2:])):.1f}" if os.path.exists(cpu) else "–"
vision = ", ".join(f"{r['busy_s']:.1f}" for name, r in sorted(roles.items()) if "vision" in name)
print(f"{layout:10} {kind:9} {s['wall_s']:9.1f} {n / s['wall_s']:9.1f} {coord:>11} {vision}")
PY
    done
done
