// Package integration drives the real nicmux binary through libcni, the way
// a runtime does, with the real reference plugins, in real network
// namespaces, and asserts kernel state, IPAM leases and nicmux's state files.
//
// The tests need root. TestMain re-runs the test binary in private network
// and mount namespaces, so the "host" side of every test (bridges, macvlan
// masters) and the mounts a test makes (a read-only state folder) live and
// die with the run.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"text/template"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/nicmux/nicmux/test/netnsutil"
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "integration tests make network namespaces and links: run them as root (make integration)")
		os.Exit(1)
	}
	if code := netnsutil.ReexecInPrivateNetnsAndMounts(); code >= 0 {
		os.Exit(code)
	}
	for _, b := range []string{nicmuxBin(), filepath.Join(pluginsDir(), "bridge"), filepath.Join(testPluginsDir(), "recorder")} {
		if _, err := os.Stat(b); err != nil {
			fmt.Fprintf(os.Stderr, "missing %s: build with `make build plugins testplugins` (or run `make integration`)\n", b)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func binDir() string         { return filepath.Join(repoRoot(), "bin") }
func nicmuxBin() string      { return filepath.Join(binDir(), "nicmux") }
func pluginsDir() string     { return filepath.Join(binDir(), "plugins") }
func testPluginsDir() string { return filepath.Join(binDir(), "testplugins") }

func cniPath() []string { return []string{binDir(), pluginsDir(), testPluginsDir()} }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// --- network namespaces ---------------------------------------------------

func createNSAt(path string) error  { return netnsutil.CreateAt(path) }
func destroyNSAt(path string) error { return netnsutil.DestroyAt(path) }

// newNS gives the test a fresh container namespace, removed at cleanup.
func newNS(t *testing.T) string {
	t.Helper()
	path := filepath.Join("/run/netns", "nicmux-test-"+randHex(6))
	if err := createNSAt(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = destroyNSAt(path) })
	return path
}

// inNS runs f inside the namespace at path.
func inNS(t *testing.T, path string, f func() error) {
	t.Helper()
	if err := ns.WithNetNSPath(path, func(ns.NetNS) error { return f() }); err != nil {
		t.Fatalf("in netns %s: %v", path, err)
	}
}

// nsLinks lists the links in a namespace, without lo.
func nsLinks(t *testing.T, path string) []string {
	t.Helper()
	names, err := netnsutil.Links(path)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// nsAddrs lists the global addresses of a link in a namespace, as CIDRs.
func nsAddrs(t *testing.T, path, ifname string) []string {
	t.Helper()
	addrs, err := netnsutil.Addrs(path, ifname)
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

// makeMaster makes a veth pair in the test's own namespace, to serve as a
// macvlan master (this kernel has no dummy links).
func makeMaster(t *testing.T) string {
	t.Helper()
	name := "mv" + randHex(4)
	del, err := netnsutil.AddVethMaster(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(del)
	return name
}

// bridgePorts lists the links enslaved to a bridge in the test's namespace.
func bridgePorts(t *testing.T, bridge string) []string {
	t.Helper()
	ports, err := netnsutil.BridgePorts(bridge)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// --- a test's CNI world -----------------------------------------------------

// world is one test's configuration folder, state folder, IPAM folder, log
// file and libcni client.
type world struct {
	t          *testing.T
	dir        string
	StateDir   string
	IPAMDir    string
	LogFile    string
	RecordFile string
	Bridge     string
	Master     string
	Name       string
	CNIVersion string
	cni        *libcni.CNIConfig
}

func newWorld(t *testing.T) *world {
	t.Helper()
	dir := t.TempDir()
	w := &world{
		t:          t,
		dir:        dir,
		StateDir:   filepath.Join(dir, "state"),
		IPAMDir:    filepath.Join(dir, "ipam"),
		LogFile:    filepath.Join(dir, "nicmux.log"),
		RecordFile: filepath.Join(dir, "calls.jsonl"),
		Bridge:     "nbr" + randHex(4),
		Name:       "multi",
		CNIVersion: "1.0.0",
		cni:        libcni.NewCNIConfigWithCacheDir(cniPath(), filepath.Join(dir, "cache"), nil),
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(w.Bridge); err == nil {
			_ = netlink.LinkDel(l)
		}
		if t.Failed() {
			if b, err := os.ReadFile(w.LogFile); err == nil {
				t.Logf("nicmux log:\n%s", b)
			}
		}
	})
	return w
}

// seedYAML is the job this project exists for: eth0 on a bridge with
// host-local, eth1 a macvlan with host-local and tuning; a recorder at the
// end of each chain shows what each chain was handed.
const seedYAML = `interfaces:
  - ifname: eth0
    network: svc
    plugins:
      - type: bridge
        bridge: {{.Bridge}}
        isGateway: true
        ipam:
          type: host-local
          dataDir: {{.IPAMDir}}
          ranges: [[{subnet: 10.77.0.0/24}]]
          routes: [{dst: 0.0.0.0/0}]
      - type: recorder
        recordFile: {{.RecordFile}}
  - ifname: eth1
    network: storage
    plugins:
      - type: macvlan
        master: {{.Master}}
        mode: bridge
        ipam:
          type: host-local
          dataDir: {{.IPAMDir}}
          ranges: [[{subnet: 10.88.0.0/24}]]
      - type: tuning
        sysctl:
          net.ipv4.conf.IFNAME.arp_ignore: "1"
      - type: recorder
        recordFile: {{.RecordFile}}
`

// writeYAML renders a template with the world's fields into file name (in
// the world's folder) and returns its path.
func (w *world) writeYAML(name, tmpl string) string {
	w.t.Helper()
	var buf bytes.Buffer
	if err := template.Must(template.New(name).Parse(tmpl)).Execute(&buf, w); err != nil {
		w.t.Fatal(err)
	}
	path := filepath.Join(w.dir, name)
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		w.t.Fatal(err)
	}
	return path
}

// seed writes the seed job's attachment file, with a fresh macvlan master.
func (w *world) seed() string {
	w.t.Helper()
	if w.Master == "" {
		w.Master = makeMaster(w.t)
	}
	return w.writeYAML("multi.yaml", seedYAML)
}

// list returns nicmux's configuration list pointing at the attachment file.
func (w *world) list(attachments string, extra map[string]any) *libcni.NetworkConfigList {
	w.t.Helper()
	plugin := map[string]any{
		"type":         "nicmux",
		"attachments":  attachments,
		"stateDir":     w.StateDir,
		"logFile":      w.LogFile,
		"logLevel":     "debug",
		"capabilities": map[string]bool{"portMappings": true},
	}
	for k, v := range extra {
		plugin[k] = v
	}
	b, err := json.Marshal(map[string]any{"cniVersion": w.CNIVersion, "name": w.Name, "plugins": []any{plugin}})
	if err != nil {
		w.t.Fatal(err)
	}
	l, err := libcni.ConfListFromBytes(b)
	if err != nil {
		w.t.Fatal(err)
	}
	return l
}

func rt(id, netns string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: "eth0"}
}

func (w *world) add(l *libcni.NetworkConfigList, r *libcni.RuntimeConf) (*types100.Result, error) {
	res, err := w.cni.AddNetworkList(context.Background(), l, r)
	if err != nil {
		return nil, err
	}
	return types100.NewResultFromResult(res)
}

func (w *world) mustAdd(l *libcni.NetworkConfigList, r *libcni.RuntimeConf) *types100.Result {
	w.t.Helper()
	res, err := w.add(l, r)
	if err != nil {
		w.t.Fatalf("ADD %s: %v", r.ContainerID, err)
	}
	return res
}

func (w *world) check(l *libcni.NetworkConfigList, r *libcni.RuntimeConf) error {
	return w.cni.CheckNetworkList(context.Background(), l, r)
}

func (w *world) del(l *libcni.NetworkConfigList, r *libcni.RuntimeConf) error {
	return w.cni.DelNetworkList(context.Background(), l, r)
}

// leases returns the host-local leases of a network: IP -> "containerID/ifname".
func (w *world) leases(network string) map[string]string {
	w.t.Helper()
	dir := filepath.Join(w.IPAMDir, network)
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return map[string]string{}
	}
	if err != nil {
		w.t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		if e.Name() == "lock" || strings.HasPrefix(e.Name(), "last_reserved_ip") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			w.t.Fatal(err)
		}
		out[e.Name()] = strings.Join(strings.Fields(string(b)), "/")
	}
	return out
}

