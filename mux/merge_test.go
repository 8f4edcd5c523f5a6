package mux

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/nicmux/nicmux/delegate/delegatetest"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

const testNetNS = "/var/run/netns/test"

func idx(i int) *int { return &i }

func ipc(addr string, iface *int) *types100.IPConfig {
	ip, n, err := net.ParseCIDR(addr)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return &types100.IPConfig{Interface: iface, Address: *n}
}

func route(dst string) *types.Route {
	_, n, err := net.ParseCIDR(dst)
	if err != nil {
		panic(err)
	}
	return &types.Route{Dst: *n}
}

// mergeOK runs Merge and returns the merged result at 1.1.0.
func mergeOK(t testing.TB, results []types.Result, ifnames []string, ver string) *types100.Result {
	t.Helper()
	return mergePrimaryOK(t, results, ifnames, ver, "")
}

// mergePrimaryOK is mergeOK with a primary interface.
func mergePrimaryOK(t testing.TB, results []types.Result, ifnames []string, ver, primary string) *types100.Result {
	t.Helper()
	m, err := merge(results, ifnames, testNetNS, ver, primary)
	if err != nil {
		t.Fatalf("Merge at %s, primary %q: %v", ver, primary, err)
	}
	if m.Version() != ver {
		t.Fatalf("merged version = %s, want %s (primary %q)", m.Version(), ver, primary)
	}
	r, err := types100.NewResultFromResult(m)
	if err != nil {
		t.Fatalf("converting merged result at %s, primary %q: %v", ver, primary, err)
	}
	return r
}

// assertIndicesValid checks what go-cni relies on: every IP names an
// interface of the result.
func assertIndicesValid(t testing.TB, r *types100.Result) {
	t.Helper()
	for i, ip := range r.IPs {
		if ip.Interface == nil {
			t.Errorf("IP %d (%s) has no interface index", i, ip.Address.String())
			continue
		}
		if *ip.Interface < 0 || *ip.Interface >= len(r.Interfaces) {
			t.Errorf("IP %d (%s) has index %d, out of [0,%d)", i, ip.Address.String(), *ip.Interface, len(r.Interfaces))
		}
	}
}

// ifaceOf returns the interface an IP of r is on.
func ifaceOf(t testing.TB, r *types100.Result, ip int) *types100.Interface {
	t.Helper()
	i := r.IPs[ip].Interface
	if i == nil || *i < 0 || *i >= len(r.Interfaces) {
		t.Fatalf("IP %d has an invalid index %v", ip, i)
	}
	return r.Interfaces[*i]
}

func names(r *types100.Result) []string {
	var out []string
	for _, i := range r.Interfaces {
		out = append(out, i.Name)
	}
	return out
}

func TestMergeRemapsIndices(t *testing.T) {
	// Chain 0: a bridge-like result: host bridge, host veth, container eth0.
	r0 := &types100.Result{
		CNIVersion: "1.0.0",
		Interfaces: []*types100.Interface{{Name: "cni0"}, {Name: "veth1"}, {Name: "eth0", Sandbox: testNetNS}},
		IPs:        []*types100.IPConfig{ipc("10.0.0.5/24", idx(2))},
		Routes:     []*types.Route{route("0.0.0.0/0")},
		DNS:        types.DNS{Nameservers: []string{"10.0.0.1"}},
	}
	// Chain 1: one interface, an IP on it and an IP with no index.
	r1 := &types100.Result{
		CNIVersion: "1.0.0",
		Interfaces: []*types100.Interface{{Name: "eth1", Sandbox: testNetNS}},
		IPs:        []*types100.IPConfig{ipc("10.1.0.5/24", idx(0)), ipc("fd00::5/64", nil)},
		Routes:     []*types.Route{route("10.1.0.0/16")},
		DNS:        types.DNS{Nameservers: []string{"10.1.0.1"}},
	}
	// Chain 2: a host interface first, the container one second; an IP
	// whose index is out of range (== len(interfaces)) and a negative one.
	r2 := &types100.Result{
		CNIVersion: "1.0.0",
		Interfaces: []*types100.Interface{{Name: "macvlan-host"}, {Name: "eth2", Sandbox: testNetNS}},
		IPs:        []*types100.IPConfig{ipc("10.2.0.5/24", idx(2)), ipc("10.2.0.6/24", idx(-1)), ipc("10.2.0.7/24", idx(1))},
	}
	before, _ := json.Marshal([]any{r0, r1, r2})

	m := mergeOK(t, []types.Result{r0, r1, r2}, []string{"eth0", "eth1", "eth2"}, "1.0.0")
	assertIndicesValid(t, m)
	if want := []string{"cni0", "veth1", "eth0", "eth1", "macvlan-host", "eth2"}; !reflect.DeepEqual(names(m), want) {
		t.Errorf("interfaces = %v, want %v", names(m), want)
	}
	wantIdx := []int{2, 3, 3, 5, 5, 5}
	for i, ip := range m.IPs {
		if *ip.Interface != wantIdx[i] {
			t.Errorf("IP %s on index %d, want %d", ip.Address.String(), *ip.Interface, wantIdx[i])
		}
	}
	if len(m.Routes) != 2 || m.Routes[0].Dst.String() != "0.0.0.0/0" || m.Routes[1].Dst.String() != "10.1.0.0/16" {
		t.Errorf("routes = %v, want both chains' in order", m.Routes)
	}
	if !reflect.DeepEqual(m.DNS.Nameservers, []string{"10.0.0.1"}) {
		t.Errorf("DNS = %+v, want the first chain's", m.DNS)
	}
	after, _ := json.Marshal([]any{r0, r1, r2})
	if string(before) != string(after) {
		t.Errorf("Merge changed its inputs:\n%s\n%s", before, after)
	}
}

