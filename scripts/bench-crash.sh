#!/usr/bin/env bash
# Durability on real processes: a 256-node scene stores five files (300 KB
# to 20 MB) plain and five of the same sizes erasure-coded (dhtsend's
# defaults for --redundancy), then half its nodes are killed at once
# (SIGKILL, a seeded random draw). Prints, for each file, whether it comes
# back byte-identical and how long its download took; and for the scene,
# the stored bytes over the file bytes before and after, how long repair
# took to settle and how many bytes it moved.
#
#   scripts/bench-crash.sh            # NODES=256 KILL=128 REDUNDANCY=128+72 SEED=1
#
# The scene lives in a temporary directory on ports BASE.. (9600 by
# default) and is stopped on exit, also on failure or Ctrl-C.
set -euo pipefail

NODES=${NODES:-256}
KILL=${KILL:-128}
REDUNDANCY=${REDUNDANCY:-128+72}
SEED=${SEED:-1}
BASE=${BASE:-9600}
SETTLE=${SETTLE:-20}
QUIET=${QUIET:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/bin
work=$(mktemp -d /tmp/dht-bench-crash.XXXXXX)
export DHT_SCENE_DIR=$work/scene
cleanup() {
    "$root/deploy_test_scene.sh" stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ms() { echo $(( $(date +%s%N) / 1000000 )); }
# The hashes of the fragments held in the stores of the given ports, one
# per line: each store's fragments.idx is a row of 40-byte entries, "DHFR",
# the copy count, 3 zero bytes and the hash (crates/dht-std/src/store.rs).
held_in() {
    local port
    for port in "$@"; do
        [ -f "$DHT_SCENE_DIR/$port/fragments.idx" ] || continue
        od -An -v -tx1 -w40 "$DHT_SCENE_DIR/$port/fragments.idx"
    done | awk '$1 == "44" && $2 == "48" && $3 == "46" && $4 == "52" {
        h = ""; for (i = 9; i <= 40; i++) h = h $i; print h }'
}
# Fragments held in the stores of the given ports.
fragments_in() {
    held_in "$@" | wc -l
}

"$root/deploy_test_scene.sh" -n "$NODES" -p "$BASE" >/dev/null
export DHT_KEY_FILE=$DHT_SCENE_DIR/network.key
ports=$(seq "$BASE" $((BASE + NODES - 1)))

# Five files stored plain and five others coded (different bytes, so that
# they share no fragment and each kind's stored bytes can be counted).
: >"$work/files"
i=0
for size in 300000 1000000 2097152 5000000 20000000; do
    i=$((i + 1))
    head -c "$size" /dev/urandom >"$work/p$i.bin"
    head -c "$size" /dev/urandom >"$work/c$i.bin"
    plain=$("$bin/dhtsend" "$work/p$i.bin" 127.0.0.1 "$BASE" -q --no-verify)
    coded=$("$bin/dhtsend" "$work/c$i.bin" 127.0.0.1 "$BASE" -q --no-verify --redundancy="$REDUNDANCY")
    echo "p$i $size plain $plain" >>"$work/files"
    echo "c$i $size coded $coded" >>"$work/files"
done
# The fragments of each file, "kind hash" (dhthash -v lists them).
: >"$work/fragments"
while read -r name size kind hash; do
    if [ "$kind" = coded ]; then
        "$bin/dhthash" -v --redundancy="$REDUNDANCY" "$work/$name.bin" 2>&1 >/dev/null
    else
        "$bin/dhthash" -v "$work/$name.bin" 2>&1 >/dev/null
    fi | awk -v k="$kind" 'NF == 4 && $3 == "shard" { print k, $2 }' >>"$work/fragments"
done <"$work/files"
# Stored bytes over file bytes, per kind, counting the copies in the
# stores of the given ports.
ratios() {
    held_in "$@" | sort | uniq -c | awk -v list="$work/fragments" -v files="$work/files" '
        { copies[$2] = $1 }
        END {
            while ((getline line < files) > 0) { split(line, f, " "); bytes[f[3]] += f[2] }
            while ((getline line < list) > 0) { split(line, f, " "); stored[f[1]] += copies[f[2]] * 8192 }
            printf "plain %.2fx, coded %.2fx", stored["plain"] / bytes["plain"], stored["coded"] / bytes["coded"]
        }'
}
sleep "$SETTLE"
before=$(fragments_in $ports)
ratio_before=$(ratios $ports)

# Half the nodes, killed at once.
killed=$(echo "$ports" | shuf --random-source=<(yes "$SEED") | head -n "$KILL")
live=$(echo "$ports" | grep -vxF -f <(echo "$killed"))
for port in $killed; do
    kill -KILL "$(cat "$DHT_SCENE_DIR/$port/node.pid")"
done
start=$(ms)
left=$(fragments_in $live)
ratio_left=$(ratios $live)

# Repair: until the live stores stop growing for QUIET s (at most 240 s).
# The nodes rebuild lost stripe pieces 10 s after the last death they
# see (60 s after the first at most), after the copies are restored.
last=$left
settled=$start
while [ $(( $(ms) - start )) -lt 240000 ]; do
    sleep 1
    now=$(fragments_in $live)
    if [ "$now" != "$last" ]; then
        last=$now
        settled=$(ms)
    elif [ $(( $(ms) - settled )) -ge $(( QUIET * 1000 )) ]; then
        break
    fi
done
after=$last
ratio_after=$(ratios $live)

entry=$(echo "$live" | head -n 1)
echo "crash: $KILL of $NODES nodes killed (seed $SEED), files plain and coded $REDUNDANCY"
printf '%-4s %9s %-6s %-6s %9s\n' file bytes kind result ms
ok=0
count=0
while read -r name size kind hash; do
    t0=$(ms)
    if "$bin/dhtrecv" "$hash" 127.0.0.1 "$entry" -o - -q 2>"$work/err" | cmp -s - "$work/$name.bin"; then
        result=ok
        [ "$kind" = coded ] && ok=$((ok + 1))
    else
        result=lost
        why=$(tail -n 1 "$work/err" | cut -c1-110)
    fi
    [ "$kind" = coded ] && count=$((count + 1))
    printf '%-4s %9d %-6s %-6s %9d %s\n' "$name" "$size" "$kind" "$result" $(( $(ms) - t0 )) "${why:-}"
    why=
done <"$work/files"
echo "coded files back: $ok of $count"
echo "stored bytes / file bytes: before the crash $ratio_before; after it $ratio_left; after repair $ratio_after"
awk -v l="$left" -v a="$after" -v s=$(( settled - start )) 'BEGIN {
    printf "repair: settled %.1f s after the crash, %d fragments (%.1f MB) stored anew\n", s / 1000, a - l, (a - l) * 8192 / 1e6
}'
# What the nodes' stripe repair did (dhtnode logs it per file).
for port in $live; do cat "$DHT_SCENE_DIR/$port/node.log"; done | awk '
    /stripe repair of / { files++; for (i = 1; i <= NF; i++) {
        if ($(i + 1) == "stripes") stripes += $i
        if ($(i + 1) == "of" && $(i + 3) == "fragments" && $(i + 4) == "stored") stored += $i
        if ($(i + 1) == "MB" && $(i + 2) == "moved") moved += $i } }
    /stripe repair of .* failed/ { failed++ }
    END { printf "stripe repair: %d files repaired by the nodes (%d failed), %d stripes decoded, %d fragments stored anew, %.1f MB moved\n", files - failed, failed, stripes, stored, moved }'
