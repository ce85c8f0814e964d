#!/usr/bin/env bash
# The batch job at real size: a random checkpoint of PaliGemma-3B-224's full shape (27 + 18 layers,
# 3B widths, vocabulary 257216), `paligemma run` with default settings at np 1, mpirun -np 3 and
# mpirun -np 4 --stages 2, every record's tokens checked against transformers (f32), and a table of
# wall time, load time and peak RSS per rank.
#
#   bash Launch/real-size-check.sh [--dtype bf16|f32|both] [--dir DIR] [--images N] [--layouts 1,3,4]
#                                  [-- extra `paligemma run` arguments, e.g. --peer-timeout 1000]
#
#   --dtype    which checkpoint: bf16 (5.8 GB, as PaliGemma 2 ships), f32 (11.7 GB, as PaliGemma 1
#              ships) or both (default bf16). Both hold the same values, so one reference serves both.
#   --dir      where the checkpoints, jobs and runs live (default out/realsize; not committed)
#   --images   jobs in the manifest (default 4; `caption en`-style prompts, 20 new tokens)
#   --layouts  which of np 1, np 3 (1 vision rank + 1 stage) and np 4 (--stages 2) to run (default 1,3,4)
#
# The checkpoints are made by Tests/Oracle/make_realsize_checkpoint.py when missing or when that
# script changed (it keeps a stamp; needs torch + transformers in $PYTHON, default .venv/bin/python:
# python3 -m venv .venv && .venv/bin/pip install -r Tests/Oracle/requirements.txt). Making them and
# running the transformers reference takes ~12 GB of memory and ~5 minutes on 2 cores; each paligemma
# run holds the working weights (see docs/operations.md, "Memory per role").
#
# Environment: PYTHON; PALIGEMMA (the binary; default: `swift build -c release --product paligemma`,
# then .build/release/paligemma, or $SCRATCH/release/paligemma with SCRATCH=... as --scratch-path);
# MPIRUN (default mpirun); LOCK=FILE runs every memory-heavy step under `flock FILE` (for machines
# shared with other big jobs).
# Exit status: 0 when every run completed and every record's tokens equal transformers', 1 otherwise,
# 2 on a usage or setup error.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

say() { echo "real-size-check: $*" >&2; }
die() { say "$*"; exit 2; }

dtype=bf16 dir=out/realsize images=4 layouts=1,3,4
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dtype) dtype=${2:?}; shift 2 ;;
        --dtype=*) dtype=${1#*=}; shift ;;
        --dir) dir=${2:?}; shift 2 ;;
        --dir=*) dir=${1#*=}; shift ;;
        --images) images=${2:?}; shift 2 ;;
        --images=*) images=${1#*=}; shift ;;
        --layouts) layouts=${2:?}; shift 2 ;;
        --layouts=*) layouts=${1#*=}; shift ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
case "$dtype" in bf16) dtypes=(bf16) ;; f32) dtypes=(f32) ;; both) dtypes=(bf16 f32) ;;
    *) die "--dtype must be bf16, f32 or both" ;; esac
[[ "$images" =~ ^[1-9][0-9]*$ ]] || die "--images must be a positive integer"
IFS=, read -r -a nps <<< "$layouts"
for np in "${nps[@]}"; do case "$np" in 1|3|4) ;; *) die "--layouts takes 1, 3 and 4" ;; esac; done
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
PYTHON=${PYTHON:-$root/.venv/bin/python}
MPIRUN=${MPIRUN:-mpirun}
locked=()
[ -z "${LOCK:-}" ] || locked=(flock "$LOCK")
[ -x /usr/bin/time ] || die "/usr/bin/time is missing (peak RSS per rank): apt-get install time"
cores=$(env -u OMP_NUM_THREADS nproc)

# --- checkpoints and reference (cached by the script itself) -----------------------------------------
"$PYTHON" -c "import torch, transformers, sentencepiece" 2>/dev/null \
    || die "$PYTHON cannot import torch, transformers and sentencepiece: python3 -m venv .venv && .venv/bin/pip install -r Tests/Oracle/requirements.txt"
# LAYERS=V,T (vision, text) makes a shallower model of the same widths, for trying this script out.
"${locked[@]}" "$PYTHON" Tests/Oracle/make_realsize_checkpoint.py --dir "$dir" --dtype "$dtype" --images "$images" \
    ${LAYERS:+--layers "$LAYERS"}

# --- the binary ----------------------------------------------------------------------------------------
if [ -n "${PALIGEMMA:-}" ]; then
    bin=$PALIGEMMA
    [ -x "$bin" ] || die "PALIGEMMA=$bin is not an executable file"
else
    scratch=${SCRATCH:-.build}
    say "swift build -c release --product paligemma --scratch-path $scratch"
    swift build -c release --product paligemma --scratch-path "$scratch" >&2
    bin=$scratch/release/paligemma
