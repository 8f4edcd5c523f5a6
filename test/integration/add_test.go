package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"

	"github.com/nicmux/nicmux/test/netnsutil"
	"github.com/nicmux/nicmux/test/testworld"
)

// threeYAML has three interfaces; the chain at position {{.FailAt}} ends with
// a plugin that fails ADD after the real plugins before it allocated links
// and leases, which the rollback must release.
const threeYAML = `interfaces:
  - ifname: eth0
    network: svc
    plugins:
      - type: bridge
        bridge: {{.Bridge}}
        isGateway: true
        ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.77.0.0/24}]], routes: [{dst: 0.0.0.0/0}]}
{{- if eq .FailAt 0}}
      - {type: recorder, recordFile: {{.RecordFile}}, failOn: [ADD], failCode: 7}
{{- end}}
  - ifname: eth1
    network: storage
    plugins:
      - type: macvlan
        master: {{.Master}}
        ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.88.0.0/24}]]}
{{- if eq .FailAt 1}}
      - {type: recorder, recordFile: {{.RecordFile}}, failOn: [ADD], failCode: 7}
{{- end}}
  - ifname: eth2
    network: backup
    plugins:
      - type: macvlan
        master: {{.Master}}
        ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.99.0.0/24}]]}
{{- if eq .FailAt 2}}
      - {type: recorder, recordFile: {{.RecordFile}}, failOn: [ADD], failCode: 7}
{{- end}}
`

type failWorld struct {
	*world
	FailAt int
}

// assertNothingLeft checks that a container left no link, lease or state,
// and that the bridge has no port.
func (w *world) assertNothingLeft(netns string, networks ...string) {
	w.t.Helper()
	testworld.WantNoLeaks(w.t, testworld.Census{Netns: []string{netns}, Bridge: w.Bridge,
		IPAMDir: w.IPAMDir, Networks: networks, StateDir: w.StateDir})
}

// TestRollbackAtEachPosition fails the chain at each position and asserts
// that the failed ADD, and Nomad's retries of it with no DEL in between,
// leave nothing behind and report the same error naming the interface and
// plugin with the delegate's code.
func TestRollbackAtEachPosition(t *testing.T) {
	for _, parallel := range []bool{true, false} {
		for failAt := 0; failAt < 3; failAt++ {
			t.Run(fmt.Sprintf("parallel=%v/eth%d", parallel, failAt), func(t *testing.T) {
				testRollbackAt(t, failAt, parallel)
			})
		}
	}
}

func testRollbackAt(t *testing.T, failAt int, parallel bool) {
	w := newWorld(t)
	w.Master = testworld.MakeMaster(t, 0)
	fw := &failWorld{world: w, FailAt: failAt}
	var buf strings.Builder
	path := filepath.Join(w.Dir, "multi.yaml")
	renderTo(t, &buf, threeYAML, fw)
	testworld.WriteFile(t, path, buf.String())
	l := w.list(path, map[string]any{"parallel": parallel})
	netns := newNS(t)
	r := rt("rb-1", netns)

	for try := 1; try <= 3; try++ {
		_, err := w.add(l, r)
		testworld.WantCNIError(t, err, types.ErrInvalidNetworkConfig,
			fmt.Sprintf("eth%d: plugin recorder: recorder told to fail ADD on eth%d", failAt, failAt))
		if err != nil && (strings.Contains(err.Error(), "file exists") || strings.Contains(err.Error(), "duplicate")) {
			t.Errorf("try %d: %v", try, err)
		}
		w.assertNothingLeft(netns, "svc", "storage", "backup")
	}

	// With the fault fixed, the same container attaches cleanly.
	fw.FailAt = -1
	buf.Reset()
	renderTo(t, &buf, threeYAML, fw)
	testworld.WriteFile(t, path, buf.String())
	res := w.mustAdd(l, r)
	if len(res.IPs) != 3 {
		t.Fatalf("IPs = %v", res.IPs)
	}
	for _, n := range []string{"svc", "storage", "backup"} {
		if got := w.leases(n); len(got) != 1 {
			t.Errorf("%s leases after the fixed ADD = %v, want one", n, got)
		}
	}
	if err := w.del(l, r); err != nil {
		t.Fatal(err)
	}
	w.assertNothingLeft(netns, "svc", "storage", "backup")
}

