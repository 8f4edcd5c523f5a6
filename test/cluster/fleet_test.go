package cluster

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gocni "github.com/containerd/go-cni"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/vishvananda/netlink"
	"gopkg.in/yaml.v3"

	"github.com/nicmux/nicmux/test/netnsutil"
	"github.com/nicmux/nicmux/test/testworld"
)

// The fleet example (examples/nomad/fleet) is the input of the go-cni
// scenarios: each node installs its conflist and attachment file as an
// operator would, with the node's links, folders and the world's etcd put
// in, and runs the example job's allocations through go-cni as a Nomad
// client does.

func fleetDir() string { return filepath.Join(testworld.RepoRoot(), "examples", "nomad", "fleet") }

// Fleet is the fleet example installed on one node.
type Fleet struct {
	n *Node
	// Conflist is the installed fleet.conflist.
	Conflist string
	// Bridge is the node's service bridge (the example's nicmux0).
	Bridge string
	list   []byte
	job    jobSpec
}

// chainEdit changes one interface's chain of the installed example.
type chainEdit func(ifname string, plugins []any) []any

// InstallFleet installs the fleet example on the node: its own bridge and
// eth0 subnet, its NIC as eth1's master, its folders, and an etcdConfig
// file naming the world's etcd.
func (n *Node) InstallFleet(t *testing.T, edits ...chainEdit) *Fleet {
	t.Helper()
	dir := filepath.Join(n.w.dir, n.Name, "fleet")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := &Fleet{n: n, Conflist: filepath.Join(dir, "fleet.conflist"), Bridge: "fb" + testworld.RandHex(4), job: readFleetJob(t)}
	etcdConf := filepath.Join(dir, "etcd.json")
	writeJSONFile(t, etcdConf, map[string]any{"endpoints": n.w.Etcd.Endpoints(), "prefix": n.w.Prefix, "timeout": n.w.Timeout})
	var att map[string]any
	readFile(t, filepath.Join(fleetDir(), "fleet.yaml"), yaml.Unmarshal, &att)
	for _, it := range att["interfaces"].([]any) {
		iface := it.(map[string]any)
		ifname := iface["ifname"].(string)
		plugins := iface["plugins"].([]any)
		for _, p := range plugins {
			f.localize(p.(map[string]any), etcdConf)
		}
		for _, e := range edits {
			plugins = e(ifname, plugins)
		}
		iface["plugins"] = plugins
	}
	attFile := filepath.Join(dir, "fleet.yaml")
	out, err := yaml.Marshal(att)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(attFile, out, 0o644); err != nil {
		t.Fatal(err)
	}
	var list map[string]any
	readFile(t, filepath.Join(fleetDir(), "fleet.conflist"), json.Unmarshal, &list)
	entry := list["plugins"].([]any)[0].(map[string]any)
	entry["attachments"], entry["stateDir"], entry["logFile"] = attFile, n.StateDir, filepath.Join(dir, "nicmux.log")
	writeJSONFile(t, f.Conflist, list)
	f.list, _ = os.ReadFile(f.Conflist)
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(f.Bridge); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	return f
}

// localize puts the node's links, folders and etcd into one plugin of the
// example.
func (f *Fleet) localize(p map[string]any, etcdConf string) {
	n := f.n
	switch p["type"] {
	case "bridge":
		p["bridge"] = f.Bridge
	case "macvlan":
		p["master"] = n.NIC()
	}
	ipam, _ := p["ipam"].(map[string]any)
	switch {
	case ipam == nil:
	case ipam["type"] == "host-local":
		ipam["dataDir"] = filepath.Join(n.w.dir, n.Name, "host-local")
		// The nodes share the test's network namespace: one subnet each.
		ipam["ranges"] = [][]map[string]string{{{"subnet": fmt.Sprintf("172.%d.64.0/20", 16+n.index)}}}
	case ipam["type"] == "nicmux-ipam":
		ipam["etcdConfig"], ipam["node"], ipam["dataDir"], ipam["socket"] = etcdConf, n.Name, n.DataDir, n.Socket
	}
}