func TestMergeNilIndexGoesToOwnInterface(t *testing.T) {
	// The chain's container interface is not its first, and a host
	// interface of the same name (no sandbox) comes first: the sandboxed
	// one is the chain's own.
	r0 := &types100.Result{CNIVersion: "1.1.0",
		Interfaces: []*types100.Interface{{Name: "eth0", Sandbox: testNetNS}},
		IPs:        []*types100.IPConfig{ipc("10.0.0.2/24", idx(0))}}
	r1 := &types100.Result{CNIVersion: "1.1.0",
		Interfaces: []*types100.Interface{{Name: "net1"}, {Name: "host-net1"}, {Name: "net1", Sandbox: testNetNS}},
		IPs:        []*types100.IPConfig{ipc("10.1.0.2/24", nil)}}
	m := mergeOK(t, []types.Result{r0, r1}, []string{"eth0", "net1"}, "1.1.0")
	assertIndicesValid(t, m)
	if got := *m.IPs[1].Interface; got != 3 {
		t.Errorf("nil-index IP put on %d, want 3 (chain 1's sandboxed net1)", got)
	}
	if len(m.Interfaces) != 4 {
		t.Errorf("interfaces = %v: nothing should be synthesized", names(m))
	}
}

func TestMergeSynthesizesInterface(t *testing.T) {
	// Chain 1 reports IPs and no interface (as ipvlan/host-device style
	// plugins at 0.3.x sometimes do); chain 2 reports only a host
	// interface.
	r0 := &types100.Result{CNIVersion: "1.0.0",
		Interfaces: []*types100.Interface{{Name: "eth0", Sandbox: testNetNS}},
		IPs:        []*types100.IPConfig{ipc("10.0.0.2/24", idx(0))}}
	r1 := &types100.Result{CNIVersion: "1.0.0",
		IPs: []*types100.IPConfig{ipc("10.1.0.2/24", nil), ipc("10.1.0.3/24", idx(0)), ipc("fd01::3/64", idx(7))}}
	r2 := &types100.Result{CNIVersion: "1.0.0",
		Interfaces: []*types100.Interface{{Name: "dummy-host"}},
		IPs:        []*types100.IPConfig{ipc("10.2.0.2/24", nil)}}
	r3 := &types100.Result{CNIVersion: "1.0.0",
		Interfaces: []*types100.Interface{{Name: "eth3", Sandbox: testNetNS}},
		IPs:        []*types100.IPConfig{ipc("10.3.0.2/24", idx(0))}}
	m := mergeOK(t, []types.Result{r0, r1, r2, r3}, []string{"eth0", "net1", "net2", "eth3"}, "1.0.0")
	assertIndicesValid(t, m)
	if want := []string{"eth0", "net1", "dummy-host", "net2", "eth3"}; !reflect.DeepEqual(names(m), want) {
		t.Fatalf("interfaces = %v, want %v (one synthesized per chain, in its chain's place)", names(m), want)
	}
	for _, i := range []int{1, 3} {
		if m.Interfaces[i].Sandbox != testNetNS {
			t.Errorf("synthesized %s has sandbox %q, want %q", m.Interfaces[i].Name, m.Interfaces[i].Sandbox, testNetNS)
		}
	}
	wantOn := []string{"eth0", "net1", "net1", "net1", "net2", "eth3"}
	for i := range m.IPs {
		if got := ifaceOf(t, m, i).Name; got != wantOn[i] {
			t.Errorf("IP %s on %s, want %s", m.IPs[i].Address.String(), got, wantOn[i])
		}
	}
}