// TestRollbackRealPluginFailure: the second chain's own reference plugin
// fails (tuning with a sysctl that does not exist) after macvlan and
// host-local succeeded; the error keeps the plugin's message.
func TestRollbackRealPluginFailure(t *testing.T) {
	w := newWorld(t)
	w.Master = testworld.MakeMaster(t, 0)
	path := w.writeYAML("multi.yaml", `interfaces:
  - ifname: eth0
    network: svc
    plugins:
      - {type: bridge, bridge: {{.Bridge}}, ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.77.0.0/24}]]}}
  - ifname: eth1
    network: storage
    plugins:
      - {type: macvlan, master: {{.Master}}, ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.88.0.0/24}]]}}
      - {type: tuning, sysctl: {net.ipv4.conf.IFNAME.no_such_knob: "1"}}
`)
	l := w.list(path, nil)
	netns := newNS(t)
	_, err := w.add(l, rt("rb-2", netns))
	if err == nil || !strings.Contains(err.Error(), "eth1: plugin tuning:") || !strings.Contains(err.Error(), "no_such_knob") {
		t.Fatalf("error = %v, want it to name eth1, tuning and the sysctl", err)
	}
	w.assertNothingLeft(netns, "svc", "storage")

	// A missing macvlan master fails the second chain's first plugin.
	w.Master = "nosuchmaster"
	w.writeYAML("multi.yaml", seedYAML)
	_, err = w.add(l, rt("rb-2", netns))
	if err == nil || !strings.Contains(err.Error(), "eth1: plugin macvlan:") {
		t.Fatalf("error = %v, want it to name eth1 and macvlan", err)
	}
	w.assertNothingLeft(netns, "svc", "storage")
}

// TestStaleNetnsRecreated is Nomad's recovery after a failed CHECK: the
// namespace is destroyed without DEL and recreated at the same path, then
// ADD comes again with the same container ID. nicmux releases the old
// delegates first, so each network holds exactly one lease.
func TestStaleNetnsRecreated(t *testing.T) {
	w := newWorld(t)
	l := w.list(w.seed(), nil)
	netns := newNS(t)
	r := rt("stale-1", netns)
	w.mustAdd(l, r)

	if err := netnsutil.DestroyAt(netns); err != nil {
		t.Fatal(err)
	}
	if err := netnsutil.CreateAt(netns); err != nil {
		t.Fatal(err)
	}
	res := w.mustAdd(l, r)
	for _, n := range []string{"svc", "storage"} {
		if got := w.leases(n); len(got) != 1 {
			t.Errorf("%s leases after re-ADD = %v, want exactly one", n, got)
		}
	}
	if got := testworld.Links(t, netns); !slices.Equal(got, []string{"eth0", "eth1"}) {
		t.Errorf("links = %v", got)
	}
	if got := testworld.BridgePorts(t, w.Bridge); len(got) != 1 {
		t.Errorf("bridge ports = %v, want the new veth only", got)
	}
	if len(res.IPs) != 2 {
		t.Errorf("IPs = %v", res.IPs)
	}
	if err := w.check(l, r); err != nil {
		t.Errorf("CHECK after re-ADD: %v", err)
	}
	if b, _ := os.ReadFile(w.LogFile); !strings.Contains(string(b), "the network namespace was recreated") {
		t.Errorf("log does not say why the old state was released:\n%s", b)
	}
	if err := w.del(l, r); err != nil {
		t.Fatal(err)
	}
	w.assertNothingLeft(netns, "svc", "storage")
}

