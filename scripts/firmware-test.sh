#!/usr/bin/env bash
# The emulated microcontroller among host nodes, end to end.
#
# Starts 16 dhtnode processes on 127.0.0.1 and the MPS2-AN385 firmware in
# QEMU (user-mode networking, host side on loopback only: the guest's port
# is forwarded from 127.0.0.1:$FW_PORT), then checks that:
#   1. the emulated node joins through a host node;
#   2. a file uploaded from the host with fragments in the emulated node's
#      shard is stored there (its log says "stored <hash>" for each);
#   3. dhtrecv with the emulated node as entry point downloads the file
#      byte-identical;
#   4. the emulated node uploads the file in its flash image and a host
#      dhtrecv downloads it byte-identical;
#   5. its RAM (static data + measured stack high-water) fits 128 KiB.
# Everything it starts is stopped by recorded PID, also on failure.
#
# Environment: DHT_FW_BASE_PORT (default: a block of 100 ports between 40000
# and 59999 chosen from the checkout's path, so that two checkouts running
# the test at once do not collide; nodes use BASE..BASE+15,
# the guest BASE+99), DHT_FW_REPORT (file the measured figures are written
# to, default target/firmware/report.txt).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

path_sum=$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)
BASE=${DHT_FW_BASE_PORT:-$((40000 + path_sum % 200 * 100))}
NODES=16
FW_PORT=$((BASE + 99))
GUEST_PORT=9000
FW_ID=0x15            # shard 5
FW_SHARD=5
FW_DIR=firmware/qemu-mps2-an385
ELF=$FW_DIR/target/thumbv7m-none-eabi/release/dht-fw-mps2-an385
REPORT=${DHT_FW_REPORT:-$ROOT/target/firmware/report.txt}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dht-fw-test.XXXXXX")
export DHT_SCENE_DIR=$WORK/scene
QEMU_PID=
START=$(date +%s)

