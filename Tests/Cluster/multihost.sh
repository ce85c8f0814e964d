#!/usr/bin/env bash
# Multi-host test of `paligemma run` on one machine: three hosts made of network namespaces (pgt1..3 on a
# bridge, br-pgt, 10.79.0.0/24), Open MPI over TCP with Cluster/openmpi.conf, the demo model and scenes
# (models/paligemma-shapes, Launch/demo-data). Checks:
#   1. np 3 and np 5 across the hosts (--map-by node) give the records of a one-process run;
#   2. faults mid-job: a cut link (the decoder stage's host), a killed host (SIGKILL to every process of
#      the vision rank's host), a frozen host (SIGSTOP to every process of the decoder stage's host):
#      every process of the job (paligemma, orted, mpirun) is gone within 30 s, with a non-zero status;
#      the abort names the rank, its role and its host; stats.json says "failed" with the reason;
#   3. a rerun after each fault resumes: every id exactly once, records equal to the one-process run.
# Needs root (ip netns); without it, or where namespaces cannot be made, it prints SKIP and exits 0.
# Cleans up (namespaces, veths, bridge, /etc/hosts lines, processes) on every exit, passing or not.
#
#   PALIGEMMA=.build/release/paligemma bash Tests/Cluster/multihost.sh
#
# Takes about 75 s with a release binary, 3-4 min with a debug one (2-core Xeon shared with builds).
# Environment: PALIGEMMA (the binary; default .build/release/paligemma, else .build/debug/paligemma),
# KEEP_WORK=1 (keep the work folder), MEASURE_OUTAGE="8 14" (also measure link outages of those seconds:
# whether the job survives them; slow, for docs/operations.md), PHASES (a subset of the default
# "ranks link-cut host-kill host-freeze").
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
say() { printf '[multihost %6.1fs] %s\n' "$(elapsed)" "$*"; }
start_clock=$(date +%s.%N)
elapsed() { awk -v a="$start_clock" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
failures=0
fail() { say "FAIL: $*"; failures=$((failures + 1)); }
skip() { echo "SKIP: Tests/Cluster/multihost.sh: $*"; exit 0; }

# --- may this machine run it? -------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces); run it as root or in CI"
for tool in ip unshare mpirun python3; do command -v "$tool" >/dev/null || skip "$tool is not installed"; done
bin=${PALIGEMMA:-}
if [ -z "$bin" ]; then
    for candidate in "$root/.build/release/paligemma" "$root/.build/debug/paligemma"; do
        [ -x "$candidate" ] && { bin=$candidate; break; }
    done
fi
[ -n "$bin" ] && [ -x "$bin" ] || { echo "multihost: give PALIGEMMA=path/to/paligemma (swift build -c release --product paligemma)"; exit 2; }
case "$bin" in /*) ;; *) bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin") ;; esac

hosts=(pgt1 pgt2 pgt3)
bridge=br-pgt
net=10.79.0
marker="# paligemma-multihost-test"
for h in "${hosts[@]}"; do
    if ip netns list | grep -qw "$h"; then
        echo "multihost: network namespace $h exists already (another run of this test, or one that was killed):"
        echo "           remove it (ip netns del $h; ip link del $bridge) once no such run is alive"; exit 2
    fi
done
if ! ip netns add pgt-probe 2>/dev/null; then skip "ip netns add is not allowed here"; fi
ip netns del pgt-probe

work=$(mktemp -d /tmp/pg-multihost.XXXXXX)
mpirun_pid=""

# --- clean up whatever happens -------------------------------------------------------------------------
cleanup() {
    set +e
    # The job's guard and the mpirun it started (its child).
    if [ -n "$mpirun_pid" ]; then pkill -KILL -P "$mpirun_pid" 2>/dev/null; kill -KILL "$mpirun_pid" 2>/dev/null; fi
    for h in "${hosts[@]}"; do
        pids=$(ip netns pids "$h" 2>/dev/null)
        # A frozen host's processes: SIGKILL works on stopped processes too.
        [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
    done
    sleep 0.2
    for h in "${hosts[@]}"; do ip netns del "$h" 2>/dev/null; done
    for i in 1 2 3; do ip link del "veth-pgt$i" 2>/dev/null; done
    ip link del "$bridge" 2>/dev/null
    if grep -q "$marker" /etc/hosts; then
        # Rewrite in place (a container's /etc/hosts is often a bind mount that cannot be replaced).
        grep -v "$marker" /etc/hosts > "$work/hosts.kept" && cat "$work/hosts.kept" > /etc/hosts
    fi
    if [ "${KEEP_WORK:-}" = 1 ] || [ "$failures" -gt 0 ]; then
        echo "multihost: work folder kept: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- three hosts ---------------------------------------------------------------------------------------
t=$(now)
ip link add "$bridge" type bridge && ip addr add "$net.1/24" dev "$bridge" && ip link set "$bridge" up \
    || { echo "multihost: cannot make bridge $bridge"; exit 2; }
for i in 1 2 3; do
    h=pgt$i
    ip netns add "$h" \
        && ip link add "veth-pgt$i" type veth peer name eth0 netns "$h" \
        && ip link set "veth-pgt$i" master "$bridge" && ip link set "veth-pgt$i" up \
        && ip -n "$h" addr add "$net.1$i/24" dev eth0 && ip -n "$h" link set eth0 up && ip -n "$h" link set lo up \
        || { echo "multihost: cannot make host $h"; exit 2; }
    echo "$net.1$i $h $marker" >> /etc/hosts
done
# Open MPI starts its daemons through this instead of ssh; each host gets its own host name, or the
# per-host session folders of Open MPI collide in the shared /tmp.
cat > "$work/rsh" <<'EOF'
#!/bin/sh
host=$1; shift; exec ip netns exec "$host" unshare --uts sh -c "hostname $host; $*"
EOF
chmod +x "$work/rsh"
say "3 hosts up in $(since "$t") s (pgt1..3 = $net.11-13 on $bridge)"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export PALIGEMMA_BATCH_INVARIANT=1 PALIGEMMA_CACHE_DIR="$work/cache" OPENBLAS_NUM_THREADS=1
model=$root/models/paligemma-shapes
manifest=$root/Launch/demo-data/manifest.jsonl
job_args=(run --model "$model" --manifest "$manifest" --max-tokens 40 --shard-size 12 --threads 1
          --vision-batch 1 --progress-interval 2)

# mpirun_job OUT LOG NP [VAR=VALUE...]: starts the job across the hosts in the background (mpirun_pid:
# Cluster/mpirun-guard.sh, which ends mpirun if it outlives the coordinator, as with a frozen host).
mpirun_job() {
    local out=$1 log=$2 np=$3; shift 3
    local exports=(-x PALIGEMMA_BATCH_INVARIANT -x PALIGEMMA_CACHE_DIR -x OPENBLAS_NUM_THREADS)
    local assignment
    for assignment in "$@"; do exports+=(-x "$assignment"); done
    "$root/Cluster/mpirun-guard.sh" "$out" mpirun --tune "$root/Cluster/openmpi.conf" --host pgt1:4,pgt2:4,pgt3:4 -np "$np" --map-by node \
        --bind-to none --oversubscribe --mca plm_rsh_agent "$work/rsh" \
        --mca oob_tcp_if_include "$net.0/24" --mca btl self,tcp --mca btl_tcp_if_include "$net.0/24" \
        "${exports[@]}" "$bin" "${job_args[@]}" --output-dir "$out" > "$log" 2>&1 &
    mpirun_pid=$!
}

# Processes of the job left on the hosts (every process in a test namespace is the job's) and mpirun.
leftovers() {
    local h pids
    for h in "${hosts[@]}"; do
        pids=$(ip netns pids "$h" 2>/dev/null | tr '\n' ' ')
        [ -z "${pids// /}" ] || echo "$h: $(ps -o pid=,stat=,comm= -p ${pids// /,} 2>/dev/null | tr -s ' \n' ' ')"
    done
    if [ -n "$mpirun_pid" ] && kill -0 "$mpirun_pid" 2>/dev/null; then echo "mpirun $mpirun_pid"; fi
}

# wait_job SECONDS: waits (bounded) for mpirun to exit; sets job_rc (124 when it did not).
wait_job() {
    local deadline=$(( $(date +%s) + $1 ))
    while kill -0 "$mpirun_pid" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
    if kill -0 "$mpirun_pid" 2>/dev/null; then job_rc=124; return; fi
    wait "$mpirun_pid"; job_rc=$?
}

# compare OUT LABEL: OUT's records against the one-process run's: each id once, equal fields.
compare() {
    python3 - "$work/reference" "$1" "$2" <<'EOF' || fail "$2: records differ from the one-process run"
import glob, json, os, sys
reference, out, label = sys.argv[1:]
VOLATILE = {"timings", "vision_s", "prefill_s", "decode_s", "total_s"}
def load(folder):
    records, seen = {}, []
    for path in sorted(glob.glob(os.path.join(folder, "shard-*.jsonl"))):
        for line in open(path):
            record = json.loads(line)
            key = (record["id"], record.get("prompt_index"))
            seen.append(key)
            records[key] = {k: v for k, v in record.items() if k not in VOLATILE}
    return records, seen
want, _ = load(reference)
got, seen = load(out)
duplicates = len(seen) - len(set(seen))
missing = sorted(set(want) - set(got))
different = [k for k in want if k in got and got[k] != want[k]]
tmp = [n for n in os.listdir(out) if n.endswith(".tmp")]
print(f"{label}: {len(seen)} records, {duplicates} duplicates, {len(missing)} missing, {len(different)} different, "
      f"{len(tmp)} temporary shards left")
for key in different[:3]:
    print("  differs:", key, json.dumps(want[key])[:300], "\n       vs:", json.dumps(got[key])[:300])
sys.exit(0 if duplicates == 0 and not missing and not different and len(got) == len(want) and not tmp else 1)
EOF
}

# reach SRC DST: a TCP connection from host SRC to host DST's address opens within 1 s (a listener in
# DST's namespace for the moment; the job's processes are all gone when this runs).
reach() {
    local ip=$net.1${2#pgt} lpid rc
    ip netns exec "$2" timeout 3 python3 -c 'import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 7999)); s.listen(1); s.settimeout(3); s.accept()' "$ip" 2>/dev/null &
    lpid=$!
    sleep 0.3
    ip netns exec "$1" python3 -c 'import socket, sys; socket.create_connection((sys.argv[1], 7999), 1)' "$ip" 2>/dev/null
    rc=$?
    kill "$lpid" 2>/dev/null; wait "$lpid" 2>/dev/null
    return $rc
}

# links_back HOST NAME: after HOST's link is restored, waits (bounded, 20 s) until it and every other host
# reach each other. A rerun started at once after the cut was undone once failed to start Open MPI's
# daemons (pgt3's connect() to pgt2 timed out) and hung until the test's limit.
links_back() {
    local host=$1 name=$2 t=$(now) deadline=$(( $(date +%s) + 20 )) ok o
    while :; do
        ok=1
        for o in "${hosts[@]}"; do
            [ "$o" != "$host" ] || continue
            reach "$host" "$o" && reach "$o" "$host" || { ok=0; break; }
        done
        [ "$ok" = 0 ] && [ "$(date +%s)" -lt "$deadline" ] || break
        sleep 0.5
    done
    if [ "$ok" = 1 ]; then say "$name: $host reaches every host again after $(since "$t") s"
    else fail "$name: $host's link did not come back within 20 s"; fi
}

# first_record LOG SECONDS: waits (bounded) until rank 0 reports a finished record (the job is mid-way;
# the records themselves stay in the writer's buffer until their shard is complete).
first_record() {
    local deadline=$(( $(date +%s) + $2 ))
    while [ "$(date +%s)" -lt "$deadline" ] && kill -0 "$mpirun_pid" 2>/dev/null; do
        if grep -Eq '^progress [1-9]' "$1" 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    return 1
}

phases=${PHASES:-ranks link-cut host-kill host-freeze}

# --- records across hosts equal one process -------------------------------------------------------------
t=$(now)
"$bin" "${job_args[@]}" --output-dir "$work/reference" > "$work/reference.log" 2>&1 \
    || { cat "$work/reference.log"; fail "the one-process run failed"; exit 1; }
say "one-process reference run: $(since "$t") s, $(cat "$work"/reference/shard-*.jsonl | wc -l) records"

if [[ " $phases " == *" ranks "* ]]; then
    for np in 3 5; do
        t=$(now)
        mpirun_job "$work/np$np" "$work/np$np.log" "$np"
        wait_job 180
        if [ "$job_rc" != 0 ]; then tail -30 "$work/np$np.log"; fail "np $np across 3 hosts: exit $job_rc"; continue; fi
        hosts_seen=$(grep -o 'on pgt[0-9]' "$work/np$np.log" | sort -u | tr '\n' ' ')
        say "np $np across 3 hosts: exit 0 in $(since "$t") s"
        compare "$work/np$np" "np $np"
    done
fi

# --- faults --------------------------------------------------------------------------------------------
# fault NAME HOST WHAT: starts a slowed np-3 job (rank 0 on pgt1, the vision rank on pgt2, the decoder
# stage on pgt3), waits for its first record, does WHAT to HOST, checks that everything ends within 30 s,
# undoes the fault, reruns and checks the records.
fault() {
    local name=$1 host=$2 what=$3 out=$work/$1
    local i=${host#pgt}
    say "--- $name: $what on $host"
    local t=$(now)
    mpirun_job "$out" "$out.log" 3 PALIGEMMA_TEST_SLOW_VISION=2
    if ! first_record "$out.log" 90; then tail -30 "$out.log"; fail "$name: no record within 90 s"; return; fi
    say "$name: first record after $(since "$t") s; $what on $host"
    local cut=$(now)
    case $what in
        cut) ip link set "veth-pgt$i" down ;;
        kill) kill -KILL $(ip netns pids "$host") ;;
        freeze) kill -STOP $(ip netns pids "$host") ;;
    esac
    wait_job 60
    local ended=$(since "$cut")
    # Every process of the job, on every host, within 30 s (a frozen host's processes cannot end: they
    # are stopped; they must be gone once it thaws).
    local deadline=$(( $(date +%s) + 30 )) left
    while :; do
        if [ "$what" = freeze ]; then left=$(leftovers | grep -v "^$host:"); else left=$(leftovers); fi
        [ -n "$left" ] && [ "$(date +%s)" -lt "$deadline" ] || break
        sleep 0.2
    done
    local gone=$(since "$cut")
    say "$name: mpirun exit $job_rc after $ended s; every process gone after $gone s"
    [ "$job_rc" != 0 ] && [ "$job_rc" != 124 ] || fail "$name: mpirun exit status $job_rc (want non-zero, within 60 s)"
    [ -z "$left" ] || fail "$name: processes left $gone s after the fault: $left"
    awk -v g="$gone" 'BEGIN { exit !(g <= 30) }' || fail "$name: the job took $gone s to end (limit 30 s)"
    # What the operator is told.
    grep -E "aborts the job|did not answer|lost communication|silent" "$out.log" | head -4 | sed 's/^/    /'
    if [ "$what" != kill ] || [ "$host" != pgt1 ]; then
        python3 - "$out/stats.json" "$name" <<'EOF' || fail "$name: stats.json does not say failed with a reason"
import json, sys
path, name = sys.argv[1:]
stats = json.load(open(path))
error = stats.get("error", "")
print(f"    stats.json: outcome {stats.get('outcome')!r}, error {error[:160]!r}")
sys.exit(0 if stats.get("outcome") == "failed" and "pgt" in error else 1)
EOF
    fi
    case $what in
        cut) ip link set "veth-pgt$i" up; links_back "$host" "$name" ;;
        freeze)
            local pids=$(ip netns pids "$host")
            [ -z "$pids" ] || kill -CONT $pids 2>/dev/null
            local d=$(( $(date +%s) + 30 )) thawed=$(now)
            while [ -n "$(ip netns pids "$host")" ] && [ "$(date +%s)" -lt "$d" ]; do sleep 0.2; done
            if [ -n "$(ip netns pids "$host")" ]; then fail "$name: $host's processes still there 30 s after it thawed: $(leftovers)"
            else say "$name: $host thawed: its processes gone after $(since "$thawed") s"; fi ;;
    esac
    kill -KILL $(ip netns pids "$host") 2>/dev/null
    t=$(now)
    mpirun_job "$out" "$out.rerun.log" 3
    wait_job 180
    [ "$job_rc" = 0 ] || { tail -20 "$out.rerun.log"; fail "$name: rerun exit $job_rc"; }
    grep -E "removed .* temporary shard|resuming" "$out.rerun.log" | head -2 | sed 's/^/    /'
    say "$name: rerun exit $job_rc in $(since "$t") s"
    compare "$out" "$name rerun"
}

[[ " $phases " != *" link-cut "* ]] || fault link-cut pgt3 cut
[[ " $phases " != *" host-kill "* ]] || fault host-kill pgt2 kill
[[ " $phases " != *" host-freeze "* ]] || fault host-freeze pgt3 freeze

# --- optional: how long an outage the job survives ------------------------------------------------------
for seconds in ${MEASURE_OUTAGE:-}; do
    out=$work/outage$seconds
    mpirun_job "$out" "$out.log" 3 PALIGEMMA_TEST_SLOW_VISION=2
    first_record "$out.log" 90 || { fail "outage $seconds: no record"; continue; }
    ip link set veth-pgt3 down; sleep "$seconds"; ip link set veth-pgt3 up
    back=$(now)
    wait_job 240
    say "outage of $seconds s: exit $job_rc, $(since "$back") s after the link came back; $(jq -r .outcome "$out/stats.json" 2>/dev/null)"
    kill -KILL $(leftovers | grep -o '[0-9]\+' ) 2>/dev/null
done

say "done: $failures failure(s)"
[ "$failures" = 0 ]