func readFile(t *testing.T, path string, decode func([]byte, any) error, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err == nil {
		err = decode(b, v)
	}
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func writeJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	b, _ := json.MarshalIndent(v, "", "  ")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// jobSpec is what the example job tells a Nomad client about its network.
type jobSpec struct {
	Job, Group, Mode string
	// Ports are the group's port labels and their "to".
	Ports map[string]int
}

// readFleetJob parses examples/nomad/fleet/job.nomad.hcl.
func readFleetJob(t *testing.T) jobSpec {
	t.Helper()
	path := filepath.Join(fleetDir(), "job.nomad.hcl")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	file, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("%s is not valid HCL: %v", path, diags)
	}
	job := oneBlock(t, file.Body.(*hclsyntax.Body), "job")
	group := oneBlock(t, job.Body, "group")
	network := oneBlock(t, group.Body, "network")
	spec := jobSpec{Job: job.Labels[0], Group: group.Labels[0], Ports: map[string]int{}}
	mode, diags := network.Body.Attributes["mode"].Expr.Value(nil)
	if diags.HasErrors() {
		t.Fatalf("%s: network.mode: %v", path, diags)
	}
	spec.Mode = mode.AsString()
	for _, b := range network.Body.Blocks {
		if b.Type == "port" {
			to, diags := b.Body.Attributes["to"].Expr.Value(nil)
			if diags.HasErrors() {
				t.Fatalf("%s: port %s: %v", path, b.Labels[0], diags)
			}
			n, _ := to.AsBigFloat().Int64()
			spec.Ports[b.Labels[0]] = int(n)
		}
	}
	return spec
}

