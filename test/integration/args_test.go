package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/nicmux/nicmux/test/netnsutil"
	"github.com/nicmux/nicmux/test/testworld"
)

// The job's CNI_ARGS, whatever their shape: nicmux's own keys (NICMUX_*)
// reach no delegate, every other pair reaches them as the runtime sent
// it, and whatever arguments ADD recorded, the rollback, DEL, gc and
// forget release the container.

// argsSetYAML is the set "storage" the cases pick with NICMUX_ATTACHMENTS:
// eth0 on a masquerading bridge (an iptables chain per container), eth1 a
// macvlan, a recorder at the end of each chain.
const argsSetYAML = `interfaces:
  - ifname: eth0
    network: svc
    plugins:
      - type: bridge
        bridge: {{.Bridge}}
        isGateway: true
        ipMasq: true
        ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.77.0.0/24}]]}
      - {type: recorder, recordFile: {{.RecordFile}}}
  - ifname: eth1
    network: storage
    plugins:
      - type: macvlan
        master: {{.Master}}
        ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.88.0.0/24}]]}
      - {type: recorder, recordFile: {{.RecordFile}}}
`

// argsWorld writes the default attachment file (a recorder alone, which
// no case should reach) and the storage set beside it.
func argsWorld(t *testing.T) (*world, *libcni.NetworkConfigList) {
	w := newWorld(t)
	w.Master = testworld.MakeMaster(t, 0)
	w.writeYAML("storage.yaml", argsSetYAML)
	return w, w.list(w.writeYAML("multi.yaml", "interfaces:\n  - plugins: [{type: recorder, recordFile: {{.RecordFile}}}]\n"), nil)
}

// assertArgsLeftNothing checks that nothing of the container is left:
// links in its netns, bridge ports, leases, state, the bridge's
// masquerading rules.
func (w *world) assertArgsLeftNothing(netns string) {
	w.t.Helper()
	testworld.WantNoLeaks(w.t, testworld.Census{Netns: []string{netns}, Bridge: w.Bridge, IPAMDir: w.IPAMDir,
		Networks: []string{"svc", "storage"}, StateDir: w.StateDir,
		Tables: []string{"nat"}, Rule: func(l string) bool { return strings.Contains(l, "CNI-") }})
}

// cnitool runs cnitool, a runtime that sends CNI_ARGS as given (no
// IgnoreUnknown), on the world's conflist.
func (w *world) cnitool(l *libcni.NetworkConfigList, cniArgs string, args ...string) cmdResult {
	w.t.Helper()
	netDir := filepath.Join(w.Dir, "net.d")
	if err := os.MkdirAll(netDir, 0o755); err != nil {
		w.t.Fatal(err)
	}
	testworld.WriteFile(w.t, filepath.Join(netDir, w.Name+".conflist"), string(l.Bytes))
	cmd := exec.Command(filepath.Join(testworld.BinDir(), "cnitool"), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "CNI_PATH=" + strings.Join(testworld.CNIPath(), ":"),
		"NETCONFPATH=" + netDir, "CNI_ARGS=" + cniArgs}
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil {
		w.t.Fatalf("running cnitool %v: %v", args, err)
	}
	return cmdResult{stdout: string(out), code: cmd.ProcessState.ExitCode()}
}

