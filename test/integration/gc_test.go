package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/test/testworld"
)

// gcYAML is the seed job at spec 1.1 with a recorder in each chain; eth1's
// chain can opt out of GC.
const gcYAML = `interfaces:
  - ifname: eth0
    network: svc
    plugins:
      - type: bridge
        bridge: {{.Bridge}}
        ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.77.0.0/24}]]}
      - {type: recorder, recordFile: {{.RecordFile}}}
  - ifname: eth1
    network: storage
    disableGC: true
    plugins:
      - type: macvlan
        master: {{.Master}}
        ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.88.0.0/24}]]}
      - {type: recorder, recordFile: {{.RecordFile}}}
`

func gcWorld(t *testing.T) (*world, *libcni.NetworkConfigList) {
	w := newWorld(t)
	w.CNIVersion = "1.1.0"
	w.Name = "gc" + testworld.RandHex(3)
	w.Master = testworld.MakeMaster(t, 0)
	return w, w.list(w.writeYAML("multi.yaml", gcYAML), nil)
}

// TestGC releases exactly the stored containers the runtime no longer lists
// (links, leases, state), leaves the listed ones intact, and forwards GC to
// the chains with only their live delegate attachments.
func TestGC(t *testing.T) {
	w, l := gcWorld(t)
	nets := map[string]string{}
	for _, id := range []string{"live", "stale-a", "stale-b"} {
		nets[id] = newNS(t)
		w.mustAdd(l, rt(id, nets[id]))
	}
	// An orphan lease no nicmux container holds: the forwarded host-local GC
	// must collect it.
	orphan := filepath.Join(w.IPAMDir, "svc", "10.77.0.250")
	testworld.WriteFile(t, orphan, "orphan-container\r\neth0")
	// The runtime lost its own cache (libcni would otherwise DEL the stale
	// ones itself before calling GC): nicmux's state is all there is.
	if err := os.RemoveAll(filepath.Join(w.Dir, "cache")); err != nil {
		t.Fatal(err)
	}

	err := w.cni.GCNetworkList(t.Context(), l, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "live", IfName: "eth0"}}})
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	for _, id := range []string{"stale-a", "stale-b"} {
		if got := testworld.Links(t, nets[id]); len(got) != 0 {
			t.Errorf("%s: links left: %v", id, got)
		}
		if _, err := os.Stat(testworld.ContainerDir(w.StateDir, id)); !os.IsNotExist(err) {
			t.Errorf("%s: state left (%v)", id, err)
		}
	}
	w.wantOnlyLeasesOf("live")
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("the orphan lease survived the forwarded GC")
	}
	if got := testworld.Links(t, nets["live"]); !slices.Equal(got, []string{"eth0", "eth1"}) {
		t.Errorf("live container's links = %v", got)
	}
	if err := w.check(l, rt("live", nets["live"])); err != nil {
		t.Errorf("CHECK of the live container after GC: %v", err)
	}

	// The forwarded GC: eth0's chain got only its live pair; eth1's chain
	// (disableGC) got none.
	var gcs []testworld.Call
	for _, c := range w.calls() {
		if c.Command == "GC" {
			gcs = append(gcs, c)
		}
	}
	if len(gcs) != 1 {
		t.Fatalf("recorder saw %d GC calls, want 1 (eth0's chain only)", len(gcs))
	}
	if s := string(gcs[0].Stdin); !strings.Contains(s, `"cni.dev/valid-attachments":[{"containerID":"live","ifname":"eth0"}]`) || !strings.Contains(s, `"name":"svc"`) {
		t.Errorf("GC handed to eth0's chain: %s", s)
	}
	if err := w.del(l, rt("live", nets["live"])); err != nil {
		t.Fatal(err)
	}
}

// wantOnlyLeasesOf fails the test unless container id holds the only
// host-local lease of svc (eth0) and of storage (eth1).
func (w *world) wantOnlyLeasesOf(id string) {
	w.t.Helper()
	for n, want := range map[string]string{"svc": id + "/eth0", "storage": id + "/eth1"} {
		got := w.leases(n)
		if len(got) != 1 {
			w.t.Errorf("%s leases = %v, want only %s's", n, got, id)
		}
		for _, owner := range got {
			if owner != want {
				w.t.Errorf("%s lease held by %s, want %s", n, owner, want)
			}
		}
	}
}

