package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/test/testworld"
)

// TestNetNSNotANamespace: a CNI_NETNS that is not a network namespace (an
// empty file left under /run/netns, a namespace of another type) is
// refused with code 4 before any delegate runs, and the DELs that follow
// succeed, however often they come.
func TestNetNSNotANamespace(t *testing.T) {
	w := newWorld(t)
	l := w.list(w.seed(), nil)
	empty := filepath.Join(testworld.NetnsDir, "nicmux-test-empty-"+testworld.RandHex(6))
	testworld.WriteFile(t, empty, "")
	t.Cleanup(func() { _ = os.Remove(empty) })
	for i, path := range []string{empty, "/proc/self/ns/mnt"} {
		r := rt(fmt.Sprintf("notns-%d", i), path)
		before := len(w.calls())
		_, err := w.add(l, r)
		testworld.WantCNIError(t, err, types.ErrInvalidEnvironmentVariables, "CNI_NETNS", path, "not a network namespace")
		for _, n := range []string{"svc", "storage"} {
			if got := w.leases(n); len(got) != 0 {
				t.Errorf("ADD with CNI_NETNS=%s took %s leases %v", path, n, got)
			}
		}
		if got := w.stateFiles(); len(got) != 0 {
			t.Errorf("ADD with CNI_NETNS=%s left state %v", path, got)
		}
		if got := w.calls()[before:]; len(got) != 0 {
			t.Errorf("ADD with CNI_NETNS=%s reached delegates %d times", path, len(got))
		}
		for k := 1; k <= 2; k++ {
			if err := w.del(l, r); err != nil {
				t.Errorf("DEL %d with CNI_NETNS=%s: %v", k, path, err)
			}
		}
	}
	testworld.WantNoLeaks(t, testworld.Census{Bridge: w.Bridge, IPAMDir: w.IPAMDir, Networks: []string{"svc", "storage"}, StateDir: w.StateDir})
}
