package integration

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/test/netnsutil"
	"github.com/nicmux/nicmux/test/testworld"
)

// TestDelegateTimeout: a delegate that hangs is killed at delegateTimeout
// with its process group; the ADD fails naming the plugin and the
// interface, and rolls back like any failure.
func TestDelegateTimeout(t *testing.T) {
	w := newWorld(t)
	w.Master = testworld.MakeMaster(t, 0)
	hang := strings.Replace(seedYAML, "      - type: tuning",
		"      - {type: recorder, recordFile: {{.RecordFile}}, sleepOn: [ADD], sleepMs: 60000}\n      - type: tuning", 1)
	l := w.list(w.writeYAML("multi.yaml", hang), map[string]any{"delegateTimeout": "1s"})
	netns := newNS(t)
	start := time.Now()
	_, err := w.add(l, rt("hung-1", netns))
	took := time.Since(start)
	testworld.WantCNIError(t, err, types.ErrInternal, "eth1: plugin recorder", "timed out after 1s (delegateTimeout)", "killed")
	if took > 10*time.Second {
		t.Errorf("ADD took %v with a 1s delegateTimeout", took)
	}
	w.assertNothingLeft(netns, "svc", "storage")
	if procs := pluginProcesses(t, "recorder"); len(procs) != 0 {
		t.Errorf("recorder processes alive after the timeout: %v", procs)
	}
}

// pluginProcesses lists the pids of live processes running the test plugin
// binary name.
func pluginProcesses(t *testing.T, name string) []testworld.Proc {
	t.Helper()
	want := filepath.Join(testworld.TestPluginsDir(), name)
	procs, err := testworld.Procs(func(p testworld.Proc) bool { return p.Exe == want })
	if err != nil {
		t.Fatal(err)
	}
	return procs
}

// masqYAML puts eth0 on a bridge with ipMasq, as Nomad's own bridge network
// does, and eth1 on a macvlan with tuning (which keeps a backup file).
const masqYAML = `interfaces:
  - ifname: eth0
    network: svc
    plugins:
      - type: bridge
        bridge: {{.Bridge}}
        isGateway: true
        ipMasq: true
        ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.77.0.0/24}]], routes: [{dst: 0.0.0.0/0}]}
  - ifname: eth1
    network: storage
    plugins:
      - type: macvlan
        master: {{.Master}}
        ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.88.0.0/24}]]}
      - type: tuning
        mtu: 1400
        dataDir: {{.TuningDir}}
`

// TestRebuildReleasesWhatTheBridgeSetUp: Nomad's rebuild after a failed
// CHECK (the namespace destroyed without DEL, recreated at the same path,
// ADD again with the same ID) must not leave the old address's masquerade
// rule, and the DEL after it succeeds at once. The stale release gives the
// bridge and tuning a scratch namespace holding the old interface.
func TestRebuildReleasesWhatTheBridgeSetUp(t *testing.T) {
	w := newWorld(t)
	w.Master = testworld.MakeMaster(t, 0)
	l := w.list(w.writeYAML("multi.yaml", masqYAML), nil)
	netns := newNS(t)
	const id = "rebuilt-1"
	first := w.mustAdd(l, rt(id, netns))
	firstRules := testworld.Iptables(t, "nat", id)
	if len(firstRules) == 0 {
		t.Fatal("no masquerade rule after ADD: the test proves nothing")
	}
	if got := w.tuningBackups(); len(got) != 1 {
		t.Fatalf("tuning backups after ADD = %v, want one: the test proves nothing", got)
	}
	if err := netnsutil.DestroyAt(netns); err != nil {
		t.Fatal(err)
	}
	if err := netnsutil.CreateAt(netns); err != nil {
		t.Fatal(err)
	}
	second := w.mustAdd(l, rt(id, netns))
	rules := testworld.Iptables(t, "nat", id)
	// host-local hands out the address after the last one it reserved:
	// the rebuilt container's differs, so a rule of the old one is told
	// apart from the new one's.
	old := first.IPs[0].Address.IP.String()
	if old == second.IPs[0].Address.IP.String() {
		t.Fatalf("the rebuilt container got the old address %s again: the test cannot tell the old rule from the new", old)
	}
	for _, r := range rules {
		if strings.Contains(r, old+"/") {
			t.Errorf("the old address's rule is left after the rebuild: %s", r)
		}
	}
	if len(rules) != len(firstRules) {
		t.Errorf("nat rules after the rebuild = %v, want as many as after the first ADD (%v)", rules, firstRules)
	}
	if got := w.tuningBackups(); len(got) != 1 {
		t.Errorf("tuning backups after the rebuild = %v, want the new ADD's one", got)
	}
	if err := w.del(l, rt(id, netns)); err != nil {
		t.Fatalf("DEL after the rebuild: %v", err)
	}
	if rules := testworld.Iptables(t, "nat", id); len(rules) != 0 {
		t.Errorf("nat rules of the container left after DEL: %v", rules)
	}
	if got := w.tuningBackups(); len(got) != 0 {
		t.Errorf("tuning backups left: %v", got)
	}
	w.assertNothingLeft(netns, "svc", "storage")
}

