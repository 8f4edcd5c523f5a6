package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/nicmux/nicmux/test/testworld"
)

// nicmux rehearse and nicmux adopt, run as an operator runs them: the real
// binary, the reference plugins, real namespaces, real iptables rules.

// handChainTmpl is the seed's hand-written chain: a bridge for eth0 with
// portmap, a macvlan and tuning wrapped to act on eth1; {{.Extra}} adds a
// plugin at the end.
const handChainTmpl = `{"cniVersion": "1.0.0", "name": "{{.Name}}", "plugins": [
  {"type": "bridge", "bridge": "{{.Bridge}}", "isGateway": true,
   "ipam": {"type": "host-local", "dataDir": "{{.IPAMDir}}", "ranges": [[{"subnet": "10.77.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
  {"type": "ifrename", "ifname": "eth1", "delegate": {"type": "macvlan", "master": "{{.Master}}", "mode": "bridge",
   "ipam": {"type": "host-local", "dataDir": "{{.IPAMDir}}", "ranges": [[{"subnet": "10.88.0.0/24"}]]}}},
  {"type": "ifrename", "ifname": "eth1", "delegate": {"type": "tuning", "sysctl": {"net.ipv4.conf.eth1.arp_ignore": "1"}}}
  {{- .Extra}}
]}`

// rehearseWorld is a world for rehearsals: its hand-written chain (or
// nicmux's conflist), and what the host had before.
type rehearseWorld struct {
	*world
	Extra  string
	before hostState
}

func newRehearseWorld(t *testing.T, name string) *rehearseWorld {
	w := &rehearseWorld{world: newWorld(t)}
	w.Name = name
	w.Master = testworld.MakeMaster(t, 0)
	w.before = takeHostState(t)
	return w
}

// handChain writes the hand-written chain and returns its path.
func (w *rehearseWorld) handChain() string {
	var buf bytes.Buffer
	if err := template.Must(template.New("chain").Parse(handChainTmpl)).Execute(&buf, w); err != nil {
		w.t.Fatal(err)
	}
	path := filepath.Join(w.Dir, w.Name+".conflist")
	testworld.WriteFile(w.t, path, buf.String())
	return path
}

// nicmuxList writes the same interfaces as nicmux's attachment file and
// conflist, and returns the conflist's path.
func (w *rehearseWorld) nicmuxList() string {
	att := w.writeYAML(w.Name+".yaml", `interfaces:
  - ifname: eth0
    plugins:
      - {type: bridge, bridge: {{.Bridge}}, isGateway: true, ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.77.0.0/24}]], routes: [{dst: 0.0.0.0/0}]}}
      - {type: portmap, capabilities: {portMappings: true}, snat: true}
  - ifname: eth1
    plugins:
      - {type: macvlan, master: {{.Master}}, mode: bridge, ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.88.0.0/24}]]}}
      - {type: tuning, sysctl: {net.ipv4.conf.eth1.arp_ignore: "1"}}
`)
	l := w.list(att, nil)
	var m map[string]any
	if err := json.Unmarshal(l.Bytes, &m); err != nil {
		w.t.Fatal(err)
	}
	m["plugins"] = append(m["plugins"].([]any), map[string]any{"type": "loopback"})
	b, _ := json.Marshal(m)
	path := filepath.Join(w.Dir, w.Name+".conflist")
	testworld.WriteFile(w.t, path, string(b))
	return path
}

// rehearseArgs are the arguments of a rehearsal of file on this world.
func rehearseArgs(file string, more ...string) []string {
	return append([]string{"rehearse", "-conflist", file, "-cni-path", strings.Join(testworld.CNIPath(), ":"), "-port", "20080:8080"}, more...)
}

// rehearsal is the -json report's part the tests read.
type rehearsal struct {
	Releases []struct {
		Release struct {
			Version string `json:"version"`
		} `json:"release"`
		ContainerID string `json:"containerID"`
		Pass        bool   `json:"pass"`
		Step        string `json:"step"`
		Plugin      string `json:"plugin"`
		Message     string `json:"message"`
		Address     *struct {
			Interface string `json:"interface"`
			Address   string `json:"address"`
		} `json:"address"`
		Steps []struct {
			Step    string `json:"step"`
			OK      bool   `json:"ok"`
			Skipped bool   `json:"skipped"`
		} `json:"steps"`
		Leaks     []string `json:"leaks"`
		CleanedUp []string `json:"cleanedUp"`
		Left      []string `json:"left"`
	} `json:"releases"`
	Interrupted bool `json:"interrupted"`
}

func decodeRehearsal(t *testing.T, r cmdResult) rehearsal {
	t.Helper()
	var rep rehearsal
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("decoding rehearse -json: %v\n%s", err, r)
	}
	return rep
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// hostState is what the test's host (its private netns) and the shared
// netns folder hold.
type hostState struct {
	links []string
	netns []string
}

