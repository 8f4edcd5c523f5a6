package cluster

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	gocni "github.com/containerd/go-cni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/test/netnsutil"
)

// fleetPool is the example's range: what the pool hands out.
var fleetPool = struct{ first, last netip.Addr }{netip.MustParseAddr("10.50.0.10"), netip.MustParseAddr("10.50.255.250")}

func inFleetPool(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && !a.Less(fleetPool.first) && !fleetPool.last.Less(a)
}

// placed is one allocation set up, and the eth1 address it got.
type placed struct {
	a  *Alloc
	ip string
}

// setupAll sets up per allocations on every node at once, per at once on
// each node, each as Nomad does (three tries), and returns them.
func setupAll(t *testing.T, fleets []*Fleet, per int) []placed {
	t.Helper()
	var mu sync.Mutex
	var out []placed
	var wg sync.WaitGroup
	for _, f := range fleets {
		allocs := make([]*Alloc, per)
		for i := range allocs {
			allocs[i] = f.NewAlloc(t)
		}
		for _, a := range allocs {
			wg.Go(func() {
				res, errs := a.Setup()
				ip, err := eth1IP(res)
				mu.Lock()
				defer mu.Unlock()
				if len(errs) > 0 {
					t.Errorf("node %s: alloc %s: %d failed tries: %v", f.n.Name, a.ID, len(errs), errors.Join(errs...))
				}
				if err == nil {
					out = append(out, placed{a: a, ip: ip})
				}
			})
		}
	}
	wg.Wait()
	return out
}

// removeAll tears every allocation down at once, as each node's Nomad
// client would.
func removeAll(t *testing.T, ps []placed) {
	t.Helper()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() {
			if err := p.a.Remove(); err != nil {
				t.Errorf("remove %s: %v", p.a.ID, err)
			}
		})
	}
	wg.Wait()
}

// wantNothingLeft checks that the nodes hold nothing after every
// allocation was removed: no lease in etcd, no queued release, no record
// of nicmux, no link in the allocations' namespaces.
func wantNothingLeft(t *testing.T, w *World, fleets []*Fleet, ps []placed) {
	t.Helper()
	if got := w.Leases(); len(got) != 0 {
		t.Errorf("%d leases left in etcd after every allocation was removed", len(got))
	}
	for _, f := range fleets {
		if q := f.n.Queued(); len(q) != 0 {
			t.Errorf("node %s: queued releases %v", f.n.Name, q)
		}
		if ents, _ := os.ReadDir(filepath.Join(f.n.StateDir, "containers")); len(ents) != 0 {
			t.Errorf("node %s: nicmux still records %d containers", f.n.Name, len(ents))
		}
	}
	for _, p := range ps {
		if links, err := netnsutil.Links(p.a.NetNS); err != nil || len(links) != 0 {
			t.Errorf("alloc %s: links %v left (%v)", p.a.ID, links, err)
		}
	}
}

// Four nodes each set up 25 allocations of the fleet example at once,
// through go-cni as a Nomad client calls it: 100 distinct addresses of the
// pool, each in its allocation's eth1 and leased to it in etcd, every one
// answering on the shared L2 a storage client on a fifth node, and
// allocations of different nodes answering each other; then every
// allocation is removed, and nothing is left.
func TestFleetConcurrentAllocationsReachable(t *testing.T) { fleetConcurrent(t, NewWorld(t, 1)) }

// The same, each node's calls answered by its nicmux-ipamd.
func TestFleetConcurrentAllocationsThroughDaemons(t *testing.T) {
	w := NewWorld(t, 1)
	w.Daemons = true
	fleetConcurrent(t, w)
}

