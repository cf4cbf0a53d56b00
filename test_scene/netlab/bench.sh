#!/usr/bin/env bash
# How many frames per second lossy_switch.py forwards without falling behind.
#
#   bench.sh [RATE...]     default rates: 1000 2000 5000 10000 20000 40000
#
# Brings up 2 namespaces and, for each rate, restarts the switch (no loss,
# delay 5 +/- 2 ms so that every frame goes through the scheduler) and
# sends 3 s of 200-byte UDP datagrams (one frame each) at that rate from
# node 0 to node 1. Prints per rate: the rate actually sent, the fraction
# delivered, frames the kernel dropped because the switch did not read them
# in time, how late frames left (mean/max, ms), and the switch's CPU use
# (% of one core). Tears the lab down on exit. About 5 s per rate.
#
# Environment: NETLAB_PREFIX (default: dhtlabb<PID>), BENCH_SECONDS (3),
# BENCH_DELAY ("--delay-ms 5 --jitter-ms 2").
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export NETLAB_PREFIX=${NETLAB_PREFIX:-dhtlabb$$}
export NETLAB_STATE=${NETLAB_STATE:-${TMPDIR:-/tmp}/netlab-$NETLAB_PREFIX}
LAB=$HERE/netlab.sh
SECS=${BENCH_SECONDS:-3}
read -r -a DELAY <<<"${BENCH_DELAY:---delay-ms 5 --jitter-ms 2}"
RATES=("$@")
[ ${#RATES[@]} -gt 0 ] || RATES=(1000 2000 5000 10000 20000 40000)

trap '"$LAB" down >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT TERM HUP
"$LAB" up 2 --seed 1 "${DELAY[@]}" >/dev/null

printf '%8s %9s %9s %12s %14s %14s %8s\n' rate/s sent/s delivered kernel_drops late_mean_ms late_max_ms cpu%
for rate in "${RATES[@]}"; do
    "$LAB" set --seed 1 "${DELAY[@]}" >/dev/null 2>&1
    rm -f "$NETLAB_STATE/rx.ready" "$NETLAB_STATE/rx.json" "$NETLAB_STATE/tx.json"
    "$LAB" bg 1 rx python3 "$HERE/udpprobe.py" recv --bind 10.77.0.2 --port 9000 \
        --out "$NETLAB_STATE/rx.json" --ready "$NETLAB_STATE/rx.ready" --deadline $((SECS + 20)) >/dev/null
    for _ in $(seq 100); do [ -e "$NETLAB_STATE/rx.ready" ] && break; sleep 0.05; done
    count=$((rate * SECS))
    stats0=$("$LAB" stats)
    "$LAB" exec 0 python3 "$HERE/udpprobe.py" send --to 10.77.0.2 --port 9000 \
        --stream "1:200:$count:$rate" --out "$NETLAB_STATE/tx.json" --gap 0.2
    for _ in $(seq 100); do [ -s "$NETLAB_STATE/rx.json" ] && break; sleep 0.05; done
    stats=$("$LAB" stats)
    python3 - "$NETLAB_STATE/tx.json" "$NETLAB_STATE/rx.json" "$rate" "$stats" "$stats0" <<'EOF'
import json, sys
tx = json.load(open(sys.argv[1]))["1"]
rx = json.load(open(sys.argv[2])).get("1", {"unique": 0})
rate = int(sys.argv[3])
st = dict(kv.split("=", 1) for kv in sys.argv[4].split()[1:])
st0 = dict(kv.split("=", 1) for kv in sys.argv[5].split()[1:])
# CPU time the switch used from just before the stream to just after it
# (warm-up and end markers included, negligible), over the stream's time.
cpu = (float(st["cpu_s"]) - float(st0["cpu_s"])) / tx["seconds"] * 100
print(f"{rate:8d} {tx['sent'] / tx['seconds']:9.0f} {rx['unique'] / tx['sent']:9.4f} "
      f"{st['kernel_drops']:>12} {float(st['late_mean_ms']):14.3f} {float(st['late_max_ms']):14.3f} {cpu:8.1f}")
EOF
done
