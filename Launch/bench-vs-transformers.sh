#!/usr/bin/env bash
# `paligemma bench` (release build) beside the same shapes through transformers on CPU
# (Tests/Oracle/bench_transformers.py), with the same thread count, as a side-by-side table.
#
#   Launch/bench-vs-transformers.sh [--threads T] [--preset pg1-3b-224|pg2-3b-224]
#       [--vision-layers N] [--text-layers N] [--prompt-tokens N] [--decode-steps N] [--vision-batch N] [--repeats N]
#       [--rounds R]
#
# --rounds R alternates the two sides R times (ours, transformers, ours, …): on a machine whose speed
# drifts (a shared virtual machine) each side's best round counts, and every round's speed-ups are shown.
#
# Defaults: all cores, PaliGemma-3B-224 at full depth (27 + 18 layers: ~12 GB of f32 weights per side,
# run one after the other), 8 prompt tokens after the 256 image tokens + <bos>, 8 decode steps.
# Both sides use random f32 weights made in-process and the same warm-up/repeat policy (see
# bench_transformers.py); "speed-up" = transformers time / ours (> 1: ours is faster).
# Needs torch + transformers in $PYTHON (default .venv/bin/python):
#   python3 -m venv .venv && .venv/bin/pip install -r Tests/Oracle/requirements.txt
# Swift build products go to $SCRATCH (default .build-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
SCRATCH="${SCRATCH:-.build-bench}"
THREADS="$(nproc 2>/dev/null || sysctl -n hw.ncpu)"
ROUNDS=1
ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) THREADS="$2"; shift 2 ;;
        --threads=*) THREADS="${1#*=}"; shift ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --rounds=*) ROUNDS="${1#*=}"; shift ;;
        --preset|--vision-layers|--text-layers|--prompt-tokens|--decode-steps|--vision-batch|--repeats)
            ARGS+=("$1" "$2"); shift 2 ;;
        --preset=*|--vision-layers=*|--text-layers=*|--prompt-tokens=*|--decode-steps=*|--vision-batch=*|--repeats=*)
            ARGS+=("${1%%=*}" "${1#*=}"); shift ;;
        -h|--help) sed -n '2,18s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

if ! "$PYTHON" -c "import torch, transformers" 2>/dev/null; then
    cat >&2 <<EOF
bench-vs-transformers: $PYTHON cannot import torch and transformers (needed for the transformers side).
Install the versions pinned in Tests/Oracle/requirements.txt:
    python3 -m venv .venv && .venv/bin/pip install -r Tests/Oracle/requirements.txt
or only the two this script needs:
    .venv/bin/pip install "torch==2.13.0+cpu" "transformers==5.23.0"
