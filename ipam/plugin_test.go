package ipam

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// node is one simulated node of the verbs' tests: its data folder, its
// configuration, and the shared store.
type node struct {
	t       *testing.T
	store   *memStore
	dataDir string
	name    string
	out     bytes.Buffer
	// metricsFile, when set, is the ipam object's.
	metricsFile string
}

func newNode(t *testing.T, m *memStore, name string) *node {
	return &node{t: t, store: m, dataDir: filepath.Join(t.TempDir(), "data"), name: name}
}

func (n *node) conf(extra string) []byte {
	return []byte(`{"cniVersion": "1.1.0", "name": "net", "type": "macvlan", "ipam": {"type": "nicmux-ipam", "pool": "verbs",
	  "ranges": [[{"subnet": "10.1.0.0/24", "gateway": "10.1.0.1"}]], "routes": [{"dst": "0.0.0.0/0"}],
	  "etcd": {"endpoints": ["http://127.0.0.1:1"], "prefix": "` + testPrefix + `"}, "node": "` + n.name + `", "dataDir": "` + n.dataDir + `"` + n.metricsKey() + `}` + extra + `}`)
}

func (n *node) metricsKey() string {
	if n.metricsFile == "" {
		return ""
	}
	return `, "metricsFile": "` + n.metricsFile + `"`
}

func (n *node) run(verb string, id OwnerID, extra string) error {
	p := &plugin{Dial: func(EtcdConfig) (Store, error) { return n.store, nil }, Hostname: host, Stdout: &n.out}
	f := map[string]func(*skel.CmdArgs) error{"ADD": p.Funcs().Add, "DEL": p.Funcs().Del, "CHECK": p.Funcs().Check, "GC": p.Funcs().GC, "STATUS": p.Funcs().Status}[verb]
	n.out.Reset()
	return f(&skel.CmdArgs{ContainerID: id.ContainerID, IfName: id.IfName, StdinData: n.conf(extra)})
}

func (n *node) add(id OwnerID) *types100.Result {
	n.t.Helper()
	if err := n.run("ADD", id, ""); err != nil {
		n.t.Fatalf("ADD %s: %v", id, err)
	}
	var r types100.Result
	if err := json.Unmarshal(n.out.Bytes(), &r); err != nil {
		n.t.Fatal(err)
	}
	return &r
}

