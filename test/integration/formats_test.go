package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/test/testworld"
)

// TestNewerRecordFormat: a container a newer nicmux attached (its records
// of a format after this nicmux's: it was rolled back below that one) is
// live for every verb: ADD and DEL refuse it (code 5) and release
// nothing, CHECK passes, nicmux gc keeps it and forwards no GC that could
// free its leases; nicmux forget drops it only with -force, releasing the
// attachment file's chains for it (its leases; its links stay in a
// namespace the record cannot name).
func TestNewerRecordFormat(t *testing.T) {
	w := newWorld(t)
	l := w.list(w.seed(), nil)
	netns := newNS(t)
	const id = "newer-1"
	r := rt(id, netns)
	w.mustAdd(l, r)
	files, err := filepath.Glob(filepath.Join(testworld.ContainerDir(w.StateDir, id), "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"nicmuxContainerV2", "nicmuxInterfaceV2"} {
			b = []byte(strings.ReplaceAll(string(b), `"kind":"`+k+`"`, `"kind":"`+strings.TrimSuffix(k, "2")+`3"`))
		}
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshotState(t, w.StateDir)
	leases := w.leases("svc")
	kept := func(what string) {
		t.Helper()
		if snapshotState(t, w.StateDir) != before {
			t.Errorf("%s changed the newer record", what)
		}
		if got := testworld.Links(t, netns); len(got) != 2 {
			t.Errorf("%s: links in the namespace %v", what, got)
		}
		if got := w.leases("svc"); len(got) != len(leases) {
			t.Errorf("%s: svc leases %v, were %v", what, got, leases)
		}
	}
	_, err = w.add(l, r)
	testworld.WantCNIError(t, err, types.ErrIOFailure, "newer nicmux", "container.json")
	kept("ADD")
	testworld.WantCNIError(t, w.del(l, r), types.ErrIOFailure, "newer nicmux", "container.json")
	kept("DEL")
	if err := w.check(l, r); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	conflist := w.conflistFile(l)
	g := w.ops(conflist, "gc")
	if g.code != 1 || !strings.Contains(g.stdout+g.stderr, "newer nicmux") {
		t.Errorf("nicmux gc: %s", g)
	}
	kept("nicmux gc")
	if f := w.ops(conflist, "forget", id); f.code == 0 {
		t.Errorf("forget without -force: %s", f)
	}
	kept("forget without -force")
	if f := w.ops(conflist, "forget", "-force", id); f.code != 0 {
		t.Fatalf("forget -force: %s", f)
	}
	// Which namespace the record names cannot be read: the links stay
	// there, for the runtime's teardown of it; the rest is released.
	testworld.WantNoLeaks(t, testworld.Census{IPAMDir: w.IPAMDir, Networks: []string{"svc", "storage"}, StateDir: w.StateDir})
}