say() { echo "firmware-test: $*"; }
fail() {
    echo "firmware-test: FAILED: $*" >&2
    if [ -f "$WORK/qemu.log" ]; then
        echo "--- last lines of the emulated node's log ---" >&2
        tail -n 30 "$WORK/qemu.log" >&2
    fi
    exit 1
}
cleanup() {
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill "$QEMU_PID" 2>/dev/null || true
        wait "$QEMU_PID" 2>/dev/null || true
    fi
    ./deploy_test_scene.sh stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

command -v qemu-system-arm >/dev/null || fail "qemu-system-arm is not installed (make setup installs it)"
[ -x bin/dhtnode ] || make all >/dev/null
[ -f "$ELF" ] || (cd "$FW_DIR" && cargo build --release --quiet)

# Waits up to $2 seconds for a line matching $1 in the guest's log.
wait_log() {
    local pattern=$1 limit=$2 waited=0
    until grep -q -- "$pattern" "$WORK/qemu.log" 2>/dev/null; do
        kill -0 "$QEMU_PID" 2>/dev/null || fail "QEMU exited while waiting for '$pattern'"
        [ "$waited" -lt $((limit * 10)) ] || fail "no '$pattern' in the emulated node's log after ${limit} s"
        sleep 0.1
        waited=$((waited + 1))
    done
}

say "deploying $NODES host nodes on 127.0.0.1:$BASE-$((BASE + NODES - 1))"
./deploy_test_scene.sh -n "$NODES" -p "$BASE" --clean >"$WORK/deploy.log" 2>&1 || {
    cat "$WORK/deploy.log" >&2
    fail "deploying the host scene"
}

say "booting the emulated node (id $FW_ID, shard $FW_SHARD) at 127.0.0.1:$FW_PORT"
timeout 110 qemu-system-arm -M mps2-an385 -nographic -monitor none \
    -nic "user,model=lan9118,hostfwd=udp:127.0.0.1:$FW_PORT-:$GUEST_PORT" \
    -semihosting-config "enable=on,target=native,arg=dht-fw,arg=port=$GUEST_PORT,arg=ip=10.0.2.15/24,arg=gateway=10.0.2.2,arg=advertise=127.0.0.1:$FW_PORT,arg=seed=127.0.0.1:$BASE,arg=translate=127.0.0.1>10.0.2.2,arg=id=$FW_ID,arg=upload-after=12,arg=status-every=1" \
    -kernel "$ELF" >"$WORK/qemu.log" 2>&1 &
QEMU_PID=$!
wait_log "joined with" 20
say "joined: $(grep -m1 'joined with' "$WORK/qemu.log" | sed 's/.*INFO *//')"

# A file with one or two fragments (index included) in the guest's shard.
file=$WORK/upload.bin
share=
for _ in $(seq 1 200); do
    head -c 60000 /dev/urandom >"$file"
    share=$(bin/dhthash -v "$file" | awk -v s="$FW_SHARD" '$NF == s && $(NF-1) == "shard" { print $2 }')
    n=$(echo "$share" | wc -w)
    if [ "$n" -ge 1 ] && [ "$n" -le 2 ]; then break; fi
    share=
done
[ -n "$share" ] || fail "could not make a file with fragments in shard $FW_SHARD"
say "uploading a 60000-byte file with $(echo "$share" | wc -w) fragment(s) in shard $FW_SHARD through 127.0.0.1:$((BASE + 3))"
hash=$(bin/dhtsend -q "$file" 127.0.0.1 $((BASE + 3))) || fail "dhtsend from the host"
say "index hash $hash"

for h in $share; do
    wait_log "stored $h" 20
done
say "the emulated node stored its share: $(grep -c 'INFO  stored ' "$WORK/qemu.log") fragment(s)"

out=$WORK/through-guest.bin
timeout 60 bin/dhtrecv -q "$hash" 127.0.0.1 "$FW_PORT" -o "$out" || fail "dhtrecv through the emulated node"
cmp -s "$file" "$out" || fail "the file downloaded through the emulated node differs"
say "downloaded through the emulated node: identical"

# Meanwhile (12 s after joining) the guest uploads the file in its flash
# image.
wait_log "uploaded hello-from-mps2.txt" 30
fw_hash=$(grep -m1 'uploaded hello-from-mps2.txt' "$WORK/qemu.log" | sed 's/.* as \([0-9a-f]\{64\}\).*/\1/')
say "the emulated node uploaded its file as $fw_hash"
fw_out=$WORK/from-guest.txt
timeout 60 bin/dhtrecv -q "$fw_hash" 127.0.0.1 $((BASE + 7)) -o "$fw_out" || fail "dhtrecv of the guest's file"
cmp -s "$FW_DIR/hello-from-mps2.txt" "$fw_out" || fail "the guest's file downloaded from the host differs"
say "downloaded the emulated node's file from the host: identical"

# Memory: static data from the boot line, stack from the last status line.
sleep 1.5
data=$(sed -n 's/.*RAM: .data \([0-9]*\) B, .bss \([0-9]*\) B, stack region \([0-9]*\) B.*/\1/p' "$WORK/qemu.log")
bss=$(sed -n 's/.*RAM: .data \([0-9]*\) B, .bss \([0-9]*\) B, stack region \([0-9]*\) B.*/\2/p' "$WORK/qemu.log")
region=$(sed -n 's/.*RAM: .data \([0-9]*\) B, .bss \([0-9]*\) B, stack region \([0-9]*\) B.*/\3/p' "$WORK/qemu.log")
stack=$(grep 'stack_high_water=' "$WORK/qemu.log" | tail -n 1 | sed 's/.*stack_high_water=\([0-9]*\).*/\1/')
status=$(grep 'status ' "$WORK/qemu.log" | tail -n 1 | sed 's/.*status //')
total=$((data + bss + stack))
mkdir -p "$(dirname "$REPORT")"
{
    echo "ram_data_bytes=$data"
    echo "ram_bss_bytes=$bss"
    echo "stack_high_water_bytes=$stack"
    echo "stack_region_bytes=$region"
    echo "ram_total_bytes=$total"
    echo "last_status=$status"
} >"$REPORT"
say "RAM: .data $data + .bss $bss + stack high-water $stack = $total bytes (budget 131072)"
[ "$stack" -lt "$region" ] || fail "the stack reached the end of its region ($stack of $region bytes)"
[ "$total" -le 131072 ] || fail "RAM use $total bytes is over 128 KiB"
grep -q "PANIC\|HARD FAULT" "$WORK/qemu.log" && fail "the firmware panicked"
say "passed in $(($(date +%s) - START)) s"
