package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nicmux/nicmux/ns"
	"github.com/nicmux/nicmux/state"
)

// opsWorld is a state folder holding one container recorded as ADD records
// it, whose namespace is gone (a path where nothing is), and a conflist
// whose nicmux entry points at it. Its chain's plugin is one of the fake
// plugins of fakeBin: "macvlan" releases, "cnierr" fails.
type opsWorld struct {
	dir, stateDir, conflist, logFile string
}

const opsNetNS = "/nonexistent/netns/nicmux-cli-test"

func newOpsWorld(t *testing.T, plugin string) *opsWorld {
	t.Helper()
	dir := t.TempDir()
	w := &opsWorld{dir: dir, stateDir: filepath.Join(dir, "state"), conflist: filepath.Join(dir, "multi.conflist"), logFile: filepath.Join(dir, "nicmux.log")}
	attachments := filepath.Join(dir, "multi.yaml")
	// The file has no eth0: a failing recorded chain has no fallback.
	writeTestFile(t, attachments, "interfaces: [{ifname: eth9, plugins: [{type: macvlan}]}]\n")
	entry, _ := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": "multi", "plugins": []any{map[string]any{
		"type": "nicmux", "attachments": attachments, "stateDir": w.stateDir, "logFile": w.logFile}}})
	writeTestFile(t, w.conflist, string(entry))
	store, err := state.Open(w.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	chain := `{"cniVersion":"1.0.0","name":"n0","plugins":[{"type":"` + plugin + `","ipam":{"type":"host-local","dataDir":"/srv/ipam"}}]}`
	txn, err := store.Begin(&state.Plan{ContainerID: "c1", IfName: "eth0", NetNS: opsNetNS, NetNSID: ns.NetNSID{Dev: 1, Ino: 2},
		ListName: "multi", CNIVersion: "1.0.0", AttachmentFile: attachments, Created: time.Now().Add(-90 * time.Minute),
		Interfaces: []state.Planned{{IfName: "eth0", Network: "n0", CNIVersion: "1.0.0", Config: json.RawMessage(chain), CNIArgs: "A=1"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	result := `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":"aa:bb:cc:dd:ee:ff","sandbox":"` + opsNetNS + `"}],"ips":[{"interface":0,"address":"10.1.2.3/24"}]}`
	if err := txn.SaveResult("eth0", json.RawMessage(result)); err != nil {
		t.Fatal(err)
	}
	if err := txn.Complete(); err != nil {
		t.Fatal(err)
	}
	return w
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := writeSettled(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (w *opsWorld) hasRecord() bool {
	_, err := os.Stat(filepath.Join(w.stateDir, "containers", "c1", "container.json"))
	return err == nil
}

// keys returns the keys of a JSON object, sorted.
func keys(t *testing.T, raw any) []string {
	t.Helper()
	obj, ok := raw.(map[string]any)
	if !ok {
		t.Fatalf("not a JSON object: %v", raw)
	}
	var out []string
	for k := range obj {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func decodeObject(t *testing.T, s string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, s)
	}
	return v
}

func wantKeys(t *testing.T, what string, raw any, want ...string) {
	t.Helper()
	if got := keys(t, raw); !reflect.DeepEqual(got, want) {
		t.Errorf("%s keys = %v, want %v", what, got, want)
	}
}

// TestOpsUsage: the operator commands' flags, arguments and exit codes for
// what is wrong before anything is read.
func TestOpsUsage(t *testing.T) {
	empty := t.TempDir()
	cases := []struct {
		name   string
		args   []string
		code   int
		outHas string
		errHas string
	}{
		{name: "show -h", args: []string{"show", "-h"}, outHas: "Usage: nicmux show [-state-dir DIR | -conflist FILE] [-json] [CONTAINER_ID]\n"},
		{name: "help gc", args: []string{"help", "gc"}, outHas: "Usage: nicmux gc [-dry-run] [-conflist FILE] [-cni-path DIRS] [-json]\n"},
		{name: "forget --help", args: []string{"forget", "--help"}, outHas: "Usage: nicmux forget [-force] [-conflist FILE] [-cni-path DIRS] [-json] CONTAINER_ID\n"},
		{name: "show two IDs", args: []string{"show", "a", "b"}, code: 2, errHas: "nicmux show: give at most one CONTAINER_ID, got 2 arguments"},
		{name: "show both sources", args: []string{"show", "-state-dir", empty, "-conflist", "x"}, code: 2, errHas: "give -state-dir or -conflist, not both"},
		{name: "show bad flag", args: []string{"show", "-statedir", empty}, code: 2, errHas: "flag provided but not defined: -statedir"},
		{name: "show empty", args: []string{"show", "-state-dir", empty}, outHas: "no container in " + empty + "\n"},
		{name: "show absent folder", args: []string{"show", "-state-dir", filepath.Join(empty, "none")}, code: 1,
			errHas: "nicmux show: the state folder " + filepath.Join(empty, "none") + " does not exist: nicmux has recorded nothing there"},
		{name: "show unknown", args: []string{"show", "-state-dir", empty, "nosuch"}, code: 1, errHas: "nicmux show: container nosuch: no state recorded in " + empty},
		{name: "show bad ID", args: []string{"show", "-state-dir", empty, "a/b"}, code: 1, errHas: `container ID "a/b"`},
		{name: "show missing conflist", args: []string{"show", "-conflist", "/nonexistent/x.conflist"}, code: 1, errHas: "nicmux show: /nonexistent/x.conflist: error: cannot read the conflist"},
		{name: "gc without conflist", args: []string{"gc"}, code: 2, errHas: "nicmux gc: give -conflist"},
		{name: "gc argument", args: []string{"gc", "-conflist", "x", "c1"}, code: 2, errHas: `nicmux gc: takes no arguments, got "c1"`},
		{name: "gc missing conflist", args: []string{"gc", "-conflist", "/nonexistent/x.conflist"}, code: 1, errHas: "cannot read the conflist"},
		{name: "forget no ID", args: []string{"forget", "-conflist", "x"}, code: 2, errHas: "nicmux forget: give one CONTAINER_ID, got 0 arguments"},
		{name: "forget two IDs", args: []string{"forget", "-conflist", "x", "a", "b"}, code: 2, errHas: "give one CONTAINER_ID, got 2 arguments"},
		{name: "forget without conflist", args: []string{"forget", "c1"}, code: 2, errHas: "nicmux forget: give -conflist"},
		{name: "forget bad ID", args: []string{"forget", "-conflist", "x", "a/b"}, code: 2, errHas: `container ID "a/b"`},
		{name: "forget flags after the ID", args: []string{"forget", "c1", "-conflist", "/nonexistent/x.conflist", "-force"}, code: 1, errHas: "cannot read the conflist"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := run(t, pathEnv, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			if !strings.Contains(stdout, tt.outHas) {
				t.Errorf("stdout lacks %q:\n%s", tt.outHas, stdout)
			}
			if !strings.Contains(stderr, tt.errHas) {
				t.Errorf("stderr lacks %q:\n%s", tt.errHas, stderr)
			}
			if tt.code == 2 && stdout != "" {
				t.Errorf("stdout not empty on a usage error: %s", stdout)
			}
		})
	}
}

// TestShowOutput: the text and the JSON shape of show, listing and in
// detail, of a container whose namespace is gone.
func TestShowOutput(t *testing.T) {
	w := newOpsWorld(t, "macvlan")
	stdout, stderr, code := run(t, pathEnv, "show", "-conflist", w.conflist)
	if code != 0 || stderr != "" {
		t.Fatalf("show: exit %d, stderr %s", code, stderr)
	}
	for _, want := range []string{
		"c1  stale  (list multi, created 1h30m ago)\n",
		"  netns " + opsNetNS + ": gone\n",
		"  IFNAME  NETWORK  CHAIN                ADDRESSES    MAC                STATE    AGE\n",
		"  eth0    n0       macvlan(host-local)  10.1.2.3/24  aa:bb:cc:dd:ee:ff  pending  0s\n",
		"\n1 container in " + w.stateDir + ": 1 stale\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("show lacks %q:\n%s", want, stdout)
		}
	}

	stdout, _, code = run(t, pathEnv, "show", "-state-dir", w.stateDir, "-json")
	top := decodeObject(t, stdout)
	wantKeys(t, "show -json", top, "containers", "stateDir")
	list := top["containers"].([]any)
	if code != 0 || len(list) != 1 {
		t.Fatalf("show -json: exit %d, %d containers", code, len(list))
	}
	c := list[0].(map[string]any)
	wantKeys(t, "container", c, "attachmentFile", "complete", "containerID", "created", "format", "ifname", "interfaces", "list", "netns", "staleReason", "status")
	wantKeys(t, "netns", c["netns"], "attached", "exists", "path")
	it := c["interfaces"].([]any)[0]
	wantKeys(t, "interface", it, "addresses", "chain", "cniVersion", "ifname", "mac", "network", "resultKnown", "saved", "state")
	wantKeys(t, "chain plugin", it.(map[string]any)["chain"].([]any)[0], "ipam", "type")
	if c["status"] != "stale" || c["staleReason"] != "its netns "+opsNetNS+" is gone" {
		t.Errorf("container: %v", c)
	}

	// In detail: the chain as recorded, with its arguments.
	stdout, _, code = run(t, pathEnv, "show", "-state-dir", w.stateDir, "c1")
	for _, want := range []string{"  attachment file " + filepath.Join(w.dir, "multi.yaml") + ", runtime ifname eth0, record format 2\n",
		"  eth0: chain at cniVersion 1.0.0, CNI_ARGS A=1\n", `        "type": "macvlan",` + "\n"} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("show c1: exit %d, lacks %q:\n%s", code, want, stdout)
		}
	}
	stdout, _, code = run(t, pathEnv, "show", "-state-dir", w.stateDir, "-json", "c1")
	if code != 0 {
		t.Errorf("show -json c1: exit %d", code)
	}
	it = decodeObject(t, stdout)["containers"].([]any)[0].(map[string]any)["interfaces"].([]any)[0]
	wantKeys(t, "interface in detail", it, "addresses", "chain", "cniArgs", "cniVersion", "config", "ifname", "mac", "network", "resultKnown", "saved", "state")

	// A torn plan: listed with its error, exit 1.
	writeTestFile(t, filepath.Join(w.stateDir, "containers", "c1", "container.json"), `{"kind":"nicmuxContai`)
	stdout, _, code = run(t, pathEnv, "show", "-state-dir", w.stateDir)
	if code != 1 || !strings.Contains(stdout, "c1  unreadable\n  error: state record "+filepath.Join(w.stateDir, "containers", "c1", "container.json")+" is corrupt: ") {
		t.Errorf("show of a torn plan: exit %d\n%s", code, stdout)
	}
}

// TestGCOutput: gc -dry-run reports and changes nothing; gc releases
// through the chain's plugin, logs as a verb, and says so; the JSON shape.
func TestGCOutput(t *testing.T) {
	w := newOpsWorld(t, "macvlan")
	stdout, stderr, code := run(t, pathEnv, "gc", "-dry-run", "-conflist", w.conflist, "-cni-path", fakeBin)
	want := "would release c1 (eth0): its netns " + opsNetNS + " is gone\n" +
		"dry run: nothing released, no GC forwarded to the chains\n" +
		"nicmux gc (list multi, " + w.stateDir + "): 1 would release, 0 failed, 0 unreadable, 0 kept\n"
	if code != 0 || stdout != want || stderr != "" {
		t.Errorf("gc -dry-run: exit %d\nstdout:\n%s\nwant:\n%s\nstderr: %s", code, stdout, want, stderr)
	}
	if !w.hasRecord() {
		t.Fatal("gc -dry-run removed the record")
	}
	stdout, _, code = run(t, pathEnv, "gc", "-dry-run", "-json", "-conflist", w.conflist, "-cni-path", fakeBin)
	top := decodeObject(t, stdout)
	wantKeys(t, "gc -json", top, "dryRun", "failed", "forwardErrors", "forwarded", "forwardedTo", "kept", "list", "notForwarded", "otherLists", "released", "stateDir", "unreadable")
	wantKeys(t, "gc outcome", top["released"].([]any)[0], "containerID", "interfaces", "reason")
	if code != 0 || top["dryRun"] != true {
		t.Errorf("gc -dry-run -json: exit %d, %v", code, top)
	}

	// The file's chains are at 1.0.0, which has no GC: none is forwarded,
	// and gc says so.
	stdout, _, code = run(t, pathEnv, "gc", "-conflist", w.conflist, "-cni-path", fakeBin)
	if code != 0 || !strings.HasPrefix(stdout, "released c1 (eth0): its netns "+opsNetNS+" is gone\n"+
		"GC not forwarded to the chains: no chain of the attachment files is at cniVersion 1.1.0 or later, where GC begins, and none has an IPAM plugin that speaks GC\n") {
		t.Errorf("gc: exit %d\n%s", code, stdout)
	}
	if w.hasRecord() {
		t.Error("gc kept the stale record")
	}
	log, _ := os.ReadFile(w.logFile)
	for _, want := range []string{`msg="nicmux gc: releasing a stale attachment" containerID=c1 reason="its netns ` + opsNetNS + ` is gone"`, `msg=ok verb="nicmux gc"`} {
		if !strings.Contains(string(log), want) {
			t.Errorf("the log lacks %s:\n%s", want, log)
		}
	}

	// A 1.1.0 chain gets GC, and gc names its network.
	writeTestFile(t, filepath.Join(w.dir, "multi.yaml"), "interfaces: [{ifname: eth9, network: storage, cniVersion: 1.1.0, plugins: [{type: macvlan}]}]\n")
	stdout, _, code = run(t, pathEnv, "gc", "-conflist", w.conflist, "-cni-path", fakeBin)
	if code != 0 || !strings.HasPrefix(stdout, "GC forwarded to the chains of network storage\n") {
		t.Errorf("gc with a 1.1.0 chain: exit %d\n%s", code, stdout)
	}
	stdout, _, _ = run(t, pathEnv, "gc", "-json", "-conflist", w.conflist, "-cni-path", fakeBin)
	if top := decodeObject(t, stdout); top["forwarded"] != true || fmt.Sprint(top["forwardedTo"]) != "[storage]" || top["notForwarded"] != nil {
		t.Errorf("gc -json with a 1.1.0 chain: %s", stdout)
	}
}

// TestGCFailure: a release that fails keeps the container and exits 1.
func TestGCFailure(t *testing.T) {
	w := newOpsWorld(t, "cnierr")
	stdout, _, code := run(t, pathEnv, "gc", "-conflist", w.conflist, "-cni-path", fakeBin)
	if code != 1 || !strings.Contains(stdout, "failed c1: its netns "+opsNetNS+" is gone: eth0: plugin cnierr: boom") || !w.hasRecord() {
		t.Errorf("gc with a failing plugin: exit %d, record kept %v\n%s", code, w.hasRecord(), stdout)
	}
}

// TestForgetOutput: forget of a record whose plugin fails keeps it (exit
// 1) and says what may be left; -force drops it and says the same; the
// JSON shape. A record whose plugin releases is simply removed.
func TestForgetOutput(t *testing.T) {
	w := newOpsWorld(t, "cnierr")
	stdout, stderr, code := run(t, pathEnv, "forget", "-conflist", w.conflist, "-cni-path", fakeBin, "c1")
	if code != 1 || !w.hasRecord() || !strings.Contains(stderr, "nicmux forget: the record is kept: eth0: plugin cnierr: boom") {
		t.Errorf("forget: exit %d, record kept %v, stderr %s", code, w.hasRecord(), stderr)
	}
	for _, want := range []string{
		"container c1 (stale): the record says ADD created, in netns " + opsNetNS + " (gone):\n",
		"  eth0    n0       cnierr(host-local)  10.1.2.3/24  aa:bb:cc:dd:ee:ff  pending  ",
		"eth0: not released: plugin cnierr: boom\n",
		"the record is kept. ",
		"  eth0 (network n0, chain cnierr(host-local)): 10.1.2.3/24\n    - host-local lease of 10.1.2.3: rm /srv/ipam/n0/10.1.2.3\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("forget lacks %q:\n%s", want, stdout)
		}
	}

	stdout, _, code = run(t, pathEnv, "forget", "-force", "-json", "-conflist", w.conflist, "-cni-path", fakeBin, "c1")
	top := decodeObject(t, stdout)
	wantKeys(t, "forget -json", top, "containerID", "dropped", "force", "left", "record", "released", "stateDir")
	left := top["left"].([]any)
	if code != 0 || w.hasRecord() || top["dropped"] != true || len(left) != 1 {
		t.Fatalf("forget -force -json: exit %d, record kept %v\n%s", code, w.hasRecord(), stdout)
	}
	wantKeys(t, "leftover", left[0], "addresses", "chain", "error", "hints", "ifname", "mac", "network", "resultKnown")

	w = newOpsWorld(t, "macvlan")
	stdout, _, code = run(t, pathEnv, "forget", "-conflist", w.conflist, "-cni-path", fakeBin, "c1")
	if code != 0 || w.hasRecord() || !strings.HasSuffix(stdout, "released now: eth0\neverything released: the record is removed\n") {
		t.Errorf("forget of a releasable record: exit %d\n%s", code, stdout)
	}
	_, stderr, code = run(t, pathEnv, "forget", "-conflist", w.conflist, "-cni-path", fakeBin, "c1")
	if code != 1 || !strings.Contains(stderr, "nicmux forget: container c1: no state recorded in "+w.stateDir) {
		t.Errorf("forget of nothing: exit %d, stderr %s", code, stderr)
	}
}

// writeSettled is os.WriteFile for a configuration file, dated an hour
// back as a file deployed before the verb is: nicmux reads one written
// less than 100 ms ago again once it is older (see conf.readSettled).
func writeSettled(path string, data []byte, perm os.FileMode) error {
	if err := os.WriteFile(path, data, perm); err != nil {
		return err
	}
	past := time.Now().Add(-time.Hour)
	return os.Chtimes(path, past, past)
}