func oneBlock(t *testing.T, body *hclsyntax.Body, typ string) *hclsyntax.Block {
	t.Helper()
	var found []*hclsyntax.Block
	for _, b := range body.Blocks {
		if b.Type == typ {
			found = append(found, b)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %q block, found %d", typ, len(found))
	}
	return found[0]
}

// Alloc is one allocation of the example job on a node, as its Nomad
// client sees it.
type Alloc struct {
	ID    string
	NetNS string
	f     *Fleet
	ports []gocni.PortMapping
}

// newUUID is an allocation ID.
func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// NewAlloc makes an allocation and its namespace where Nomad makes it.
func (f *Fleet) NewAlloc(t *testing.T) *Alloc {
	t.Helper()
	a := &Alloc{ID: newUUID(), f: f}
	a.NetNS = "/var/run/netns/" + a.ID
	if err := createNS(t, a.NetNS); err != nil {
		t.Fatal(err)
	}
	for _, to := range f.job.Ports {
		a.ports = append(a.ports, gocni.PortMapping{HostPort: int32(f.n.w.hostPort()), ContainerPort: int32(to), Protocol: "tcp"})
	}
	return a
}

// client is a fresh go-cni client, made and loaded as a Nomad client makes
// it for the job's network mode.
func (f *Fleet) client() (gocni.CNI, error) {
	if want := "cni/" + listName(f.list); f.job.Mode != want {
		return nil, fmt.Errorf("the job's network mode %q does not name the conflist (%s)", f.job.Mode, want)
	}
	c, err := gocni.New(gocni.WithPluginDir(cniPath()), gocni.WithInterfacePrefix("eth"))
	if err != nil {
		return nil, err
	}
	return c, c.Load(gocni.WithConfListBytes(f.list))
}

func listName(list []byte) string {
	var l struct {
		Name string `json:"name"`
	}
	_ = json.Unmarshal(list, &l)
	return l.Name
}

// labels are the CNI_ARGS a Nomad client (1.9.4 and later) gives ADD.
func (a *Alloc) labels() map[string]string {
	j := a.f.job
	return map[string]string{"IgnoreUnknown": "true", "NOMAD_REGION": "global", "NOMAD_NAMESPACE": "default",
		"NOMAD_JOB_ID": j.Job, "NOMAD_GROUP_NAME": j.Group, "NOMAD_ALLOC_ID": a.ID}
}

// SetupOnce is one try of Nomad's network setup.
func (a *Alloc) SetupOnce() (*gocni.Result, error) {
	c, err := a.f.client()
	if err != nil {
		return nil, err
	}
	res, err := c.Setup(context.Background(), a.ID, a.NetNS, gocni.WithCapabilityPortMap(a.ports), gocni.WithLabels(a.labels()))
	if err == nil {
		a.f.n.w.owned(a.ID, "eth1", true)
	}
	return res, err
}

// Setup is Nomad's network setup: up to three tries, a second apart, with
// no Remove between. It returns the result and each failed try's error.
func (a *Alloc) Setup() (*gocni.Result, []error) {
	var errs []error
	for try := range 3 {
		if try > 0 {
			time.Sleep(time.Second)
		}
		res, err := a.SetupOnce()
		if err == nil {
			return res, errs
		}
		errs = append(errs, err)
	}
	return nil, errs
}

// Remove is Nomad's teardown: STATUS, then Remove with the port mappings.
func (a *Alloc) Remove() error {
	c, err := a.f.client()
	if err != nil {
		return err
	}
	if err := c.Status(); err != nil {
		return fmt.Errorf("status failed, teardown skipped: %w", err)
	}
	if err := c.Remove(context.Background(), a.ID, a.NetNS, gocni.WithCapabilityPortMap(a.ports)); err != nil {
		return err
	}
	a.f.n.w.owned(a.ID, "eth1", false)
	return nil
}

// eth1IP is eth1's IPv4 address in a go-cni result.
func eth1IP(res *gocni.Result) (string, error) {
	if res == nil || res.Interfaces["eth1"] == nil {
		return "", fmt.Errorf("the result has no eth1: %+v", res)
	}
	for _, ipc := range res.Interfaces["eth1"].IPConfigs {
		if ipc.IP.To4() != nil {
			return ipc.IP.String(), nil
		}
	}
	return "", fmt.Errorf("eth1 has no IPv4 address in the result: %+v", res.Interfaces["eth1"])
}

// createNS makes a namespace at path, removed at the test's end.
func createNS(t *testing.T, path string) error {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := netnsutil.CreateAt(path); err != nil {
		return err
	}
	t.Cleanup(func() { _ = netnsutil.DestroyAt(path) })
	return nil
}

// TestFleetExampleValidates: nicmux validate finds nothing to say, not
// even a warning, of the fleet example as a node installs it (its NIC as
// eth1's master), with nicmux-ipam, sbr and the reference plugins in the
// CNI path (only a note that it does not check nicmux-ipam's section); and
// the job names the conflist.
func TestFleetExampleValidates(t *testing.T) {
	w := NewWorld(t, 1)
	f := w.Node("n1").InstallFleet(t)
	if _, err := f.client(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(testworld.NicmuxBin(), "validate", "-strict", "-conflist", f.Conflist, "-cni-path", strings.Join(cniPath(), ":")).CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err != nil || !strings.HasPrefix(lines[len(lines)-1], "ok: 2 files (") {
		t.Errorf("nicmux validate -strict of the installed fleet example: %v\n%s", err, out)
	}
	var etcd map[string]any
	readFile(t, filepath.Join(fleetDir(), "etcd.json"), json.Unmarshal, &etcd)
	if _, ok := etcd["endpoints"].([]any); !ok || etcd["caFile"] == nil || etcd["certFile"] == nil || etcd["keyFile"] == nil {
		t.Errorf("etcd.json: %v, want endpoints and the TLS files", etcd)
	}
	if eps := etcd["endpoints"].([]any); len(eps) == 0 || !strings.HasPrefix(eps[0].(string), "https://") {
		t.Errorf("etcd.json's endpoints %v: want https", eps)
	}
}