func TestMergeNoIPsNoInterfaces(t *testing.T) {
	r0 := &types100.Result{CNIVersion: "1.0.0"}
	r1 := &types100.Result{CNIVersion: "1.0.0",
		Interfaces: []*types100.Interface{{Name: "eth1", Sandbox: testNetNS}},
		IPs:        []*types100.IPConfig{ipc("10.1.0.2/24", idx(0))}}
	m := mergeOK(t, []types.Result{r0, r1}, []string{"eth0", "eth1"}, "1.0.0")
	if want := []string{"eth1"}; !reflect.DeepEqual(names(m), want) {
		t.Errorf("interfaces = %v, want %v (nothing synthesized for a chain without IPs)", names(m), want)
	}
	if *m.IPs[0].Interface != 0 {
		t.Errorf("IP index = %d, want 0", *m.IPs[0].Interface)
	}
}

func TestMergeDNSFromFirstChainWithAny(t *testing.T) {
	r0 := &types100.Result{CNIVersion: "1.0.0"}
	r1 := &types100.Result{CNIVersion: "1.0.0", DNS: types.DNS{Domain: "b.example", Search: []string{"b.example"}}}
	r2 := &types100.Result{CNIVersion: "1.0.0", DNS: types.DNS{Nameservers: []string{"10.2.0.1"}}}
	m := mergeOK(t, []types.Result{r0, r1, r2}, []string{"eth0", "eth1", "eth2"}, "1.0.0")
	if m.DNS.Domain != "b.example" || len(m.DNS.Nameservers) != 0 {
		t.Errorf("DNS = %+v, want chain 1's", m.DNS)
	}
}

func TestMergeInputVersions(t *testing.T) {
	// Chains at older versions are read too.
	base := &types100.Result{CNIVersion: "1.0.0",
		Interfaces: []*types100.Interface{{Name: "x", Sandbox: testNetNS}},
		IPs:        []*types100.IPConfig{ipc("10.0.0.2/24", idx(0))}}
	var results []types.Result
	var ifnames []string
	for k, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		cp := delegatetest.CopyResult(base)
		cp.Interfaces[0].Name = fmt.Sprintf("eth%d", k)
		r, err := cp.GetAsVersion(v)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, r)
		ifnames = append(ifnames, cp.Interfaces[0].Name)
	}
	m := mergeOK(t, results, ifnames, "1.0.0")
	assertIndicesValid(t, m)
	for i := range m.IPs {
		if got := *m.IPs[i].Interface; got != i {
			t.Errorf("IP %d on %d, want %d", i, got, i)
		}
	}
}

