#!/usr/bin/env bash
# nicmux-ipam demo: two nodes share one address pool through a local etcd.
# Each node has its own name, data folder and NIC on one switched L2; each
# attaches two containers (macvlan + nicmux-ipam, with cnitool as the
# runtime); the pool hands every container an address no other node hands
# out, from blocks each node claims. Then everything is deleted and nothing
# is left. Run as root via `make demo-cluster` (it builds nicmux-ipam, the
# reference plugins and the test etcd server first). Everything it makes
# lives in namespaces of its own and a temporary folder, all removed on
# exit; etcd listens on the loopback of the demo's own namespace.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="$ROOT/bin"
ETCD="$BIN/tools/etcd"
HOST_NS=nicmux-cluster-host
NODES=(node-a node-b)
CTRS=(ctr1 ctr2)
ENDPOINT=http://127.0.0.1:2379

if [[ $EUID -ne 0 ]]; then
	echo "demo-cluster: needs root (network namespaces)" >&2
	exit 1
fi
for b in "$BIN/nicmux-ipam" "$BIN/nicmux-ipamd" "$BIN/cnitool" "$BIN/plugins/macvlan" "$ETCD"; do
	[[ -x $b ]] || { echo "demo-cluster: $b missing: run 'make demo-cluster'" >&2; exit 1; }
done

WORK="$(mktemp -d /tmp/nicmux-demo-cluster.XXXXXX)"
ETCD_PID=
namespaces() {
	echo "$HOST_NS"
	for n in "${NODES[@]}"; do for c in "${CTRS[@]}"; do echo "nicmux-cluster-$n-$c"; done; done
}
cleanup() {
	[[ -n $ETCD_PID ]] && kill "$ETCD_PID" 2>/dev/null && wait "$ETCD_PID" 2>/dev/null || true
	for ns in $(namespaces); do ip netns del "$ns" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
for ns in $(namespaces); do ip netns del "$ns" 2>/dev/null || true; done

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
inhost() { ip netns exec "$HOST_NS" "$@"; }
ipam() { inhost "$BIN/nicmux-ipam" "$@" -endpoints "$ENDPOINT"; }

step "the L2: $HOST_NS plays the hosts; each node's NIC is plugged into one switch"
ip netns add "$HOST_NS"
inhost ip link set lo up
inhost ip link add demo-switch type bridge
inhost ip link set demo-switch up
for n in "${NODES[@]}"; do
	# A veth end as the node's NIC: not every kernel has dummy links.
	inhost ip link add "$n" type veth peer name "$n-port"
	inhost ip link set "$n-port" master demo-switch
	inhost ip link set "$n-port" up
	inhost ip link set "$n" up
done
inhost ip -br link

step "etcd (one member, on $HOST_NS's loopback)"
# ip netns exec becomes etcd: $! is etcd's PID.
ip netns exec "$HOST_NS" "$ETCD" --name demo --data-dir "$WORK/etcd" --listen-client-urls "$ENDPOINT" --advertise-client-urls "$ENDPOINT" \
	--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
	--initial-cluster demo=http://127.0.0.1:2380 --log-level error >"$WORK/etcd.log" 2>&1 &
ETCD_PID=$!
for _ in $(seq 100); do
	ipam show >/dev/null 2>&1 && break
	sleep 0.1
done
ipam show >/dev/null || { echo "demo-cluster: etcd did not start:"; cat "$WORK/etcd.log"; exit 1; } >&2
echo "etcd serves at $ENDPOINT (pid $ETCD_PID)"

for n in "${NODES[@]}"; do
	mkdir -p "$WORK/$n/net.d"
	cat >"$WORK/$n/net.d/storage.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "storage",
  "plugins": [{
    "type": "macvlan",
    "master": "$n",
    "mode": "bridge",
    "ipam": {
      "type": "nicmux-ipam",
      "pool": "storage",
      "ranges": [[{"subnet": "10.98.0.0/24", "gateway": "10.98.0.1"}]],
      "blockPrefixLength": {"ipv4": 28},
      "etcd": {"endpoints": ["$ENDPOINT"], "timeout": "5s"},
      "node": "$n",
      "dataDir": "$WORK/$n/ipam"
    }
  }]
}
JSON
done
step "each node's conflist: only master, node and dataDir differ"
sed 's/^/  /' "$WORK/${NODES[0]}/net.d/storage.conflist"

cni() {
	local node=$1
	shift
	inhost env CNI_PATH="$BIN:$BIN/plugins" NETCONFPATH="$WORK/$node/net.d" "$BIN/cnitool" "$@"
}

step "ADD: two containers on each node, the nodes at the same time"
adds=()
for n in "${NODES[@]}"; do
	(
		for c in "${CTRS[@]}"; do
			ip netns add "nicmux-cluster-$n-$c"
			cni "$n" add storage "/var/run/netns/nicmux-cluster-$n-$c" >"$WORK/$n/$c.json"
		done
	) &
	adds+=($!)
done
for pid in "${adds[@]}"; do wait "$pid"; done
for n in "${NODES[@]}"; do
	for c in "${CTRS[@]}"; do
		printf '%s %s: eth0 %s\n' "$n" "$c" "$(ip -n "nicmux-cluster-$n-$c" -4 -br addr show eth0 | awk '{print $3}')"
	done
done

step "nicmux-ipam show: the pool, each node's block and every lease's owner"
ipam show

step "nicmux-ipam check: each node's own records against etcd"
for n in "${NODES[@]}"; do ipam check -node "$n" -data-dir "$WORK/$n/ipam"; done

step "DEL every container"
for n in "${NODES[@]}"; do
	for c in "${CTRS[@]}"; do
		cni "$n" del storage "/var/run/netns/nicmux-cluster-$n-$c"
	done
done

step "what is left"
ipam show
left=$(ipam show -json | grep -c '"containerID"' || true)
queued=$(find "$WORK"/node-*/ipam -path '*/releases/*' -type f | wc -l)
if [[ $left -ne 0 || $queued -ne 0 ]]; then
	echo "demo-cluster: $left leases and $queued queued releases left behind" >&2
	exit 1
fi
echo "no lease left; the released addresses stay kept for their owners a while (sticky), the blocks with their nodes (release-node frees a node that is gone)."

step "clean up"
echo "stopping etcd, removing namespaces and $WORK"
