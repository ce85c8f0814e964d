#!/usr/bin/env bash
# Runs one manifest single-process and under several mpirun layouts on this machine, with the same
# cores, and prints images/s and per-rank busy fractions side by side (from each run's stats.json).
#
#   bash Launch/bench-layouts.sh --model DIR [--jobs 32] [--max-tokens 16] [--cores N]
#        [--layouts "1 3 4:--stages=2 5"] [--micro-batch-size 8]
#
# A layout is an mpirun -np value, optionally followed by ":" and extra `paligemma run` flags joined
# with commas (e.g. "4:--stages=2,--micro-batches=4"). np 1 runs without mpirun, all cores in one
# process. Under mpirun the decoder stages share the cores (--threads = cores / stage ranks) and
# vision ranks get one thread each (--vision-threads 1): they idle most of the time.
# The tiny test fixtures time only overhead; make a model where compute dominates first:
#   .venv/bin/python Launch/make-bench-model.py --out /tmp/bench-model
set -euo pipefail
cd "$(dirname "$0")/.."

model="" jobs=32 max_tokens=16 cores=$(nproc) layouts="1 3 4:--stages=2 5" mbs=8
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --max-tokens) max_tokens=$2; shift 2 ;;
        --cores) cores=$2; shift 2 ;;
        --layouts) layouts=$2; shift 2 ;;
        --micro-batch-size) mbs=$2; shift 2 ;;
        -h|--help) sed -n 2,14p "$0"; exit 0 ;;
        *) echo "bench-layouts: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$model" ] || { echo "bench-layouts: give --model DIR (see --help)" >&2; exit 2; }
bin=${PALIGEMMA:-.build/release/paligemma}
[ -x "$bin" ] || swift build -c release --product paligemma
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none

work=$(mktemp -d /tmp/paligemma-bench-layouts.XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 - "$jobs" "$work/jobs.jsonl" <<'EOF'
import glob, json, os, sys
n, out = int(sys.argv[1]), sys.argv[2]
images = sorted(glob.glob("Launch/demo-data/images/*.png")) or sorted(
    p for p in glob.glob("Tests/Fixtures/images/sources/*.*") if "1x1" not in p)
prompts = ["caption en", "detect circle", "answer en what is in the image?", "segment square"]
with open(out, "w") as f:
    for i in range(n):
        f.write(json.dumps({"id": f"b{i:05d}", "image": os.path.abspath(images[i % len(images)]),
                            "prompt": prompts[i % len(prompts)]}) + "\n")
EOF

echo "model $model, $jobs jobs, --max-tokens $max_tokens, $cores cores, micro-batch $mbs"
printf "%-28s %8s %10s %8s  %s\n" "layout" "wall s" "images/s" "vs np1" "busy fraction per rank"
base=""
for spec in $layouts; do
    np=${spec%%:*}
    extra=""
    [ "$spec" != "$np" ] && extra=$(echo "${spec#*:}" | tr ',' ' ')
    out="$work/out-$np-$(echo "$extra" | tr -cd 'a-z0-9')"
    args=(run --model "$model" --manifest "$work/jobs.jsonl" --output-dir "$out" --max-tokens "$max_tokens"
          --micro-batch-size "$mbs" --progress-interval 3600)
    # shellcheck disable=SC2206
    args+=($extra)
    if [ "$np" = 1 ]; then
        "$bin" "${args[@]}" --threads "$cores" 2> "$out.log" || { echo "np 1 failed:"; cat "$out.log"; exit 1; }
    else
        stages=$(echo "$extra" | sed -n 's/.*--stages[= ]\([0-9]*\).*/\1/p'); stages=${stages:-1}
        vision=$(echo "$extra" | sed -n 's/.*--vision-ranks[= ]\([0-9]*\).*/\1/p'); vision=${vision:-1}
        # Decoder stages get the cores; vision ranks (idle most of the time) one thread each.
        replicas=$(( (np - 1) / (vision + stages) ))
        threads=$(( cores / (replicas * stages) )); [ "$threads" -ge 1 ] || threads=1
        mpirun -np "$np" --bind-to none "$bin" "${args[@]}" --threads "$threads" --vision-threads 1 2> "$out.log" \
            || { echo "np $np $extra failed:"; tail -20 "$out.log"; exit 1; }
    fi
    python3 - "$out/stats.json" "np $np $extra" "$base" <<'EOF'
import json, sys
stats = json.load(open(sys.argv[1]))
rate = stats["images_per_s"]
base = float(sys.argv[3]) if sys.argv[3] else rate
busy = "  ".join(f"{name.split(': ', 1)[1]} {v['busy_fraction']:.2f}" for name, v in stats["roles"].items()
                 if v.get("busy_fraction") is not None)
print(f"{sys.argv[2]:<28} {stats['wall_s']:8.2f} {rate:10.3f} {rate / base:8.2f}  {busy}")
EOF
    [ -n "$base" ] || base=$(python3 -c "import json;print(json.load(open('$out/stats.json'))['images_per_s'])")
done