// TestCnitoolJobArgs: cnitool sends a job's arguments without
// IgnoreUnknown. The set alone attaches (the delegates see no NICMUX_
// key), CHECK and DEL pass; with a key of the job's own, or 10,000, the
// bridge refuses them, as it would without nicmux, naming only those, and
// the rollback leaves nothing; DEL with the same arguments then succeeds.
func TestCnitoolJobArgs(t *testing.T) {
	w, l := argsWorld(t)
	var many strings.Builder
	many.WriteString("NICMUX_ATTACHMENTS=storage")
	for i := range 10000 {
		fmt.Fprintf(&many, ";K%d=v", i)
	}
	cases := []struct{ name, args, refusal string }{
		{"the set alone", "NICMUX_ATTACHMENTS=storage", ""},
		{"the set and a key of the job's", "NICMUX_ATTACHMENTS=storage;JOB=web", `eth0: plugin bridge: ARGS: unknown args ["JOB=web"]`},
		{"10,000 unknown pairs", many.String(), `eth0: plugin bridge: "ARGS: unknown args [\"K0=v\" \"K1=v\"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_ = os.Remove(w.RecordFile)
			netns := newNS(t)
			r := w.cnitool(l, c.args, "add", w.Name, netns)
			if c.refusal != "" {
				if r.code == 0 || !strings.Contains(r.stdout, c.refusal) || strings.Contains(r.stdout, "NICMUX_") {
					t.Errorf("cnitool add: %s\nwant the bridge's refusal of the job's keys only: %s", r, c.refusal)
				}
				if log := w.LogLines("msg=failed", "verb=ADD", "rollback=ok"); len(log) == 0 {
					t.Errorf("no ADD failed with its rollback ok:\n%s", w.Log())
				}
				w.assertArgsLeftNothing(netns)
			} else {
				if r.code != 0 {
					t.Fatalf("cnitool add: %s", r)
				}
				for _, call := range w.calls() {
					if call.Args != "" {
						t.Errorf("%s %s: CNI_ARGS %.80q, want none: the set is nicmux's", call.Command, call.IfName, call.Args)
					}
				}
				if got := len(w.calls()); got != 2 {
					t.Errorf("%d recorded calls, want storage.yaml's two chains", got)
				}
				if r := w.cnitool(l, c.args, "check", w.Name, netns); r.code != 0 {
					t.Errorf("cnitool check: %s", r)
				}
			}
			if r := w.cnitool(l, c.args, "del", w.Name, netns); r.code != 0 {
				t.Errorf("cnitool del: %s", r)
			}
			w.assertArgsLeftNothing(netns)
		})
	}
}

// TestEmptyArgPair: CNI_ARGS with an empty pair (";;"), which the
// reference plugins refuse with or without IgnoreUnknown: the ADD fails
// with the bridge's words and leaves nothing; a DEL with the same
// arguments succeeds.
func TestEmptyArgPair(t *testing.T) {
	w, l := argsWorld(t)
	netns := newNS(t)
	r := rt("empty-pair", netns)
	// libcni joins the pairs with ";": a value ending in one makes the
	// empty pair.
	r.Args = [][2]string{{"IgnoreUnknown", "1;"}, {"NICMUX_ATTACHMENTS", "storage"}}
	_, err := w.add(l, r)
	testworld.WantCNIError(t, err, 999, `eth0: plugin bridge: ARGS: invalid pair ""`)
	w.assertArgsLeftNothing(netns)
	if err := w.del(l, r); err != nil {
		t.Errorf("DEL: %v", err)
	}
	w.assertArgsLeftNothing(netns)
}

// TestRefusedArgsRecordConverges: a record whose arguments its plugins
// refuse (ADD with a key of the job's, no IgnoreUnknown, and a chain whose
// rollback fails for another reason: eth1's host-local ranges nested too
// shallow) is released once the attachment file is fixed, by the runtime's
// DEL, by nicmux forget and by nicmux gc, each of which replays the
// recorded arguments.
func TestRefusedArgsRecordConverges(t *testing.T) {
	for _, by := range []string{"DEL", "forget", "gc"} {
		t.Run(by, func(t *testing.T) {
			w := newWorld(t)
			w.Master = testworld.MakeMaster(t, 0)
			l := w.list(w.writeYAML("multi.yaml", stuckYAML), nil)
			conflist := w.conflistFile(l)
			netns := newNS(t)
			const id = "refused-1"
			r := rt(id, netns)
			r.Args = [][2]string{{"JOB", "web"}}
			_, err := w.add(l, r)
			if err == nil || !strings.Contains(err.Error(), `ARGS: unknown args ["JOB=web"]`) || !strings.Contains(err.Error(), "rollback: eth1: plugin macvlan") {
				t.Fatalf("ADD: %v; want the refusal, and eth1's rollback to fail on its ranges", err)
			}
			if _, err := os.Stat(testworld.PlanFile(w.StateDir, id)); err != nil {
				t.Fatalf("the failed rollback left no record: %v", err)
			}
			w.writeYAML("multi.yaml", twoChainsYAML)
			switch by {
			case "DEL":
				if err := w.del(l, r); err != nil {
					t.Fatalf("DEL once the file is fixed: %v", err)
				}
			case "forget":
				if r := w.ops(conflist, "forget", id); r.code != 0 {
					t.Fatalf("forget once the file is fixed: %s", r)
				}
			case "gc":
				if err := netnsutil.DestroyAt(netns); err != nil {
					t.Fatal(err)
				}
				if r := w.ops(conflist, "gc"); r.code != 0 {
					t.Fatalf("gc once the file is fixed: %s", r)
				}
				if err := netnsutil.CreateAt(netns); err != nil { // for the census
					t.Fatal(err)
				}
			}
			w.assertNothingLeft(netns, "svc", "storage")
		})
	}
}
