#!/usr/bin/env bash
# Deploys a test scene of dhtnode processes on 127.0.0.1, or stops it.
#
#   ./deploy_test_scene.sh                 256 nodes on ports 8000-8255
#   ./deploy_test_scene.sh -n 32 -p 9000   32 nodes on ports 9000-9031
#   ./deploy_test_scene.sh --clean         wipe the nodes' stores first
#   ./deploy_test_scene.sh --no-key        an open network (no network key)
#   ./deploy_test_scene.sh stop            stop the running scene (graceful leave)
#   ./deploy_test_scene.sh status          nodes running, answering, joined; fragments held
#
# The scene is a network with a key: test_scene/network.key (32 random
# bytes in hex, made on the first deploy and kept). Tools talk to it with
# --key-file test_scene/network.key, or with DHT_KEY_FILE set to that path.
#
# The first node starts the network; every other node joins a random node
# started before it. Node P keeps its fragments and identity in
# test_scene/P/, logs to test_scene/P/node.log and has its PID in
# test_scene/P/node.pid. The script returns once every node answers and has
# joined (and, with 16 nodes or more, every shard has a node), and says how
# long that took. Without --clean, nodes restart on
# what their stores hold (same id, same fragments).
#
# Environment: DHT_BIN_DIR (default ./bin, built with `make all` if a tool
# is missing), DHT_SCENE_DIR (default ./test_scene), DHT_NODE_ARGS (extra
# dhtnode arguments, e.g. "--copies 3").
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=${DHT_BIN_DIR:-$ROOT/bin}
SCENE=${DHT_SCENE_DIR:-$ROOT/test_scene}
COUNT=256
BASE=8000
CLEAN=0
KEYED=1
ACTION=deploy
WAIT=${DHT_DEPLOY_WAIT:-60}

usage() {
    # The comment block at the top of this file.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit "${1:-0}"
}

die() {
    echo "deploy_test_scene.sh: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
        stop) ACTION=stop ;;
        status) ACTION=status ;;
        -n) [ $# -ge 2 ] || die "-n needs a number of nodes (e.g. -n 32)"; shift; COUNT=$1 ;;
        -p) [ $# -ge 2 ] || die "-p needs a first port (e.g. -p 9000)"; shift; BASE=$1 ;;
        --clean) CLEAN=1 ;;
        --no-key) KEYED=0 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
    shift
done

case "$COUNT" in ''|*[!0-9]*) die "-n takes a number of nodes, not '$COUNT'" ;; esac
case "$BASE" in ''|*[!0-9]*) die "-p takes a port number, not '$BASE'" ;; esac
[ "$COUNT" -ge 1 ] || die "-n must be at least 1"
[ $((BASE + COUNT - 1)) -le 65535 ] || die "ports $BASE-$((BASE + COUNT - 1)) go past 65535"

