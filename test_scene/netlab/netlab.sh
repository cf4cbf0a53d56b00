#!/usr/bin/env bash
# A lossy test network of Linux network namespaces joined by lossy_switch.py.
#
#   netlab.sh up N [--loss P] [--delay-ms D] [--jitter-ms J] [--reorder R]
#                  [--reorder-ms H] [--duplicate U] [--seed S] [--mtu M]
#                  [--ipv6] [--ipfrag-high-thresh BYTES] [--flood]
#                  [--jitter-reorders] [--queue-limit F]
#       creates N namespaces $NETLAB_PREFIX-0 .. -(N-1); namespace i has eth0
#       with 10.77.0.(i+1)/24 (with --ipv6 also fd77::(i+1)/64; without it
#       IPv6 is off, so no multicast chatter floods the switch), MTU 1500,
#       lo up, and no route anywhere else. The other ends of the veth pairs stay in the
#       root namespace, without addresses, and a lossy_switch.py started in
#       the background joins them. Fails (and undoes everything) if this
#       prefix is already up.
#   netlab.sh set [--loss P ...]     restarts the switch with new impairments
#                                     (same options as up, minus N, --mtu,
#                                     --ipv6, --ipfrag-high-thresh)
#   netlab.sh exec I CMD...          runs CMD in namespace I (foreground)
#   netlab.sh bg I NAME CMD...       runs CMD in namespace I in the background,
#                                     output to $STATE/NAME.log, PID recorded in
#                                     $STATE/NAME.pid and stopped by `down`
#   netlab.sh stop NAME              stops a `bg` process by its recorded PID
#   netlab.sh stats                  prints the switch's counters so far
#   netlab.sh ns I | addr I | addr6 I   namespace name / IPv4 / IPv6 of node I
#   netlab.sh status                 what is up
#   netlab.sh down                   stops the switch and `bg` processes by their
#                                     recorded PIDs, deletes the namespaces and
#                                     veths; idempotent, and safe after a failed up
#
# Environment:
#   NETLAB_PREFIX  namespace prefix (default dhtlab<K>, K from the checkout's
#                  path, so that two checkouts do not collide; give each
#                  concurrent lab in one checkout its own prefix: [a-z0-9]+,
#                  at most 20 characters)
#   NETLAB_STATE   state directory (default ${TMPDIR:-/tmp}/netlab-$NETLAB_PREFIX)
#
# Needs root, iproute2 and python3. Every frame between namespaces passes
# the switch; nothing is routed to or from the root namespace or the outside.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
path_sum=$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)
PREFIX=${NETLAB_PREFIX:-dhtlab$((path_sum % 10000))}
if ! [[ $PREFIX =~ ^[a-z0-9]{1,20}$ ]]; then
    echo "netlab: NETLAB_PREFIX must be 1-20 characters of [a-z0-9], not '$PREFIX'" >&2
    exit 2
fi
STATE=${NETLAB_STATE:-${TMPDIR:-/tmp}/netlab-$PREFIX}
# Root-namespace interface names must be unique and at most 15 characters:
# nl<tag>h<i> (switch side) and nl<tag>n<i> (namespace side before it is
# moved and renamed eth0).
TAG=$(( $(printf '%s' "$PREFIX" | cksum | cut -d' ' -f1) % 100000 ))
PY=${PYTHON:-python3}

die() { echo "netlab: $*" >&2; exit 1; }
ns_name() { echo "$PREFIX-$1"; }
host_if() { echo "nl${TAG}h$1"; }
tmp_if() { echo "nl${TAG}n$1"; }
count() { cat "$STATE/count" 2>/dev/null || echo 0; }

need_index() {
    local n
    n=$(count)
    [[ ${1:-} =~ ^[0-9]+$ ]] || die "node index expected, got '${1:-}'"
    (( $1 < n )) || die "node $1 does not exist (lab has $n nodes; is it up?)"
}

# A PID is ours only if its command line still names what we started, so a
# recycled PID is never signalled.
pid_is() {
    local pid=$1 what=$2
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$what"
}

stop_pid() { # pidfile what [seconds to wait before SIGKILL]
    local pid
    pid=$(cat "$1" 2>/dev/null || true)
    if pid_is "$pid" "$2"; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq $((${3:-5} * 10))); do
            pid_is "$pid" "$2" || break
            sleep 0.1
        done
        if pid_is "$pid" "$2"; then
            echo "netlab: PID $pid did not stop on SIGTERM; SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$1"
}

