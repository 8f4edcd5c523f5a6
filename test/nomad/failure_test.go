package nomad

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nicmux/nicmux/test/testworld"
)

// TestFailingSecondInterface: eth1's chain fails. Nomad tries the setup
// three times, a second apart, with no Remove between: every try must fail
// the same clean way (no "file exists", no duplicate allocation from an
// earlier try's leftovers), and nothing may be left. With the attachment
// file fixed, the same allocation sets up. With reference plugins before
// v1.4.0, a missing macvlan master makes macvlan's DEL fail too, and the
// case asserts what follows from that instead (wantStuckOnMissingMaster).
func TestFailingSecondInterface(t *testing.T) {
	const missing = "nosuchmaster"
	cases := []struct {
		name          string
		edit          func(w *world) chainEdit
		want          string
		missingMaster bool
	}{
		// macvlan fails before it allocates anything.
		{"macvlan master missing", func(*world) chainEdit { return withMaster("multi", "eth1", missing) },
			"eth1: plugin macvlan: Link not found", true},
		// tuning fails after macvlan made a link and host-local a lease.
		{"tuning fails after macvlan and host-local", func(*world) chainEdit { return withBadSysctl("multi", "eth1") },
			"eth1: plugin tuning:", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.install(c.edit(w))
			a := w.newAlloc(nil)

			res, errs := w.node.setup(a)
			if res != nil || len(errs) != setupTries {
				t.Fatalf("setup: result %v after %d failed tries, want %d failed tries", res != nil, len(errs), setupTries)
			}
			t.Logf("every try: %v", errs[0])
			for i, err := range errs {
				if containsAny(err.Error(), "file exists", "duplicate", "already") {
					t.Errorf("try %d tripped over an earlier try's leftovers: %v", i+1, err)
				}
			}
			if c.missingMaster && macvlanDelNeedsMaster() {
				w.wantStuckOnMissingMaster(a, errs)
				return
			}
			for i, err := range errs {
				testworld.WantCNIError(t, err, testworld.CNICode(errs[0]), c.want)
				if err.Error() != errs[0].Error() {
					t.Errorf("try %d failed differently from try 1:\n%v\n%v", i+1, err, errs[0])
				}
			}
			w.assertClean(a, networks(t, "multi")...)

			w.install()
			res = w.mustSetup(a)
			w.wantAttached(a, res, "multi")
			failIf(t, w.node.remove(a), "remove")
			w.assertClean(a, networks(t, "multi")...)
		})
	}
}

// wantStuckOnMissingMaster asserts what a missing macvlan master does with
// reference plugins before v1.4.0 (macvlanDelLimit). nicmux's rollback of
// eth1 is a macvlan DEL, which fails like the ADD (with the recorded chain
// and with the attachment file's, the same), so nicmux keeps eth1 pending
// for a later DEL or ADD; each of Nomad's next tries releases it first,
// which fails the same way. Nothing else is left: eth0 is rolled back, and
// macvlan failed before it made anything. Once the attachment file is
// fixed, the release falls back to its chain, which macvlan can run: the
// same allocation sets up, and Remove leaves nothing (docs/verbs.md, how a
// release converges).
func (w *world) wantStuckOnMissingMaster(a *alloc, errs []error) {
	t := w.t
	t.Helper()
	t.Logf("reference plugins %s: %s", leg.Plugins, macvlanDelLimit)
	const linkNotFound = "eth1: plugin macvlan: Link not found"
	for i, err := range errs {
		want := []string{linkNotFound, "rollback: " + linkNotFound}
		if i > 0 {
			want = []string{"releasing the stale attachment", linkNotFound}
		}
		for _, p := range want {
			if !strings.Contains(err.Error(), p) {
				t.Errorf("try %d: %v; with plugins %s want %q (%s)", i+1, err, leg.Plugins, p, macvlanDelLimit)
			}
		}
	}
	w.assertResourcesGone(a, networks(t, "multi")...)
	w.wantBridgePorts(0)
	pending := func() bool {
		got := w.stateFiles(a.ID)
		return slices.Contains(got, filepath.Join("containers", a.ID, "container.json")) &&
			!slices.Contains(got, filepath.Join("containers", a.ID, "released-eth1"))
	}
	if !pending() {
		t.Errorf("state = %v, want eth1 kept pending for a later DEL (its rollback failed)", w.stateFiles(a.ID))
	}

	// Nomad's teardown: nicmux's DEL runs the stored chain and fails the
	// same way, but go-cni drops DEL errors that contain "not found".
	if err := w.node.remove(a); err != nil {
		t.Errorf("teardown: %v; want go-cni to drop the DEL's %q", err, linkNotFound)
	}
	if !pending() {
		t.Errorf("state after the teardown = %v, want eth1 still pending (its DEL failed)", w.stateFiles(a.ID))
	}

	w.install()
	res := w.mustSetup(a)
	w.wantAttached(a, res, "multi")
	if log := w.Log(); !strings.Contains(log, "released with the attachment file's chain") {
		t.Errorf("the stale release did not fall back to the fixed file's chain:\n%s", log)
	}
	failIf(t, w.node.remove(a), "remove")
	w.assertClean(a, networks(t, "multi")...)
}

// withBadSysctl makes one interface's tuning plugin set a sysctl that does
// not exist.
func withBadSysctl(set, ifname string) chainEdit {
	return func(s, i string, plugins []any) []any {
		if s == set && i == ifname {
			for _, p := range plugins {
				if m := p.(map[string]any); m["type"] == "tuning" {
					m["sysctl"] = map[string]any{"net.ipv4.conf.IFNAME.no_such_knob": "1"}
				}
			}
		}
		return plugins
	}
}