// tuningBackups lists the backup files the tuning plugin of masqYAML keeps.
func (w *world) tuningBackups() []string {
	w.t.Helper()
	names, err := testworld.TuningBackups(w.TuningDir)
	if err != nil {
		w.t.Fatal(err)
	}
	return names
}

// TestRebuildWithFailingAddLeavesNoBackup: the same path when the new ADD
// fails: its rollback and the stale release leave no tuning backup.
func TestRebuildWithFailingAddLeavesNoBackup(t *testing.T) {
	w := newWorld(t)
	w.Master = testworld.MakeMaster(t, 0)
	path := w.writeYAML("multi.yaml", masqYAML)
	l := w.list(path, nil)
	netns := newNS(t)
	const id = "rebuilt-2"
	w.mustAdd(l, rt(id, netns))
	if got := w.tuningBackups(); len(got) != 1 {
		t.Fatalf("tuning backups after ADD = %v, want one: the test proves nothing", got)
	}
	if err := netnsutil.DestroyAt(netns); err != nil {
		t.Fatal(err)
	}
	if err := netnsutil.CreateAt(netns); err != nil {
		t.Fatal(err)
	}
	failing := masqYAML + "      - {type: recorder, recordFile: {{.RecordFile}}, failOn: [ADD], failCode: 7}\n"
	w.writeYAML("multi.yaml", failing)
	_, err := w.add(l, rt(id, netns))
	testworld.WantCNIError(t, err, types.ErrInvalidNetworkConfig, "eth1: plugin recorder: recorder told to fail ADD on eth1")
	if got := w.tuningBackups(); len(got) != 0 {
		t.Errorf("tuning backups left: %v", got)
	}
	if rules := testworld.Iptables(t, "nat", id); len(rules) != 0 {
		t.Errorf("nat rules of the container left: %v", rules)
	}
	w.assertNothingLeft(netns, "svc", "storage")
}

// TestCheckOnAReadOnlyStateDir: CHECK only reads; under Nomad a failed
// CHECK rebuilds the allocation.
func TestCheckOnAReadOnlyStateDir(t *testing.T) {
	w := newWorld(t)
	if err := os.MkdirAll(w.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", w.StateDir, "tmpfs", 0, "mode=0700"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(w.StateDir, syscall.MNT_DETACH) })
	l := w.list(w.seed(), nil)
	netns := newNS(t)
	r := rt("ro-1", netns)
	w.mustAdd(l, r)
	if err := syscall.Mount("", w.StateDir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	if err := w.check(l, r); err != nil {
		t.Errorf("CHECK on a read-only stateDir: %v", err)
	}
	err := w.del(l, r)
	testworld.WantCNIError(t, err, types.ErrIOFailure, "stateDir")
	if err := syscall.Mount("", w.StateDir, "", syscall.MS_REMOUNT, ""); err != nil {
		t.Fatal(err)
	}
	if err := w.del(l, r); err != nil {
		t.Fatalf("DEL once writable again: %v", err)
	}
	w.assertNothingLeft(netns, "svc", "storage")
}

// TestContainerIDTooLong: an ID that cannot become a file name is bad
// environment (4), before anything is touched.
func TestContainerIDTooLong(t *testing.T) {
	w := newWorld(t)
	l := w.list(w.seed(), nil)
	netns := newNS(t)
	_, err := w.add(l, rt(strings.Repeat("a", 251), netns))
	testworld.WantCNIError(t, err, types.ErrInvalidEnvironmentVariables, "CNI_CONTAINERID", "250")
	w.assertNothingLeft(netns, "svc", "storage")
}