// TestGCDisabled: nicmux's own disableGC releases nothing.
func TestGCDisabled(t *testing.T) {
	w, _ := gcWorld(t)
	l := w.list(filepath.Join(w.Dir, "multi.yaml"), map[string]any{"disableGC": true})
	netns := newNS(t)
	w.mustAdd(l, rt("kept", netns))
	if err := os.RemoveAll(filepath.Join(w.Dir, "cache")); err != nil {
		t.Fatal(err)
	}
	if err := w.cni.GCNetworkList(t.Context(), l, &libcni.GCArgs{}); err != nil {
		t.Fatal(err)
	}
	if got := testworld.Links(t, netns); len(got) != 2 {
		t.Errorf("links = %v, want both kept", got)
	}
	if err := w.del(l, rt("kept", netns)); err != nil {
		t.Fatal(err)
	}
}

// TestCnitoolGCAndStatus drives GC and STATUS through cnitool, a runtime
// of its own. cnitool's GC lists no valid attachments: everything of the
// network is collected.
func TestCnitoolGCAndStatus(t *testing.T) {
	w, l := gcWorld(t)
	netDir := filepath.Join(w.Dir, "net.d")
	if err := os.MkdirAll(netDir, 0o755); err != nil {
		t.Fatal(err)
	}
	testworld.WriteFile(t, filepath.Join(netDir, "multi.conflist"), string(l.Bytes))
	netns := newNS(t)
	w.mustAdd(l, rt("tool-1", netns))

	cnitool := func(args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(testworld.BinDir(), "cnitool"), args...)
		cmd.Env = append(os.Environ(), "CNI_PATH="+strings.Join(testworld.CNIPath(), ":"), "NETCONFPATH="+netDir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := cnitool("status", w.Name, netns); err != nil {
		t.Fatalf("cnitool status: %v\n%s", err, out)
	}
	if out, err := cnitool("gc", w.Name, netns); err != nil {
		t.Fatalf("cnitool gc: %v\n%s", err, out)
	}
	w.assertNothingLeft(netns, "svc", "storage")

	// A broken attachment file does not fail STATUS (Nomad would skip
	// every teardown), but the ADDs that use it fail naming it.
	testworld.WriteFile(t, filepath.Join(w.Dir, "multi.yaml"), "interfaces: [")
	if out, err := cnitool("status", w.Name, netns); err != nil {
		t.Errorf("cnitool status with a broken attachment file: %v\n%s", err, out)
	}
	if out, err := cnitool("add", w.Name, netns); err == nil || !strings.Contains(out, "multi.yaml") {
		t.Errorf("cnitool add with a broken attachment file: %v\n%s", err, out)
	}
}

// TestStatus: ready, and each way of not being ready with its code.
func TestStatus(t *testing.T) {
	w, l := gcWorld(t)
	status := func(l *libcni.NetworkConfigList) error { return w.cni.GetStatusNetworkList(t.Context(), l) }
	if err := status(l); err != nil {
		t.Fatalf("STATUS: %v", err)
	}

	t.Run("broken set in the folder", func(t *testing.T) {
		// Not a failure: Nomad 1.9.5+ runs STATUS before every teardown
		// and skips it when STATUS fails. The log names the file.
		bad := filepath.Join(w.Dir, "storage.yaml")
		testworld.WriteFile(t, bad, "interfaces:\n  - ifname: eth0\n")
		defer os.Remove(bad)
		if err := status(l); err != nil {
			t.Errorf("STATUS with a broken set beside the attachment file: %v", err)
		}
		if log := w.Log(); !strings.Contains(log, "storage.yaml:2:5") {
			t.Errorf("the log does not name the broken set:\n%s", log)
		}
	})
	t.Run("state folder not writable", func(t *testing.T) {
		file := filepath.Join(w.Dir, "a-file")
		testworld.WriteFile(t, file, "")
		bad := w.list(filepath.Join(w.Dir, "multi.yaml"), map[string]any{"stateDir": filepath.Join(file, "state")})
		testworld.WantCNIError(t, status(bad), types.ErrPluginNotAvailable, "stateDir", "a-file")
	})
	for _, code := range []uint{types.ErrPluginNotAvailable, types.ErrLimitedConnectivity, 7} {
		t.Run("delegate not ready", func(t *testing.T) {
			// Logged, not passed on: STATUS does not say which verb
			// follows, and Nomad skips the teardown when it fails.
			yaml := strings.Replace(gcYAML, "{type: recorder, recordFile: {{.RecordFile}}}\n  - ifname: eth1",
				"{type: recorder, recordFile: {{.RecordFile}}, failOn: [STATUS], failCode: "+strconv.FormatUint(uint64(code), 10)+"}\n  - ifname: eth1", 1)
			path := w.writeYAML("status.yaml", yaml)
			defer os.Remove(path)
			if err := status(w.list(path, nil)); err != nil {
				t.Errorf("STATUS with a delegate not ready (%d): %v, want it logged and passed over", code, err)
			}
			want := `interface=eth0 network=svc delegate=recorder code=` + strconv.FormatUint(uint64(code), 10)
			if log := w.Log(); !strings.Contains(log, want) {
				t.Errorf("the log lacks %s:\n%s", want, log)
			}
		})
	}
}

// TestGCCollectsIPAMBelow110: nicmux gc frees the host-local leases of a
// container nicmux does not record, in chains at 1.0.0 (which get no GC
// from a runtime, and whose bridge and macvlan would not forward it), and
// keeps the live container's leases, links and state.
func TestGCCollectsIPAMBelow110(t *testing.T) {
	w := newWorld(t)
	w.Master = testworld.MakeMaster(t, 0)
	l := w.list(w.writeYAML("multi.yaml", gcYAML), nil)
	netns := newNS(t)
	w.mustAdd(l, rt("live", netns))
	orphans := map[string]string{
		filepath.Join(w.IPAMDir, "svc", "10.77.0.250"):     "orphan-container\r\neth0",
		filepath.Join(w.IPAMDir, "storage", "10.88.0.250"): "orphan-container\r\neth1",
	}
	for path, owner := range orphans {
		testworld.WriteFile(t, path, owner)
	}
	r := w.ops(w.conflistFile(l), "gc")
	// eth1's chain says disableGC: its orphan stays.
	if r.code != 0 || !strings.Contains(r.stdout, "GC forwarded to the chains of network svc\n") {
		t.Fatalf("nicmux gc: %s", r)
	}
	if got := w.leases("svc"); len(got) != 1 || got["10.77.0.250"] != "" {
		t.Errorf("svc leases after gc = %v, want the live container's only", got)
	}
	for _, owner := range w.leases("svc") {
		if owner != "live/eth0" {
			t.Errorf("svc lease held by %s, want live/eth0", owner)
		}
	}
	if got := w.leases("storage"); len(got) != 2 || got["10.88.0.250"] != "orphan-container/eth1" {
		t.Errorf("storage leases after gc = %v, want the live one and the orphan (disableGC)", got)
	}

	// Without disableGC, eth1's orphan goes too.
	l = w.list(w.writeYAML("multi.yaml", strings.Replace(gcYAML, "    disableGC: true\n", "", 1)), nil)
	if r := w.ops(w.conflistFile(l), "gc"); r.code != 0 || !strings.Contains(r.stdout, "GC forwarded to the chains of networks svc, storage\n") {
		t.Fatalf("nicmux gc: %s", r)
	}
	w.wantOnlyLeasesOf("live")
	if got := testworld.Links(t, netns); !slices.Equal(got, []string{"eth0", "eth1"}) {
		t.Errorf("live container's links = %v", got)
	}
	if err := w.check(l, rt("live", netns)); err != nil {
		t.Errorf("CHECK of the live container after gc: %v", err)
	}
	if err := w.del(l, rt("live", netns)); err != nil {
		t.Fatal(err)
	}
	w.assertNothingLeft(netns, "svc", "storage")
}
