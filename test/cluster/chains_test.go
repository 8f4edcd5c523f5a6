package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/nicmux/nicmux/test/netnsutil"
	"github.com/nicmux/nicmux/test/testworld"
)

func id(i int) string { return fmt.Sprintf("c%03d", i) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newNS gives the test a fresh container namespace, removed at cleanup.
func newNS(t *testing.T) string { return testworld.NewNetns(t, "nicmux-cluster-") }

// list makes a configuration list of one plugin.
func list(t *testing.T, name string, plugin string) *libcni.NetworkConfigList {
	t.Helper()
	l, err := libcni.ConfListFromBytes([]byte(fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [%s]}`, name, plugin)))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (n *Node) addList(l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (*types100.Result, error) {
	res, err := n.cni.AddNetworkList(context.Background(), l, rt)
	if err != nil {
		return nil, err
	}
	n.w.owned(rt.ContainerID, rt.IfName, true)
	return types100.NewResultFromResult(res)
}

func (n *Node) delList(t *testing.T, l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) {
	t.Helper()
	if err := n.cni.DelNetworkList(context.Background(), l, rt); err != nil {
		t.Fatalf("DEL %s: %v", rt.ContainerID, err)
	}
	n.w.owned(rt.ContainerID, rt.IfName, false)
}

// wantAddr checks that ifname in netns holds the address etcd leases to
// the owner, and returns it.
func (w *World) wantAddr(t *testing.T, netns, id, ifname string) string {
	t.Helper()
	l, ok := w.Leases()[id+"/"+ifname]
	if !ok || len(l.Addresses) != 1 {
		t.Fatalf("etcd leases %+v to %s/%s", l, id, ifname)
	}
	addrs, err := netnsutil.Addrs(netns, ifname)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 1 || !strings.HasPrefix(addrs[0], l.Addresses[0].IP+"/") {
		t.Fatalf("%s in the namespace holds %v, etcd leases %s", ifname, addrs, l.Addresses[0].IP)
	}
	return l.Addresses[0].IP
}

func TestUnderMacvlan(t *testing.T) {
	w := NewWorld(t, 1)
	n := w.Node("n1")
	l := list(t, "storage-net", fmt.Sprintf(`{"type": "macvlan", "master": %q, "mode": "bridge", "ipam": %s}`, w.SharedL2(), n.IPAM()))
	netns := newNS(t)
	rt := &libcni.RuntimeConf{ContainerID: "mv1", NetNS: netns, IfName: "eth1"}
	if _, err := n.addList(l, rt); err != nil {
		t.Fatal(err)
	}
	w.wantAddr(t, netns, "mv1", "eth1")
	if err := n.cni.CheckNetworkList(context.Background(), l, rt); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	n.delList(t, l, rt)
	n.delList(t, l, rt)
	if links, _ := netnsutil.Links(netns); len(links) != 0 || len(w.Leases()) != 0 {
		t.Errorf("after DEL: links %v, leases %v", links, w.Leases())
	}
}

func TestUnderBridge(t *testing.T) {
	w := NewWorld(t, 1)
	n := w.Node("n1")
	br := "br" + testworld.RandHex(4)
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(br); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	l := list(t, "svc", fmt.Sprintf(`{"type": "bridge", "bridge": %q, "isGateway": true, "ipam": %s}`, br, n.IPAM()))
	netns := newNS(t)
	rt := &libcni.RuntimeConf{ContainerID: "br1", NetNS: netns, IfName: "eth0"}
	r, err := n.addList(l, rt)
	if err != nil {
		t.Fatal(err)
	}
	ip := w.wantAddr(t, netns, "br1", "eth0")
	if len(r.IPs) != 1 || r.IPs[0].Address.IP.String() != ip || r.IPs[0].Gateway.String() != "10.20.0.1" {
		t.Errorf("result %+v", r)
	}
	if err := n.cni.CheckNetworkList(context.Background(), l, rt); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	n.delList(t, l, rt)
}

// nicmuxList is a conflist of nicmux whose attachment file gives eth1 a
// macvlan on the shared L2 with nicmux-ipam, the ips capability declared.
func (n *Node) nicmuxList(t *testing.T) *libcni.NetworkConfigList {
	t.Helper()
	file := filepath.Join(t.TempDir(), "multi.yaml")
	yaml := fmt.Sprintf(`interfaces:
  - ifname: eth1
    network: storage
    plugins:
      - type: macvlan
        master: %s
        mode: bridge
        capabilities: {ips: true}
        ipam: %s
`, n.w.SharedL2(), strings.Join(strings.Fields(n.IPAM()), " "))
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	entry, _ := json.Marshal(map[string]any{"type": "nicmux", "attachments": file, "stateDir": n.StateDir, "logFile": filepath.Join(t.TempDir(), "nicmux.log")})
	return list(t, "multi", string(entry))
}

// The seed job's eth1 with nicmux-ipam: macvlan on the shared L2, its
// address pinned through NICMUX_IPS_eth1 (the ips capability) for one
// container and chosen for another.
func TestThroughNicmux(t *testing.T) {
	w := NewWorld(t, 1)
	n := w.Node("n1")
	l := n.nicmuxList(t)
	pinned, other := newNS(t), newNS(t)
	rtPinned := &libcni.RuntimeConf{ContainerID: "pinned", NetNS: pinned, IfName: "eth0",
		Args: [][2]string{{"IgnoreUnknown", "true"}, {"NICMUX_IPS_eth1", "10.20.0.77/24"}}}
	if _, err := n.addList(l, rtPinned); err != nil {
		t.Fatal(err)
	}
	w.owned("pinned", "eth0", false)
	w.owned("pinned", "eth1", true)
	if ip := w.wantAddr(t, pinned, "pinned", "eth1"); ip != "10.20.0.77" {
		t.Errorf("pinned container got %s, want 10.20.0.77", ip)
	}
	rtOther := &libcni.RuntimeConf{ContainerID: "other", NetNS: other, IfName: "eth0"}
	if _, err := n.addList(l, rtOther); err != nil {
		t.Fatal(err)
	}
	w.owned("other", "eth0", false)
	w.owned("other", "eth1", true)
	if ip := w.wantAddr(t, other, "other", "eth1"); ip == "10.20.0.77" {
		t.Error("the second container got the pinned address")
	}
	for _, rt := range []*libcni.RuntimeConf{rtPinned, rtOther} {
		if err := n.cni.CheckNetworkList(context.Background(), l, rt); err != nil {
			t.Errorf("CHECK %s: %v", rt.ContainerID, err)
		}
		n.delList(t, l, rt)
		w.owned(rt.ContainerID, "eth1", false)
	}
	if got := w.Leases(); len(got) != 0 {
		t.Errorf("after DEL: %v", got)
	}
}
