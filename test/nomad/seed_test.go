package nomad

import (
	"slices"
	"strings"
	"testing"
	"time"

	gocni "github.com/containerd/go-cni"

	"github.com/nicmux/nicmux/test/testworld"
)

// TestFingerprint is what a Nomad client learns by running every binary in
// cni_path bare: nicmux answers with a version at once, and the bridge
// plugin's version opens the CHECK gate (>= 1.3.0).
func TestFingerprint(t *testing.T) {
	start := time.Now()
	if v := pluginVersion(testworld.NicmuxBin()); v == "" {
		t.Errorf("nicmux printed no version when run bare: Nomad's fingerprint would not see it")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("nicmux took %s to print its version; Nomad allows 3 s", d)
	}
	fp := fingerprint(testCNIPath())
	if want := strings.TrimPrefix(leg.Plugins, "v"); fp["bridge"] != want {
		t.Errorf("bridge in cni_path reports version %q, the leg runs the reference plugins %s (from bin/%s)", fp["bridge"], leg.Plugins, leg.PluginsDir)
	}
	if !checkGateOpen(fp) {
		t.Errorf("bridge reports version %q: Nomad's CHECK gate (bridge >= 1.3.0) is closed, restore would never CHECK; "+
			"build the plugins with their release version stamped (make plugins)", fp["bridge"])
	}
	if fp["nicmux"] == "" {
		t.Errorf("fingerprint of cni_path has no nicmux version: %v", fp)
	}
}

// TestSeedJob is the job this project exists for, through go-cni the way
// Nomad calls it: eth0 on a bridge with host-local and portmap, eth1 a
// macvlan with host-local and tuning. Setup; Nomad reports eth0's address;
// CHECK from a fresh client on restore passes; Remove leaves nothing.
func TestSeedJob(t *testing.T) {
	w := newWorld(t)
	w.install()
	a := w.newAlloc(nil)
	res := w.mustSetup(a)

	w.wantAttached(a, res, "multi")
	eth0 := w.wantAllocAddress(res, a, "eth0")
	t.Logf("Nomad %s reports eth0's %s as the allocation address", strings.Join(leg.Releases, ", "), eth0)
	if got := testworld.Sysctl(t, a.NetNS, "net/ipv4/conf/eth1/arp_ignore"); got != "1" {
		t.Errorf("eth1 arp_ignore = %s, want 1 (tuning ran with CNI_IFNAME=eth1)", got)
	}
	if got := testworld.Sysctl(t, a.NetNS, "net/ipv4/conf/eth0/arp_ignore"); got != "0" {
		t.Errorf("eth0 arp_ignore = %s, want 0 (tuning is eth1's only)", got)
	}
	w.wantBridgePorts(1)
	if got := cachedResults(t, a.ID); len(got) != 1 {
		t.Errorf("libcni cached results = %v, want one (what CHECK on restore reads)", got)
	}
	if got := w.LogLines("Nomad will report"); len(got) != 0 {
		t.Errorf("nicmux warned about the address order although eth0 sorts first: %v", got)
	}

	out := w.node.restore(a)
	if !out.Checked || out.CheckErr != nil || out.Rebuilt {
		t.Fatalf("restore: checked %v, CHECK error %v, rebuilt %v; want a passing CHECK", out.Checked, out.CheckErr, out.Rebuilt)
	}
	w.wantState(a.ID, "", "eth0", "eth1")

	failIf(t, w.node.remove(a), "remove")
	w.assertClean(a, networks(t, "multi")...)
	failIf(t, w.node.remove(a), "a second remove (DEL must be idempotent)")
	w.assertClean(a, networks(t, "multi")...)
}

// wantAttached asserts what a Setup of an example set made: the set's
// links in the netns with one address each in the set's subnet, that
// address leased to the allocation's interface, reported by go-cni on a
// sandboxed interface, and nicmux's complete state.
func (w *world) wantAttached(a *alloc, res *gocni.Result, set string) {
	w.t.Helper()
	var ifnames []string
	for _, si := range exampleSet(w.t, set) {
		ifnames = append(ifnames, si.IfName)
	}
	if got := testworld.Links(w.t, a.NetNS); !slices.Equal(got, ifnames) {
		w.t.Fatalf("links in the netns = %v, want %v", got, ifnames)
	}
	for _, si := range exampleSet(w.t, set) {
		addrs := testworld.Addrs(w.t, a.NetNS, si.IfName)
		if len(addrs) != 1 || !inSubnet(addrs[0], si.Subnet) {
			w.t.Errorf("%s addresses = %v, want one in %s", si.IfName, addrs, si.Subnet)
			continue
		}
		if lease := w.wantOneLease(si.Network, a.ID, si.IfName); lease != ipOf(addrs[0]) {
			w.t.Errorf("%s has %s but the %s lease is %s", si.IfName, addrs[0], si.Network, lease)
		}
		got := res.Interfaces[si.IfName]
		if got == nil || got.Sandbox != a.NetNS || len(got.IPConfigs) != 1 || got.IPConfigs[0].IP.String() != ipOf(addrs[0]) {
			w.t.Errorf("go-cni result for %s = %s, want sandbox %s and IP %s", si.IfName, toJSON(got), a.NetNS, ipOf(addrs[0]))
		}
	}
	w.wantState(a.ID, a.Args["NICMUX_ATTACHMENTS"], ifnames...)
}
