#!/usr/bin/env bash
# The main job end to end: deploy the 256-node scene, upload a random
# 2,088,960-byte file through one node, download it through another,
# compare, and stop the scene (also when something fails).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
trap './deploy_test_scene.sh stop >/dev/null' EXIT

./deploy_test_scene.sh --clean
export DHT_KEY_FILE=$ROOT/test_scene/network.key
work=test_scene/roundtrip
mkdir -p "$work"
head -c 2088960 /dev/urandom >"$work/sample.bin"

start=$(date +%s%N)
hash=$(bin/dhtsend "$work/sample.bin" 127.0.0.1 8000)
mid=$(date +%s%N)
bin/dhtrecv "$hash" 127.0.0.1 8255 -o "$work/sample.out" --force
end=$(date +%s%N)

cmp "$work/sample.bin" "$work/sample.out"
awk -v a="$start" -v b="$mid" -v c="$end" -v h="$hash" 'BEGIN {
    printf "round trip OK: %s\nupload %.3f s, download %.3f s\n", h, (b - a) / 1e9, (c - b) / 1e9 }'
