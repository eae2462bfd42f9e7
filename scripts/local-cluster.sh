#!/usr/bin/env bash
# A multi-host Ray cluster emulated on this machine, for trying multi-node campaigns and for tests/cluster/.
#
#   scripts/local-cluster.sh up N [--cpus C] [--hostile]   start N Ray nodes (node 1 is the head)
#   scripts/local-cluster.sh exec K COMMAND...             run COMMAND on node K (as if logged in there)
#   scripts/local-cluster.sh status                        the nodes, their addresses and `ray status`
#   scripts/local-cluster.sh down                          stop every node and remove every namespace
#
# Each node is what a real cluster node is to the software on it:
#   - its own network namespace (hpo-nK) with interface eth0 and address 198.18.0.K/24 (RFC 2544's test range),
#     joined to the others by the bridge hpo-br0, which the host reaches as 198.18.0.254. Nothing is routed
#     or forwarded off the machine: the namespaces have no default route and the host forwards nothing;
#   - its own UTS namespace: hostname nodeK;
#   - its own /etc/hosts naming every node (`ip netns exec` binds /etc/netns/hpo-nK/hosts over /etc/hosts);
#   - its own /tmp (a bind mount of STATE/nodeK/tmp), as on real nodes: Ray's session directories, and anything
#     a program wrongly leaves in /tmp for another node, stay on that node. Everything else (this checkout, its
#     .venv, $HOME with Ray's token) is shared, like a cluster's shared file system.
# --hostile adds two classic misconfigurations that the product must cope with: every node's own hostname also
# resolves to 127.0.0.1 first (as on this machine), and interface names differ between nodes (eth0 on node 1,
# ens4, ens5, ... on the others).
#
# Node K runs `ray start --block` (the head with --head on port 6379, token authentication as Ray 2.60 sets it
# up); its PID is STATE/nodeK/pid. `down` kills every process left in each namespace (by PID and by namespace),
# deletes the namespaces, the veth pairs, the bridge and /etc/netns/hpo-nK, and is safe to run twice.
# STATE is $HPO_CLUSTER_DIR (default /var/tmp/hpo-cluster). Needs root and iproute2 (ip netns), util-linux
# (unshare, nsenter) and the project's .venv (make install).
set -euo pipefail
CALLER_PWD=$PWD  # `exec` runs the command there, as a login on a node with the same shared file system would
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=${HPO_CLUSTER_DIR:-/var/tmp/hpo-cluster}
NET=198.18.0
BRIDGE=hpo-br0
PORT=6379
RAY=$ROOT/.venv/bin/ray
say() { printf '\033[1m[local-cluster]\033[0m %s\n' "$*" >&2; }
die() { printf 'local-cluster: %s\n' "$*" >&2; exit 2; }

need_root() {
  [[ $(id -u) == 0 ]] || die "needs root (network namespaces, veth pairs, a bridge); run it with sudo"
  command -v ip >/dev/null || die "needs iproute2's ip (apt-get install iproute2)"
  command -v nsenter >/dev/null && command -v unshare >/dev/null || die "needs util-linux's nsenter and unshare"
}

node_pid() { cat "$STATE/node$1/pid" 2>/dev/null || true; }

# run a command inside node K's namespaces (network, hostname, mounts: its /etc/hosts and /tmp)
on_node() {
  local k=$1; shift
  local pid; pid=$(node_pid "$k")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || die "node $k is not running (scripts/local-cluster.sh status)"
  exec nsenter -t "$pid" -n -u -m --wd="$CALLER_PWD" -- env HOSTNAME="node$k" RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}" "$@"
}

iface_of() { # interface name of node K
  if [[ $HOSTILE == 1 && $1 != 1 ]]; then echo "ens$(( $1 + 2 ))"; else echo eth0; fi
}

up() {
  local n=$1 cpus=$2
  [[ $n =~ ^[0-9]+$ ]] && (( n >= 1 && n <= 32 )) || die "N must be 1 to 32 nodes, but got '$n'"
  [[ -x $RAY ]] || die "$RAY not found; run 'make install' first"
  [[ ! -e $STATE/nodes ]] || die "a cluster is already up (state in $STATE); run 'scripts/local-cluster.sh down' first"
  mkdir -p "$STATE"
  # Ray 2.60 refuses RAY_AUTH_MODE=token without a token: make one (kept in ~/.ray/auth_token, shared by the nodes)
  if [[ -z ${RAY_AUTH_TOKEN:-} && ! -s $HOME/.ray/auth_token ]]; then
    RAY_AUTH_MODE=token "$RAY" get-auth-token --generate >/dev/null
  fi
  echo "$n $cpus $HOSTILE" > "$STATE/nodes"
  trap 'say "start failed; tearing down"; down; exit 2' ERR
  ip link add "$BRIDGE" type bridge
  ip addr add "$NET.254/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  local hosts="127.0.0.1 localhost"$'\n'
  for k in $(seq 1 "$n"); do hosts+="$NET.$k node$k"$'\n'; done
  for k in $(seq 1 "$n"); do
    local ns=hpo-n$k dev; dev=$(iface_of "$k")
    ip netns add "$ns"
    ip link add "hpo-v$k" type veth peer name "$dev" netns "$ns"
    ip link set "hpo-v$k" master "$BRIDGE" up
    ip -n "$ns" addr add "$NET.$k/24" dev "$dev"
    ip -n "$ns" link set "$dev" up
    ip -n "$ns" link set lo up
    mkdir -p "/etc/netns/$ns" "$STATE/node$k/tmp"
    if [[ $HOSTILE == 1 ]]; then printf '127.0.0.1 node%s\n%s' "$k" "$hosts"; else printf '%s' "$hosts"; fi \
      > "/etc/netns/$ns/hosts"
  done
  for k in $(seq 1 "$n"); do
    local args=(--node-ip-address "$NET.$k" --num-cpus "$cpus" --num-gpus 0 --disable-usage-stats --block)
    if (( k == 1 )); then
      args=(--head --port "$PORT" --include-dashboard=false "${args[@]}")
    else
      args=(--address "$NET.1:$PORT" "${args[@]}")
    fi
    # setsid: the node outlives this script and its terminal; its own session, so `down` can kill it as a group
    setsid ip netns exec "hpo-n$k" unshare --uts --mount --propagation private -- \
      sh -c 'hostname "$0"; mount --bind "$1" /tmp; shift; exec "$@"' "node$k" "$STATE/node$k/tmp" \
      env HOSTNAME="node$k" RAY_AUTH_MODE=token "$RAY" start "${args[@]}" \
      > "$STATE/node$k/ray.log" 2>&1 < /dev/null &
    echo $! > "$STATE/node$k/pid"
    if (( k == 1 )); then wait_nodes 1; fi
  done
  wait_nodes "$n"
  trap - ERR
  say "$n nodes up: head $NET.1:$PORT (node1); node K is $NET.K; run a command there with: $0 exec K COMMAND"
  echo "$NET.1:$PORT"
}

