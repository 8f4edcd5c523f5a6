package nomad

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nicmux/nicmux/test/netnsutil"
	"github.com/nicmux/nicmux/test/testworld"
)

// TestHandWrittenChain runs the chain nicmux replaces through the same
// harness: the example's eth0 plugins (bridge, portmap) and eth1 plugins
// (macvlan, tuning) in ONE conflist, as operators write it today, beside the
// same interfaces through nicmux. It asserts the failures NOMAD.md describes
// (the baseline nicmux beats) and nicmux passing where they fail.
func TestHandWrittenChain(t *testing.T) {
	t.Run("plain chain: ADD fails with file exists", testPlainChain)
	t.Run("ifname wrapper: eth0 lost from the result, CHECK fails", testWrappedChain)
	t.Run("nicmux: same interfaces pass", testSameThroughNicmux)
}

// testPlainChain: macvlan tries to make a second eth0. Nomad's retries (no
// Remove between) then trip over the first try's veth, and the first try's
// lease and DNAT rules leak.
func testPlainChain(t *testing.T) {
	w := newWorld(t)
	a := w.handmadeAlloc(false)

	res, errs := w.node.setup(a)
	if res != nil || len(errs) != setupTries {
		t.Fatalf("setup of the plain chain: result %v, %d failed tries; want every try to fail", res != nil, len(errs))
	}
	if !strings.Contains(errs[0].Error(), "file exists") {
		t.Errorf("try 1: %v; want macvlan's \"file exists\" renaming its link to eth0", errs[0])
	}
	for i, err := range errs[1:] {
		if !strings.Contains(err.Error(), "already exists") {
			t.Errorf("try %d: %v; want the bridge to trip over try 1's eth0", i+2, err)
		}
	}
	if got := testworld.Links(t, a.NetNS); !slices.Equal(got, []string{"eth0"}) {
		t.Errorf("links after the failed tries = %v, want try 1's leaked eth0", got)
	}
	if got := w.leases("handmade"); len(got) != 1 {
		t.Errorf("leases after the failed tries = %v, want the one try 1 leaked", got)
	}
	if got := dnatTargets(t, a); len(got) != 2 {
		t.Errorf("DNAT rules after the failed tries = %v, want the two try 1 leaked", got)
	}
	t.Logf("plain chain: %d tries failed: %v", len(errs), errs)
	w.cleanupHandmade(a)
}

// testWrappedChain: a wrapper renames the macvlan to eth1. ADD works, but
// the result holds only what the last plugin returned (eth1), so Nomad
// reports eth1's address; CHECK on restore hands every plugin that result
// and fails; the rebuild that follows (new netns, no Remove) fails on the
// leases the old netns still holds, which kills the allocation.
func testWrappedChain(t *testing.T) {
	w := newWorld(t)
	a := w.handmadeAlloc(true)

	res := w.mustSetup(a)
	if got := testworld.Links(t, a.NetNS); !slices.Equal(got, []string{"eth0", "eth1"}) {
		t.Fatalf("links = %v, want [eth0 eth1]", got)
	}
	if got := w.leases("handmade"); len(got) != 2 {
		t.Errorf("leases = %v, want one per interface", got)
	}
	if eth0 := res.Interfaces["eth0"]; eth0 != nil && len(eth0.IPConfigs) != 0 {
		t.Errorf("go-cni result has eth0's IPs %v; the wrapped chain should have lost them", toJSON(eth0.IPConfigs))
	}
	eth1 := w.wantAllocAddress(res, a, "eth1") // eth0's address is lost
	if !inSubnet(eth1+"/32", exampleSet(t, "multi")[1].Subnet) {
		t.Errorf("Nomad reports %s, want eth1's backend address", eth1)
	}
	out := w.node.restore(a)
	if !out.Checked || out.CheckErr == nil {
		t.Fatalf("restore: checked %v, CHECK error %v; want CHECK to fail", out.Checked, out.CheckErr)
	}
	// Nomad rebuilds the netns without Remove: the old leases are still
	// held, so every try of the new setup fails and the allocation dies.
	if !out.Rebuilt || out.Result != nil || len(out.SetupErrs) != setupTries {
		t.Fatalf("rebuild: %v, result %v, %d failed tries; want every try to fail", out.Rebuilt, out.Result != nil, len(out.SetupErrs))
	}
	if !strings.Contains(out.SetupErrs[0].Error(), "duplicate allocation") {
		t.Errorf("rebuild try 1: %v; want host-local's duplicate allocation", out.SetupErrs[0])
	}
	t.Logf("wrapped chain: Nomad reports %s (eth1); CHECK on restore: %v; rebuild: %v", eth1, out.CheckErr, out.SetupErrs)
	w.cleanupHandmade(a)
}

// testSameThroughNicmux: the very same plugins as two nicmux interfaces.
func testSameThroughNicmux(t *testing.T) {
	w := newWorld(t)
	w.install()
	a := w.newAlloc(nil)
	res := w.mustSetup(a)
	w.wantAttached(a, res, "multi")
	ip := w.wantAllocAddress(res, a, "eth0")
	out := w.node.restore(a)
	if !out.Checked || out.CheckErr != nil || out.Rebuilt {
		t.Errorf("restore: checked %v, CHECK error %v, rebuilt %v; want a passing CHECK", out.Checked, out.CheckErr, out.Rebuilt)
	}
	t.Logf("nicmux: Nomad reports %s (eth0); CHECK on restore passes", ip)
	failIf(t, w.node.remove(a), "remove")
	w.assertClean(a, networks(t, "multi")...)
}

// handmadeAlloc writes the hand-written conflist (installHandmade) and
// makes an allocation of a job with mode "cni/handmade".
func (w *world) handmadeAlloc(wrapped bool) *alloc {
	w.t.Helper()
	w.installHandmade(wrapped)
	return w.newAlloc(nil)
}

// installHandmade writes the hand-written conflist "handmade" into the
// config dir (eth0's plugins then eth1's, from the example set; with
// wrapped, each eth1 plugin inside the ifname wrapper) and points the job
// at it (mode "cni/handmade").
func (w *world) installHandmade(wrapped bool) {
	w.t.Helper()
	var plugins []any
	for _, iface := range interfaces(w.t, readSet(w.t, "multi")) {
		for _, p := range iface["plugins"].([]any) {
			m := p.(map[string]any)
			w.localize(m)
			if wrapped && ifnameOf(iface) != "eth0" {
				m = map[string]any{"type": "ifrename", "ifname": ifnameOf(iface), "delegate": m}
			}
			plugins = append(plugins, m)
		}
	}
	testworld.WriteJSON(w.t, filepath.Join(w.node.ConfigDir, "handmade.conflist"),
		map[string]any{"cniVersion": "1.0.0", "name": "handmade", "plugins": plugins})
	w.job.Mode = "cni/handmade"
}

// cleanupHandmade removes what a hand-written chain left and asserts it is
// gone, so that it cannot hide in later tests.
func (w *world) cleanupHandmade(a *alloc) {
	w.t.Helper()
	if err := w.node.remove(a); err != nil {
		w.t.Logf("remove of the hand-written chain: %v", err)
	}
	failIf(w.t, netnsutil.DestroyAt(a.NetNS), "destroying the netns")
	if got := w.leases("handmade"); len(got) != 0 {
		w.t.Errorf("leases left by the hand-written chain: %v", got)
	}
	if got := allocNATRules(w.t, a); len(got) != 0 {
		w.t.Errorf("nat rules left by the hand-written chain: %v", got)
	}
}