func TestMergeOutputVersions(t *testing.T) {
	r0 := &types100.Result{CNIVersion: "1.0.0",
		Interfaces: []*types100.Interface{{Name: "eth0", Sandbox: testNetNS}},
		IPs:        []*types100.IPConfig{ipc("10.0.0.2/24", idx(0)), ipc("fd00::2/64", idx(0))}}
	r1 := &types100.Result{CNIVersion: "1.0.0",
		IPs: []*types100.IPConfig{ipc("10.1.0.2/24", nil)}}
	for _, ver := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(ver, func(t *testing.T) {
			m, err := merge([]types.Result{r0, r1}, []string{"eth0", "eth1"}, testNetNS, ver, "")
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			var raw struct {
				CNIVersion string `json:"cniVersion"`
				Interfaces []struct {
					Name    string `json:"name"`
					Sandbox string `json:"sandbox"`
				} `json:"interfaces"`
				IPs []struct {
					Version   string `json:"version"`
					Interface *int   `json:"interface"`
					Address   string `json:"address"`
				} `json:"ips"`
			}
			if err := json.Unmarshal(b, &raw); err != nil {
				t.Fatal(err)
			}
			if raw.CNIVersion != ver {
				t.Errorf("JSON cniVersion = %q, want %q", raw.CNIVersion, ver)
			}
			if len(raw.Interfaces) != 2 || raw.Interfaces[1].Name != "eth1" || raw.Interfaces[1].Sandbox != testNetNS {
				t.Errorf("interfaces = %+v", raw.Interfaces)
			}
			if len(raw.IPs) != 3 {
				t.Fatalf("ips = %+v", raw.IPs)
			}
			old := ver < "1.0.0"
			wantVer := []string{"4", "6", "4"}
			for i, ip := range raw.IPs {
				if old && ip.Version != wantVer[i] {
					t.Errorf("IP %s version = %q, want %q", ip.Address, ip.Version, wantVer[i])
				}
				if !old && ip.Version != "" {
					t.Errorf("IP %s carries version %q at %s", ip.Address, ip.Version, ver)
				}
				if ip.Interface == nil || *ip.Interface < 0 || *ip.Interface >= len(raw.Interfaces) {
					t.Errorf("IP %s index %v invalid", ip.Address, ip.Interface)
				}
			}
			if *raw.IPs[2].Interface != 1 {
				t.Errorf("chain 1's IP on %d, want 1", *raw.IPs[2].Interface)
			}
		})
	}
}

// TestMergeProperty merges random results and checks that every IP index of
// the merged result is valid, that no IP is lost, and that each IP lands on
// an interface reported by (or made for) its own chain.
func TestMergeProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	versions := []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}
	for iter := 0; iter < 2000; iter++ {
		n := 1 + rng.IntN(5)
		var results []types.Result
		var ifnames []string
		// want[i]: the name of the interface merged IP i must be on; ""
		// for the chain's own (sandboxed, named as the chain's ifname).
		var want []string
		var owner []int // owner[i]: chain of merged IP i
		for k := 0; k < n; k++ {
			ifname := fmt.Sprintf("net%d", k)
			r := &types100.Result{CNIVersion: "1.1.0"}
			for j, ni := 0, rng.IntN(4); j < ni; j++ {
				iface := &types100.Interface{Name: fmt.Sprintf("h%d-%d", k, j)}
				switch rng.IntN(3) {
				case 0:
					iface.Name, iface.Sandbox = ifname, testNetNS
				case 1:
					iface.Sandbox = testNetNS
				}
				r.Interfaces = append(r.Interfaces, iface)
			}
			for j, nip := 0, rng.IntN(4); j < nip; j++ {
				var ix *int
				switch rng.IntN(4) {
				case 0: // nil
				case 1:
					ix = idx(len(r.Interfaces) + rng.IntN(3)) // out of range
				case 2:
					ix = idx(-1 - rng.IntN(3))
				default:
					if len(r.Interfaces) > 0 {
						ix = idx(rng.IntN(len(r.Interfaces)))
					}
				}
				r.IPs = append(r.IPs, ipc(fmt.Sprintf("10.%d.%d.2/24", k, j), ix))
				owner = append(owner, k)
				if ix != nil && *ix >= 0 && *ix < len(r.Interfaces) {
					want = append(want, r.Interfaces[*ix].Name)
				} else {
					want = append(want, "")
				}
			}
			v := versions[rng.IntN(len(versions))]
			res, err := r.GetAsVersion(v)
			if err != nil {
				t.Fatal(err)
			}
			results = append(results, res)
			ifnames = append(ifnames, ifname)
		}
		outVer := versions[rng.IntN(len(versions))]
		m, err := merge(results, ifnames, testNetNS, outVer, "")
		if err != nil {
			t.Fatalf("iteration %d: Merge: %v", iter, err)
		}
		r, err := types100.NewResultFromResult(m)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.IPs) != len(owner) {
			t.Fatalf("iteration %d: %d IPs merged, want %d", iter, len(r.IPs), len(owner))
		}
		for i, ip := range r.IPs {
			if ip.Interface == nil || *ip.Interface < 0 || *ip.Interface >= len(r.Interfaces) {
				t.Fatalf("iteration %d (out %s): IP %d index %v out of [0,%d)", iter, outVer, i, ip.Interface, len(r.Interfaces))
			}
			got := r.Interfaces[*ip.Interface]
			k := owner[i]
			switch {
			case want[i] == "" && (got.Name != ifnames[k] || got.Sandbox != testNetNS):
				t.Fatalf("iteration %d: IP %d of chain %d without a valid index landed on %+v, want its own %s", iter, i, k, got, ifnames[k])
			case want[i] != "" && got.Name != want[i]:
				t.Fatalf("iteration %d: IP %d of chain %d landed on %q, want %q", iter, i, k, got.Name, want[i])
			case !strings.HasPrefix(got.Name, fmt.Sprintf("h%d-", k)) && got.Name != ifnames[k]:
				t.Fatalf("iteration %d: IP %d of chain %d landed on another chain's %q", iter, i, k, got.Name)
			}
		}
	}
}