# --- impairment options, shared by up and set ------------------------------
SWITCH_ARGS=()
MTU=1500
IPV6=0
FRAG_THRESH=
parse_opts() { # allow_link_opts args...
    local link=$1
    shift
    SWITCH_ARGS=()
    while [ $# -gt 0 ]; do
        case $1 in
            --loss|--delay-ms|--jitter-ms|--reorder|--reorder-ms|--duplicate|--seed|--queue-limit)
                [ $# -ge 2 ] || die "$1 needs a value"
                SWITCH_ARGS+=("$1" "$2"); shift 2 ;;
            --flood|--jitter-reorders)
                SWITCH_ARGS+=("$1"); shift ;;
            --mtu)
                [ "$link" = 1 ] || die "--mtu only with up"
                [[ ${2:-} =~ ^[0-9]+$ ]] && (( $2 >= 1280 && $2 <= 65000 )) || die "--mtu needs 1280..65000"
                MTU=$2; shift 2 ;;
            --ipv6)
                [ "$link" = 1 ] || die "--ipv6 only with up"
                IPV6=1; shift ;;
            --ipfrag-high-thresh)
                [ "$link" = 1 ] || die "--ipfrag-high-thresh only with up"
                [[ ${2:-} =~ ^[0-9]+$ ]] || die "--ipfrag-high-thresh needs a byte count"
                FRAG_THRESH=$2; shift 2 ;;
            *) die "unknown option '$1'" ;;
        esac
    done
}

start_switch() {
    local ports=() i n
    n=$(count)
    for ((i = 0; i < n; i++)); do ports+=("$(host_if "$i")"); done
    rm -f "$STATE/switch.ready" "$STATE/switch.stats"
    printf '%s\n' "${SWITCH_ARGS[@]}" >"$STATE/switch.args"
    # setsid: not in the caller's process group, so a Ctrl-C in the shell
    # that ran `up` does not stop it; `down` does, by PID.
    setsid "$PY" "$HERE/lossy_switch.py" --ready-file "$STATE/switch.ready" \
        --stats-file "$STATE/switch.stats" "${SWITCH_ARGS[@]}" "${ports[@]}" \
        </dev/null >>"$STATE/switch.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$STATE/switch.pid"
    # The switch writes its PID to the ready file once every port is open
    # (until setsid has exec'd, the PID's command line is still this script's,
    # so only existence is checked meanwhile).
    for _ in $(seq 400); do
        if [ -s "$STATE/switch.ready" ]; then
            cat "$STATE/switch.ready" >"$STATE/switch.pid"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    tail -n 5 "$STATE/switch.log" >&2 || true
    die "switch did not start"
}

stop_switch() {
    [ -f "$STATE/switch.pid" ] || return 0
    # Closing an AF_PACKET socket waits for an RCU grace period: with 254
    # ports the switch needs some seconds to exit.
    stop_pid "$STATE/switch.pid" "lossy_switch.py" 60
    if [ -s "$STATE/switch.stats" ]; then
        cat "$STATE/switch.stats" >&2
    fi
}