fi
case "$bin" in /*) ;; *) bin=$root/$bin ;; esac

# --- runs ------------------------------------------------------------------------------------------------
manifest=$dir/jobs/manifest.jsonl
results=$dir/runs/results.tsv
mkdir -p "$dir/runs"
: > "$results"
failed=0
for d in "${dtypes[@]}"; do
    model=$dir/$d
    for np in "${nps[@]}"; do
        case "$np" in 1) name="np 1" ;; 3) name="mpirun -np 3" ;; 4) name="mpirun -np 4 --stages 2" ;; esac
        run_dir=$dir/runs/$d-np$np
        rm -rf "$run_dir"
        mkdir -p "$run_dir"
        args=(run --model "$model" --manifest "$manifest" --output-dir "$run_dir/out" --max-tokens 20)
        [ "$np" != 4 ] || args+=(--stages 2)
        args+=("${extra[@]}")
        if [ "$np" = 1 ]; then
            # One process, every role on a thread, --threads defaults to all cores.
            command=(env "OPENBLAS_NUM_THREADS=$cores" /usr/bin/time -f %M -o "$run_dir/rss.0" "$bin" "${args[@]}")
        else
            # Several ranks share this machine: unbound, one BLAS thread per rank (paligemma's default
            # --threads under mpirun is 1), each rank wrapped in /usr/bin/time for its peak RSS.
            command=("$MPIRUN" -np "$np" --allow-run-as-root --oversubscribe --bind-to none
                     -x OPENBLAS_NUM_THREADS=1 -x OMPI_MCA_btl_vader_single_copy_mechanism=none
                     sh -c 'exec /usr/bin/time -f %M -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' "$run_dir/rss"
                     "$bin" "${args[@]}")
        fi
        say "$d, $name: ${command[*]}"
        status=0
        # The start is taken once the lock is held, so waiting for it does not count.
        "${locked[@]}" sh -c 'date +%s.%N > "$0"; exec "$@"' "$run_dir/start" "${command[@]}" \
            > "$run_dir/stdout.log" 2> "$run_dir/stderr.log" || status=$?
        end=$(date +%s.%N)
        start=$(cat "$run_dir/start" 2>/dev/null || echo "$end")
        if [ "$status" = 0 ]; then
            tail -n 2 "$run_dir/stderr.log" | sed 's/^/    /' >&2
        else  # paligemma's own lines first (mpirun's banner says little)
            { grep -a 'paligemma' "$run_dir/stderr.log" || tail -n 5 "$run_dir/stderr.log"; } | head -n 5 | sed 's/^/    /' >&2
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$d" "$name" "$run_dir" "$status" "$start" "$end" >> "$results"
        [ "$status" = 0 ] || failed=1
    done
done

# --- check and table -------------------------------------------------------------------------------------
python3 - "$results" "$dir" <<'PY' || failed=1
import glob, json, os, sys
results, root = sys.argv[1], sys.argv[2]
bad = False
rows = []
for line in open(results):
    dtype, name, run_dir, status, start, end = line.rstrip("\n").split("\t")
    ref = json.load(open(os.path.join(root, dtype, "reference.json")))
    wall = float(end) - float(start)
    stats = {}
    try:
        stats = json.load(open(os.path.join(run_dir, "out", "stats.json")))
    except (OSError, ValueError):
        pass
    # stats.json's load time (the longest any rank took), where this paligemma reports one.
    load = next((stats[k] for k in ("load_s", "load_seconds") if isinstance(stats.get(k), (int, float))), None)
    if load is None:
        loads = [r.get(k) for r in stats.get("roles", {}).values() if isinstance(r, dict)
                 for k in ("load_s", "load_seconds")]
        loads = [x for x in loads if isinstance(x, (int, float))]
        load = max(loads) if loads else None
    rss = []
    for path in sorted(glob.glob(os.path.join(run_dir, "rss.*")), key=lambda p: int(p.rsplit(".", 1)[1])):
        lines = [l for l in open(path).read().split("\n") if l.strip()]
        rss.append(f"{int(lines[-1]) / 1e6:.2f}" if lines and lines[-1].strip().isdigit() else "?")
    records = {}
    for shard in glob.glob(os.path.join(run_dir, "out", "shard-*.jsonl")):
        for l in open(shard):
            r = json.loads(l)
            records[r["id"]] = r
    equal, notes = 0, []
    for job, want in ref["jobs"].items():
        r = records.get(job)
        if r is None:
            notes.append(f"{job}: no record")
        elif r.get("status") != "ok":
            notes.append(f"{job}: {r.get('status')} {r.get('error')}")
        elif r["tokens"] != want["tokens"]:
            step = next((i for i, (a, b) in enumerate(zip(r["tokens"], want["tokens"])) if a != b),
                        min(len(r["tokens"]), len(want["tokens"])))
            gap = want["relative_top2_gaps"][step] if step < len(want["relative_top2_gaps"]) else None
            notes.append(f"{job}: differs from step {step} (ours {r['tokens'][step:step + 3]}, transformers "
                         f"{want['tokens'][step:step + 3]}; transformers' relative top-2 gap there {gap})")
        else:
            equal += 1
    ok = status == "0" and equal == len(ref["jobs"])
    bad |= not ok
    rows.append((dtype, name, f"{wall:.1f}", f"{stats['wall_s']:.1f}" if "wall_s" in stats else "n/a",
                 f"{load:.1f}" if isinstance(load, (int, float)) else "n/a", " / ".join(rss) or "n/a",
                 f"{'yes' if ok else 'NO'} ({equal}/{len(ref['jobs'])})" + ("" if status == "0" else f", exit {status}")))
    for n in notes:
        print(f"  {dtype} {name}: {n}", file=sys.stderr)
head = ("weights", "layout", "wall s", "run wall_s", "load s", "peak RSS GB per rank (0, 1, ...)", "tokens equal")
widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
for row in [head, tuple("-" * w for w in widths)] + rows:
    print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
ref = json.load(open(os.path.join(root, rows[0][0] if rows else "bf16", "reference.json")))
print(f"{len(ref['jobs'])} jobs, 20 new tokens, greedy; transformers {ref['transformers']} / torch {ref['torch']} "
      f"(f32, {ref['threads']} threads): {ref['seconds']} s, peak RSS {ref['peak_rss_gb']} GB")
sys.exit(1 if bad else 0)
PY
exit $failed
