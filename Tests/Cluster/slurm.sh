#!/usr/bin/env bash
# Slurm in CI: a real one-node Slurm (Debian's slurmctld + slurmd + munge) runs
# Cluster/slurm/paligemma.sbatch with the demo model, once per launcher (LAUNCHER=srun: srun --mpi=pmix;
# LAUNCHER=mpirun), and checks what an operator relies on:
#   - `scancel --signal=USR1 --batch JOB` in the middle of the run: rank 0 puts what it has in complete
#     shards and writes stats.json (outcome "interrupted", signal SIGUSR1), the batch script requeues;
#   - the requeued job runs again (SLURM_RESTART_COUNT = 1) and completes;
#   - every manifest id has exactly one record, and the records equal those of a one-process
#     `paligemma run` of the same manifest (timings aside).
#
#   sudo bash Tests/Cluster/slurm.sh
#   PALIGEMMA=path/to/paligemma   the binary (default: builds .build/release/paligemma)
#   LAUNCHERS="srun mpirun"       the variants to run;  KEEP_LOGS=DIR  copies the daemons' and jobs' logs there
#
# Needs root (it installs slurmctld, slurmd, slurm-client and munge with apt-get when missing and starts
# the daemons); prints SKIP and exits 0 where it is not root or cannot install them. The cluster's
# configuration, state and logs live in a temporary folder (SLURM_CONF points there), so /etc/slurm is
# not touched; munged runs with the package's key (/etc/munge/munge.key, made when missing) unless
# one is already running. Every daemon this script starts is stopped by its pid at the end, also
# when a check fails. Every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
t0=$SECONDS
say() { echo "slurm.sh [$((SECONDS - t0)) s]: $*"; }
skip() { echo "slurm.sh: SKIP: $*"; exit 0; }
fail() { echo "slurm.sh: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root (installs Slurm and munge, starts slurmctld and slurmd); run it with sudo"
[ "$(uname -s)" = Linux ] && command -v dpkg-query >/dev/null && command -v apt-get >/dev/null ||
    skip "needs Debian's apt-get to install Slurm"
for daemon in slurmctld slurmd; do
    if pgrep -x "$daemon" >/dev/null; then skip "a $daemon runs on this machine already; this test starts its own"; fi
done

# -- Slurm and munge from Debian ---------------------------------------------------------------------
missing=()
for p in slurmctld slurmd slurm-client munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    # Keep the packages' scripts from starting daemons of their own (no init system runs them here,
    # and this test stops only what it starts).
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"
    fi
    export DEBIAN_FRONTEND=noninteractive
    installed=0
    if timeout 600 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then installed=1
    elif timeout 300 apt-get update -qq &&
         timeout 600 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
        installed=1
    fi
    if [ -n "$policy" ]; then rm -f "$policy"; fi
    [ "$installed" = 1 ] || skip "apt-get could not install ${missing[*]}"
    say "installed"
fi
for tool in slurmctld slurmd sbatch srun scontrol scancel sinfo munged munge unmunge; do
    command -v "$tool" >/dev/null || skip "$tool is not on PATH after installing Slurm and munge"
done
command -v mpirun >/dev/null || fail "mpirun is missing: run Launch/setup.sh (openmpi-bin) first"
command -v python3 >/dev/null || fail "python3 is missing (it checks the records)"

# -- the binary ------------------------------------------------------------------------------------
bin=${PALIGEMMA:-}
if [ -z "$bin" ]; then
    say "building the release binary (PALIGEMMA=path skips this)"
    timeout 3600 swift build -c release --product paligemma >/dev/null
    bin=$repo/.build/release/paligemma
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
[ -x "$bin" ] || fail "PALIGEMMA=$bin is not an executable"

# -- clean-up, whatever happens --------------------------------------------------------------------
work=$(mktemp -d /tmp/paligemma-slurm.XXXXXX)
chmod 755 "$work"
munged_pid="" jobs_submitted=()
stop_pid() {   # stop_pid NAME PID: SIGTERM, then SIGKILL after 10 s
    local name=$1 pid=$2 i
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    echo "slurm.sh: $name (pid $pid) did not stop within 10 s: SIGKILL" >&2
    kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
    local status=$? i
    trap - EXIT INT TERM
    if ((${#jobs_submitted[@]})) && [ -s "$work/slurmctld.pid" ]; then
        scancel "${jobs_submitted[@]}" 2>/dev/null || true
        # slurmd ends the job's processes; give it 20 s before the daemons go.
        for ((i = 0; i < 100; i++)); do
            [ -z "$(squeue -h -j "$(IFS=,; echo "${jobs_submitted[*]}")" -t RUNNING,COMPLETING 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    [ -s "$work/slurmd.pid" ] && stop_pid slurmd "$(cat "$work/slurmd.pid")"
    [ -s "$work/slurmctld.pid" ] && stop_pid slurmctld "$(cat "$work/slurmctld.pid")"
    stop_pid munged "$munged_pid"
    if [ "$status" != 0 ]; then
        for log in "$work"/*.log; do
            [ -f "$log" ] || continue
            echo "---- last lines of $log" >&2; tail -n 25 "$log" >&2
        done
    fi
    if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS" && cp "$work"/*.log "$KEEP_LOGS"/ 2>/dev/null || true; fi
    rm -rf "$work"
    say "$([ "$status" = 0 ] && echo passed || echo "failed (status $status)")"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_for SECONDS WHAT COMMAND...: polls COMMAND every 0.2 s; fails naming WHAT after SECONDS.
wait_for() {
    local limit=$1 what=$2 start=$SECONDS
    shift 2
    until "$@"; do
        [ $((SECONDS - start)) -lt "$limit" ] || fail "no $what within $limit s"
        sleep 0.2
    done
}

# -- munge -----------------------------------------------------------------------------------------
t=$SECONDS
if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munged runs already: using it"
else
    [ -s /etc/munge/munge.key ] || mungekey -c -f >/dev/null
    install -d -o munge -g munge -m 755 /run/munge
    runuser -u munge -- /usr/sbin/munged
    munged_pid=$(cat /run/munge/munged.pid 2>/dev/null || true)
    wait_for 10 "munge credential" sh -c 'munge -n </dev/null | unmunge >/dev/null 2>&1'
fi

# -- a one-node cluster (docs/operations.md, section 4) --------------------------------------------
host=$(hostname -s)
# A host name that does not resolve gets the loopback address (Slurm's daemons reach each other by name).
controller=$host node_address=""
if ! getent hosts "$host" >/dev/null; then controller="$host(127.0.0.1)" node_address="NodeAddr=127.0.0.1"; fi
cpus=$(nproc)
memory_mb=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.8 }' /proc/meminfo)
mkdir -p "$work/state" "$work/spool"
export SLURM_CONF=$work/slurm.conf
cat > "$SLURM_CONF" <<EOF
ClusterName=ci
SlurmctldHost=$controller
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
JobRequeue=1
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$host $node_address CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
node_idle() { [ "$(sinfo -h -o %T 2>/dev/null)" = idle ]; }
wait_for 60 "idle node (sinfo -h -o %T)" node_idle
srun --mpi=list 2>&1 | grep -q pmix || fail "this Slurm offers no PMIx (srun --mpi=list): $(srun --mpi=list 2>&1 | tr '\n' ' ')"
say "cluster up in $((SECONDS - t)) s: node $host, $cpus CPUs, Slurm $(sinfo -V | awk '{print $2}')"

# -- the job and its expected records --------------------------------------------------------------
# The demo scenes of Launch/demo.sh, one shard per 4 records; a vision rank that sleeps 0.4 s per batch
# (PALIGEMMA_TEST_SLOW_VISION, Sources/PaliRun/TestHooks.swift) keeps the run long enough to be
# signalled in the middle. Records of any layout are equal bit for bit under PALIGEMMA_BATCH_INVARIANT.
model=$repo/models/paligemma-shapes
manifest=$repo/Launch/demo-data/manifest.jsonl
run_flags=(--max-tokens 24 --shard-size 4 --progress-interval 5)
export PALIGEMMA_BATCH_INVARIANT=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none PALIGEMMA_CACHE_DIR=$work/cache
t=$SECONDS
timeout 300 "$bin" run --model "$model" --manifest "$manifest" --output-dir "$work/reference" "${run_flags[@]}" \
    > "$work/reference.log" 2>&1 || fail "the one-process reference run failed (see $work/reference.log)"
say "one-process reference run: $((SECONDS - t)) s"

# check OUTPUT_DIR: every manifest id exactly once, records equal to the reference's (timings aside).
check_records() {
    python3 - "$manifest" "$work/reference" "$1" <<'EOF'
import glob, json, os, sys
manifest, reference, output = sys.argv[1:]
ids = [json.loads(line)["id"] for line in open(manifest) if line.strip()]
def records(folder):
    found = {}
    for shard in sorted(glob.glob(os.path.join(folder, "shard-*.jsonl"))):
        for line in open(shard):
            record = json.loads(line)
            record.pop("timings", None)
            found.setdefault(record["id"], []).append(record)
    return found
want, got = records(reference), records(output)
problems = [f"{i}: {len(got.get(i, []))} records" for i in ids if len(got.get(i, [])) != 1]
problems += [f"{i}: not in the manifest" for i in got if i not in ids]
problems += [f"{i}: differs from the one-process run:\n  {got[i][0]}\n  {want[i][0]}"
             for i in ids if len(got.get(i, [])) == 1 and got[i][0] != want[i][0]]
if problems:
    sys.exit("records of " + output + ":\n" + "\n".join(problems[:10]))
print(f"{len(ids)} ids, each exactly once, records equal to the one-process run")
EOF
}

# stats_says FILE EXPRESSION: whether the Python EXPRESSION holds of stats.json (as `s`).
stats_says() { python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2"; }

job_field() { scontrol show job "$1" -o 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# run_variant LAUNCHER: submit, signal mid-run, check the flush, the requeue, the resumed run's records.
run_variant() {
    local launcher=$1 out=$work/out-$1 log=$work/job-$1.log job t=$SECONDS
    # 3 ranks (coordinator, vision, decoder) of one CPU each on a node that may have 2: --overcommit,
    # or the job pends for ever.
    job=$(MODEL=$model MANIFEST=$manifest OUTPUT_DIR=$out LAUNCHER=$launcher PALIGEMMA=$bin \
          PALIGEMMA_TEST_SLOW_VISION=0.4 STOP_GRACE=60 \
          sbatch --parsable --job-name="pg-$launcher" --ntasks=3 --cpus-per-task=1 --overcommit \
                 --mem-per-cpu=256M --time=10 --output="$log" \
                 "$repo/Cluster/slurm/paligemma.sbatch" "${run_flags[@]}")
    jobs_submitted+=("$job")
    say "$launcher: job $job submitted"
    first_shard() {
        compgen -G "$out/shard-*.jsonl" >/dev/null && return 0
        local state
        state=$(job_field "$job" JobState)
        case $state in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY)
            fail "job $job ($launcher) ended $state before its first shard (log: $log)" ;;
        esac
        return 1
    }
    wait_for 120 "complete shard of job $job ($launcher)" first_shard
    scancel --signal=USR1 --batch "$job"
    say "$launcher: SIGUSR1 sent to the batch script of job $job ($(ls "$out"/shard-*.jsonl | wc -l) shards so far)"

    # The flush: the interrupted run's stats.json, read before the requeued run (which starts
    # cred_expire = 10 s later at the earliest) replaces it.
    interrupted() { grep -q '"outcome" *: *"interrupted"' "$out/stats.json" 2>/dev/null; }
    wait_for 60 "stats.json with outcome interrupted (job $job, $launcher)" interrupted
    local done_before total
    done_before=$(cat "$out"/shard-*.jsonl | wc -l) total=$(grep -c . "$manifest")
    [ "$done_before" -gt 0 ] && [ "$done_before" -lt "$total" ] ||
        fail "job $job ($launcher): $done_before of $total records after SIGUSR1: the signal did not land mid-run"
    # Every record the run processed is in a complete shard (nothing left in a .tmp).
    stats_says "$out/stats.json" "s['signal'] == 'SIGUSR1' and s['records']['processed'] == $done_before" ||
        fail "job $job ($launcher): the interrupted run's stats.json does not say SIGUSR1 and $done_before records: $(cat "$out/stats.json")"
    say "$launcher: run 1 stopped with $done_before records in complete shards"

    requeued() { [ "$(job_field "$job" Restarts)" = 1 ]; }
    wait_for 60 "requeue of job $job ($launcher)" requeued
    finished() { case $(job_field "$job" JobState) in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) true ;; *) false ;; esac; }
    wait_for 180 "end of the requeued job $job ($launcher)" finished
    local state exit_code
    state=$(job_field "$job" JobState) exit_code=$(job_field "$job" ExitCode)
    [ "$state" = COMPLETED ] && [ "$exit_code" = 0:0 ] ||
        fail "job $job ($launcher) ended $state, exit code $exit_code (log: $log)"
    grep -q "forwarding it to $launcher" "$log" || fail "job $job ($launcher): the batch script did not forward SIGUSR1"
    # The run stopped by itself (138 = 128 + SIGUSR1), not by STOP_GRACE running out.
    grep -q "$launcher exited with status 138" "$log" && grep -q "interrupted before the time limit: requeueing job $job" "$log" ||
        fail "job $job ($launcher): the run did not stop with status 138 after SIGUSR1, or the batch script did not requeue it"
    if grep -q "aborts the job" "$log"; then fail "job $job ($launcher): a rank aborted: $(grep "aborts the job" "$log")"; fi
    grep -q "run 2 (restarts so far: 1)" "$log" || fail "job $job ($launcher): no second run with SLURM_RESTART_COUNT=1"
    stats_says "$out/stats.json" "s['outcome'] == 'complete' and s['records']['skipped_done'] == $done_before and s['records']['processed'] == $total - $done_before" ||
        fail "job $job ($launcher): the resumed run's stats.json does not say it skipped $done_before and did the rest: $(cat "$out/stats.json")"
    check_records "$out" || fail "job $job ($launcher): records"
    say "$launcher: job $job passed in $((SECONDS - t)) s (signal, flush, requeue, exactly-once resume)"
}

for launcher in ${LAUNCHERS:-srun mpirun}; do run_variant "$launcher"; done
say "total $((SECONDS - t0)) s"