// TestHostReboot: after a reboot the namespace and the bridge are gone but
// nicmux's files remain; ADD with the same ID succeeds.
func TestHostReboot(t *testing.T) {
	w := newWorld(t)
	l := w.list(w.seed(), nil)
	netns := newNS(t)
	r := rt("reboot-1", netns)
	w.mustAdd(l, r)

	if err := netnsutil.DestroyAt(netns); err != nil {
		t.Fatal(err)
	}
	br, err := netlink.LinkByName(w.Bridge)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkDel(br); err != nil {
		t.Fatal(err)
	}
	if err := netnsutil.CreateAt(netns); err != nil {
		t.Fatal(err)
	}
	w.mustAdd(l, r)
	for _, n := range []string{"svc", "storage"} {
		if got := w.leases(n); len(got) != 1 {
			t.Errorf("%s leases = %v, want exactly one", n, got)
		}
	}
	if err := w.check(l, r); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if err := w.del(l, r); err != nil {
		t.Fatal(err)
	}
	w.assertNothingLeft(netns, "svc", "storage")
}

// TestRefuseDuplicateAdd: an ADD for a container whose interfaces are live
// in the same namespace is refused, and changes nothing.
func TestRefuseDuplicateAdd(t *testing.T) {
	w := newWorld(t)
	l := w.list(w.seed(), nil)
	netns := newNS(t)
	r := rt("dup-1", netns)
	w.mustAdd(l, r)
	before := snapshotState(t, w.StateDir)
	leases := w.leases("svc")

	_, err := w.add(l, r)
	testworld.WantCNIError(t, err, 100, "dup-1", "already attached", "eth0", "eth1")
	if after := snapshotState(t, w.StateDir); after != before {
		t.Errorf("state changed by the refused ADD:\nbefore %s\nafter  %s", before, after)
	}
	if got := w.leases("svc"); fmt.Sprint(got) != fmt.Sprint(leases) {
		t.Errorf("leases changed: %v -> %v", leases, got)
	}
	if err := w.check(l, r); err != nil {
		t.Errorf("CHECK after the refused ADD: %v", err)
	}
	if err := w.del(l, r); err != nil {
		t.Fatal(err)
	}
	w.assertNothingLeft(netns, "svc", "storage")
}

// TestCrashMidAdd kills nicmux (SIGKILL, through the runtime's context)
// while eth1's chain runs, after eth0 and eth1's macvlan got their leases.
// The next ADD for the container releases what the crashed one recorded and
// attaches cleanly.
func TestCrashMidAdd(t *testing.T) {
	w := newWorld(t)
	w.Master = testworld.MakeMaster(t, 0)
	hang := strings.Replace(seedYAML, "      - type: tuning", "      - {type: recorder, recordFile: {{.RecordFile}}, sleepOn: [ADD], sleepMs: 4000}\n      - type: tuning", 1)
	path := w.writeYAML("multi.yaml", hang)
	l := w.list(path, nil)
	netns := newNS(t)
	r := rt("crash-1", netns)

	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err := w.cni.AddNetworkList(ctx, l, r)
	if err == nil {
		t.Fatal("ADD should have been killed")
	}
	// The crashed ADD left its plan, not marked complete, and its leases.
	var c struct {
		Kind string `json:"kind"`
	}
	testworld.ReadJSON(t, testworld.PlanFile(w.StateDir, "crash-1"), &c)
	if _, err := os.Stat(testworld.CompleteFile(w.StateDir, "crash-1")); err == nil || c.Kind == "" {
		t.Fatalf("the killed ADD's record says complete, or has no plan (%+v, %v)", c, err)
	}
	if len(w.leases("storage")) != 1 || len(w.leases("svc")) != 1 {
		t.Fatalf("expected the killed ADD to hold leases: svc %v storage %v", w.leases("svc"), w.leases("storage"))
	}

	w.writeYAML("multi.yaml", seedYAML)
	w.mustAdd(l, r)
	for _, n := range []string{"svc", "storage"} {
		if got := w.leases(n); len(got) != 1 {
			t.Errorf("%s leases = %v, want exactly one", n, got)
		}
	}
	if got := testworld.Links(t, netns); !slices.Equal(got, []string{"eth0", "eth1"}) {
		t.Errorf("links = %v", got)
	}
	if err := w.check(l, r); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if err := w.del(l, r); err != nil {
		t.Fatal(err)
	}
	w.assertNothingLeft(netns, "svc", "storage")
}

func snapshotState(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	_ = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			data, _ := os.ReadFile(path)
			fmt.Fprintf(&b, "%s=%x;", path, data)
		}
		return nil
	})
	return b.String()
}