wait_nodes() { # until `ray status` on the head counts N live nodes (bounded: 120 s)
  local want=$1 deadline=$(( SECONDS + 120 )) have=0
  while (( SECONDS < deadline )); do
    # on_node execs: its subshell's failure (the head not up yet) is caught by the `|| true` outside it
    have=$( { (on_node 1 "$ROOT/.venv/bin/python" -c \
      "import ray; ray.init(address='$NET.1:$PORT', logging_level='ERROR'); print(sum(n['Alive'] for n in ray.nodes()))" \
      ) 2>/dev/null || true; } | tail -n1)
    [[ $have =~ ^[0-9]+$ ]] && (( have >= want )) && return 0
    for k in $(seq 1 "$want"); do
      local pid; pid=$(node_pid "$k")
      [[ -z $pid ]] || kill -0 "$pid" 2>/dev/null || { tail -n 20 "$STATE/node$k/ray.log" >&2; die "node $k's Ray exited (log: $STATE/node$k/ray.log)"; }
    done
    sleep 1
  done
  die "only ${have:-0} of $want Ray nodes joined within 120 s (logs: $STATE/node*/ray.log)"
}

down() {
  local n=0
  [[ -f $STATE/nodes ]] && read -r n _ < "$STATE/nodes"
  # every emulated node ever named, also when the state file is gone: namespaces hpo-nK
  local spaces; spaces=$(ip netns list 2>/dev/null | awk '$1 ~ /^hpo-n[0-9]+$/ {print $1}')
  for k in $(seq 1 "$n"); do
    local pid; pid=$(node_pid "$k")
    [[ -n $pid ]] && kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for ns in $spaces; do
    local pids; pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [[ -n $pids ]] && kill -TERM $pids 2>/dev/null || true
  done
  sleep 1
  for ns in $spaces; do
    local pids; pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [[ -n $pids ]] && kill -KILL $pids 2>/dev/null || true
  done
  for k in $(seq 1 "$n"); do
    local pid; pid=$(node_pid "$k")
    [[ -n $pid ]] && kill -KILL -- "-$pid" 2>/dev/null || true
  done
  for ns in $spaces; do
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
  done
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '$2 ~ /^hpo-v[0-9]+@/ {split($2, a, "@"); print a[1]}'); do
    ip link del "$link" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  rm -f "$STATE/nodes"
  [[ -d $STATE ]] && find "$STATE" -maxdepth 2 -name pid -delete
  say "down (state kept for logs in $STATE)"
}

status() {
  [[ -f $STATE/nodes ]] || { echo "no emulated cluster is up"; return 0; }
  local n cpus hostile; read -r n cpus hostile < "$STATE/nodes"
  for k in $(seq 1 "$n"); do
    local pid; pid=$(node_pid "$k")
    local alive=dead; [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && alive="pid $pid"
    echo "node$k  $NET.$k  $(HOSTILE=$hostile iface_of "$k")  $cpus CPU  $alive"
  done
  on_node 1 "$RAY" status --address "$NET.1:$PORT"
}

HOSTILE=0
cmd=${1:-}; shift || true
case $cmd in
  up)
    n=${1:-}; shift || true
    cpus=1
    while (( $# )); do
      case $1 in
        --cpus) cpus=${2:-}; shift 2 ;;
        --hostile) HOSTILE=1; shift ;;
        *) die "unknown option '$1' for up; usage: up N [--cpus C] [--hostile]" ;;
      esac
    done
    [[ $cpus =~ ^[0-9]+$ ]] && (( cpus >= 1 )) || die "--cpus must be a positive integer, but got '$cpus'"
    need_root; up "$n" "$cpus" ;;
  down) need_root; down ;;
  exec)
    k=${1:-}; shift || true
    [[ $k =~ ^[0-9]+$ ]] || die "usage: exec K COMMAND... (K: the node number, 1 is the head)"
    (( $# )) || die "usage: exec K COMMAND..."
    need_root; on_node "$k" "$@" ;;
  status) need_root; status ;;
  *) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