# --- subcommands -----------------------------------------------------------
cmd_up() {
    local n=${1:-}
    [[ $n =~ ^[0-9]+$ ]] && (( n >= 2 && n <= 254 )) || die "usage: netlab.sh up N (2..254) [options]"
    shift
    parse_opts 1 "$@"
    [ "$(id -u)" = 0 ] || die "needs root"
    if [ -e "$STATE" ]; then
        die "$STATE exists: lab '$PREFIX' is up (or was not taken down); run 'netlab.sh down' first"
    fi
    local existing_ns existing_links i ns h t sysctls
    existing_ns=$(ip netns list | awk '{print $1}')
    existing_links=$(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1)
    for ((i = 0; i < n; i++)); do
        ! grep -qxF -- "$(ns_name "$i")" <<<"$existing_ns" ||
            die "namespace $(ns_name "$i") exists already (left over? 'netlab.sh down' removes it)"
        ! grep -qxF -- "$(host_if "$i")" <<<"$existing_links" || die "interface $(host_if "$i") exists already"
        ! grep -qxF -- "$(tmp_if "$i")" <<<"$existing_links" || die "interface $(tmp_if "$i") exists already"
    done
    mkdir -p "$STATE"
    echo "$n" >"$STATE/count"
    echo "$IPV6" >"$STATE/ipv6"
    # From here on, anything that fails (or an interrupt) takes down what
    # was made so far.
    UP_DONE=0
    trap 'if [ "$UP_DONE" != 1 ]; then echo "netlab: up failed; taking down what was made" >&2; cmd_down >/dev/null 2>&1 || true; fi' EXIT
    trap 'exit 130' INT TERM HUP
    # Record before creating, so that a failure half way still gets cleaned up.
    local hosts=() temps=()
    for ((i = 0; i < n; i++)); do
        ns_name "$i" >>"$STATE/namespaces"
        host_if "$i" >>"$STATE/links"
        hosts+=("$(host_if "$i")"); temps+=("$(tmp_if "$i")")
    done
    for ((i = 0; i < n; i++)); do
        ip netns add "$(ns_name "$i")"
    done
    # Root-namespace work in one ip process (ip -batch stops at the first
    # error, and the trap then undoes everything).
    for ((i = 0; i < n; i++)); do
        echo "link add ${hosts[i]} mtu $MTU type veth peer name ${temps[i]} mtu $MTU"
    done | ip -batch -
    "$PY" "$HERE/offload_off.py" "${hosts[@]}" "${temps[@]}"
    for ((i = 0; i < n; i++)); do
        echo "link set ${temps[i]} netns $(ns_name "$i")"
        # The switch side is a bare port: no ARP, no IPv6 (below), no
        # address, so the root namespace neither answers nor sends on it.
        echo "link set ${hosts[i]} arp off"
    done | ip -batch -
    for h in "${hosts[@]}"; do
        if [ -w "/proc/sys/net/ipv6/conf/$h/disable_ipv6" ]; then
            echo 1 >"/proc/sys/net/ipv6/conf/$h/disable_ipv6"
        fi
    done
    for ((i = 0; i < n; i++)); do
        ns=$(ns_name "$i")
        {
            echo "link set ${temps[i]} name eth0"
            echo "link set lo up"
            echo "addr add 10.77.0.$((i + 1))/24 dev eth0"
            if [ "$IPV6" = 1 ]; then
                echo "addr add fd77::$((i + 1))/64 dev eth0 nodad"
            fi
        } | ip -n "$ns" -batch -
        sysctls=
        if [ "$IPV6" = 0 ]; then
            sysctls="echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6;"
        fi
        if [ -n "$FRAG_THRESH" ]; then
            sysctls="$sysctls echo $FRAG_THRESH >/proc/sys/net/ipv4/ipfrag_high_thresh;"
            sysctls="$sysctls echo $FRAG_THRESH >/proc/sys/net/ipv6/ip6frag_high_thresh;"
        fi
        if [ -n "$sysctls" ]; then
            ip netns exec "$ns" sh -ec "$sysctls"
        fi
        ip -n "$ns" link set eth0 up
    done
    for h in "${hosts[@]}"; do echo "link set $h up"; done | ip -batch -
    start_switch
    UP_DONE=1
    trap - EXIT INT TERM HUP
    echo "netlab: $n nodes up: namespaces $(ns_name 0)..$(ns_name $((n - 1))), 10.77.0.1..10.77.0.$n, switch PID $(cat "$STATE/switch.pid"), state $STATE"
}

cmd_set() {
    [ -f "$STATE/count" ] || die "lab '$PREFIX' is not up"
    parse_opts 0 "$@"
    stop_switch
    start_switch
    echo "netlab: switch restarted: ${SWITCH_ARGS[*]:-(no impairment)}, PID $(cat "$STATE/switch.pid")"
}

