// Package cluster drives the real nicmux-ipam binary against real etcd
// servers, as several simulated nodes of one machine: each node has its
// own name, data folder, nicmux state folder and libcni cache, and its
// containers' macvlans share one veth L2. The plugin runs alone (as an
// IPAM plugin is run), under the reference macvlan and bridge plugins
// through libcni, and in an eth1 chain through nicmux.
//
// The tests need root. TestMain re-runs the test binary in private network
// and mount namespaces, so the etcd servers' loopback ports, the shared L2
// and the containers' namespaces live and die with the run.
//
// After each scenario the world checks what etcd holds: every address
// leased once, each lease under its owner, and no lease without a live
// owner.
package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/nicmux/nicmux/test/etcdtest"
	"github.com/nicmux/nicmux/test/netnsutil"
	"github.com/nicmux/nicmux/test/testworld"
)

func TestMain(m *testing.M) {
	suite := testworld.Suite{
		Makes:  "the cluster tests make network namespaces and links",
		Target: "cluster",
		Files: []string{ipamBin(), ipamdBin(), testworld.NicmuxBin(), filepath.Join(testworld.PluginsDir(), "macvlan"),
			filepath.Join(testworld.PluginsDir(), "sbr"), filepath.Join(testworld.TestPluginsDir(), "torture"), etcdtest.Binary()},
		// The namespaces and libcni's cache (which go-cni always uses) of
		// this run only.
		Tmpfs: []string{"/run/netns", "/var/lib/cni"},
	}
	if code := suite.Enter(); code >= 0 {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func ipamBin() string { return filepath.Join(testworld.BinDir(), "nicmux-ipam") }

// cniPath holds the test plugins too: the suite's fault plugin (torture).
func cniPath() []string { return testworld.CNIPath() }

// World is one scenario's cluster: etcd, the pool every node shares, the
// shared L2 and the owners the test holds live.
type World struct {
	t      *testing.T
	Etcd   *etcdtest.Cluster
	dir    string
	Prefix string
	Pool   string
	// Ranges is the pool's ipam ranges, as JSON.
	Ranges string
	// Extra is added to the ipam object, as JSON members (", ...").
	Extra string
	// Timeout is the plugin's etcd timeout.
	Timeout string
	// Master is the veth end the nodes' macvlans share.
	Master string
	// sw is the bridge the nodes' NICs are plugged into (Switch).
	sw string
	// Via, when set, are the endpoints the nodes reach etcd at (a proxy).
	Via []string
	// Daemons: every node runs its nicmux-ipamd, which answers its calls
	// ($NICMUX_TEST_IPAMD set); otherwise each call runs nicmux-ipamd
	// directly, as nicmux-ipam does when no daemon answers.
	Daemons bool

	mu    sync.Mutex
	live  map[string]bool // "containerID/ifname" of the owners that hold a lease
	nodes int             // nodes made so far
	ports int             // host ports handed out so far
}

// NewWorld starts an etcd cluster of members and returns a world whose pool
// is a /24.
func NewWorld(t *testing.T, members int) *World {
	t.Helper()
	return NewWorldOn(t, etcdtest.Start(t, members))
}

// NewWorldOn returns a world on a running etcd cluster, under a prefix of
// its own.
func NewWorldOn(t *testing.T, c *etcdtest.Cluster) *World {
	t.Helper()
	w := &World{
		t:       t,
		Etcd:    c,
		dir:     t.TempDir(),
		Prefix:  "/nicmux-test/" + testworld.RandHex(4),
		Pool:    "storage",
		Ranges:  `[[{"subnet": "10.20.0.0/24", "gateway": "10.20.0.1"}]]`,
		Timeout: "2s",
		Daemons: os.Getenv("NICMUX_TEST_IPAMD") != "",
		live:    map[string]bool{},
	}
	t.Cleanup(func() {
		if !t.Failed() {
			w.CheckInvariants()
		}
	})
	return w
}

// SharedL2 makes the veth pair the nodes' macvlans hang off.
func (w *World) SharedL2() string {
	w.t.Helper()
	if w.Master == "" {
		w.Master = "l2" + testworld.RandHex(4)
		del, err := netnsutil.AddVethMaster(w.Master)
		if err != nil {
			w.t.Fatal(err)
		}
		w.t.Cleanup(del)
	}
	return w.Master
}

// Node is one simulated node.
type Node struct {
	w        *World
	Name     string
	DataDir  string
	StateDir string
	cni      *libcni.CNIConfig
	nic      string // its NIC on the shared L2 (NIC)
	index    int    // the order it was made in
	// Socket is the node's nicmux-ipamd socket, which its ipam objects
	// name; daemon is the daemon serving it, if any (Serve).
	Socket string
	daemon *daemon
}

// Node returns a new simulated node.
func (w *World) Node(name string) *Node {
	dir := filepath.Join(w.dir, name)
	w.mu.Lock()
	w.nodes++
	n := &Node{w: w, Name: name, DataDir: filepath.Join(dir, "ipam"), StateDir: filepath.Join(dir, "state"),
		cni: libcni.NewCNIConfigWithCacheDir(cniPath(), filepath.Join(dir, "cache"), nil), index: w.nodes - 1,
		Socket: socketPath(w.t)}
	w.mu.Unlock()
	if w.Daemons {
		n.Serve()
	}
	return n
}

// hostPort is a host port no allocation of the world maps yet, as a Nomad
// client picks a dynamic port.
func (w *World) hostPort() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ports++
	return 20000 + w.ports
}

// IPAM is the node's ipam object, as JSON.
func (n *Node) IPAM() string {
	eps, _ := json.Marshal(n.w.Etcd.Endpoints())
	if n.w.Via != nil {
		eps, _ = json.Marshal(n.w.Via)
	}
	return fmt.Sprintf(`{"type": "nicmux-ipam", "pool": %q, "ranges": %s, "routes": [{"dst": "0.0.0.0/0"}],
	  "etcd": {"endpoints": %s, "prefix": %q, "timeout": %q}, "node": %q, "dataDir": %q, "socket": %q%s}`,
		n.w.Pool, n.w.Ranges, eps, n.w.Prefix, n.w.Timeout, n.Name, n.DataDir, n.Socket, n.w.Extra)
}

// owned records whether owner holds a lease, for the invariants.
func (w *World) owned(id, ifname string, holds bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if holds {
		w.live[id+"/"+ifname] = true
	} else {
		delete(w.live, id+"/"+ifname)
	}
}

// --- the plugin alone ---------------------------------------------------------

// Call is one run of nicmux-ipam as a plugin runs its IPAM: the verb, the
// owner, CNI_ARGS and what to add to the configuration.
type Call struct {
	Verb, ID, IfName, Args string
	// Conf is added to the network configuration, as JSON members.
	Conf string
}

// Exec runs nicmux-ipam with call and returns its result (ADD) or error.
func (n *Node) Exec(c Call) (*types100.Result, error) {
	cmd, out := n.Command(c)
	return n.Outcome(c, out, cmd.Run())
}

// Command is the run of nicmux-ipam for call, not started, and the buffer
// that gets its stdout and stderr.
func (n *Node) Command(c Call) (*exec.Cmd, *Output) {
	if c.IfName == "" {
		c.IfName = "eth1"
	}
	conf := fmt.Sprintf(`{"cniVersion": "1.1.0", "name": "storage-net", "type": "macvlan", "ipam": %s%s}`, n.IPAM(), c.Conf)
	cmd := exec.Command(ipamBin())
	cmd.Env = []string{"CNI_COMMAND=" + c.Verb, "CNI_CONTAINERID=" + c.ID, "CNI_NETNS=/var/run/netns/" + c.ID,
		"CNI_IFNAME=" + c.IfName, "CNI_PATH=" + strings.Join(cniPath(), ":"), "CNI_ARGS=" + c.Args}
	if c.Verb == "STATUS" || c.Verb == "GC" {
		cmd.Env = []string{"CNI_COMMAND=" + c.Verb, "CNI_PATH=" + strings.Join(cniPath(), ":")}
	}
	cmd.Stdin = strings.NewReader(conf)
	out := &Output{}
	cmd.Stdout, cmd.Stderr = &out.Stdout, &out.Stderr
	return cmd, out
}

// Output is what a run of nicmux-ipam printed.
type Output struct{ Stdout, Stderr bytes.Buffer }

// Outcome reads the result (ADD) or error of a run of call that ended with
// runErr, and records a lease the owner got.
func (n *Node) Outcome(c Call, out *Output, runErr error) (*types100.Result, error) {
	if c.IfName == "" {
		c.IfName = "eth1"
	}
	if runErr != nil {
		var e types.Error
		if json.Unmarshal(out.Stdout.Bytes(), &e) == nil && e.Msg != "" {
			return nil, &e
		}
		return nil, fmt.Errorf("nicmux-ipam %s: %v: %s%s", c.Verb, runErr, out.Stdout.String(), out.Stderr.String())
	}
	if c.Verb != "ADD" {
		return nil, nil
	}
	r, err := types100.NewResult(out.Stdout.Bytes())
	if err != nil {
		return nil, fmt.Errorf("nicmux-ipam ADD: result %q: %w", out.Stdout.String(), err)
	}
	res, err := types100.GetResult(r)
	if err == nil {
		n.w.owned(c.ID, c.IfName, true)
	}
	return res, err
}

// Add runs ADD for id and returns its first address.
func (n *Node) Add(id string) string {
	n.w.t.Helper()
	r, err := n.Exec(Call{Verb: "ADD", ID: id})
	if err != nil {
		n.w.t.Fatalf("node %s: ADD %s: %v", n.Name, id, err)
	}
	return r.IPs[0].Address.IP.String()
}

// Add2 runs ADD for id with CNI_ARGS args and returns its first address.
func (n *Node) Add2(id, args string) string {
	n.w.t.Helper()
	r, err := n.Exec(Call{Verb: "ADD", ID: id, Args: args})
	if err != nil {
		n.w.t.Fatalf("node %s: ADD %s (%s): %v", n.Name, id, args, err)
	}
	return r.IPs[0].Address.IP.String()
}

// Del runs DEL for id.
func (n *Node) Del(id string) {
	n.w.t.Helper()
	if _, err := n.Exec(Call{Verb: "DEL", ID: id}); err != nil {
		n.w.t.Fatalf("node %s: DEL %s: %v", n.Name, id, err)
	}
	n.w.owned(id, "eth1", false)
}

// Queued lists the node's queued releases (not the temporary files of
// their writers).
func (n *Node) Queued() []string {
	ents, _ := os.ReadDir(filepath.Join(n.DataDir, n.w.Pool, "releases"))
	var out []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

// CLI runs a nicmux-ipam command against the world's etcd and returns its
// stdout, stderr and exit code.
func (w *World) CLI(args ...string) (string, string, int) {
	w.t.Helper()
	args = append(args, "-endpoints", strings.Join(w.Etcd.Endpoints(), ","), "-prefix", w.Prefix)
	cmd := exec.Command(ipamBin(), args...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return out.String(), stderr.String(), ee.ExitCode()
	case err != nil:
		w.t.Fatal(err)
	}
	return out.String(), stderr.String(), 0
}

// --- what etcd holds ----------------------------------------------------------

// Lease is a lease as the owner key holds it.
type Lease struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
	Node        string `json:"node"`
	Addresses   []struct {
		IP    string `json:"ip"`
		Block string `json:"block"`
	} `json:"addresses"`
}

// Leases reads the pool's owner keys: "containerID/ifname" -> lease.
func (w *World) Leases() map[string]Lease {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	base := w.Prefix + "/pools/" + w.Pool
	out := map[string]Lease{}
	for k, v := range w.Etcd.Dump(ctx, w.t, base+"/owners/") {
		var l Lease
		if err := json.Unmarshal([]byte(v), &l); err != nil {
			w.t.Fatalf("%s: %v", k, err)
		}
		out[l.ContainerID+"/"+l.IfName] = l
	}
	return out
}

// CheckInvariants fails the test unless every address is leased once,
// every lease key has its owner key and the other way round, and every
// lease belongs to a live owner.
func (w *World) CheckInvariants() {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	base := w.Prefix + "/pools/" + w.Pool
	all := w.Etcd.Dump(ctx, w.t, base+"/")
	owners := w.Leases()
	byIP := map[string]string{}
	for who, l := range owners {
		for _, a := range l.Addresses {
			if other, dup := byIP[a.IP]; dup {
				w.t.Errorf("%s is leased to %s and to %s", a.IP, other, who)
			}
			byIP[a.IP] = who
			if key := base + "/leases/" + a.Block + "/" + a.IP; all[key] == "" {
				w.t.Errorf("owner %s lists %s, whose lease key %s is missing", who, a.IP, key)
			}
		}
		w.mu.Lock()
		live := w.live[who]
		w.mu.Unlock()
		if !live {
			w.t.Errorf("lease of %s (node %s), which holds nothing any more", who, l.Node)
		}
	}
	for k := range all {
		if rest, ok := strings.CutPrefix(k, base+"/leases/"); ok {
			ip := rest[strings.LastIndexByte(rest, '/')+1:]
			if byIP[ip] == "" {
				w.t.Errorf("lease key %s has no owner key", k)
			}
		}
	}
}

// Addresses lists the leased addresses, sorted.
func (w *World) Addresses() []string {
	var out []string
	for _, l := range w.Leases() {
		for _, a := range l.Addresses {
			out = append(out, a.IP)
		}
	}
	sort.Strings(out)
	return out
}
