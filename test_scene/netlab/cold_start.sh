#!/usr/bin/env bash
# Cold start across namespaces: NODES dhtnode processes, one per network
# namespace, all started at once (every one seeded with node 0, which starts
# a moment earlier), then an upload of a file through node 1 as soon as the
# last node has started, and a download of it through another node.
#
#   ./cold_start.sh                 16 nodes, clean links, 1 MB file
#   LOSS=0.05 ./cold_start.sh       the same with 5 % frame loss
#
# Environment: NODES (16), LOSS (0), DELAY_MS (1), SIZE (1000000),
# WATCH (seconds to follow the shards after the start, 20), DHT_BIN_DIR
# (default ../../bin). Prints how long the upload took after the last
# start (and whether dhtsend said it waited for a shard), when every shard
# first had a node, and every shard move the nodes logged; exits non-zero
# if the upload or the download fails, or a node moved back to a shard it
# left. Needs root. Everything it starts is stopped by PID, and the lab
# taken down, also on failure.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${DHT_BIN_DIR:-$ROOT/bin}
NODES=${NODES:-16}
LOSS=${LOSS:-0}
DELAY_MS=${DELAY_MS:-1}
SIZE=${SIZE:-1000000}
WATCH=${WATCH:-20}
PORT=8000

[ "$(id -u)" = 0 ] || { echo "cold_start.sh: needs root (network namespaces)" >&2; exit 2; }
for tool in dhtnode dhtsend dhtrecv dhtping; do
    [ -x "$BIN/$tool" ] || { echo "cold_start.sh: $BIN/$tool missing (make all)" >&2; exit 2; }
done

export NETLAB_PREFIX=${NETLAB_PREFIX:-dc$$}
export NETLAB_STATE=${NETLAB_STATE:-${TMPDIR:-/tmp}/netlab-$NETLAB_PREFIX}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dht-cold.XXXXXX")
lab() { "$HERE/netlab.sh" "$@"; }
cleanup() {
    status=$?
    lab down >/dev/null 2>&1 || true
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

lab up "$NODES" --loss "$LOSS" --delay-ms "$DELAY_MS" --seed 7 >/dev/null
addr() { echo "10.77.0.$(($1 + 1))"; }
shard_of() {
    lab exec "$1" "$BIN/dhtping" "$(addr "$1")" "$PORT" --stats -W 1 2>/dev/null |
        sed -n 's/^node [0-9a-f]* shard \([0-9]*\) .*/\1/p'
}

lab bg 0 n0 "$BIN/dhtnode" "$PORT" --bind "$(addr 0)" --store "$WORK/store0" -v >/dev/null
sleep 0.2
for ((i = 1; i < NODES; i++)); do
    lab bg "$i" "n$i" "$BIN/dhtnode" "$PORT" "$(addr 0)" "$PORT" --bind "$(addr "$i")" \
        --store "$WORK/store$i" -v >/dev/null
done
started=$(date +%s%N)
since() { awk -v a="$started" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }

head -c "$SIZE" /dev/urandom >"$WORK/sample.bin"
failed=0
if hash=$(lab exec 1 timeout 60 "$BIN/dhtsend" "$WORK/sample.bin" "$(addr 1)" "$PORT" \
    2>"$WORK/send.err"); then
    echo "upload done $(since) s after the last node started"
else
    echo "upload failed $(since) s after the last node started:" >&2
    grep -v '^#*$' "$WORK/send.err" >&2
    failed=1
fi
if grep -q "looking for more" "$WORK/send.err"; then
    echo "dhtsend said: $(grep -m1 'looking for more' "$WORK/send.err")"
fi

# When was every shard covered, and does anyone move back and forth?
covered_at=""
while :; do
    t=$(since)
    shards=""
    for ((i = 0; i < NODES; i++)); do shards+=" $(shard_of "$i")"; done
    n=$(printf '%s\n' $shards | sort -un | wc -l)
    if [ -z "$covered_at" ] && [ "$n" -ge 16 ]; then covered_at=$t; fi
    awk -v t="$t" 'BEGIN { exit !(t >= '"$WATCH"') }' && break
    sleep 1
done
echo "shards covered: ${covered_at:-never within $WATCH s} (checked about once a second)"

if [ "$failed" = 0 ]; then
    lab exec 3 timeout 60 "$BIN/dhtrecv" -q "$hash" "$(addr 3)" "$PORT" -o "$WORK/sample.out"
    cmp -s "$WORK/sample.bin" "$WORK/sample.out" || { echo "the downloaded file differs" >&2; exit 1; }
    echo "download through node 3: identical"
fi

moves=0
flips=0
for ((i = 0; i < NODES; i++)); do
    log="$NETLAB_STATE/n$i.log"
    [ -f "$log" ] || continue
    while read -r from to; do
        moves=$((moves + 1))
        echo "node $i moved from shard $from to shard $to"
        if grep -q "moving from shard $to to empty shard $from" "$log"; then flips=$((flips + 1)); fi
    done < <(sed -n 's/.*moving from shard \([0-9]*\) to empty shard \([0-9]*\).*/\1 \2/p' "$log")
done
echo "$moves shard moves, $flips back and forth"
[ "$flips" = 0 ] || { echo "a node moved back to a shard it had left" >&2; exit 1; }
exit "$failed"