func benchResults(n int) ([]types.Result, []string) {
	var results []types.Result
	var ifnames []string
	for k := 0; k < n; k++ {
		ifname := fmt.Sprintf("eth%d", k)
		results = append(results, &types100.Result{CNIVersion: "1.0.0",
			Interfaces: []*types100.Interface{{Name: "br" + ifname}, {Name: "veth" + ifname}, {Name: ifname, Sandbox: testNetNS, Mac: "02:00:00:00:00:01"}},
			IPs:        []*types100.IPConfig{ipc(fmt.Sprintf("10.%d.0.2/24", k), idx(2)), ipc(fmt.Sprintf("fd%02x::2/64", k), nil)},
			Routes:     []*types.Route{route(fmt.Sprintf("10.%d.0.0/16", k))},
			DNS:        types.DNS{Nameservers: []string{"10.0.0.1"}},
		})
		ifnames = append(ifnames, ifname)
	}
	return results, ifnames
}

func BenchmarkMerge(b *testing.B) {
	for _, n := range []int{2, 16} {
		b.Run(fmt.Sprintf("chains=%d", n), func(b *testing.B) {
			results, ifnames := benchResults(n)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := merge(results, ifnames, testNetNS, "1.0.0", ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestMergePrimary: with a primary interface, only its chain's interfaces
// keep a sandbox, at every output version; nothing else changes. A primary
// whose own interface came without a sandbox gets the namespace's.
func TestMergePrimary(t *testing.T) {
	results := func() []types.Result {
		return []types.Result{
			&types100.Result{CNIVersion: "1.0.0",
				Interfaces: []*types100.Interface{{Name: "cni0"}, {Name: "veth1"}, {Name: "eth0", Sandbox: testNetNS}},
				IPs:        []*types100.IPConfig{ipc("172.26.64.2/20", idx(2))}},
			&types100.Result{CNIVersion: "1.0.0",
				Interfaces: []*types100.Interface{{Name: "eth1"}}, // no sandbox reported
				IPs:        []*types100.IPConfig{ipc("10.40.0.17/24", idx(0)), ipc("fd00:40::17/64", idx(0))}},
			&types100.Result{CNIVersion: "1.0.0",
				IPs: []*types100.IPConfig{ipc("10.50.0.2/24", nil)}}, // synthesized eth2
		}
	}
	ifnames := []string{"eth0", "eth1", "eth2"}
	for _, ver := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		for _, primary := range []string{"", "eth0", "eth1", "eth2"} {
			plain := mergeOK(t, results(), ifnames, ver)
			got := mergePrimaryOK(t, results(), ifnames, ver, primary)
			assertIndicesValid(t, got)
			if !reflect.DeepEqual(names(got), names(plain)) || len(got.IPs) != len(plain.IPs) {
				t.Errorf("%s/%q: interfaces %v, %d IPs; want those of the plain merge, %v, %d", ver, primary, names(got), len(got.IPs), names(plain), len(plain.IPs))
			}
			for i, iface := range got.Interfaces {
				want := plain.Interfaces[i].Sandbox
				switch {
				case primary != "" && iface.Name == primary:
					want = testNetNS
				case primary != "":
					want = ""
				}
				if iface.Sandbox != want {
					t.Errorf("%s/%q: %s sandbox = %q, want %q", ver, primary, iface.Name, iface.Sandbox, want)
				}
			}
			want := primary
			if primary == "" {
				want = "eth0" // the alphabetically first sandboxed one with IPv4
			}
			if got := nomadPick(got); got != want {
				t.Errorf("%s/%q: Nomad picks %q, want %q", ver, primary, got, want)
			}
		}
	}
}
