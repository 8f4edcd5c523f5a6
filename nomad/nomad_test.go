package nomad

import (
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types040 "github.com/containernetworking/cni/pkg/types/040"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

func mustLookup(t *testing.T, v string) Release {
	t.Helper()
	r, err := Lookup(v)
	if err != nil {
		t.Fatalf("Lookup(%q): %v", v, err)
	}
	return r
}

// TestReleases pins the table: oldest first, each its own model, every
// go-cni / cni pair of docs/nomad.md's table present.
func TestReleases(t *testing.T) {
	all := Releases()
	pairs := map[string]bool{}
	for i, r := range all {
		if i > 0 && compare(mustParse(all[i-1].Version), mustParse(r.Version)) >= 0 {
			t.Errorf("releases out of order: %s before %s", all[i-1].Version, r.Version)
		}
		if got := mustLookup(t, r.Version); got != r {
			t.Errorf("Lookup(%s) = %+v, want %+v", r.Version, got, r)
		}
		if r.Change == "" || r.GoCNI == "" || r.CNI == "" {
			t.Errorf("release %s lacks a field: %+v", r.Version, r)
		}
		pairs[r.GoCNI+" "+r.CNI] = true
	}
	for _, p := range []string{"v1.1.9 v1.1.2", "v1.1.9 v1.2.3", "v1.1.11 v1.2.3", "v1.1.12 v1.2.3", "v1.1.12 v1.3.0", "v1.1.13 v1.3.0"} {
		if !pairs[p] {
			t.Errorf("no release links go-cni / cni %s", p)
		}
	}
	all[0].Version = "changed"
	if Releases()[0].Version == "changed" {
		t.Error("Releases hands out the package's own table")
	}
}

func TestLookup(t *testing.T) {
	for _, c := range []struct{ in, version, as, goCNI string }{
		{"1.8.1", "1.8.1", "1.8.0", "v1.1.9"},
		{"v1.9.5", "1.9.5", "", "v1.1.11"},
		{"1.10.0", "1.10.0", "1.9.6", "v1.1.12"},
		{"1.10.3", "1.10.3", "1.10.1", "v1.1.12"},
		{"2.0.5", "2.0.5", "1.11.0", "v1.1.13"},
	} {
		r := mustLookup(t, c.in)
		if r.Version != c.version || r.As != c.as || r.GoCNI != c.goCNI {
			t.Errorf("Lookup(%q) = %+v, want version %s as %q go-cni %s", c.in, r, c.version, c.as, c.goCNI)
		}
	}
	for _, c := range []struct {
		in   string
		want error
	}{
		{"1.8.10", ErrEnterprise}, {"1.8.5", ErrEnterprise}, {"1.9.8", ErrEnterprise},
		{"1.7.7", ErrUnknown}, {"1.9", ErrUnknown}, {"latest", ErrUnknown}, {"", ErrUnknown}, {"1.09.5", ErrUnknown},
	} {
		if _, err := Lookup(c.in); !errors.Is(err, c.want) {
			t.Errorf("Lookup(%q): %v, want %v", c.in, err, c.want)
		}
	}
	if _, err := Lookup("1.8.10"); err == nil || !strings.Contains(err.Error(), "rehearse 1.9.5") {
		t.Errorf("Lookup(1.8.10): %v, want the pointer to 1.9.5", err)
	}
}

// TestBehaviours: each rule changes exactly at its release.
func TestBehaviours(t *testing.T) {
	type rule struct {
		name string
		f    func(Release) bool
		from string
	}
	rules := []rule{
		{"SendsJobArgs", Release.SendsJobArgs, "1.8.2"},
		{"SendsIdentity", Release.SendsIdentity, "1.9.4"},
		{"RunsCheck", Release.RunsCheck, "1.9.5"},
		{"CallsStatus(1.1.0)", func(r Release) bool { return r.CallsStatus("1.1.0") }, "1.9.5"},
		{"reads 1.1.0 results", func(r Release) bool { return r.ReadsResultVersion("1.1.0") }, "1.8.3"},
	}
	for _, ru := range rules {
		for _, v := range []string{"1.8.0", "1.8.1", "1.8.2", "1.8.3", "1.9.0", "1.9.3", "1.9.4", "1.9.5", "1.10.0", "2.0.0"} {
			r := mustLookup(t, v)
			if got, want := ru.f(r), compare(mustParse(v), mustParse(ru.from)) >= 0; got != want {
				t.Errorf("%s of Nomad %s = %v, want %v (from %s)", ru.name, v, got, want, ru.from)
			}
		}
	}
	for _, r := range Releases() {
		if r.CallsStatus("1.0.0") || r.CallsStatus("0.4.0") {
			t.Errorf("Nomad %s sends STATUS to a list below 1.1.0", r.Version)
		}
		if !r.ReadsResultVersion("1.0.0") || !r.ReadsResultVersion("0.4.0") {
			t.Errorf("Nomad %s cannot read a 1.0.0 or 0.4.0 result", r.Version)
		}
	}
}

func TestArgs(t *testing.T) {
	id := Identity{Region: "global", Namespace: "default", Job: "web", Group: "g", AllocID: "a1"}
	job := map[string]string{"NICMUX_ATTACHMENTS": "storage", "X": "${NOMAD_ALLOC_ID}"}
	for _, c := range []struct{ release, want string }{
		{"1.8.0", "IgnoreUnknown=true"},
		{"1.8.2", "IgnoreUnknown=true NICMUX_ATTACHMENTS=storage X=${NOMAD_ALLOC_ID}"},
		{"1.9.4", "IgnoreUnknown=true NICMUX_ATTACHMENTS=storage NOMAD_ALLOC_ID=a1 NOMAD_GROUP_NAME=g NOMAD_JOB_ID=web " +
			"NOMAD_NAMESPACE=default NOMAD_REGION=global X=${NOMAD_ALLOC_ID}"},
	} {
		var got []string
		for _, kv := range mustLookup(t, c.release).Args(id, job) {
			got = append(got, kv[0]+"="+kv[1])
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("Nomad %s CNI_ARGS = %s, want %s", c.release, strings.Join(got, " "), c.want)
		}
	}
	over := mustLookup(t, "1.9.4").Args(id, map[string]string{"IgnoreUnknown": "false"})
	if over[0] != [2]string{"IgnoreUnknown", "false"} {
		t.Errorf("a job's IgnoreUnknown = %v, want the job's value", over[0])
	}
}

func TestFingerprintAndGate(t *testing.T) {
	for _, c := range []struct{ out, want string }{
		{"CNI bridge plugin v1.10.0\nCNI protocol versions supported: 0.1.0, 1.1.0\n", "1.10.0"},
		{"CNI bridge plugin version unknown\nCNI protocol versions supported: 0.1.0, 1.0.0\n", ""},
		{"CNI nicmux plugin v0.2.0", "0.2.0"},
		{"", ""},
	} {
		if got := FingerprintVersion([]byte(c.out)); got != c.want {
			t.Errorf("FingerprintVersion(%q) = %q, want %q", c.out, got, c.want)
		}
	}
	for v, want := range map[string]bool{"1.3.0": true, "1.10.0": true, "1.2.9": false, "": false, "unknown": false} {
		if CheckGate(v) != want {
			t.Errorf("CheckGate(%q) = %v, want %v", v, !want, want)
		}
	}
	if NetworkName("Multi") != "multi" || !TeardownIgnores(errors.New("Link not found")) || TeardownIgnores(errors.New("boom")) || TeardownIgnores(nil) {
		t.Error("NetworkName or TeardownIgnores")
	}
}

func idx(i int) *int { return &i }

func ipc(cidr string, i *int) *types100.IPConfig {
	ip, n, _ := net.ParseCIDR(cidr)
	n.IP = ip
	return &types100.IPConfig{Address: *n, Interface: i}
}

// TestReadResult: go-cni's reading, rule by rule.
func TestReadResult(t *testing.T) {
	ifs := []*types100.Interface{{Name: "br0"}, {Name: "eth1", Sandbox: "/ns", Mac: "02:00:00:00:00:01"}}
	res := &types100.Result{CNIVersion: "1.0.0", Interfaces: ifs,
		IPs: []*types100.IPConfig{ipc("10.0.0.2/24", idx(1)), ipc("10.9.0.2/24", nil)}}
	got, err := ReadResult(res)
	if err != nil {
		t.Fatal(err)
	}
	if names := got.Names(); !reflect.DeepEqual(names, []string{"br0", "eth0", "eth1"}) {
		t.Errorf("names = %v, want br0 eth0 eth1: the empty eth0 is always there", names)
	}
	if e := got.Interfaces["eth0"]; e.Sandbox != "" || len(e.IPs) != 1 || e.IPs[0].String() != "10.9.0.2" {
		t.Errorf("eth0 = %+v, want no sandbox and the IP without an index", e)
	}
	if e := got.Interfaces["eth1"]; e.Sandbox != "/ns" || len(e.IPs) != 1 || e.IPs[0].String() != "10.0.0.2" || e.Mac == "" {
		t.Errorf("eth1 = %+v", e)
	}
	for _, c := range []struct {
		i    int
		want error
	}{{3, ErrInvalidResult}, {2, ErrPanic}, {-1, ErrPanic}} {
		bad := &types100.Result{CNIVersion: "1.0.0", Interfaces: ifs, IPs: []*types100.IPConfig{ipc("10.0.0.2/24", idx(c.i))}}
		if _, err := ReadResult(bad); !errors.Is(err, c.want) {
			t.Errorf("index %d of 2 interfaces: %v, want %v", c.i, err, c.want)
		}
	}
	if _, err := ReadResult(&types100.Result{CNIVersion: "1.0.0", IPs: []*types100.IPConfig{nil}}); !errors.Is(err, ErrInvalidResult) {
		t.Errorf("a nil IP: %v", err)
	}
	// An older result is converted first, as go-cni does.
	old := &types040.Result{CNIVersion: "0.4.0", Interfaces: []*types040.Interface{{Name: "eth0", Sandbox: "/ns"}},
		IPs: []*types040.IPConfig{{Address: ipc("10.0.0.5/24", nil).Address, Interface: idx(0)}}}
	var r types.Result = old
	if got, err := ReadResult(r); err != nil || len(got.Interfaces["eth0"].IPs) != 1 {
		t.Errorf("a 0.4.0 result: %+v, %v", got, err)
	}
}

func iface(sandbox string, ips ...string) *Interface {
	i := &Interface{Sandbox: sandbox}
	for _, ip := range ips {
		i.IPs = append(i.IPs, net.ParseIP(ip))
	}
	return i
}

// TestAddress: the address rules at the releases where they change and
// beside them.
func TestAddress(t *testing.T) {
	const ns = "/var/run/netns/alloc"
	none := Address{Interface: "error"}
	cases := []struct {
		name   string
		ifaces map[string]*Interface
		want   map[string]Address
	}{
		{"seed through nicmux: host links without sandbox, eth0 and eth1",
			map[string]*Interface{"nicmux0": iface(""), "veth1": iface(""), "eth0": iface(ns, "172.26.64.2"), "eth1": iface(ns, "10.40.0.2")},
			map[string]Address{"1.8.0": {"eth0", "172.26.64.2", ""}, "1.9.0": {"eth0", "172.26.64.2", ""}, "2.0.0": {"eth0", "172.26.64.2", ""}}},
		{"seed's wrapped chain: eth0 lost, eth1 reported",
			map[string]*Interface{"eth0": {}, "eth1": iface(ns, "10.40.0.2")},
			map[string]Address{"1.8.0": {"eth1", "10.40.0.2", ""}, "1.11.0": {"eth1", "10.40.0.2", ""}}},
		{"names sort as strings: eth10 before eth2",
			map[string]*Interface{"eth2": iface(ns, "10.0.0.2"), "eth10": iface(ns, "10.0.0.10")},
			map[string]Address{"1.8.0": {"eth10", "10.0.0.10", ""}, "1.10.4": {"eth10", "10.0.0.10", ""}}},
		{"no address anywhere",
			map[string]*Interface{"eth0": iface(ns), "br0": iface("", "192.0.2.1")},
			map[string]Address{"1.8.0": none, "1.9.0": none, "1.11.0": none}},
		{"IPv6 first on one link",
			map[string]*Interface{"eth0": iface(ns, "2001:db8::2", "192.0.2.2", "2001:db8::3")},
			map[string]Address{"1.8.2": {"eth0", "2001:db8::2", ""}, "1.9.0": {"eth0", "192.0.2.2", ""},
				"1.10.3": {"eth0", "192.0.2.2", ""}, "1.10.4": {"eth0", "192.0.2.2", "2001:db8::2"}, "1.11.0": {"eth0", "192.0.2.2", "2001:db8::2"}}},
		{"an IPv6-only link sorting first",
			map[string]*Interface{"eth0": iface(ns, "2001:db8::2"), "eth1": iface(ns, "192.0.2.3", "2001:db8::3")},
			map[string]Address{"1.8.0": {"eth0", "2001:db8::2", ""}, "1.9.5": {"eth1", "192.0.2.3", ""},
				"1.10.4": {"eth1", "192.0.2.3", "2001:db8::3"}, "1.11.0": {"eth0", "2001:db8::2", "2001:db8::2"}}},
		{"IPv6 only",
			map[string]*Interface{"eth0": iface(ns, "2001:db8::2")},
			map[string]Address{"1.8.0": {"eth0", "2001:db8::2", ""}, "1.9.0": none, "1.10.5": none, "1.11.0": {"eth0", "2001:db8::2", "2001:db8::2"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for v, want := range c.want {
				got, err := mustLookup(t, v).Address(&Result{Interfaces: c.ifaces})
				if want == none {
					if !errors.Is(err, ErrNoAddress) {
						t.Errorf("Nomad %s: %+v, %v; want %v", v, got, err, ErrNoAddress)
					}
					continue
				}
				if err != nil || got != want {
					t.Errorf("Nomad %s: %+v, %v; want %+v", v, got, err, want)
				}
			}
		})
	}
}
