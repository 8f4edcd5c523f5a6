package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/nicmux/nicmux/test/testworld"
)

// nicmuxListAt is a conflist of nicmux at version whose attachment file
// gives eth1 a macvlan on the shared L2 with nicmux-ipam, in network
// "storage-net" (the one Exec's direct calls use), at the chain version
// chainVersion (the conflist's when "").
func (n *Node) nicmuxListAt(t *testing.T, version, chainVersion string) (*libcni.NetworkConfigList, string) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "multi.yaml")
	cv := ""
	if chainVersion != "" {
		cv = "\n    cniVersion: " + chainVersion
	}
	yaml := fmt.Sprintf(`interfaces:
  - ifname: eth1
    network: storage-net%s
    plugins:
      - type: macvlan
        master: %s
        mode: bridge
        ipam: %s
`, cv, n.w.SharedL2(), strings.Join(strings.Fields(n.IPAM()), " "))
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	entry, _ := json.Marshal(map[string]any{"type": "nicmux", "attachments": file, "stateDir": n.StateDir,
		"logFile": filepath.Join(dir, "nicmux.log"), "logLevel": "debug"})
	l, err := libcni.ConfListFromBytes(fmt.Appendf(nil, `{"cniVersion": %q, "name": "multi", "plugins": [%s]}`, version, entry))
	if err != nil {
		t.Fatal(err)
	}
	conflist := filepath.Join(dir, "multi.conflist")
	if err := os.WriteFile(conflist, l.Bytes, 0o644); err != nil {
		t.Fatal(err)
	}
	return l, conflist
}

// nicmuxGC runs nicmux gc on the node's conflist.
func nicmuxGC(t *testing.T, conflist string) string {
	t.Helper()
	out, err := exec.Command(testworld.NicmuxBin(), "gc", "-conflist", conflist, "-cni-path", strings.Join(cniPath(), ":")).CombinedOutput()
	if err != nil {
		t.Fatalf("nicmux gc: %v\n%s", err, out)
	}
	return string(out)
}

// nicmux gc releases the nicmux-ipam leases of the owners nicmux does not
// record on this node: one whose record is gone, one leased through
// nicmux-ipam directly; it keeps the live container's, and the leases of
// another node. The chain is at 1.0.0, where no runtime sends GC, and
// macvlan would not forward it to its IPAM plugin.
func TestNicmuxGCReleasesUnrecordedLeases(t *testing.T) {
	w := NewWorld(t, 1)
	n1, n2 := w.Node("n1"), w.Node("n2")
	l, conflist := n1.nicmuxListAt(t, "1.0.0", "")
	nets := map[string]string{}
	for _, id := range []string{"live", "lost"} {
		nets[id] = newNS(t)
		if _, err := n1.addList(l, &libcni.RuntimeConf{ContainerID: id, NetNS: nets[id], IfName: "eth0"}); err != nil {
			t.Fatal(err)
		}
		w.owned(id, "eth0", false)
		w.owned(id, "eth1", true)
	}
	// The record of "lost" is gone (a forget -force, a wiped state
	// folder): nothing of nicmux's will release its lease.
	if err := os.RemoveAll(testworld.ContainerDir(n1.StateDir, "lost")); err != nil {
		t.Fatal(err)
	}
	n1.Add("orphan")
	n2.Add("elsewhere")
	live := w.wantAddr(t, nets["live"], "live", "eth1")

	out := nicmuxGC(t, conflist)
	if !strings.Contains(out, "GC forwarded to the chains of network storage-net\n") {
		t.Errorf("nicmux gc said:\n%s", out)
	}
	w.owned("lost", "eth1", false)
	w.owned("orphan", "eth1", false)
	got := w.Leases()
	for owner, want := range map[string]bool{"live/eth1": true, "elsewhere/eth1": true, "lost/eth1": false, "orphan/eth1": false} {
		if _, held := got[owner]; held != want {
			t.Errorf("after nicmux gc: %s holds a lease: %v, want %v", owner, held, want)
		}
	}
	if ip := w.wantAddr(t, nets["live"], "live", "eth1"); ip != live {
		t.Errorf("the live container's address changed: %s, was %s", ip, live)
	}
	n1.delList(t, l, &libcni.RuntimeConf{ContainerID: "live", NetNS: nets["live"], IfName: "eth0"})
	w.owned("live", "eth1", false)
	n2.Del("elsewhere")
}

// Through nicmux, with the conflist and nicmux-ipam's chain at 1.1.0:
// while etcd is stopped, nicmux's STATUS passes (the chain's 50 is
// logged), so Nomad's teardown goes through: the DEL queues the release,
// which completes once etcd is back. A setup fails on its own, rolled
// back.
func TestStatusThroughNicmuxWhileEtcdIsStopped(t *testing.T) {
	w := NewWorld(t, 1)
	n := w.Node("n1")
	l, _ := n.nicmuxListAt(t, "1.1.0", "")
	netns := newNS(t)
	rt := &libcni.RuntimeConf{ContainerID: "c1", NetNS: netns, IfName: "eth0"}
	if err := n.cni.GetStatusNetworkList(context.Background(), l); err != nil {
		t.Fatalf("STATUS: %v", err)
	}
	if _, err := n.addList(l, rt); err != nil {
		t.Fatal(err)
	}
	w.owned("c1", "eth0", false)
	w.owned("c1", "eth1", true)
	etcd := w.Etcd.Members[0]
	if err := etcd.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := n.cni.GetStatusNetworkList(context.Background(), l); err != nil {
		t.Errorf("STATUS with etcd stopped: %v, want it passed (the teardown follows)", err)
	}
	late := newNS(t)
	if _, err := n.cni.AddNetworkList(context.Background(), l, &libcni.RuntimeConf{ContainerID: "late", NetNS: late, IfName: "eth0"}); err == nil ||
		!strings.Contains(err.Error(), "etcd") {
		t.Errorf("ADD with etcd stopped: %v, want etcd named", err)
	}
	if err := n.cni.DelNetworkList(context.Background(), l, rt); err != nil {
		t.Fatalf("DEL with etcd stopped: %v", err)
	}
	if q := n.Queued(); len(q) == 0 {
		t.Error("the DEL queued no release")
	}
	if err := etcd.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := n.cni.GetStatusNetworkList(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	w.owned("c1", "eth1", false)
	if got := w.Leases(); len(got) != 0 || len(n.Queued()) != 0 {
		t.Errorf("after etcd came back: leases %v, queue %v", got, n.Queued())
	}
}
