package mux

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/delegate/delegatetest"
)

// gcYAML has chains at 1.1.0, which get GC.
const gcYAML = `interfaces:
  - ifname: eth0
    network: svc
    cniVersion: 1.1.0
    plugins:
      - {type: alpha, ipam: {type: lease}}
  - ifname: eth1
    network: storage
    cniVersion: 1.1.0
    plugins:
      - {type: beta}
`

func (h *harness) addAs(id string) {
	h.t.Helper()
	a := h.args("")
	a.ContainerID = id
	h.mustAdd(a)
}

// gc runs GC with the runtime's list of valid attachments.
func (h *harness) gc(valid ...string) error {
	var nc map[string]any
	if err := json.Unmarshal(h.netconf(), &nc); err != nil {
		h.t.Fatal(err)
	}
	nc["cniVersion"] = "1.1.0"
	list := []types.GCAttachment{}
	for _, id := range valid {
		list = append(list, types.GCAttachment{ContainerID: id, IfName: "eth0"})
	}
	nc["cni.dev/valid-attachments"] = list
	b, _ := json.Marshal(nc)
	return h.p.GC(h.t.Context(), &skel.CmdArgs{Path: testPath, StdinData: b})
}

// gcValid returns the valid attachments a GC call handed plugin.
func gcValid(t *testing.T, calls []delegatetest.Call, plugin string) []string {
	t.Helper()
	for _, c := range calls {
		if c.Command != "GC" || c.Plugin != plugin {
			continue
		}
		var list []types.GCAttachment
		if err := json.Unmarshal(c.Conf["cni.dev/valid-attachments"], &list); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range list {
			out = append(out, a.ContainerID+"/"+a.IfName)
		}
		slices.Sort(out)
		return out
	}
	t.Fatalf("no GC call of %s", plugin)
	return nil
}

// TestGCNeverCollectsAValidAttachment: whatever state nicmux has or lacks
// for a container the runtime lists, GC releases none of it and tells the
// delegates every interface it may have is still valid.
func TestGCNeverCollectsAValidAttachment(t *testing.T) {
	h := newHarnessMode(t, true)
	h.write("multi.yaml", gcYAML)
	for _, id := range []string{"torn", "corrupt", "gone", "stale"} {
		h.addAs(id)
	}
	dir := func(id string) string { return filepath.Join(h.stateDir, "containers", id) }
	h.truncate(filepath.Join(dir("torn"), "if-eth1.json"))
	h.truncate(filepath.Join(dir("corrupt"), "container.json"))
	if err := os.RemoveAll(dir("gone")); err != nil {
		t.Fatal(err)
	}
	h.fake.Reset()

	err := h.gc("torn", "corrupt", "gone")
	// The corrupt plan is reported, never released.
	if err == nil || !strings.Contains(err.Error(), "container corrupt") {
		t.Errorf("GC error = %v, want the corrupt record reported", err)
	}
	var released []string
	for _, c := range h.fake.CallsOf("DEL") {
		released = append(released, c.ContainerID+"/"+c.IfName)
	}
	slices.Sort(released)
	if want := []string{"stale/eth0", "stale/eth1"}; !slices.Equal(released, want) {
		t.Errorf("released %v, want only %v", released, want)
	}
	for _, id := range []string{"torn", "corrupt"} {
		if _, err := os.Stat(dir(id)); err != nil {
			t.Errorf("%s's state is gone: %v", id, err)
		}
	}
	// What nicmux cannot read keeps every interface name the attachment
	// files use (storage.yaml's stor0 too), in every network.
	want := []string{"corrupt/eth0", "corrupt/eth1", "corrupt/stor0", "gone/eth0", "gone/eth1", "gone/stor0", "torn/eth0"}
	if got := gcValid(t, h.fake.Calls(), "alpha"); !slices.Equal(got, want) {
		t.Errorf("alpha (network svc) was told %v are valid, want %v", got, want)
	}
	// host-local's leases are collected through each plugin's IPAM.
	if got := gcValid(t, h.fake.Calls(), "lease"); !slices.Equal(got, want) {
		t.Errorf("alpha's IPAM was told %v are valid, want %v", got, want)
	}
	want = []string{"corrupt/eth0", "corrupt/eth1", "corrupt/stor0", "gone/eth0", "gone/eth1", "gone/stor0", "torn/eth1"}
	if got := gcValid(t, h.fake.Calls(), "beta"); !slices.Equal(got, want) {
		t.Errorf("beta (network storage) was told %v are valid, want %v", got, want)
	}
}

// TestGCForwardsToEverySet: every attachment set in the folder gets GC,
// once per delegate network.
func TestGCForwardsToEverySet(t *testing.T) {
	h := newHarness(t)
	h.write("multi.yaml", gcYAML)
	h.write("storage.yaml", strings.ReplaceAll(strings.ReplaceAll(storageYAML, "{type: sigma}", "{type: sigma}\n    cniVersion: 1.1.0"),
		"{type: tau}", "{type: tau}\n    cniVersion: 1.1.0"))
	h.write("other.yaml", gcYAML)
	if err := h.gc(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range h.fake.CallsOf("GC") {
		got = append(got, fmt.Sprintf("%s:%s", c.Plugin, c.Str("name")))
	}
	slices.Sort(got)
	want := []string{"alpha:svc", "beta:storage", "lease:svc", "sigma:multi-eth0", "tau:san"}
	if !slices.Equal(got, want) {
		t.Errorf("GC calls = %v, want %v", got, want)
	}
}

// TestGCSkipsASetOutsideTheFolder: a set that is a symbolic link out of
// the attachment folder is refused by GC as by ADD: its plugins get no GC.
func TestGCSkipsASetOutsideTheFolder(t *testing.T) {
	h := newHarness(t)
	h.write("multi.yaml", gcYAML)
	if err := os.Remove(filepath.Join(h.dir, "storage.yaml")); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "evil.yaml")
	if err := writeSettled(outside, []byte(strings.ReplaceAll(gcYAML, "alpha", "omega")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(h.dir, "evil.yaml")); err != nil {
		t.Fatal(err)
	}
	err := h.gc()
	if err == nil || !strings.Contains(err.Error(), `attachment set "evil" resolves to`) {
		t.Errorf("GC error = %v, want the set outside the folder reported", err)
	}
	var got []string
	for _, c := range h.fake.CallsOf("GC") {
		got = append(got, c.Plugin)
	}
	slices.Sort(got)
	if want := []string{"alpha", "beta", "lease"}; !slices.Equal(got, want) {
		t.Errorf("GC calls = %v, want %v (none of the set outside the folder)", got, want)
	}
}
