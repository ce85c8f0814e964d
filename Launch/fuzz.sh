#!/usr/bin/env bash
# Runs the libFuzzer targets of Fuzz/ (docs/fuzzing.md).
#
#   Launch/fuzz.sh TARGET SECONDS [libFuzzer flags...]   one target; prints its executions and crashes
#   Launch/fuzz.sh all SECONDS [libFuzzer flags...]      each target in turn, then a table
#   Launch/fuzz.sh list                                  the targets
#
# Builds Fuzz/ (release, --sanitize=fuzzer --sanitize=address) first; the build is incremental. Each
# run starts from the committed seeds (Fuzz/corpus/TARGET) plus the working corpus of earlier runs
# (Fuzz/work/TARGET, ignored by git), where new inputs go. A crash, a timeout (an input taking over
# 10 s) or an out-of-memory (over 2 GB) is saved under Fuzz/crashes/TARGET/ and makes the exit status
# non-zero; reproduce one with `Fuzz/.build/release/fuzz-TARGET FILE`. One process, one worker.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(safetensors config tokenizer manifest-jsonl manifest-csv wire npz image)

usage() { echo "usage: $0 TARGET|all SECONDS [libFuzzer flags...]   (targets: ${targets[*]})" >&2; exit 2; }
[ $# -ge 1 ] || usage
if [ "$1" = list ]; then printf '%s\n' "${targets[@]}"; exit 0; fi
[ $# -ge 2 ] || usage
which="$1" seconds="$2"
shift 2
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || usage
if [ "$which" = all ]; then
    run=("${targets[@]}")
else
    [[ " ${targets[*]} " == *" $which "* ]] || { echo "fuzz: unknown target '$which'" >&2; usage; }
    run=("$which")
fi

# SwiftPM's `--sanitize fuzzer --sanitize address` alone gives swiftc two -sanitize= flags, of which it
# keeps the last: the Swift code would get ASan but no coverage (libFuzzer then mutates blind). So
# --sanitize=fuzzer is there for the link (libFuzzer's main) and the instrumentation is asked for
# explicitly, for Swift and for the C targets (CImageCodecs, CKernels).
build=(swift build --package-path Fuzz -c release --sanitize=fuzzer
       -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=fuzzer-no-link,address)
echo "fuzz: building (${build[*]} --product fuzz-TARGET)" >&2
start=$SECONDS
: >Fuzz/build.log
# One product at a time: a plain `swift build` of Fuzz/ would also link the main package's executables,
# whose main() clashes with libFuzzer's.
for t in "${run[@]}"; do
    if ! "${build[@]}" --product "fuzz-$t" >>Fuzz/build.log 2>&1; then
        tail -40 Fuzz/build.log >&2
        echo "fuzz: build of fuzz-$t failed (full log: Fuzz/build.log)" >&2
        exit 2
    fi
done
echo "fuzz: built in $((SECONDS - start)) s" >&2
bin="$("${build[@]}" --show-bin-path)"
# A crash must reach libFuzzer's handler at once (it saves the input); Swift's backtracer would first
# spend up to 30 s symbolicating. Leaks that are not ours are suppressed by name (Fuzz/lsan.supp).
export SWIFT_BACKTRACE=enable=no
export LSAN_OPTIONS="suppressions=$PWD/Fuzz/lsan.supp:print_suppressions=0"

# One target: prints "executions crashes seconds" on stdout's last line for the summary.
run_one() {
    local t="$1" work="Fuzz/work/$1" crashes="Fuzz/crashes/$1" log="Fuzz/work/$1.log"
    shift
    mkdir -p "$work" "$crashes"
    local before
    before=$(find "$crashes" -type f | wc -l)
    echo "fuzz: $t for $seconds s (log: $log)" >&2
    local t0=$SECONDS rc=0
    local extra=()
    # ZIPFoundation leaks ~34 bytes per archive opened (Fuzz/lsan.supp): with leak detection on,
    # libFuzzer would scan the whole heap after every input, which took a third of the time.
    # And it looks for the ZIP directory one byte at a time from the end (fseeko + fread each), so an
    # input's cost grows with its length: 1 KB holds archives of a few small arrays, as the seeds are.
    if [ "$t" = npz ]; then extra+=(-detect_leaks=0 -max_len=1024); fi
    "$bin/fuzz-$t" "$work" "Fuzz/corpus/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$crashes/" -print_final_stats=1 "${extra[@]}" "$@" >"$log" 2>&1 || rc=$?
    local elapsed=$((SECONDS - t0))
    local execs
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    execs=${execs:-$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')}
    local found=$(( $(find "$crashes" -type f | wc -l) - before ))
    if [ "$rc" != 0 ] && [ "$found" = 0 ]; then found=1; fi  # died without an artifact: count it
    if [ "$rc" != 0 ]; then
        grep -E "ERROR: |Fatal error|SUMMARY|==[0-9]+==|Test unit written|Base64" "$log" | head -20 >&2 || true
        ls -t "$crashes" | head -n "$found" | sed "s|^|fuzz: input: $crashes/|" >&2
        echo "fuzz: $t FAILED (exit $rc) after ${execs:-0} executions in ${elapsed} s; log: $log" >&2
    else
        echo "fuzz: $t: ${execs:-0} executions in ${elapsed} s, no crash" >&2
    fi
    echo "${execs:-0} $found $elapsed"
}

failed=0
results=()
for t in "${run[@]}"; do
    line=$(run_one "$t" "$@" | tail -1)
    results+=("$t $line")
    [ "$(echo "$line" | cut -d' ' -f2)" = 0 ] || failed=1
done

if [ "$which" = all ]; then
    printf '\n%-16s %12s %9s %8s %8s\n' target executions exec/s seconds crashes
    for r in "${results[@]}"; do
        read -r t execs found elapsed <<<"$r"
        printf '%-16s %12d %9d %8d %8d\n' "$t" "$execs" $((execs / (elapsed > 0 ? elapsed : 1))) "$elapsed" "$found"
    done
else
    read -r t execs found elapsed <<<"${results[0]}"
    echo "$t: executions $execs, seconds $elapsed, crashes $found"
fi
exit "$failed"