func takeHostState(t *testing.T) hostState {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var s hostState
	for _, l := range links {
		s.links = append(s.links, l.Attrs().Name)
	}
	// The folder is the machine's: only the names of Nomad's kind
	// (allocation UUIDs) are the rehearsals'.
	entries, _ := os.ReadDir("/var/run/netns")
	for _, e := range entries {
		if uuidRE.MatchString(e.Name()) {
			s.netns = append(s.netns, e.Name())
		}
	}
	sort.Strings(s.links)
	sort.Strings(s.netns)
	return s
}

// assertNothingLeft: the host has the links and namespaces it had before
// the rehearsals, no lease is left in the world's IPAM folder, no iptables
// rule names the world's network, nicmux holds no state.
func (w *rehearseWorld) assertNothingLeft() {
	t := w.t
	t.Helper()
	now := takeHostState(t)
	if strings.Join(now.links, " ") != strings.Join(w.before.links, " ") {
		t.Errorf("host links after the rehearsals: %v, before: %v", now.links, w.before.links)
	}
	if strings.Join(now.netns, " ") != strings.Join(w.before.netns, " ") {
		t.Errorf("/var/run/netns after the rehearsals: %v, before: %v", now.netns, w.before.netns)
	}
	leases, _ := filepath.Glob(filepath.Join(w.IPAMDir, "*", "*"))
	for _, f := range leases {
		if base := filepath.Base(f); base != "lock" && !strings.HasPrefix(base, "last_reserved_ip") {
			t.Errorf("lease left: %s", f)
		}
	}
	out, err := exec.Command("iptables-save").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, `name: \"`+w.Name+`\"`) {
			t.Errorf("iptables rule left: %s", line)
		}
	}
	if left, _ := os.ReadDir(filepath.Join(w.StateDir, "containers")); len(left) > 0 {
		t.Errorf("nicmux state left: %v", left)
	}
}

// TestRehearseSeedChain: the seed's hand chain passes on a release
// without CHECK (1.9.4) and fails on the first with it (1.9.5) at CHECK,
// naming the plugin; Nomad rebuilds the netns and the new ADD fails; the
// rehearsal removes everything it made.
func TestRehearseSeedChain(t *testing.T) {
	w := newRehearseWorld(t, "handmade")
	r := runNicmux(t, rehearseArgs(w.handChain(), "-nomad", "1.9.4,1.9.5", "-json")...)
	if r.code != 1 {
		t.Fatalf("rehearse of the hand chain: want exit 1\n%s", r)
	}
	if !strings.Contains(r.stderr, "the attachments are real") {
		t.Errorf("rehearse does not say its attachments are real:\n%s", r.stderr)
	}
	rep := decodeRehearsal(t, r)
	if len(rep.Releases) != 2 {
		t.Fatalf("%d outcomes, want 2\n%s", len(rep.Releases), r)
	}
	old, first := rep.Releases[0], rep.Releases[1]
	if !old.Pass || old.Address == nil || old.Address.Interface != "eth1" {
		t.Errorf("Nomad 1.9.4: pass %v, address %+v; want a pass reporting eth1 (the wrapper lost eth0 from the result)", old.Pass, old.Address)
	}
	if first.Pass || first.Step != "CHECK" || first.Plugin != "bridge" || !strings.Contains(first.Message, "Interface name missing") {
		t.Errorf("Nomad 1.9.5: pass %v at %q, plugin %q: %q; want a failure at CHECK naming bridge", first.Pass, first.Step, first.Plugin, first.Message)
	}
	var rebuilt bool
	for _, s := range first.Steps {
		rebuilt = rebuilt || s.Step == "rebuild ADD" && !s.OK
	}
	if !rebuilt {
		t.Errorf("Nomad 1.9.5: no failed rebuild ADD after the failed CHECK: %+v", first.Steps)
	}
	for _, o := range rep.Releases {
		if len(o.Left) > 0 {
			t.Errorf("Nomad %s: left behind %v", o.Release.Version, o.Left)
		}
	}
	w.assertNothingLeft()
}

// TestRehearseThroughNicmux: the same interfaces through nicmux pass on
// every release, report eth0's address, and leave nothing.
func TestRehearseThroughNicmux(t *testing.T) {
	w := newRehearseWorld(t, "viamux")
	r := runNicmux(t, rehearseArgs(w.nicmuxList(), "-json")...)
	if r.code != 0 {
		t.Fatalf("rehearse of nicmux's conflist: want exit 0\n%s", r)
	}
	rep := decodeRehearsal(t, r)
	if len(rep.Releases) < 10 {
		t.Errorf("-nomad all rehearsed %d releases", len(rep.Releases))
	}
	for _, o := range rep.Releases {
		if !o.Pass || o.Address == nil || o.Address.Interface != "eth0" || len(o.Leaks) > 0 || len(o.Left) > 0 {
			t.Errorf("Nomad %s: pass %v at %q (%s), address %+v, leaks %v, left %v", o.Release.Version, o.Pass, o.Step, o.Message, o.Address, o.Leaks, o.Left)
		}
		checked := false
		for _, s := range o.Steps {
			checked = checked || s.Step == "CHECK" && s.OK && !s.Skipped
		}
		if want := versionAtLeast(o.Release.Version, 1, 9, 5); checked != want {
			t.Errorf("Nomad %s: CHECK ran %v, want %v", o.Release.Version, checked, want)
		}
	}
	w.assertNothingLeft()
}

