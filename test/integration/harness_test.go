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
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/nicmux/nicmux/test/testworld"
)

func TestMain(m *testing.M) {
	suite := testworld.Suite{
		Makes:  "integration tests make network namespaces and links",
		Target: "integration",
		Files: []string{testworld.NicmuxBin(), filepath.Join(testworld.BinDir(), "nicmux-metrics"), filepath.Join(testworld.PluginsDir(), "bridge"),
			filepath.Join(testworld.TestPluginsDir(), "recorder")},
	}
	if code := suite.Enter(); code >= 0 {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// newNS gives the test a fresh container namespace, removed at cleanup.
func newNS(t *testing.T) string { return testworld.NewNetns(t, "nicmux-test-") }

// --- a test's CNI world -----------------------------------------------------

// world is one test's files (configuration, state, IPAM, log, the
// recorder's calls) and libcni client.
type world struct {
	t *testing.T
	testworld.Files
	Bridge     string
	Master     string
	Name       string
	CNIVersion string
	cni        *libcni.CNIConfig
}

func newWorld(t *testing.T) *world {
	t.Helper()
	f := testworld.FilesIn(t.TempDir())
	w := &world{
		t:          t,
		Files:      f,
		Bridge:     "nbr" + testworld.RandHex(4),
		Name:       "multi",
		CNIVersion: "1.0.0",
		cni:        libcni.NewCNIConfigWithCacheDir(testworld.CNIPath(), filepath.Join(f.Dir, "cache"), nil),
	}
	t.Cleanup(func() { testworld.DeleteHostLink(w.Bridge) })
	f.LogOnFailure(t)
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
	path := filepath.Join(w.Dir, name)
	testworld.WriteDeployed(w.t, path, buf.Bytes())
	return path
}

// seed writes the seed job's attachment file, with a fresh macvlan master.
func (w *world) seed() string {
	w.t.Helper()
	if w.Master == "" {
		w.Master = testworld.MakeMaster(w.t, 0)
	}
	return w.writeYAML("multi.yaml", seedYAML)
}

// list returns nicmux's configuration list pointing at the attachment file.
func (w *world) list(attachments string, extra map[string]any) *libcni.NetworkConfigList {
	w.t.Helper()
	b, err := w.Conflist(w.CNIVersion, w.Name, attachments, extra)
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
	leases, err := w.Leases(network)
	if err != nil {
		w.t.Fatal(err)
	}
	return leases
}

// stateFiles lists what the state folder holds for containers (see
// testworld.StateLeft).
func (w *world) stateFiles() []string {
	w.t.Helper()
	files, err := testworld.StateLeft(w.StateDir)
	if err != nil {
		w.t.Fatal(err)
	}
	return files
}

// calls reads the recorder's log.
func (w *world) calls() []testworld.Call {
	w.t.Helper()
	calls, err := w.Calls()
	if err != nil {
		w.t.Fatal(err)
	}
	return calls
}

// prevResult decodes the prevResult a recorded call was handed.
func prevResult(t *testing.T, c testworld.Call) *types100.Result {
	t.Helper()
	var conf struct {
		PrevResult json.RawMessage `json:"prevResult"`
	}
	if err := c.Decode(&conf); err != nil {
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