# PIDs of live dhtnode processes recorded in the scene (bash builtins
# only: this runs in a loop over hundreds of nodes).
running_pids() {
    local file pid comm stat
    for file in "$SCENE"/*/node.pid; do
        [ -f "$file" ] || continue
        # (A PID file written without a final newline still counts.)
        # (The braces make 2>/dev/null cover a file that vanished.)
        pid=
        { read -r pid <"$file"; } 2>/dev/null || [ -n "$pid" ] || continue
        case "$pid" in ''|*[!0-9]*) continue ;; esac
        # Only a live dhtnode: a recycled PID is left alone, and an exited
        # node that nobody reaped yet (a zombie) no longer counts.
        { read -r comm <"/proc/$pid/comm"; } 2>/dev/null || continue
        [ "$comm" = dhtnode ] || continue
        { read -r stat <"/proc/$pid/stat"; } 2>/dev/null || continue
        stat=${stat##*) }
        [ "${stat%% *}" = Z ] && continue
        echo "$pid"
    done
}

stop_scene() {
    local pids deadline
    pids=$(running_pids)
    if [ -z "$pids" ]; then
        echo "no scene is running in $SCENE"
        rm -f "$SCENE"/*/node.pid
        return 0
    fi
    # SIGTERM: each node tells its neighbors it leaves, then exits.
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while [ -n "$(running_pids)" ] && [ $SECONDS -lt $deadline ]; do
        sleep 0.05
    done
    pids=$(running_pids)
    if [ -n "$pids" ]; then
        echo "some nodes did not stop within 10 s; killing them: $pids" >&2
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
    fi
    rm -f "$SCENE"/*/node.pid
    echo "stopped the scene in $SCENE"
}

if [ "$ACTION" = stop ]; then
    stop_scene
    exit 0
fi

# The running scene: how many nodes live, whether they answer and have
# joined, and the fragments their stores hold (dhtping --scan on their
# ports). Exits 1 when no scene runs.
status_scene() {
    local file port ports=() first last mode args=()
    for file in "$SCENE"/*/node.pid; do
        [ -f "$file" ] || continue
        port=${file%/node.pid}
        port=${port##*/}
        case "$port" in ''|*[!0-9]*) continue ;; esac
        ports+=("$port")
    done
    local live
    live=$(running_pids | wc -l)
    if [ "$live" = 0 ]; then
        echo "no scene is running in $SCENE"
        exit 1
    fi
    mapfile -t ports < <(printf '%s\n' "${ports[@]}" | sort -n)
    first=${ports[0]}
    last=${ports[${#ports[@]} - 1]}
    mode=$(cat "$SCENE/deploy.mode" 2>/dev/null || echo keyed)
    [ "$mode" = keyed ] && [ -f "$SCENE/network.key" ] && args=(--key-file "$SCENE/network.key")
    echo "$live of ${#ports[@]} nodes running in $SCENE on 127.0.0.1:$first-$last ($mode network)"
    if [ -x "$BIN/dhtping" ]; then
        "$BIN/dhtping" 127.0.0.1 "$first" "${args[@]}" --scan $((last - first + 1)) --wait 3 -q 2>&1 | head -n 1 || true
    fi
}

if [ "$ACTION" = status ]; then
    status_scene
    exit 0
fi

if [ -n "$(running_pids)" ]; then
    die "a scene is already running in $SCENE ($(running_pids | wc -l) nodes); stop it first with: $0 stop"
fi

for tool in dhtnode dhtping; do
    if [ ! -x "$BIN/$tool" ]; then
        echo "building the tools (make all)..."
        make -C "$ROOT" all >/dev/null
        break
    fi
done
[ -x "$BIN/dhtnode" ] || die "$BIN/dhtnode is missing after the build"

if [ "$CLEAN" = 1 ]; then
    for ((i = 0; i < COUNT; i++)); do
        rm -rf "${SCENE:?}/$((BASE + i))"
    done
fi
dirs=()
for ((i = 0; i < COUNT; i++)); do
    dirs+=("$SCENE/$((BASE + i))")
done
mkdir -p "${dirs[@]}"

# The network key: every node and tool of the scene uses it.
KEY_ARGS=()
if [ "$KEYED" = 1 ]; then
    KEY="$SCENE/network.key"
    if [ ! -s "$KEY" ]; then
        (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$KEY")
    fi
    KEY_ARGS=(--key-file "$KEY")
    echo keyed >"$SCENE/deploy.mode"
else
    echo open >"$SCENE/deploy.mode"
fi
# The tools started below must not pick up a key of the caller's.
unset DHT_KEY_FILE

start_ns=$(date +%s%N)
start_node() {
    local port=$1
    shift
    # shellcheck disable=SC2086
    "$BIN/dhtnode" "$port" "$@" --store "$SCENE/$port" "${KEY_ARGS[@]}" ${DHT_NODE_ARGS:-} \
        </dev/null >>"$SCENE/$port/node.log" 2>&1 &
    echo $! >"$SCENE/$port/node.pid"
}

# In a small scene the first 16 nodes start one at a time, each once the
# previous ones have joined, so that they spread over the 16 shards from
# exact knowledge; the rest start all at once. Large scenes start at once
# (nodes that find a shard empty move there, see docs/PROTOCOL.md).
FIRST=0
[ "$COUNT" -le 64 ] && FIRST=$((COUNT < 16 ? COUNT : 16))
start_node "$BASE"
for ((i = 1; i < COUNT; i++)); do
    if [ "$i" -lt "$FIRST" ]; then
        if ! "$BIN/dhtping" 127.0.0.1 "$BASE" "${KEY_ARGS[@]}" --scan "$i" --wait "$WAIT" -q >/dev/null 2>&1; then
            echo "deploy_test_scene.sh: node $((BASE + i - 1)) did not come up; see $SCENE/$((BASE + i - 1))/node.log" >&2
            stop_scene >&2
            exit 1
        fi
    fi
    start_node $((BASE + i)) 127.0.0.1 $((BASE + RANDOM % i))
done

FULL=""
[ "$COUNT" -ge 16 ] && FULL=--full-shards
if ! "$BIN/dhtping" 127.0.0.1 "$BASE" "${KEY_ARGS[@]}" --scan "$COUNT" $FULL --wait "$WAIT" -q >"$SCENE/deploy.scan" 2>&1; then
    cat "$SCENE/deploy.scan" >&2
    echo "deploy_test_scene.sh: not every node answered within $WAIT s; stopping the scene" >&2
    stop_scene >&2
    exit 1
fi
# A node that could not start (its port taken by another program, say) has
# exited; something else may have answered on its port.
for ((i = 0; i < COUNT; i++)); do
    pid=$(cat "$SCENE/$((BASE + i))/node.pid")
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "deploy_test_scene.sh: node $((BASE + i)) exited: $(tail -n 1 "$SCENE/$((BASE + i))/node.log")" >&2
        stop_scene >&2
        exit 1
    fi
done
end_ns=$(date +%s%N)
elapsed=$(awk -v a="$start_ns" -v b="$end_ns" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
echo "deployed $COUNT nodes on 127.0.0.1:$BASE-$((BASE + COUNT - 1)) in $elapsed s ($(head -n 1 "$SCENE/deploy.scan" | sed 's/.*nodes per shard/nodes per shard/'))"
if [ "$KEYED" = 1 ]; then
    echo "network key: $KEY (give tools --key-file $KEY, or export DHT_KEY_FILE=$KEY)"
fi
echo "stop them with: $0 stop"
