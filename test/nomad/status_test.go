package nomad

import (
	"os"
	"path/filepath"
	"testing"

	gocni "github.com/containerd/go-cni"
)

// TestWhyCNIVersion100 shows what an operator on a 1.1.0 list gets. Before
// every setup and teardown, Nomad calls go-cni's Status, which from go-cni
// 1.1.11 on asks the plugins of a 1.1.0 list for CNI STATUS, and skips the
// teardown when it fails: the allocation's interfaces would leak. nicmux's
// STATUS therefore never fails for a broken attachment set (a typo in one
// set must not stop the teardown of allocations that do not use it); the
// teardown goes through with either list version.
func TestWhyCNIVersion100(t *testing.T) {
	for _, v := range []string{"1.1.0", "1.0.0"} {
		t.Run(v, func(t *testing.T) {
			w := newWorld(t)
			w.install()
			w.setConflistVersion(v)
			a := w.newAlloc(nil)
			w.mustSetup(a)
			broken := filepath.Join(w.AttachDir, "typo.yaml")
			writeFile(t, broken, []byte("interfaces: [\n"))
			t.Logf("go-cni %s, list %s", moduleVersion(gocni.New), v)
			failIf(t, w.node.remove(a), "remove with a broken set file beside the attachments")
			w.assertClean(a, networks(t, "multi")...)
			failIf(t, os.Remove(broken), "removing the broken set")
		})
	}
}

// setConflistVersion rewrites the installed conflist's cniVersion.
func (w *world) setConflistVersion(v string) {
	w.t.Helper()
	path := filepath.Join(w.node.ConfigDir, "multi.conflist")
	var list map[string]any
	readJSON(w.t, path, &list)
	list["cniVersion"] = v
	writeJSON(w.t, path, list)
}