cmd_down() {
    local had=0 f name
    if [ -d "$STATE" ]; then
        had=1
        for f in "$STATE"/bg-*.pid; do
            [ -e "$f" ] || continue
            name=${f##*/bg-}; name=${name%.pid}
            stop_pid "$f" "$(cat "$STATE/bg-$name.cmd" 2>/dev/null || echo "?")"
        done
        stop_switch
    fi
    # Namespaces: the recorded ones, and any left with exactly this prefix
    # and a numeric suffix (a state directory lost with /tmp).
    local names=()
    if [ -f "$STATE/namespaces" ]; then
        mapfile -t names <"$STATE/namespaces"
    fi
    local existing ns pids
    existing=$(ip netns list | awk '{print $1}')
    mapfile -t -O "${#names[@]}" names < <(grep -E "^$PREFIX-[0-9]+\$" <<<"$existing" || true)
    for ns in $(printf '%s\n' "${names[@]}" | sort -u); do
        [ -n "$ns" ] || continue
        grep -qxF -- "$ns" <<<"$existing" || continue
        pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ' || true)
        if [ -n "$pids" ]; then
            echo "netlab: warning: processes not started by netlab still run in $ns: $pids(not stopped; the namespace goes when they exit)" >&2
        fi
        ip netns del "$ns" 2>/dev/null || true
    done
    # Veths: deleting a namespace deletes its eth0 and so the pair, unless a
    # process keeps the namespace alive; delete the switch ends explicitly.
    local links=() h
    if [ -f "$STATE/links" ]; then
        mapfile -t links <"$STATE/links"
    fi
    for h in "${links[@]}"; do
        [ -n "$h" ] || continue
        ip link del "$h" 2>/dev/null || true
    done
    if [ -d "$STATE" ]; then
        rm -rf "${STATE:?}"
    fi
    [ "$had" = 1 ] && echo "netlab: lab '$PREFIX' down" || true
}

cmd_exec() {
    need_index "${1:-}"
    local ns
    ns=$(ns_name "$1")
    shift
    [ $# -gt 0 ] || die "usage: netlab.sh exec I CMD..."
    exec ip netns exec "$ns" "$@"
}

cmd_bg() {
    need_index "${1:-}"
    local ns name
    ns=$(ns_name "$1")
    name=${2:-}
    [[ $name =~ ^[A-Za-z0-9_.-]+$ ]] || die "usage: netlab.sh bg I NAME CMD... (NAME: [A-Za-z0-9_.-]+)"
    shift 2
    [ $# -gt 0 ] || die "usage: netlab.sh bg I NAME CMD..."
    if pid_is "$(cat "$STATE/bg-$name.pid" 2>/dev/null || true)" "$(cat "$STATE/bg-$name.cmd" 2>/dev/null || echo "?")"; then
        die "a background process named $name is running"
    fi
    # What the PID's command line must contain for `stop`/`down` to signal it.
    printf '%s' "$1" >"$STATE/bg-$name.cmd"
    setsid ip netns exec "$ns" "$@" </dev/null >"$STATE/$name.log" 2>&1 &
    echo $! >"$STATE/bg-$name.pid"
    echo "$!"
}

cmd_stop() {
    local name=${1:-}
    [[ $name =~ ^[A-Za-z0-9_.-]+$ ]] || die "usage: netlab.sh stop NAME"
    stop_pid "$STATE/bg-$name.pid" "$(cat "$STATE/bg-$name.cmd" 2>/dev/null || echo "?")"
}

cmd_stats() {
    local pid before
    pid=$(cat "$STATE/switch.pid" 2>/dev/null || true)
    pid_is "$pid" lossy_switch.py || die "switch is not running"
    rm -f "$STATE/switch.stats"
    kill -USR1 "$pid"
    for _ in $(seq 100); do
        [ -s "$STATE/switch.stats" ] && { cat "$STATE/switch.stats"; return 0; }
        sleep 0.02
    done
    die "switch did not answer SIGUSR1"
}

cmd_status() {
    if [ ! -f "$STATE/count" ]; then
        echo "netlab: lab '$PREFIX' is down"
        return 0
    fi
    local n pid
    n=$(count)
    pid=$(cat "$STATE/switch.pid" 2>/dev/null || true)
    echo "lab '$PREFIX': $n nodes, IPv6 $([ "$(cat "$STATE/ipv6" 2>/dev/null)" = 1 ] && echo "on (fd77::I+1)" || echo off), state $STATE"
    if pid_is "$pid" lossy_switch.py; then
        echo "switch PID $pid: $(head -n 1 "$STATE/switch.log" 2>/dev/null | sed 's/^lossy_switch: //')"
    else
        echo "switch not running"
    fi
    for ((i = 0; i < n; i++)); do
        printf '  %d  %-16s %-12s %s\n' "$i" "$(ns_name "$i")" "10.77.0.$((i + 1))" "$(host_if "$i")"
    done
}

case ${1:-} in
    up) shift; cmd_up "$@" ;;
    down) cmd_down ;;
    set) shift; cmd_set "$@" ;;
    exec) shift; cmd_exec "$@" ;;
    bg) shift; cmd_bg "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    stats) cmd_stats ;;
    status) cmd_status ;;
    ns) need_index "${2:-}"; ns_name "$2" ;;
    addr) need_index "${2:-}"; echo "10.77.0.$(($2 + 1))" ;;
    addr6)
        need_index "${2:-}"
        [ "$(cat "$STATE/ipv6" 2>/dev/null)" = 1 ] || die "lab '$PREFIX' was brought up without --ipv6"
        echo "fd77::$(($2 + 1))" ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