(if pip cannot find torch 2.13.0+cpu, add --extra-index-url https://download.pytorch.org/whl/cpu),
or point PYTHON=... at an interpreter that has them.
EOF
    exit 1
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"

swift build -c release --scratch-path "$SCRATCH" --product paligemma >&2
for ((r = 1; r <= ROUNDS; r++)); do
    echo "round $r of $ROUNDS: paligemma bench (threads $THREADS) ${ARGS[*]}" >&2
    "$SCRATCH/release/paligemma" bench --threads "$THREADS" "${ARGS[@]}" >"$WORK/ours.$r.json"
    echo "round $r of $ROUNDS: transformers (threads $THREADS) ${ARGS[*]}" >&2
    "$PYTHON" Tests/Oracle/bench_transformers.py --threads "$THREADS" "${ARGS[@]}" >"$WORK/transformers.$r.json"
done

"$PYTHON" - "$WORK" "$ROUNDS" <<'PY'
import json, sys
work, rounds = sys.argv[1], int(sys.argv[2])
runs = [(json.load(open(f"{work}/ours.{r}.json")), json.load(open(f"{work}/transformers.{r}.json")))
        for r in range(1, rounds + 1)]
ours, ref = runs[0]
assert (ours["vision_layers"], ours["text_layers"]) == (ref["vision_layers"], ref["text_layers"]), "shapes differ"
assert ours["prefill"]["tokens"] == ref["prefill"]["tokens"], "prompt lengths differ"
# The batched vision row, unless --vision-batch 1 (then there is only batch 1).
vb = next((k for k in ours["vision"] if k.startswith("images_per_s_batch") and not k.endswith("batch1")), None)
rows = [  # label, key path, unit, higher is better
    ("vision, batch 1", ("vision", "images_per_s_batch1"), "images/s", True),
] + ([(f"vision, batch {vb.rsplit('batch', 1)[1]}", ("vision", vb), "images/s", True)] if vb else []) + [
    (f"prefill, {ours['prefill']['tokens']} tokens", ("prefill", "tokens_per_s"), "tokens/s", True),
    ("decode, batch 1", ("decode", "tokens_per_s_batch1"), "tokens/s", True),
    ("decode, batch 8", ("decode", "tokens_per_s_batch8"), "tokens/s", True),
    ("generate 16 tokens", ("generate_16_tokens_seconds",), "s", False),
]
def get(d, path):
    for k in path:
        d = d[k]
    return d
def best(side, path, higher):
    """Side 0 (ours) or 1 (transformers): its best round on this figure."""
    values = [get(run[side], path) for run in runs]
    return max(values) if higher else min(values)
if "cpu" in ours:
    print(f"CPU: {ours['cpu']} [{ours['cpu_features']}]")
print(f"{ours['preset']}: {ours['vision_layers']} vision + {ours['text_layers']} text layers, "
      f"{ours['blas_threads']} threads (transformers: {ref['torch_threads']})"
      + (f"; best of {rounds} alternating rounds per side" if rounds > 1 else ""))
print(f"{'phase':26s} {'paligemma-swift':>18s} {'transformers':>18s} {'speed-up':>9s}"
      + ("  per round" if rounds > 1 else ""))
for label, path, unit, higher in rows:
    a, r = best(0, path, higher), best(1, path, higher)
    ratio = a / r if higher else r / a
    each = [(get(o, path) / get(t, path)) if higher else (get(t, path) / get(o, path)) for o, t in runs]
    print(f"{label:26s} {a:>9.3f} {unit:8s} {r:>9.3f} {unit:8s} {ratio:8.2f}x"
          + ("  " + " / ".join(f"{x:.2f}x" for x in each) if rounds > 1 else ""))
b = vb.rsplit("batch", 1)[1] if vb else None
fr = lambda d: (f"vision {d['vision']['fraction_of_sgemm_batch1']:.0%} (b1)"
                + (f" / {d['vision'][f'fraction_of_sgemm_batch{b}']:.0%} (b{b})" if b else "") + ", "
                f"prefill {d['prefill']['fraction_of_sgemm']:.0%}")
for i, (o, t) in enumerate(runs):
    tag = f"round {i + 1}: " if rounds > 1 else ""
    print(f"{tag}{'sgemm 2048^3 GFLOP/s':26s} {o['sgemm_gflops']:>9.1f} {t['sgemm_gflops']:>9.1f}")
    if 'openblas_sgemm_gflops' in o:
        print(f"  ours: best of OpenBLAS {o['openblas_sgemm_gflops']:.1f} and the packed {o['gemm_kernel']} kernel "
              f"{o['packed_gemm_gflops']:.1f}; fractions below are of the best")
    print(f"  fraction of own sgemm: ours {fr(o)}; transformers {fr(t)}")
    if "fma_peak_gflops" in o:
        # Rates achieved (the phases' counted FLOPs per second) against the machine's multiply-add peak.
        peak = o["fma_peak_gflops"]
        at = lambda d, key: d[key[0]][key[1]] * d["sgemm_gflops"] / peak
        print(f"  of the FMA peak ({peak:.1f} GFLOP/s, registers only): ours vision {at(o, ('vision', 'fraction_of_sgemm_batch1')):.0%}, "
              f"prefill {at(o, ('prefill', 'fraction_of_sgemm')):.0%}; transformers vision "
              f"{at(t, ('vision', 'fraction_of_sgemm_batch1')):.0%}, prefill {at(t, ('prefill', 'fraction_of_sgemm')):.0%}")
    if "read_bandwidth_gb_per_s" in o:
        dec = o["decode"]
        print(f"  decode batch 1 reads {dec['weight_bytes_per_step'] / 1e9:.2f} GB of {o.get('weights', 'f32')} weights per token: "
              f"{dec['weight_gb_per_s_batch1']:.1f} GB/s = {dec['fraction_of_read_bandwidth_batch1']:.0%} of the measured "
              f"read bandwidth ({o['read_bandwidth_gb_per_s']:.1f} GB/s)")
PY
