#!/usr/bin/env bash
# nicmux demo: attach two interfaces to a real network namespace through one
# CNI entry, check them, break one, and delete them, with cnitool as the
# runtime. Run as root via `make demo` (it builds nicmux and the reference
# plugins first). Everything it makes is inside two namespaces of its own and
# a temporary folder, all removed on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="$ROOT/bin"
HOST_NS=nicmux-demo-host
CTR_NS=nicmux-demo-ctr
CTR_PATH=/var/run/netns/$CTR_NS

if [[ $EUID -ne 0 ]]; then
	echo "demo: needs root (network namespaces)" >&2
	exit 1
fi
for b in "$BIN/nicmux" "$BIN/cnitool" "$BIN/plugins/bridge"; do
	[[ -x $b ]] || { echo "demo: $b missing: run 'make demo'" >&2; exit 1; }
done

WORK="$(mktemp -d /tmp/nicmux-demo.XXXXXX)"
cleanup() {
	ip netns del "$CTR_NS" 2>/dev/null || true
	ip netns del "$HOST_NS" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
cleanup_stale() { ip netns del "$CTR_NS" 2>/dev/null || true; ip netns del "$HOST_NS" 2>/dev/null || true; }
cleanup_stale

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "namespaces: $HOST_NS (plays the host) and $CTR_NS (the container)"
ip netns add "$HOST_NS"
ip netns add "$CTR_NS"
ip -n "$HOST_NS" link set lo up
# The macvlan master: a veth end, since not every kernel has dummy links.
ip -n "$HOST_NS" link add demo-master type veth peer name demo-peer
ip -n "$HOST_NS" link set demo-master up
ip -n "$HOST_NS" link set demo-peer up

mkdir -p "$WORK/net.d" "$WORK/nicmux"
cat >"$WORK/net.d/multi.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "multi",
  "plugins": [{
    "type": "nicmux",
    "attachments": "$WORK/nicmux/multi.yaml",
    "stateDir": "$WORK/state",
    "logFile": "$WORK/nicmux.log",
    "logLevel": "info",
    "capabilities": {"portMappings": true}
  }, {
    "type": "loopback"
  }]
}
JSON
cat >"$WORK/nicmux/multi.yaml" <<YAML
interfaces:
  - ifname: eth0
    network: service
    plugins:
      - type: bridge
        bridge: demo-br0
        isGateway: true
        ipam:
          type: host-local
          dataDir: $WORK/ipam
          ranges: [[{subnet: 172.26.64.0/20}]]
          routes: [{dst: 0.0.0.0/0}]
  - ifname: eth1
    network: storage
    plugins:
      - type: macvlan
        master: demo-master
        mode: bridge
        ipam:
          type: host-local
          dataDir: $WORK/ipam
          ranges: [[{subnet: 10.99.0.0/24}]]
      - type: tuning
        mtu: 1400
        dataDir: $WORK/tuning
YAML
echo "conflist ($WORK/net.d/multi.conflist):"; sed 's/^/  /' "$WORK/net.d/multi.conflist"
echo "attachment file ($WORK/nicmux/multi.yaml):"; sed 's/^/  /' "$WORK/nicmux/multi.yaml"

cni() {
	ip netns exec "$HOST_NS" env CNI_PATH="$BIN:$BIN/plugins" NETCONFPATH="$WORK/net.d" \
		"$BIN/cnitool" "$@"
}

step "nicmux bare (what Nomad's fingerprint sees)"
"$BIN/nicmux" || true

step "nicmux validate -strict: the files, the plugins and the master link (in $HOST_NS)"
ip netns exec "$HOST_NS" "$BIN/nicmux" validate -strict -conflist "$WORK/net.d/multi.conflist" -cni-path "$BIN:$BIN/plugins"

step "ADD: the merged result"
cni add multi "$CTR_PATH"

step "ip addr in $CTR_NS"
ip -n "$CTR_NS" addr

step "nicmux show: what nicmux recorded for the container"
"$BIN/nicmux" show -state-dir "$WORK/state"

step "CHECK"
cni check multi "$CTR_PATH" && echo "CHECK passed"

step "break eth1 (delete its address), then CHECK again"
ip -n "$CTR_NS" addr flush dev eth1
if out=$(cni check multi "$CTR_PATH" 2>&1); then
	echo "demo: CHECK should have failed" >&2
	exit 1
fi
# cnitool prints its usage after any error: show the error only.
echo "$out" | grep -m1 '^Error:'
echo "(CHECK failed, naming eth1, as it should)"

step "DEL"
cni del multi "$CTR_PATH" && echo "DEL done"

step "what is left"
echo "links in $CTR_NS:"; ip -n "$CTR_NS" -br link
echo "IPAM leases:"; find "$WORK/ipam" -type f ! -name lock ! -name 'last_reserved_ip*' | sed 's/^/  /'
# The store-wide file stays: GC's barrier (gc.lock).
storewide=(! -name gc.lock)
echo "nicmux state:"; find "$WORK/state" -type f "${storewide[@]}" | sed 's/^/  /'
leftover=$(find "$WORK/ipam" "$WORK/state" -type f ! -name lock "${storewide[@]}" ! -name 'last_reserved_ip*' | wc -l)
links=$(ip -n "$CTR_NS" -br link | grep -vc '^lo' || true)
if [[ $leftover -ne 0 || $links -ne 0 ]]; then
	echo "demo: something was left behind" >&2
	exit 1
fi
echo "nothing left."

step "nicmux log"
cat "$WORK/nicmux.log"

step "clean up"
echo "removing namespaces and $WORK"
