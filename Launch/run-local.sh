#!/usr/bin/env bash
# Runs `paligemma run` on this one machine with a layout and thread count chosen for its cores and
# memory, and exits with paligemma's status.
#
#   bash Launch/run-local.sh --model DIR --manifest FILE --output-dir OUT [other `paligemma run` flags]
#
# Choice (see docs/operations.md, "Layouts"):
#   - 2 cores or fewer: no mpirun; one process plays every role on threads (np 1), --threads = cores.
#   - more: mpirun -np 1 + R·(V+S) with R replicas of V=1 vision rank + S=1 decoder stage, R = cores/4
#     (at least 1), and --threads = cores / (R·(V+S)), so that worker ranks × threads ≈ cores (rank 0,
#     the coordinator, does no heavy math). R is lowered when R replicas would not fit in ~80% of the
#     available memory: F32 weights are mapped and shared by every rank through the page cache, BF16/F16
#     weights are converted to F32 by each replica (2 × their file size per replica).
#
# Environment overrides:
#   CORES          cores to plan for (default: nproc, ignoring OMP_NUM_THREADS; lowered to a cgroup quota)
#   NP             mpirun -np (1: no mpirun). The layout is then paligemma's default for NP.
#   VISION_RANKS   V, passed as --vision-ranks      STAGES   S, passed as --stages
#   THREADS        --threads per rank               VISION_THREADS   --vision-threads
#   PALIGEMMA      the binary (default: .build/release/paligemma of this checkout, built with
#                  `swift build -c release --product paligemma` when missing)
#   MPIRUN         the launcher (default: mpirun)   MPIRUN_ARGS   extra mpirun flags (split on spaces)
#   OPENMPI_CONF   mpirun --tune file (default: Cluster/openmpi.conf of this checkout; empty: none)
#   DRY_RUN=1      print the command and exit
# Flags given on the command line win over the script's choice (e.g. --threads 3 is not overridden).
set -euo pipefail

say() { echo "run-local: $*" >&2; }
die() { say "$*"; exit 2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
args=("$@")

# --- what the user already chose on the command line ---------------------------------------------
model="" user_threads="" user_vision="" user_stages="" want_help=""
i=0
while [ $i -lt ${#args[@]} ]; do
    a=${args[$i]} next=${args[$((i + 1))]:-}
    case "$a" in
        --model) model=$next ;;
        --model=*) model=${a#--model=} ;;
        --threads) user_threads=$next ;;
        --threads=*) user_threads=${a#--threads=} ;;
        --vision-ranks) user_vision=$next ;;
        --vision-ranks=*) user_vision=${a#--vision-ranks=} ;;
        --stages) user_stages=$next ;;
        --stages=*) user_stages=${a#--stages=} ;;
        -h|--help) want_help=1 ;;
    esac
    i=$((i + 1))
done
if [ -n "$want_help" ]; then sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0; fi
[ -n "$model" ] || die "give --model DIR (and --manifest FILE or --images DIR, and --output-dir OUT); see --help"
[ -d "$model" ] || die "--model $model is not a directory"
if [ -n "${VISION_RANKS:-}" ] && [ -n "$user_vision" ]; then die "give VISION_RANKS or --vision-ranks, not both"; fi
if [ -n "${STAGES:-}" ] && [ -n "$user_stages" ]; then die "give STAGES or --stages, not both"; fi
if [ -n "${THREADS:-}" ] && [ -n "$user_threads" ]; then die "give THREADS or --threads, not both"; fi
for var in CORES NP VISION_RANKS STAGES THREADS VISION_THREADS; do
    value=${!var:-}
    if [ -n "$value" ] && ! [[ "$value" =~ ^[1-9][0-9]*$ ]]; then die "$var=$value is not a positive integer"; fi
done
V=${VISION_RANKS:-${user_vision:-1}}
S=${STAGES:-${user_stages:-1}}
[[ "$V" =~ ^[1-9][0-9]*$ && "$S" =~ ^[1-9][0-9]*$ ]] || die "--vision-ranks/--stages must be positive integers"

