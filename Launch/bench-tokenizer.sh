#!/usr/bin/env bash
# Tokenizer speed: `paligemma tokenize --text-file` against the sentencepiece library, one core.
#
#   Launch/bench-tokenizer.sh [MODEL] [LINES]
#
# MODEL: a tokenizer.model to time (e.g. a real PaliGemma one). Without it, two models are timed:
# the Gemma-style test fixture (3k pieces) and that fixture grown to Gemma's 257,152 pieces with
# random low-score pieces (same merges, Gemma-sized hash tables). LINES: texts (default 50000).
#
# Both sides run pinned to CPU 0. The sentencepiece time counts model load + batch encode + batch
# decode on one thread, nothing else (no interpreter start, no JSON); ours is the whole process
# (start, load, encode, decode, JSON out), so the ratio is conservative. Best of 3 runs each.
# The outputs must be byte-identical, or the script fails.
set -euo pipefail
cd "$(dirname "$0")/.."
LINES="${2:-50000}"
PYTHON="${PYTHON:-.venv/bin/python}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
PIN=()
command -v taskset >/dev/null && PIN=(taskset -c 0)

swift build -c release --scratch-path .build-tok --product paligemma >&2
BIN=".build-tok/release/paligemma"

"$PYTHON" Tests/Oracle/bench_tokenizer.py texts "$WORK/texts.txt" "$LINES"
BYTES=$(wc -c <"$WORK/texts.txt")
if [[ $# -ge 1 ]]; then
    MODELS=("$1")
else
    FIXTURE=Tests/Fixtures/tokenizer/gemma-style.model
    "$PYTHON" Tests/Oracle/bench_tokenizer.py inflate "$FIXTURE" "$WORK/gemma-sized.model" 257152
    MODELS=("$FIXTURE" "$WORK/gemma-sized.model")
fi

best() { sort -g | head -1; }
now() { date +%s.%N; }

for MODEL in "${MODELS[@]}"; do
    for _ in 1 2 3; do
        "${PIN[@]}" "$PYTHON" Tests/Oracle/bench_tokenizer.py run "$MODEL" "$WORK/texts.txt" "$WORK/sp.jsonl"
    done | best >"$WORK/sp.time"

    for _ in 1 2 3; do
        start=$(now)
        "${PIN[@]}" "$BIN" tokenize --tokenizer "$MODEL" --text-file "$WORK/texts.txt" >"$WORK/ours.jsonl"
        end=$(now)
        awk -v a="$start" -v b="$end" 'BEGIN { printf "%.4f\n", b - a }'
    done | best >"$WORK/ours.time"

    if ! cmp -s "$WORK/sp.jsonl" "$WORK/ours.jsonl"; then
        echo "MISMATCH with $MODEL: outputs differ from sentencepiece; first differences:" >&2
        diff "$WORK/sp.jsonl" "$WORK/ours.jsonl" | head -5 >&2
        exit 1
    fi

    PIECES=$("$PYTHON" -c "import sentencepiece as s, sys; print(s.SentencePieceProcessor(model_file=sys.argv[1]).get_piece_size())" "$MODEL")
    awk -v sp="$(cat "$WORK/sp.time")" -v ours="$(cat "$WORK/ours.time")" -v lines="$LINES" \
        -v bytes="$BYTES" -v model="$(basename "$MODEL")" -v pieces="$PIECES" 'BEGIN {
        printf "model         %s (%d pieces)\n", model, pieces
        printf "texts         %d lines, %.1f MB; outputs identical\n", lines, bytes / 1e6
        printf "sentencepiece %.3f s  (%.2f MB/s; load + encode + decode, one thread)\n", sp, bytes / sp / 1e6
        printf "paligemma     %.3f s  (%.2f MB/s; whole process incl. JSON output)\n", ours, bytes / ours / 1e6
        printf "ratio         %.2fx  (sentencepiece time / ours; > 1: ours is faster)\n\n", sp / ours
    }'
done
