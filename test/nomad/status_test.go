package nomad

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	gocni "github.com/containerd/go-cni"
	"github.com/containernetworking/cni/libcni"
	"gopkg.in/yaml.v3"

	"github.com/nicmux/nicmux/test/testworld"
)

// TestWhyCNIVersion100 shows what an operator on a 1.1.0 list gets. Before
// every setup and teardown, Nomad calls go-cni's Status, which from go-cni
// 1.1.11 on asks the plugins of a 1.1.0 list for CNI STATUS, and skips the
// teardown when it fails: the allocation's interfaces would leak. nicmux's
// STATUS therefore never fails for a broken attachment set (a typo in one
// set must not stop the teardown of allocations that do not use it); the
// teardown goes through with either list version. With a 1.0.0 list no
// STATUS is sent at all.
//
// Two legs cannot run the 1.1.0 list as is, and assert why: with libcni
// before v1.2.0 (Nomad 1.8.0 - 1.8.2) every setup fails on nicmux's 1.1.0
// result (libcni110Limit); with reference plugins before v1.6.0 the chains,
// which inherit the list's 1.1.0, are refused by every plugin
// (plugins110Limit), so the STATUS case then pins the chains at 1.0.0.
func TestWhyCNIVersion100(t *testing.T) {
	for _, v := range []string{"1.1.0", "1.0.0"} {
		t.Run(v, func(t *testing.T) {
			w := newWorld(t)
			w.install()
			w.setConflistVersion(v)
			if v == "1.1.0" && !libcniKnows110() {
				w.wantLibcniRejects110()
				return
			}
			if v == "1.1.0" && !pluginsSpeak110() {
				w.wantPluginsRefuse110()
				w.setChainVersion("1.0.0")
				// The list's loopback refuses the 1.1.0 list like the
				// chains' plugins, and the list's version is its own.
				w.dropListPlugin("loopback")
			}
			a := w.newAlloc(nil)
			w.mustSetup(a)
			broken := filepath.Join(w.AttachDir, "typo.yaml")
			testworld.WriteFile(t, broken, []byte("interfaces: [\n"))

			t.Logf("go-cni %s, list %s", moduleVersion(gocni.New), v)
			// go-cni asks the plugins of a 1.1.0 list for STATUS from
			// 1.1.11 on, those of a 1.0.0 list never: the teardown below
			// goes through nicmux's STATUS exactly then.
			sendsStatus := v == "1.1.0" && compareVersions(moduleVersion(gocni.New), "v1.1.11") >= 0
			before := len(w.LogLines("verb=STATUS"))
			failIf(t, w.node.remove(a), "remove with a broken set file beside the attachments")
			if asked := len(w.LogLines("verb=STATUS")) > before; asked != sendsStatus {
				t.Errorf("the teardown asked nicmux for STATUS: %v, want %v (go-cni %s, list %s)", asked, sendsStatus, moduleVersion(gocni.New), v)
			}
			w.assertClean(a, networks(t, "multi")...)
			failIf(t, os.Remove(broken), "removing the broken set")
		})
	}
}

// wantLibcniRejects110 asserts libcni110Limit: nicmux attaches the
// allocation and returns a 1.1.0 result, which libcni cannot read, so
// every setup try fails (the later ones on nicmux finding the allocation
// attached), the interfaces stay until the teardown, and the teardown
// (go-cni before 1.1.11 sends no STATUS) removes everything.
func (w *world) wantLibcniRejects110() {
	t := w.t
	t.Helper()
	t.Logf("containernetworking/cni %s: %s", moduleVersion(libcni.ConfFiles), libcni110Limit)
	a := w.newAlloc(nil)
	res, errs := w.node.setup(a)
	if res != nil || len(errs) != setupTries {
		t.Fatalf("setup with a 1.1.0 list: result %v, %d failed tries; want every try to fail (%s)", res != nil, len(errs), libcni110Limit)
	}
	if want := `unsupported CNI result version "1.1.0"`; !strings.Contains(errs[0].Error(), want) {
		t.Errorf("try 1: %v; want libcni's %s", errs[0], want)
	}
	t.Logf("every try failed: %v", errs)
	if got := testworld.Links(t, a.NetNS); !slices.Equal(got, []string{"eth0", "eth1"}) {
		t.Errorf("links after the failed tries = %v, want try 1's eth0 and eth1: nicmux attached them, libcni failed on its result", got)
	}
	failIf(t, w.node.remove(a), "teardown")
	w.assertClean(a, networks(t, "multi")...)
}

// wantPluginsRefuse110 asserts plugins110Limit: with chains inheriting
// the list's 1.1.0, every setup try fails with the delegates' "incompatible
// CNI versions", naming the versions they support; no plugin made
// anything.
func (w *world) wantPluginsRefuse110() {
	t := w.t
	t.Helper()
	t.Logf("reference plugins %s: %s", leg.Plugins, plugins110Limit)
	a := w.newAlloc(nil)
	res, errs := w.node.setup(a)
	if res != nil || len(errs) != setupTries {
		t.Fatalf("setup with 1.1.0 chains: result %v, %d failed tries; want every try to fail (%s)", res != nil, len(errs), plugins110Limit)
	}
	for _, p := range []string{"eth0: plugin bridge: incompatible CNI versions", `config is "1.1.0"`, `"1.0.0"]`} {
		if !strings.Contains(errs[0].Error(), p) {
			t.Errorf("try 1: %v; want %q", errs[0], p)
		}
	}
	for i, err := range errs {
		if !strings.Contains(err.Error(), "incompatible CNI versions") {
			t.Errorf("try %d: %v; want the plugins' \"incompatible CNI versions\"", i+1, err)
		}
	}
	t.Logf("try 1: %v", errs[0])
	w.assertResourcesGone(a, networks(t, "multi")...)
	w.wantBridgePorts(0)
}

// setChainVersion sets cniVersion on every interface of the installed
// attachment sets: the version nicmux runs their chains at.
func (w *world) setChainVersion(v string) {
	w.t.Helper()
	for _, set := range []string{"multi", "storage"} {
		path := filepath.Join(w.AttachDir, set+".yaml")
		b, err := os.ReadFile(path)
		failIf(w.t, err, "reading the installed set")
		var doc map[string]any
		failIf(w.t, yaml.Unmarshal(b, &doc), "parsing the installed set")
		for _, iface := range interfaces(w.t, doc) {
			iface["cniVersion"] = v
		}
		out, err := yaml.Marshal(doc)
		failIf(w.t, err, "encoding the set")
		testworld.WriteFile(w.t, path, out)
	}
}

// dropListPlugin removes the plugins of a type from the installed
// conflist.
func (w *world) dropListPlugin(typ string) {
	w.t.Helper()
	path := filepath.Join(w.node.ConfigDir, "multi.conflist")
	var list map[string]any
	testworld.ReadJSON(w.t, path, &list)
	var kept []any
	for _, p := range list["plugins"].([]any) {
		if p.(map[string]any)["type"] != typ {
			kept = append(kept, p)
		}
	}
	list["plugins"] = kept
	testworld.WriteJSON(w.t, path, list)
}

// setConflistVersion rewrites the installed conflist's cniVersion.
func (w *world) setConflistVersion(v string) {
	w.t.Helper()
	path := filepath.Join(w.node.ConfigDir, "multi.conflist")
	var list map[string]any
	testworld.ReadJSON(w.t, path, &list)
	list["cniVersion"] = v
	testworld.WriteJSON(w.t, path, list)
}