// TestRehearseLeakCheck: a chain whose DEL fails (a plugin missing from
// the CNI path after ADD went through, as a binary removed under a running
// client) leaves its lease, link and rules; the leak check finds them, the
// rehearsal fails at DEL and says what it found, then removes all of it.
func TestRehearseLeakCheck(t *testing.T) {
	w := newRehearseWorld(t, "leaky")
	w.Extra = `, {"type": "recorder", "failOn": ["DEL"], "failCode": 11}`
	r := runNicmux(t, rehearseArgs(w.handChain(), "-nomad", "1.9.4", "-json")...)
	rep := decodeRehearsal(t, r)
	if r.code != 1 || len(rep.Releases) != 1 {
		t.Fatalf("want exit 1 and one outcome\n%s", r)
	}
	o := rep.Releases[0]
	if o.Pass || o.Step != "DEL" || o.Plugin != "recorder" {
		t.Errorf("pass %v at %q, plugin %q: %s; want a failure at DEL naming recorder", o.Pass, o.Step, o.Plugin, o.Message)
	}
	found := strings.Join(o.Leaks, "\n")
	for _, want := range []string{"link: eth0 in the rehearsal's netns", "link: eth1 in the rehearsal's netns", "lease: " + w.IPAMDir, "iptables: "} {
		if !strings.Contains(found, want) {
			t.Errorf("leaks lack %q:\n%s", want, found)
		}
	}
	if len(o.Left) > 0 {
		t.Errorf("left behind: %v", o.Left)
	}
	w.assertNothingLeft()
}

// TestRehearseInterrupted: SIGTERM while a plugin's ADD is running lets
// it finish, then the rehearsal stops, removes what it made and says so;
// a second SIGTERM kills the plugin call under way, and the rehearsal
// still removes everything.
func TestRehearseInterrupted(t *testing.T) {
	for _, c := range []struct {
		name    string
		signals int
		sleepMs int
	}{{"one signal", 1, 1500}, {"two signals", 2, 60000}} {
		t.Run(c.name, func(t *testing.T) {
			w := newRehearseWorld(t, "sig"+testworld.RandHex(2))
			w.Extra = `, {"type": "recorder", "recordFile": "` + w.RecordFile + `", "sleepOn": ["ADD"], "sleepMs": ` + itoa(c.sleepMs) + `}`
			cmd := exec.Command(testworld.NicmuxBin(), rehearseArgs(w.handChain())...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH") + ":/usr/sbin:/sbin"}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { b, _ := os.ReadFile(w.RecordFile); return bytes.Contains(b, []byte(`"command":"ADD"`)) })
			start := time.Now()
			for i := 0; i < c.signals; i++ {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				time.Sleep(100 * time.Millisecond)
			}
			err := cmd.Wait()
			if code := cmd.ProcessState.ExitCode(); code != 1 {
				t.Errorf("exit %d (%v), want 1\nstdout:\n%s\nstderr:\n%s", code, err, stdout.String(), stderr.String())
			}
			if c.signals == 2 && time.Since(start) > 30*time.Second {
				t.Errorf("the second signal did not kill the sleeping plugin: %s", time.Since(start))
			}
			for _, want := range []string{"INTERRUPTED", "interrupted: the releases left were not rehearsed; what the rehearsal made is removed"} {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
				}
			}
			if !strings.Contains(stderr.String(), "stopping after the plugin call under way, then cleaning up") {
				t.Errorf("stderr:\n%s", stderr.String())
			}
			if strings.Contains(stdout.String(), "LEFT BEHIND") {
				t.Errorf("the interrupted rehearsal left something:\n%s", stdout.String())
			}
			w.assertNothingLeft()
		})
	}
}

// versionAtLeast reports whether major.minor.patch v is at least the
// given one.
func versionAtLeast(v string, major, minor, patch int) bool {
	var a, b, c int
	if _, err := fmt.Sscanf(v, "%d.%d.%d", &a, &b, &c); err != nil {
		return false
	}
	if a != major {
		return a > major
	}
	if b != minor {
		return b > minor
	}
	return c >= patch
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("timed out waiting")
}