// stateFiles lists the files under the state folder, relative to it, but
// the store-wide ones, which stay: GC's barrier gc.lock, and the plan
// journal plans.slots with its plans.boot.
func (w *world) stateFiles() []string {
	w.t.Helper()
	var out []string
	_ = filepath.Walk(w.StateDir, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			rel, _ := filepath.Rel(w.StateDir, path)
			if rel != "gc.lock" && rel != "plans.slots" && rel != "plans.boot" {
				out = append(out, rel)
			}
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// calls reads the recorder's log.
func (w *world) calls() []recordedCall {
	w.t.Helper()
	f, err := os.Open(w.RecordFile)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		w.t.Fatal(err)
	}
	defer f.Close()
	var out []recordedCall
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var c recordedCall
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			w.t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

type recordedCall struct {
	Command     string          `json:"command"`
	ContainerID string          `json:"containerID"`
	Netns       string          `json:"netns"`
	IfName      string          `json:"ifname"`
	Args        string          `json:"args"`
	Stdin       json.RawMessage `json:"stdin"`
}

// prevResult decodes the prevResult a recorded call was handed.
func (c recordedCall) prevResult(t *testing.T) *types100.Result {
	t.Helper()
	var conf struct {
		PrevResult json.RawMessage `json:"prevResult"`
	}
	if err := json.Unmarshal(c.Stdin, &conf); err != nil {
		t.Fatal(err)
	}
	if len(conf.PrevResult) == 0 {
		return nil
	}
	r, err := types100.NewResult(conf.PrevResult)
	if err != nil {
		t.Fatal(err)
	}
	res, err := types100.GetResult(r)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// cniCode returns the CNI error code of err, or 0 if it carries none.
func cniCode(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

func wantErr(t *testing.T, err error, code uint, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want error with code %d containing %q, got success", code, parts)
	}
	if got := cniCode(err); got != code {
		t.Errorf("error code = %d, want %d (error: %v)", got, code, err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

func equal(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}

// renderTo renders a template with data.
func renderTo(t *testing.T, out *strings.Builder, tmpl string, data any) {
	t.Helper()
	if err := template.Must(template.New("t").Parse(tmpl)).Execute(out, data); err != nil {
		t.Fatal(err)
	}
}

func (w *world) mustResult(r types.Result) *types100.Result {
	w.t.Helper()
	res, err := types100.NewResultFromResult(r)
	if err != nil {
		w.t.Fatal(err)
	}
	return res
}

// log returns nicmux's log so far.
func (w *world) log() string {
	b, _ := os.ReadFile(w.LogFile)
	return string(b)
}