func (n *node) files(folder string) []string {
	ents, _ := os.ReadDir(filepath.Join(n.dataDir, "verbs", folder))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func cniCode(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

func TestVerbsAddCheckDel(t *testing.T) {
	m := newMemStore()
	n := newNode(t, m, "n1")
	id := owner(1)
	r := n.add(id)
	if len(r.IPs) != 1 || r.IPs[0].Gateway.String() != "10.1.0.1" || !strings.HasSuffix(r.IPs[0].Address.String(), "/24") || len(r.Routes) != 1 {
		t.Fatalf("result %s", n.out.String())
	}
	if again := n.add(id); again.IPs[0].Address.String() != r.IPs[0].Address.String() {
		t.Errorf("repeated ADD got %s, want %s", again.IPs[0].Address.String(), r.IPs[0].Address.String())
	}
	if got := n.files("leases"); len(got) != 1 || got[0] != "c0001:eth1@"+r.IPs[0].Address.IP.String() {
		t.Errorf("node records %v", got)
	}
	prev, _ := json.Marshal(r)
	if err := n.run("CHECK", id, `, "prevResult": `+string(prev)); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	// An address of the pool that is not the owner's (claims pick a random
	// free address of the block).
	otherIP := "10.1.0.250"
	if r.IPs[0].Address.IP.String() == otherIP {
		otherIP = "10.1.0.251"
	}
	other := `, "prevResult": {"cniVersion": "1.1.0", "ips": [{"address": "` + otherIP + `/24"}]}`
	if err := n.run("CHECK", id, other); cniCode(err) != 3 || !strings.Contains(err.Error(), "which prevResult does not hold") {
		t.Errorf("CHECK against another address: %v", err)
	}
	for range 2 {
		if err := n.run("DEL", id, ""); err != nil {
			t.Fatalf("DEL: %v", err)
		}
	}
	if err := n.run("CHECK", id, `, "prevResult": `+string(prev)); cniCode(err) != 3 || !strings.Contains(err.Error(), "records no lease for c0001/eth1") {
		t.Errorf("CHECK after DEL: %v", err)
	}
	if k := m.keysUnder(keys{prefix: testPrefix, pool: "verbs"}.owners()); len(k) != 0 || len(n.files("leases")) != 0 {
		t.Errorf("left: %v, node records %v", k, n.files("leases"))
	}
}

// Nomad retries a setup its rollback released, and rebuilds a namespace
// after a failed CHECK (nicmux DELs, then ADDs the same container): the
// owner gets its address back, and another owner meanwhile does not. ADD
// costs one round trip once the node's records know its block, DEL one
// (and a grant once per sticky time).
func TestReleasedOwnerAddsBackItsAddress(t *testing.T) {
	m := newMemStore()
	n := newNode(t, m, "n1")
	first := n.add(owner(1)).IPs[0].Address.String()
	if got := trips(m, func() { n.add(owner(2)) }); got != 1 {
		t.Errorf("ADD with the node's records: %d round trips, want 1", got)
	}
	del := func(i int) {
		if err := n.run("DEL", owner(i), ""); err != nil {
			t.Fatalf("DEL %d: %v", i, err)
		}
	}
	if got := trips(m, func() { del(1) }); got != 2 {
		t.Errorf("first DEL: %d round trips, want 2 (the grant, the release)", got)
	}
	// The node's guesses avoid the kept address: each ADD one round trip.
	for i := 3; i < 40; i++ {
		var got string
		if rt := trips(m, func() { got = n.add(owner(i)).IPs[0].Address.String() }); rt != 1 {
			t.Errorf("ADD %d: %d round trips, want 1", i, rt)
		}
		if got == first {
			t.Fatalf("owner %d got %s, kept for owner 1", i, got)
		}
	}
	if got := trips(m, func() { del(3) }); got != 1 {
		t.Errorf("DEL: %d round trips, want 1", got)
	}
	if got := n.add(owner(1)).IPs[0].Address.String(); got != first {
		t.Errorf("owner 1 added again got %s, want its %s", got, first)
	}
	hint := n.files("")
	if !slices.Contains(hint, "hint") {
		t.Errorf("node files %v, want its hint", hint)
	}
}

func TestDelQueuedWhileEtcdIsAway(t *testing.T) {
	m := newMemStore()
	n := newNode(t, m, "n1")
	id := owner(1)
	r := n.add(id)
	m.setDown(true)
	if err := n.run("DEL", id, ""); err != nil {
		t.Fatalf("DEL with etcd away: %v", err)
	}
	if q := n.files("releases"); len(q) != 1 || !strings.HasPrefix(q[0], "c0001:eth1:") {
		t.Fatalf("queued releases %v", q)
	}
	m.setDown(false)
	// The address stays taken until a call completes the release: the
	// next ADD, which completes it first.
	if k := m.keysUnder(keys{prefix: testPrefix, pool: "verbs"}.owner(id)); len(k) != 1 {
		t.Fatalf("the queued release's lease is gone already: %v", k)
	}
	n.add(owner(2))
	if k := m.keysUnder(keys{prefix: testPrefix, pool: "verbs"}.owner(id)); len(k) != 0 {
		t.Errorf("the lease of %s (%s) is still there after the next ADD", id, r.IPs[0].Address.IP)
	}
	if q := n.files("releases"); len(q) != 0 {
		t.Errorf("the ADD after etcd came back left the queue %v", q)
	}
	if held := leasesOf(t, m, testPool(t, "verbs", 26, v4("10.1.0.0/24"))); len(held) != 1 {
		t.Errorf("%d leases, want the second owner's only", len(held))
	}
}

func TestAddWithEtcdAwayFailsAndLeavesNothing(t *testing.T) {
	m := newMemStore()
	n := newNode(t, m, "n1")
	n.add(owner(0))
	m.downAfterTxn = true
	err := n.run("ADD", owner(1), "")
	if cniCode(err) != 11 || !strings.Contains(err.Error(), "etcd at http://127.0.0.1:1: no answer within 5s") {
		t.Fatalf("ADD: %v", err)
	}
	if len(n.files("releases")) != 1 {
		t.Fatalf("queued %v", n.files("releases"))
	}
	if k := m.keysUnder(keys{prefix: testPrefix, pool: "verbs"}.owners()); len(k) != 2 {
		t.Fatalf("owners %v: want the claim that committed", k)
	}
	m.setDown(false)
	if err := n.run("STATUS", OwnerID{}, ""); err != nil {
		t.Fatal(err)
	}
	if k := m.keysUnder(keys{prefix: testPrefix, pool: "verbs"}.owners()); len(k) != 1 || len(n.files("releases")) != 0 {
		t.Errorf("after STATUS: owners %v, queue %v", k, n.files("releases"))
	}
}

func TestStatusWhenEtcdIsAway(t *testing.T) {
	m := newMemStore()
	n := newNode(t, m, "n1")
	m.setDown(true)
	err := n.run("STATUS", OwnerID{}, "")
	if cniCode(err) != 50 || !strings.Contains(err.Error(), "not ready: etcd at http://127.0.0.1:1") {
		t.Fatalf("STATUS: %v", err)
	}
}

func TestGCReleasesTheNodesInvalidLeases(t *testing.T) {
	m := newMemStore()
	n1, n2 := newNode(t, m, "n1"), newNode(t, m, "n2")
	n1.add(owner(1))
	n1.add(owner(2))
	n2.add(owner(3))
	valid := `, "cni.dev/valid-attachments": [{"containerID": "c0001", "ifname": "eth1"}]`
	if err := n1.run("GC", OwnerID{}, valid); err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, k := range m.keysUnder(keys{prefix: testPrefix, pool: "verbs"}.owners()) {
		left = append(left, last(strings.TrimSuffix(k, "/eth1")))
	}
	if strings.Join(left, " ") != "c0001 c0003" {
		t.Errorf("after GC: %v, want c0001 (valid) and c0003 (another node's)", left)
	}
}

// A queued release that cannot be read releases whatever its owner, named
// by the file, holds, and goes: it must not pin the address, nor release
// the owner's later claims again and again.
func TestUnreadableQueuedRelease(t *testing.T) {
	m := newMemStore()
	n := newNode(t, m, "n1")
	n.add(owner(1))
	name := filepath.Join(n.dataDir, "verbs", "releases", "c0001:eth1:0123456789abcdef")
	if err := os.WriteFile(name, []byte("{torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.run("STATUS", OwnerID{}, ""); err != nil {
		t.Fatal(err)
	}
	if q := n.files("releases"); len(q) != 0 {
		t.Fatalf("queue after STATUS: %v", q)
	}
	if k := m.keysUnder(keys{prefix: testPrefix, pool: "verbs"}.owners()); len(k) != 0 {
		t.Errorf("owners after STATUS: %v", k)
	}
	n.add(owner(1))
	if err := n.run("STATUS", OwnerID{}, ""); err != nil {
		t.Fatal(err)
	}
	if k := m.keysUnder(keys{prefix: testPrefix, pool: "verbs"}.owners()); len(k) != 1 {
		t.Errorf("the owner's later claim went too: %v", k)
	}
}