func fleetConcurrent(t *testing.T, w *World) {
	var fleets []*Fleet
	for i := range 4 {
		fleets = append(fleets, w.Node(fmt.Sprintf("client-%d", i+1)).InstallFleet(t))
	}
	ps := setupAll(t, fleets, 25)
	if len(ps) != 100 {
		t.Fatalf("%d of 100 allocations set up", len(ps))
	}
	leases := w.Leases()
	seen := map[string]string{}
	for _, p := range ps {
		if other, dup := seen[p.ip]; dup {
			t.Errorf("%s went to %s and to %s", p.ip, other, p.a.ID)
		}
		seen[p.ip] = p.a.ID
		if !inFleetPool(p.ip) {
			t.Errorf("alloc %s got %s, outside the pool's range", p.a.ID, p.ip)
		}
		l := leases[p.a.ID+"/eth1"]
		if len(l.Addresses) != 1 || l.Addresses[0].IP != p.ip || l.Node != p.a.f.n.Name {
			t.Errorf("alloc %s has %s on node %s; etcd leases it %+v", p.a.ID, p.ip, p.a.f.n.Name, l)
		}
		if addrs, err := netnsutil.Addrs(p.a.NetNS, "eth1"); err != nil || len(addrs) != 1 || ipOf(addrs[0]) != p.ip {
			t.Errorf("alloc %s: eth1 holds %v (%v), the result says %s", p.a.ID, addrs, err, p.ip)
		}
		Echo(t, p.a.NetNS, p.ip)
	}
	if len(leases) != 100 {
		t.Errorf("etcd holds %d leases, want 100", len(leases))
	}
	client := w.Node("storage-client").Station(t, "10.50.0.2/16")
	ips := make([]string, 0, len(ps))
	for _, p := range ps {
		ips = append(ips, p.ip)
	}
	sort.Strings(ips)
	if silent := NewProber(t, client, "10.50.0.2").AskAll(ips); len(silent) > 0 {
		t.Errorf("%d of 100 addresses do not answer on the shared L2: %v", len(silent), silent)
	}
	// One allocation of each node asks one of the next node's.
	first := map[*Fleet]placed{}
	for _, p := range ps {
		if _, ok := first[p.a.f]; !ok {
			first[p.a.f] = p
		}
	}
	for i, f := range fleets {
		from, to := first[f], first[fleets[(i+1)%len(fleets)]]
		if err := NewProber(t, from.a.NetNS, from.ip).Ask(to.ip); err != nil {
			t.Errorf("%s (node %s) cannot reach %s (node %s): %v", from.ip, f.n.Name, to.ip, to.a.f.n.Name, err)
		}
	}
	removeAll(t, ps)
	wantNothingLeft(t, w, fleets, ps)
}

// A Nomad client whose setup failed sets up again with no Remove between.
// After a failure past eth1's claim (sbr fails once), nicmux rolls the
// chains back and nicmux-ipam releases the claim; the retry holds one
// lease, the one in the namespace. A second setup of an allocation that is
// set up is refused by nicmux (code 100), and the lease stays as it was:
// the same address, the same claim, never a second lease.
func TestNomadRetriedSetup(t *testing.T) {
	w := NewWorld(t, 1)
	arm := filepath.Join(t.TempDir(), "arm")
	f := w.Node("client-1").InstallFleet(t, failOnce(arm))
	a := f.NewAlloc(t)
	if err := os.WriteFile(arm, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	res, errs := a.Setup()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "eth1") {
		t.Fatalf("want the first try to fail on eth1 and the second to succeed: %v", errs)
	}
	ip, err := eth1IP(res)
	if err != nil {
		t.Fatal(err)
	}
	l := w.Leases()
	if len(l) != 1 || len(l[a.ID+"/eth1"].Addresses) != 1 || l[a.ID+"/eth1"].Addresses[0].IP != ip || len(f.n.Queued()) != 0 {
		t.Fatalf("after the retried setup: eth1 has %s; etcd leases %+v; queued %v", ip, l, f.n.Queued())
	}
	before := w.Etcd.Dump(ctxT(t), t, w.Prefix+"/pools/")
	_, err = a.SetupOnce()
	var e *types.Error
	if !errors.As(err, &e) || e.Code != 100 {
		t.Errorf("a second setup of a set-up allocation: %v, want nicmux's code 100", err)
	}
	after := w.Etcd.Dump(ctxT(t), t, w.Prefix+"/pools/")
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the refused setup changed the pool:\nbefore %v\nafter  %v", before, after)
	}
	if addrs, _ := netnsutil.Addrs(a.NetNS, "eth1"); len(addrs) != 1 || ipOf(addrs[0]) != ip {
		t.Errorf("eth1 holds %v after the refused setup, want %s", addrs, ip)
	}
	if err := a.Remove(); err != nil {
		t.Fatal(err)
	}
	wantNothingLeft(t, w, []*Fleet{f}, []placed{{a: a, ip: ip}})
}

// Nomad reads the allocation's address from go-cni's result: with eth1
// primary, the pool's address.
func TestFleetAllocationAddress(t *testing.T) {
	w := NewWorld(t, 1)
	f := w.Node("client-1").InstallFleet(t)
	a := f.NewAlloc(t)
	ip, res := a.MustSetup(t)
	if got := nomadAddress(res); got != ip {
		t.Errorf("Nomad reports %s as the allocation's address, want eth1's %s", got, ip)
	}
	if err := a.Remove(); err != nil {
		t.Fatal(err)
	}
}

// nomadAddress is the address a Nomad client reports: the first interface,
// by name, with a sandbox and an IPv4 address.
func nomadAddress(res *gocni.Result) string {
	var names []string
	for n := range res.Interfaces {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := res.Interfaces[n]
		if c.Sandbox == "" {
			continue
		}
		for _, ipc := range c.IPConfigs {
			if ipc.IP.To4() != nil {
				return ipc.IP.String()
			}
		}
	}
	return ""
}
