package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/test/netnsutil"
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

// TestAddAgainInAnotherNamespace: ADD of a container ID that is attached in
// another namespace, still there, releases it in that namespace: its links
// go with its leases, and the next container cannot get an address the
// old namespace still carries.
func TestAddAgainInAnotherNamespace(t *testing.T) {
	w := newWorld(t)
	l := w.list(w.seed(), nil)
	first, second := newNS(t), newNS(t)
	w.mustAdd(l, rt("moved-1", first))
	w.mustAdd(l, rt("moved-1", second))
	if got := testworld.Links(t, first); len(got) != 0 {
		t.Errorf("the first namespace keeps %v after the container was attached in the second", got)
	}
	if got := testworld.Links(t, second); !slices.Equal(got, []string{"eth0", "eth1"}) {
		t.Errorf("links in the second namespace = %v", got)
	}
	for _, n := range []string{"svc", "storage"} {
		if got := w.leases(n); len(got) != 1 {
			t.Errorf("%s leases = %v, want one", n, got)
		}
	}
	if got := testworld.BridgePorts(t, w.Bridge); len(got) != 1 {
		t.Errorf("bridge ports = %v, want the second namespace's", got)
	}
	if lines := w.LogLines("moved-1", "attached in another network namespace", first); len(lines) == 0 {
		t.Errorf("the log does not say where the old attachment was released:\n%s", w.Log())
	}
	if err := w.check(l, rt("moved-1", second)); err != nil {
		t.Errorf("CHECK in the second namespace: %v", err)
	}
	if err := w.del(l, rt("moved-1", second)); err != nil {
		t.Fatal(err)
	}
	w.assertNothingLeft(second, "svc", "storage")
	w.assertNothingLeft(first)
}

// midAddYAML: eth0 on a bridge with ipMasq, then a recorder that sleeps on
// ADD (the test changes the namespace meanwhile); eth1 a macvlan with
// tuning, which keeps a backup. Chains run one after the other.
const midAddYAML = `interfaces:
  - ifname: eth0
    network: svc
    plugins:
      - type: bridge
        bridge: {{.Bridge}}
        isGateway: true
        ipMasq: true
        ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.77.0.0/24}]], routes: [{dst: 0.0.0.0/0}]}
      - {type: recorder, recordFile: {{.RecordFile}}, sleepOn: [ADD], sleepMs: 1000}
  - ifname: eth1
    network: storage
    plugins:
      - type: macvlan
        master: {{.Master}}
        ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.88.0.0/24}]]}
      - {type: tuning, mtu: 1400, dataDir: {{.TuningDir}}}
`

// addWhileChanging issues ADD of id in netns and, once eth0's chain is
// attached, runs change; it returns a path under /proc that names the
// namespace ADD started with, held open by the test, and ADD's error.
func (w *world) addWhileChanging(id, netns string, change func()) (old string, err error) {
	w.t.Helper()
	f, oerr := os.Open(netns)
	if oerr != nil {
		w.t.Fatal(oerr)
	}
	w.t.Cleanup(func() { f.Close() })
	l := w.list(w.writeYAML("multi.yaml", midAddYAML), map[string]any{"parallel": false})
	done := make(chan error, 1)
	go func() {
		_, err := w.add(l, rt(id, netns))
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(w.calls()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	change()
	return fmt.Sprintf("/proc/self/fd/%d", f.Fd()), <-done
}

// assertReleasedEverywhere: nothing of container id is left in the
// namespaces, on the bridge, in IPAM, in iptables, in tuning's folder or
// in the state.
func (w *world) assertReleasedEverywhere(id string, namespaces ...string) {
	w.t.Helper()
	for _, ns := range namespaces {
		if got := testworld.Links(w.t, ns); len(got) != 0 {
			w.t.Errorf("links left in %s: %v", ns, got)
		}
	}
	testworld.WantNoLeaks(w.t, testworld.Census{Bridge: w.Bridge, IPAMDir: w.IPAMDir, Networks: []string{"svc", "storage"},
		StateDir: w.StateDir, TuningDir: w.TuningDir, Tables: []string{"nat", "filter"},
		Rule: func(line string) bool { return strings.Contains(line, id) }})
}

// TestNetNSReplacedDuringAdd: the namespace at CNI_NETNS replaced by
// another while ADD runs (eth0 attached in the first, eth1 in the second):
// ADD fails with code 11, and what it attached is released in both.
func TestNetNSReplacedDuringAdd(t *testing.T) {
	w := newWorld(t)
	w.Master = testworld.MakeMaster(t, 0)
	netns := newNS(t)
	old, err := w.addWhileChanging("replaced-1", netns, func() {
		if err := netnsutil.DestroyAt(netns); err != nil {
			t.Error(err)
		}
		if err := netnsutil.CreateAt(netns); err != nil {
			t.Error(err)
		}
	})
	testworld.WantCNIError(t, err, types.ErrTryAgainLater, "CNI_NETNS", netns, "replaced")
	w.assertReleasedEverywhere("replaced-1", old, netns)
}

// TestNetNSRemovedDuringAdd: the namespace removed while ADD runs: eth1's
// chain fails, and the rollback releases eth0 in the namespace ADD
// attached, which nicmux holds open: the bridge's masquerade rule and
// chain go with its lease.
func TestNetNSRemovedDuringAdd(t *testing.T) {
	w := newWorld(t)
	w.Master = testworld.MakeMaster(t, 0)
	netns := newNS(t)
	old, err := w.addWhileChanging("removed-1", netns, func() {
		if err := netnsutil.DestroyAt(netns); err != nil {
			t.Error(err)
		}
	})
	if err == nil {
		t.Fatal("ADD succeeded with its namespace removed")
	}
	w.assertReleasedEverywhere("removed-1", old)
}
