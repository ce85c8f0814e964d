#!/usr/bin/env bash
# Runs an mpirun command line of `paligemma run` and makes sure mpirun ends once the job has.
#
#   Cluster/mpirun-guard.sh OUTPUT_DIR mpirun --tune Cluster/openmpi.conf ... paligemma run ... --output-dir OUTPUT_DIR
#
# Why: Open MPI 4.1's mpirun waits for the daemon (orted) of every host to report its ranks gone. A host
# whose processes are frozen while its kernel still answers TCP (SIGSTOP, processes stuck in the kernel
# on a dead filesystem) never reports and never looks lost to the TCP keepalives, so mpirun waits
# forever, although rank 0 has noticed the silent rank, written stats.json ("failed", naming the rank,
# its role and host) and aborted the job, and every other host's ranks are gone. One SIGTERM ends
# mpirun then (measured: Tests/Cluster/multihost.sh).
#
# What it does: starts the command, passes SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 on to it, and
# watches OUTPUT_DIR/stats.json, which the coordinator writes as its last act. Once this run has
# written it, mpirun gets GUARD_GRACE seconds to exit (default 5 when the outcome is "failed", else 30),
# then SIGTERM, then SIGKILL 10 s later. Exits with mpirun's status.
set -uo pipefail

say() { echo "mpirun-guard: $*" >&2; }
[ $# -ge 2 ] || { say "usage: $0 OUTPUT_DIR mpirun ARGS... (see the header of this file)"; exit 2; }
stats=$1/stats.json
shift

# stats.json is replaced atomically (a new inode) each time it is written.
fingerprint() { stat -c '%i %Y' "$stats" 2>/dev/null || echo none; }
before=$(fingerprint)

"$@" &
pid=$!
for signal in TERM INT HUP USR1 USR2; do
    # shellcheck disable=SC2064  # the pid and signal are fixed now
    trap "kill -$signal $pid 2>/dev/null" "$signal"
done

deadline="" terminated=""
while kill -0 "$pid" 2>/dev/null; do
    now=$(date +%s)
    if [ -z "$deadline" ] && [ "$(fingerprint)" != "$before" ]; then
        if grep -q '"outcome" *: *"failed"' "$stats" 2>/dev/null; then grace=${GUARD_GRACE:-5}; else grace=${GUARD_GRACE:-30}; fi
        deadline=$(( now + grace ))
    fi
    if [ -n "$deadline" ] && [ -z "$terminated" ] && [ "$now" -ge "$deadline" ]; then
        say "the coordinator wrote $stats $grace s ago but mpirun is still running (waiting on a host whose" \
            "processes are frozen?): sending it SIGTERM"
        kill -TERM "$pid" 2>/dev/null
        terminated=$now
    fi
    if [ -n "$terminated" ] && [ "$now" -ge $(( terminated + 10 )) ]; then
        say "mpirun did not end 10 s after SIGTERM: sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null
    fi
    sleep 0.5
done
wait "$pid"