# --- the machine -------------------------------------------------------------------------------------
# nproc counts the CPUs this process may run on, but also obeys OMP_NUM_THREADS, which clusters often set to 1.
cores=${CORES:-$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)}
# A container's CPU quota (cgroup v2 cpu.max "quota period") can be below the CPUs it may run on.
if [ -z "${CORES:-}" ] && [ -r /sys/fs/cgroup/cpu.max ]; then
    read -r quota period < /sys/fs/cgroup/cpu.max || true
    if [ "${quota:-max}" != max ] && [ "${period:-0}" -gt 0 ]; then
        q=$(( (quota + period - 1) / period ))
        if [ "$q" -ge 1 ] && [ "$q" -lt "$cores" ]; then cores=$q; fi
    fi
fi
avail_kb=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo 2>/dev/null || true)
avail=$(( ${avail_kb:-0} * 1024 ))
if [ -r /sys/fs/cgroup/memory.max ] && [ -r /sys/fs/cgroup/memory.current ]; then
    limit=$(cat /sys/fs/cgroup/memory.max) used=$(cat /sys/fs/cgroup/memory.current)
    if [ "$limit" != max ] && [ $(( limit - used )) -lt "$avail" ]; then avail=$(( limit - used )); fi
fi

# --- the model's weights -----------------------------------------------------------------------------
# shared: F32 bytes (mapped in place, one copy in the page cache for every rank);
# converted: BF16/F16 bytes (each replica holds them as F32: 2 × per replica).
shared=0 converted=0
shopt -s nullglob
for f in "$model"/*.safetensors; do
    size=$(stat -c %s "$f")
    header_len=$(od -An -t u8 -N 8 "$f" | tr -d ' ')
    if [ -n "$header_len" ] && [ "$header_len" -lt 100000000 ] \
        && head -c $(( 8 + header_len )) "$f" | tail -c "$header_len" | grep -Eq '"dtype" *: *"(BF16|F16)"'; then
        converted=$(( converted + size ))
    else
        shared=$(( shared + size ))
    fi
done
shopt -u nullglob
[ $(( shared + converted )) -gt 0 ] || say "warning: no *.safetensors in $model; paligemma will say what is missing"
overhead=$(( 512 * 1024 * 1024 ))                 # KV caches and activations, per replica
per_replica=$(( 2 * converted + overhead ))
budget=$(( avail * 8 / 10 ))
gib() { awk -v b="$1" 'BEGIN { printf "%.1f GiB", b / 1073741824 }'; }
fits() { [ "$avail" -le 0 ] || [ $(( shared + $1 * per_replica )) -le "$budget" ]; }

# --- layout and threads ------------------------------------------------------------------------------
if [ -n "${NP:-}" ]; then
    np=$NP
    if [ "$np" -eq 1 ]; then replicas=1; elif [ "$np" -eq 2 ]; then
        die "NP=2 cannot hold a coordinator plus a vision rank and a decoder stage: use NP=1 or NP=3 or more"
    elif [ -n "${STAGES:-}${user_stages}" ]; then
        replicas=$(( (np - 1) / (V + S) ))        # paligemma refuses an NP that does not fit, naming those that do
    else
        # paligemma's default (Layout.plan): the smallest S >= 1 with V + S dividing NP - 1.
        S=1
        while [ $(( (np - 1) % (V + S) )) -ne 0 ] && [ $(( V + S )) -lt $(( np - 1 )) ]; do S=$(( S + 1 )); done
        replicas=$(( (np - 1) / (V + S) ))
    fi
    [ "$replicas" -ge 1 ] || replicas=1
    if ! fits "$replicas"; then
        say "warning: NP=$np (~$replicas replica(s)) may need $(gib $(( shared + replicas * per_replica ))) of memory;" \
            "$(gib "$avail") is available"
    fi
elif [ "$cores" -le 2 ]; then
    np=1 replicas=1
    if ! fits 1; then
        say "warning: the model may need $(gib $(( shared + per_replica ))) of memory; $(gib "$avail") is available"
    fi
else
    replicas=$(( cores / (2 * (V + S)) ))         # about 2 cores per worker rank: cores/4 for V = S = 1
    [ "$replicas" -ge 1 ] || replicas=1
    wanted=$replicas
    while [ "$replicas" -gt 1 ] && ! fits "$replicas"; do replicas=$(( replicas - 1 )); done
    if [ "$replicas" -lt "$wanted" ]; then
        say "warning: $wanted replicas would need $(gib $(( shared + wanted * per_replica ))) of memory, more than 80% of" \
            "the $(gib "$avail") available; running $replicas"
    elif ! fits "$replicas"; then
        say "warning: one replica may need $(gib $(( shared + per_replica ))) of memory; $(gib "$avail") is available"
    fi
    np=$(( 1 + replicas * (V + S) ))
fi

if [ -n "${THREADS:-}" ]; then threads=$THREADS
elif [ -n "$user_threads" ]; then threads=$user_threads
elif [ "$np" -eq 1 ]; then threads=$cores
else threads=$(( cores / (np - 1) )); [ "$threads" -ge 1 ] || threads=1
fi

# --- the binary --------------------------------------------------------------------------------------
bin=${PALIGEMMA:-$root/.build/release/paligemma}
if [ ! -x "$bin" ]; then
    [ -z "${PALIGEMMA:-}" ] || die "PALIGEMMA=$bin is not an executable file"
    say "building $bin (swift build -c release --product paligemma)"
    (cd "$root" && swift build -c release --product paligemma) >&2
fi
case "$bin" in /*) ;; *) bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin") ;; esac

run_args=(run "${args[@]}")
[ -n "$user_threads" ] || run_args+=(--threads "$threads")
[ -z "${VISION_RANKS:-}" ] || run_args+=(--vision-ranks "$VISION_RANKS")
[ -z "${STAGES:-}" ] || run_args+=(--stages "$STAGES")
# Without NP the script picked R for V and S: tell paligemma (its own default for np might differ).
if [ -z "${NP:-}" ] && [ "$np" -gt 1 ]; then
    [ -n "${VISION_RANKS:-}$user_vision" ] || run_args+=(--vision-ranks "$V")
    [ -n "${STAGES:-}$user_stages" ] || run_args+=(--stages "$S")
fi
[ -z "${VISION_THREADS:-}" ] || run_args+=(--vision-threads "$VISION_THREADS")

# paligemma sizes its BLAS pool itself (--threads); this keeps OpenBLAS from first starting one thread
# per core in every rank when it loads.
environment=("OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-$threads}")
if [ "$np" -eq 1 ]; then
    command=("$bin" "${run_args[@]}")
    say "$cores core(s), $(gib "$avail") available: one process, every role on threads, --threads $threads"
else
    if [ "$(id -u)" = 0 ]; then
        environment+=(OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1)
    fi
    # CMA single-copy needs ptrace rights that containers often lack; copy-in/copy-out always works.
    environment+=("OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}")
    # Ranks run several threads each, so no binding; --oversubscribe because Open MPI counts slots in
    # physical cores and the coordinator (and mostly idle vision ranks) need not have one of their own.
    read -r -a extra <<< "${MPIRUN_ARGS:-}"
    # Cluster/openmpi.conf: the coordinator gets time to write stats.json when mpirun ends the job (and
    # keepalives, for hosts added with MPIRUN_ARGS="--host ...").
    conf=${OPENMPI_CONF-$root/Cluster/openmpi.conf}
    tune=()
    if [ -n "$conf" ]; then
        [ -r "$conf" ] || die "OPENMPI_CONF=$conf is not a readable file"
        tune=(--tune "$conf")
    fi
    command=("${MPIRUN:-mpirun}" -np "$np" --bind-to none --oversubscribe "${tune[@]}" "${extra[@]}" "$bin" "${run_args[@]}")
    say "$cores core(s), $(gib "$avail") available: mpirun -np $np (coordinator + $replicas replica(s) of" \
        "$V vision + $S stage(s)), --threads $threads per rank"
fi
printf '%q ' "${environment[@]}" "${command[@]}" | sed 's/ $//' >&2
echo >&2
[ -z "${DRY_RUN:-}" ] || exit 0
export "${environment[@]}"
exec "${command[@]}"
