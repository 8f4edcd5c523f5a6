package mux

import (
	"bytes"
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

// ipamYAML has chains below 1.1.0 whose IPAM sections GC reaches all the
// same: eth1's two plugins share one section (written in two key orders),
// eth2 shares eth1's network with a section of its own.
const ipamYAML = `interfaces:
  - ifname: eth0
    network: svc
    cniVersion: 1.0.0
    plugins:
      - {type: alpha, ipam: {type: lease, subnet: 10.1.0.0/24}}
  - ifname: eth1
    network: storage
    cniVersion: 0.4.0
    plugins:
      - {type: beta, ipam: {type: lease, subnet: 10.2.0.0/24}}
      - {type: beta2, ipam: {subnet: 10.2.0.0/24, type: lease}}
  - ifname: eth2
    network: storage
    cniVersion: 1.1.0
    plugins:
      - {type: gamma, ipam: {type: lease, subnet: 10.3.0.0/24}}
`

// ipamGCs returns the GC calls of plugin lease as "network subnet
// cniVersion: valid attachments".
func ipamGCs(t *testing.T, calls []delegatetest.Call) []string {
	t.Helper()
	var out []string
	for _, c := range calls {
		if c.Command != "GC" || c.Plugin != "lease" {
			continue
		}
		var sec struct{ Subnet string }
		if err := json.Unmarshal(c.Conf["ipam"], &sec); err != nil {
			t.Fatal(err)
		}
		valid := strings.Join(gcValid(t, []delegatetest.Call{c}, "lease"), ",")
		out = append(out, fmt.Sprintf("%s %s %s: %s", c.Str("name"), sec.Subnet, c.Str("cniVersion"), valid))
	}
	slices.Sort(out)
	return out
}

// TestGCReachesEveryIPAMOnce: GC goes to the IPAM plugin of every chain,
// whatever the chain's version, at 1.1.0, once per (type, network,
// section) however many chains and attachment sets share it, with the
// network's live attachments; the main plugins of chains below 1.1.0 get
// none.
func TestGCReachesEveryIPAMOnce(t *testing.T) {
	h := newHarnessMode(t, true)
	h.write("multi.yaml", ipamYAML)
	h.write("other.yaml", ipamYAML)
	h.addAs("live")
	h.addAs("stale")
	h.fake.Reset()
	if err := h.gc("live"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"storage 10.2.0.0/24 1.1.0: live/eth1,live/eth2",
		"storage 10.3.0.0/24 1.1.0: live/eth1,live/eth2",
		"svc 10.1.0.0/24 1.1.0: live/eth0",
	}
	if got := ipamGCs(t, h.fake.Calls()); !slices.Equal(got, want) {
		t.Errorf("IPAM GCs = %q\nwant %q", got, want)
	}
	var mains []string
	for _, c := range h.fake.CallsOf("GC") {
		if c.Plugin != "lease" && c.Str("name") != "multi-eth0" && c.Str("name") != "san" { // not storage.yaml's
			mains = append(mains, c.Plugin)
		}
	}
	if !slices.Equal(mains, []string{"gamma"}) {
		t.Errorf("main plugins that got GC: %v, want gamma only (the 1.1.0 chain)", mains)
	}
}

// TestGCIPAMSkipRules: an IPAM plugin that does not speak GC at 1.1.0 is
// skipped, not a failure; disableGC on a chain keeps GC from its IPAM
// plugin; a failing IPAM GC is reported naming the interface, network and
// plugins; an unreadable record keeps every interface name, and a newer
// one stops the forwarding.
func TestGCIPAMSkipRules(t *testing.T) {
	h := newHarnessMode(t, true)
	h.write("multi.yaml", `interfaces:
  - ifname: eth0
    network: svc
    cniVersion: 1.0.0
    plugins:
      - {type: alpha, ipam: {type: lease, subnet: 10.1.0.0/24}}
  - ifname: eth1
    network: storage
    cniVersion: 1.0.0
    disableGC: true
    plugins:
      - {type: beta, ipam: {type: hold, subnet: 10.2.0.0/24}}
`)
	if err := os.Remove(filepath.Join(h.dir, "storage.yaml")); err != nil {
		t.Fatal(err)
	}
	h.addAs("live")
	h.fake.Reset()
	if err := h.gc("live"); err != nil {
		t.Fatal(err)
	}
	if got, want := delegatetest.Summary(h.fake.Calls()), []string{"VERSION lease/", "GC lease/"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v (none to disableGC's hold)", got, want)
	}

	h.fake.Reset()
	h.fake.SetVersions("lease", "0.3.1", "0.4.0", "1.0.0")
	if err := h.gc("live"); err != nil {
		t.Errorf("GC with an IPAM plugin below 1.1.0: %v, want it skipped", err)
	}
	if n := len(h.fake.CallsOf("GC")); n != 0 {
		t.Errorf("%d GC calls to an IPAM plugin below 1.1.0", n)
	}
	h.fake.SetVersions("lease", "1.1.0")
	h.fake.FailOn("lease", "GC", "*", types.ErrIncompatibleCNIVersion)
	if err := h.gc("live"); err != nil {
		t.Errorf("GC with an IPAM plugin that refuses GC: %v, want it skipped", err)
	}
	h.fake.FailOn("lease", "GC", "*", types.ErrTryAgainLater)
	if err := h.gc("live"); err == nil || !strings.Contains(err.Error(), "eth0 (network svc): plugin alpha: ipam lease: ") {
		t.Errorf("GC with a failing IPAM plugin: %v, want it named", err)
	}
	h.fake.ClearFailures()

	h.addAs("corrupt")
	h.truncate(filepath.Join(h.stateDir, "containers", "corrupt", "container.json"))
	h.fake.Reset()
	if err := h.gc("live", "corrupt"); err == nil || !strings.Contains(err.Error(), "container corrupt") {
		t.Errorf("GC = %v, want the corrupt record reported", err)
	}
	if got, want := gcValid(t, h.fake.Calls(), "lease"), []string{"corrupt/eth0", "corrupt/eth1", "live/eth0"}; !slices.Equal(got, want) {
		t.Errorf("lease was told %v are valid, want %v", got, want)
	}

	plan := filepath.Join(h.stateDir, "containers", "live", "container.json")
	b, err := os.ReadFile(plan)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plan, bytes.Replace(b, []byte(`"kind":"nicmuxContainerV2"`), []byte(`"kind":"nicmuxContainerV3"`), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	h.fake.Reset()
	if err := h.gc("live", "corrupt"); err == nil || !strings.Contains(err.Error(), "not forwarded") {
		t.Errorf("GC beside a newer record = %v, want it to say it forwarded nothing", err)
	}
	if n := len(h.fake.CallsOf("GC")); n != 0 {
		t.Errorf("%d GC calls beside a newer record", n)
	}
}

// TestStatusPassesOverAChainNotReady: a chain whose STATUS fails (any
// code) is logged, naming the interface, network and plugin, and STATUS
// passes: the ADD fails on its own with the chain's error, and a teardown
// that follows goes through.
func TestStatusPassesOverAChainNotReady(t *testing.T) {
	h := newHarness(t)
	h.write("multi.yaml", gcYAML)
	for _, code := range []uint{types.ErrPluginNotAvailable, types.ErrLimitedConnectivity, types.ErrInternal} {
		h.stderr.Reset()
		h.fake.FailWith("lease", "STATUS", "*", code, "etcd away")
		h.fake.FailOn("alpha", "STATUS", "*", code)
		if err := h.p.Status(h.t.Context(), &skel.CmdArgs{Path: testPath, StdinData: h.netconf()}); err != nil {
			t.Errorf("STATUS with a chain not ready (%d) = %v, want it passed over", code, err)
		}
		log := h.stderr.String()
		if !strings.Contains(log, `msg="STATUS: a chain is not ready; ADDs that use it fail, teardowns go on" plugin=nicmux interface=eth0 network=svc delegate=alpha code=`+fmt.Sprint(code)) {
			t.Errorf("the log does not name the chain:\n%s", log)
		}
	}
	h.fake.ClearFailures()
	h.mustAdd(h.args(""))
	h.fake.FailOn("alpha", "STATUS", "*", types.ErrPluginNotAvailable)
	if err := h.p.Status(h.t.Context(), &skel.CmdArgs{Path: testPath, StdinData: h.netconf()}); err != nil {
		t.Fatal(err)
	}
	if err := h.del(h.args("")); err != nil {
		t.Fatal(err)
	}
	h.assertNoState()
}
