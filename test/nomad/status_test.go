package nomad

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	gocni "github.com/containerd/go-cni"
)

// TestWhyCNIVersion100 proves docs/nomad.md's advice. Before a teardown,
// Nomad calls go-cni's Status, which from go-cni 1.1.11 on asks the plugins
// of a 1.1.0 list for CNI STATUS; when that fails, the teardown is skipped
// and the allocation leaks. nicmux's STATUS fails while any attachment set
// in its folder does not parse. With a 1.0.0 list no STATUS is sent.
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

			err := w.node.remove(a)
			if v == "1.1.0" && goCNIAtLeast(1, 1, 11) {
				t.Logf("go-cni %s, list %s: %v", moduleVersion(gocni.New), v, err)
				wantCNIError(t, err, 50, "teardown skipped", "typo.yaml")
				w.wantOneLease(exampleSet(t, "multi")[0].Network, a.ID, "eth0") // leaked until STATUS passes
				failIf(t, os.Remove(broken), "fixing the set")
				failIf(t, w.node.remove(a), "remove once STATUS passes")
			} else {
				failIf(t, err, "remove with a broken set file beside the attachments")
			}
			w.assertClean(a, networks(t, "multi")...)
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

// goCNIAtLeast reports whether the linked go-cni is at least the version.
func goCNIAtLeast(major, minor, patch int) bool {
	parts := strings.Split(strings.TrimPrefix(moduleVersion(gocni.New), "v"), ".")
	if len(parts) != 3 {
		return false
	}
	have := [3]int{}
	for i, p := range parts {
		have[i], _ = strconv.Atoi(strings.SplitN(p, "-", 2)[0])
	}
	want := [3]int{major, minor, patch}
	for i := range have {
		if have[i] != want[i] {
			return have[i] > want[i]
		}
	}
	return true
}
