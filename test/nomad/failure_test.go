package nomad

import (
	"testing"
)

// TestFailingSecondInterface: eth1's chain fails. Nomad tries the setup
// three times, a second apart, with no Remove between: every try must fail
// the same clean way (no "file exists", no duplicate allocation from an
// earlier try's leftovers), and nothing may be left. With the attachment
// file fixed, the same allocation sets up.
func TestFailingSecondInterface(t *testing.T) {
	cases := []struct {
		name string
		edit func(w *world) chainEdit
		want string
	}{
		// macvlan fails before it allocates anything.
		{"macvlan master missing", func(*world) chainEdit { return withMaster("multi", "eth1", "nosuchmaster") },
			"eth1: plugin macvlan: Link not found"},
		// tuning fails after macvlan made a link and host-local a lease.
		{"tuning fails after macvlan and host-local", func(*world) chainEdit { return withBadSysctl("multi", "eth1") },
			"eth1: plugin tuning:"},
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
				wantCNIError(t, err, cniCode(errs[0]), c.want)
				if err.Error() != errs[0].Error() {
					t.Errorf("try %d failed differently from try 1:\n%v\n%v", i+1, err, errs[0])
				}
				if containsAny(err.Error(), "file exists", "duplicate", "already") {
					t.Errorf("try %d tripped over an earlier try's leftovers: %v", i+1, err)
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
