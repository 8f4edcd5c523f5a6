package nomad

import (
	"strings"
	"testing"

	gocni "github.com/containerd/go-cni"

	"github.com/nicmux/nicmux/test/netnsutil"
	"github.com/nicmux/nicmux/test/testworld"
)

// TestCheckFailureRecovery breaks the secondary interface of a running
// allocation, then restarts the client: CHECK from a fresh client fails
// naming eth1 (and only eth1); Nomad destroys the netns WITHOUT Remove,
// makes a new one at the same path and sets up again with the same
// allocation ID, which succeeds with exactly one lease per network.
func TestCheckFailureRecovery(t *testing.T) {
	backend := exampleSet(t, "multi")[1]
	cases := []struct {
		name  string
		breaK func(t *testing.T, a *alloc)
		want  []string
	}{
		{"eth1 deleted", func(t *testing.T, a *alloc) { deleteLink(t, a.NetNS, backend.IfName) }, []string{"eth1:"}},
		{"eth1 re-addressed", func(t *testing.T, a *alloc) { readdress(t, a.NetNS, backend.IfName, hostIn(backend.Subnet, 250)) },
			[]string{"eth1:", "is missing"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.install()
			a := w.newAlloc(nil)
			w.mustSetup(a)
			c.breaK(t, a)

			out := w.node.restore(a)
			if !out.Checked || out.CheckErr == nil {
				t.Fatalf("restore: checked %v, CHECK error %v; want CHECK to fail", out.Checked, out.CheckErr)
			}
			for _, p := range c.want {
				if !strings.Contains(out.CheckErr.Error(), p) {
					t.Errorf("CHECK error %q does not mention %q", out.CheckErr, p)
				}
			}
			t.Logf("CHECK on restore: %v", out.CheckErr)
			if strings.Contains(out.CheckErr.Error(), "eth0:") {
				t.Errorf("CHECK error blames the healthy eth0: %v", out.CheckErr)
			}
			if !out.Rebuilt || out.Result == nil || len(out.SetupErrs) != 0 {
				t.Fatalf("recovery: rebuilt %v, setup errors %v; want the new setup to work at once", out.Rebuilt, out.SetupErrs)
			}
			w.wantRecovered(a, out.Result)
		})
	}
}

// TestHostReboot: after a reboot the netns, the bridge and every iptables
// rule are gone but the files under the state, IPAM and libcni folders are
// kept; Nomad makes a new netns and sets up with the same allocation ID (no
// CHECK).
func TestHostReboot(t *testing.T) {
	w := newWorld(t)
	w.install()
	a := w.newAlloc(nil)
	w.mustSetup(a)

	failIf(t, netnsutil.DestroyAt(a.NetNS), "destroying the netns")
	testworld.DeleteHostLink(w.Bridge)
	failIf(t, testworld.FlushIptables("nat", "filter", "mangle"), "flushing iptables")
	if hostLinkExists(w.Bridge) {
		t.Fatal("the bridge survived the simulated reboot")
	}
	failIf(t, netnsutil.CreateAt(a.NetNS), "recreating the netns")

	res, errs := w.node.setup(a)
	if res == nil || len(errs) != 0 {
		t.Fatalf("setup after reboot: %v", errs)
	}
	w.wantRecovered(a, res)
}

// wantRecovered asserts an allocation set up again in a new netns: links,
// addresses, exactly one lease per network and state as after a first
// setup, one bridge port, DNAT to the new eth0 address only, Nomad reports
// eth0's address, CHECK passes, nicmux logged that it released the old
// attachment, and Remove leaves nothing.
func (w *world) wantRecovered(a *alloc, res *gocni.Result) {
	w.t.Helper()
	w.wantAttached(a, res, "multi")
	eth0 := w.wantAllocAddress(res, a, "eth0")
	w.wantBridgePorts(1) // the new veth only
	w.wantDNAT(a, eth0)
	failIf(w.t, w.node.check(a), "CHECK after recovery")
	// The reason logged varies: the kernel may give the new netns the old
	// one's inode once that is freed, and then nicmux finds none of the
	// recorded links in "the same" namespace instead of a recreated one.
	if got := w.LogLines("releasing stale attachment"); len(got) != 1 {
		w.t.Errorf("nicmux log lines on releasing the stale attachment = %v, want one", got)
	}
	failIf(w.t, w.node.remove(a), "remove")
	w.assertClean(a, networks(w.t, "multi")...)
}

// TestRemoveWithoutNetns: Nomad tears down an allocation whose netns is
// already gone (e.g. one it does not restore after a reboot). Remove must
// succeed and release the leases, rules and state all the same.
func TestRemoveWithoutNetns(t *testing.T) {
	w := newWorld(t)
	w.install()
	a := w.newAlloc(nil)
	w.mustSetup(a)
	failIf(t, netnsutil.DestroyAt(a.NetNS), "destroying the netns")
	failIf(t, w.node.remove(a), "remove without the netns")
	w.assertClean(a, networks(t, "multi")...)
}
