#!/usr/bin/env bash
# Round trips of a file across a lossy lab: NODES dhtnode processes, one per
# network namespace, joined by the user-space switch (netlab.sh), which
# drops, delays, reorders and duplicates each Ethernet frame. Nodes and
# tools use their default datagram size off loopback (1452 bytes: nothing
# is cut into IP fragments).
#
#   ./lossy_roundtrip.sh                     24 nodes, 20 % loss, 5 round trips of 2 MB
#   LOSS=0.3 TRIPS=1 ./lossy_roundtrip.sh    30 % loss, one round trip
#
# Environment: NODES (24), LOSS (0.2), DELAY_MS (5), JITTER_MS (2),
# REORDER (0.1), DUPLICATE (0.05), SEED (1), TRIPS (5), SIZE (2088960),
# DHT_BIN_DIR (default ../../bin), DEADLINE (seconds for the whole run, 600).
# Prints one line per round trip ("trip K upload U s download D s") and a
# last line with the medians; exits non-zero if a round trip fails or
# differs. Needs root (network namespaces). Everything it starts is stopped
# by PID, and the lab taken down, also on failure.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${DHT_BIN_DIR:-$ROOT/bin}
NODES=${NODES:-24}
LOSS=${LOSS:-0.2}
DELAY_MS=${DELAY_MS:-5}
JITTER_MS=${JITTER_MS:-2}
REORDER=${REORDER:-0.1}
DUPLICATE=${DUPLICATE:-0.05}
SEED=${SEED:-1}
TRIPS=${TRIPS:-5}
SIZE=${SIZE:-2088960}
DEADLINE=${DEADLINE:-600}
PORT=8000

[ "$(id -u)" = 0 ] || { echo "lossy_roundtrip.sh: needs root (network namespaces)" >&2; exit 2; }
for tool in dhtnode dhtsend dhtrecv dhtping; do
    [ -x "$BIN/$tool" ] || { echo "lossy_roundtrip.sh: $BIN/$tool missing (make all)" >&2; exit 2; }
done

# A lab of its own, whatever else runs.
export NETLAB_PREFIX=${NETLAB_PREFIX:-dl$$}
export NETLAB_STATE=${NETLAB_STATE:-${TMPDIR:-/tmp}/netlab-$NETLAB_PREFIX}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dht-lossy.XXXXXX")
lab() { "$HERE/netlab.sh" "$@"; }
cleanup() {
    status=$?
    lab down >/dev/null 2>&1 || true
    if [ "$status" != 0 ]; then
        for log in "$NETLAB_STATE"/n*.log; do
            [ -f "$log" ] && { echo "--- $(basename "$log")"; tail -n 5 "$log"; } >&2
        done
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
started=$SECONDS
left() { echo $((DEADLINE - (SECONDS - started))); }

lab up "$NODES" --loss "$LOSS" --delay-ms "$DELAY_MS" --jitter-ms "$JITTER_MS" \
    --reorder "$REORDER" --duplicate "$DUPLICATE" --seed "$SEED" >/dev/null
addr() { echo "10.77.0.$(($1 + 1))"; }

# Nodes start one at a time, each once the previous one has joined, so
# that they spread over the shards (as deploy_test_scene.sh does).
joined() {
    lab exec "$1" "$BIN/dhtping" "$(addr "$1")" "$PORT" --stats -W 1 2>/dev/null | grep -q " joined$"
}
for ((i = 0; i < NODES; i++)); do
    seed=()
    [ "$i" -gt 0 ] && seed=("$(addr $((RANDOM % i)))" "$PORT")
    lab bg "$i" "n$i" "$BIN/dhtnode" "$PORT" "${seed[@]}" --bind "$(addr "$i")" \
        --store "$WORK/store$i" >/dev/null
    until joined "$i"; do
        [ "$(left)" -gt 0 ] || { echo "node $i did not join" >&2; exit 1; }
        sleep 0.2
    done
done
# Every shard must have a node before files can be stored whole.
covered() {
    local shards="" i
    for ((i = 0; i < NODES; i++)); do
        shards+=" $(lab exec "$i" "$BIN/dhtping" "$(addr "$i")" "$PORT" --stats -W 1 2>/dev/null |
            sed -n 's/^node [0-9a-f]* shard \([0-9]*\) .*/\1/p')"
    done
    [ "$(printf '%s\n' $shards | sort -un | wc -l)" -ge 16 ]
}
until covered; do
    [ "$(left)" -gt 0 ] || { echo "some shard has no node" >&2; exit 1; }
    sleep 1
done
echo "$NODES nodes joined across the lab, every shard covered, in $((SECONDS - started)) s"

head -c "$SIZE" /dev/urandom >"$WORK/sample.bin"
ups=()
downs=()
for ((t = 1; t <= TRIPS; t++)); do
    from=$((t % NODES))
    to=$(((t + NODES / 2) % NODES))
    rm -f "$WORK/sample.out"
    a=$(date +%s%N)
    # Joining takes a few exchanges: at 30 % loss the default 5 s is not
    # always enough.
    hash=$(lab exec "$from" timeout "$(left)" "$BIN/dhtsend" -q --no-verify --connect-timeout 30 \
        "$WORK/sample.bin" "$(addr $(((from + 1) % NODES)))" "$PORT")
    b=$(date +%s%N)
    lab exec "$to" timeout "$(left)" "$BIN/dhtrecv" -q --connect-timeout 30 "$hash" \
        "$(addr $(((to + 1) % NODES)))" "$PORT" -o "$WORK/sample.out"
    c=$(date +%s%N)
    cmp -s "$WORK/sample.bin" "$WORK/sample.out" || { echo "trip $t: the file differs" >&2; exit 1; }
    up=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    down=$(awk -v b="$b" -v c="$c" 'BEGIN { printf "%.3f", (c - b) / 1e9 }')
    ups+=("$up")
    downs+=("$down")
    echo "trip $t upload $up s download $down s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "loss $LOSS: $TRIPS of $TRIPS round trips of $SIZE bytes identical; median upload $(median "${ups[@]}") s, download $(median "${downs[@]}") s"
lab stats 2>/dev/null | tail -n 3 || true
