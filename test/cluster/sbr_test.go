package cluster

import (
	"strings"
	"testing"
)

// The storage gateway of the fleet example's pool, and a peer behind it.
const (
	storageGateway = "10.50.0.1"
	remotePeer     = "10.60.0.5"
)

// multiHomed sets up one allocation of the fleet example, with edits, on a
// node, and a router on the shared L2 that holds the pool's gateway and a
// peer behind it; the allocation echoes on eth1's address. It returns the
// allocation's namespace, eth1's address, and a prober on the peer.
func multiHomed(t *testing.T, edits ...chainEdit) (netns, ip string, peer *Prober) {
	t.Helper()
	w := NewWorld(t, 1)
	f := w.Node("client-1").InstallFleet(t, edits...)
	a := f.NewAlloc(t)
	res, errs := a.Setup()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	t.Cleanup(func() {
		if err := a.Remove(); err != nil {
			t.Errorf("remove: %v", err)
		}
	})
	ip, err := eth1IP(res)
	if err != nil {
		t.Fatal(err)
	}
	Echo(t, a.NetNS, ip)
	router := w.Node("router").Station(t, storageGateway+"/16", remotePeer+"/32")
	return a.NetNS, ip, NewProber(t, router, remotePeer)
}

// The example job's eth1 chain ends with sbr: a peer that is not on the
// storage subnet (behind the storage gateway, on another node of the
// shared L2) sends to eth1's address, and the reply comes back: it leaves
// by eth1 towards the gateway (eth1 counts the replies, eth0 sends none
// of them), although the allocation's default route is eth0's.
func TestMultiHomedRepliesLeaveByEth1(t *testing.T) {
	netns, ip, peer := multiHomed(t)
	if got := routeFrom(t, netns, remotePeer, ip); got != "dev eth1 via "+storageGateway {
		t.Errorf("ip route get %s from %s: %s, want dev eth1 via %s", remotePeer, ip, got, storageGateway)
	}
	if got := routeFrom(t, netns, remotePeer, ""); !strings.HasPrefix(got, "dev eth0 ") {
		t.Errorf("ip route get %s (no source): %s, want eth0's default route", remotePeer, got)
	}
	const n = 10
	eth0, eth1 := txPackets(t, netns, "eth0"), txPackets(t, netns, "eth1")
	for i := range n {
		if err := peer.Ask(ip); err != nil {
			t.Fatalf("datagram %d from %s to eth1's %s: %v", i, remotePeer, ip, err)
		}
	}
	d0, d1 := txPackets(t, netns, "eth0")-eth0, txPackets(t, netns, "eth1")-eth1
	t.Logf("over %d echoes eth1 sent %d packets, eth0 %d", n, d1, d0)
	if d1 < n || d0 >= n {
		t.Errorf("over %d echoes eth1 sent %d packets and eth0 %d: want the replies on eth1", n, d1, d0)
	}
}

// Without sbr the same reply follows the default route, out of eth0, and
// never reaches the peer: what sbr is in the chain for.
func TestMultiHomedWithoutSbrLosesTheReply(t *testing.T) {
	noSbr := func(ifname string, plugins []any) []any {
		if ifname == "eth1" {
			return plugins[:len(plugins)-1]
		}
		return plugins
	}
	netns, ip, peer := multiHomed(t, noSbr)
	if got := routeFrom(t, netns, remotePeer, ip); !strings.HasPrefix(got, "dev eth0 ") {
		t.Errorf("without sbr, ip route get %s from %s: %s, want eth0's default route", remotePeer, ip, got)
	}
	if err := peer.Ask(ip); err == nil {
		t.Errorf("without sbr, the reply to %s reached it", remotePeer)
	}
}
