package integration

import (
	"encoding/json"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/nicmux/nicmux/test/testworld"
)

// TestSeedJob attaches the seed job, checks it and deletes it, asserting
// the merged result, the kernel state, the leases and the state files.
func TestSeedJob(t *testing.T) {
	w := newWorld(t)
	l := w.list(w.seed(), nil)
	netns := newNS(t)
	r := rt("alloc-1", netns)

	res := w.mustAdd(l, r)

	// The merged result: every chain's interfaces, IPs pointing at the right
	// container interface, eth0's first.
	if len(res.IPs) != 2 {
		t.Fatalf("merged result has %d IPs, want 2: %v", len(res.IPs), res)
	}
	want := []struct{ ifname, prefix string }{{"eth0", "10.77.0."}, {"eth1", "10.88.0."}}
	for i, ip := range res.IPs {
		if ip.Interface == nil || *ip.Interface < 0 || *ip.Interface >= len(res.Interfaces) {
			t.Fatalf("IP %d has invalid interface index %v (%d interfaces)", i, ip.Interface, len(res.Interfaces))
		}
		iface := res.Interfaces[*ip.Interface]
		if iface.Name != want[i].ifname || iface.Sandbox != netns {
			t.Errorf("IP %d (%s) is on %q sandbox %q, want %s in %s", i, ip.Address.String(), iface.Name, iface.Sandbox, want[i].ifname, netns)
		}
		if !strings.HasPrefix(ip.Address.IP.String(), want[i].prefix) {
			t.Errorf("IP %d = %s, want in %s0/24", i, ip.Address.String(), want[i].prefix)
		}
	}
	if len(res.Routes) != 1 || res.Routes[0].Dst.String() != "0.0.0.0/0" {
		t.Errorf("routes = %v, want eth0's default route only", res.Routes)
	}

	// The kernel: both links in the container, with their addresses; the
	// macvlan's arp_ignore set on eth1 (tuning got CNI_IFNAME=eth1).
	if got := testworld.Links(t, netns); !slices.Equal(got, []string{"eth0", "eth1"}) {
		t.Fatalf("links in netns = %v, want [eth0 eth1]", got)
	}
	for i, ifname := range []string{"eth0", "eth1"} {
		if got := testworld.Addrs(t, netns, ifname); len(got) != 1 || got[0] != res.IPs[i].Address.String() {
			t.Errorf("%s addresses = %v, want [%s]", ifname, got, res.IPs[i].Address.String())
		}
	}
	assertSysctl(t, netns, "net/ipv4/conf/eth1/arp_ignore", "1")
	assertSysctl(t, netns, "net/ipv4/conf/eth0/arp_ignore", "0")
	testworld.InNetns(t, netns, func() error {
		routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, rt := range routes {
			if rt.Dst == nil || rt.Dst.String() == "0.0.0.0/0" {
				if rt.Gw.String() != "10.77.0.1" {
					t.Errorf("default route via %s, want 10.77.0.1", rt.Gw)
				}
				return nil
			}
		}
		t.Errorf("no default route in netns: %v", routes)
		return nil
	})

	// Leases: one per network, for this container and its own ifname.
	if got := w.leases("svc"); len(got) != 1 || got[res.IPs[0].Address.IP.String()] != "alloc-1/eth0" {
		t.Errorf("svc leases = %v", got)
	}
	if got := w.leases("storage"); len(got) != 1 || got[res.IPs[1].Address.IP.String()] != "alloc-1/eth1" {
		t.Errorf("storage leases = %v", got)
	}

	// State: the plan, one result record per interface and the completion
	// mark, private.
	wantFiles := []string{"containers/alloc-1/complete.json", "containers/alloc-1/container.json", "containers/alloc-1/if-eth0.json", "containers/alloc-1/if-eth1.json", "locks/alloc-1.lock"}
	if got := w.stateFiles(); !slices.Equal(got, wantFiles) {
		t.Errorf("state files = %v, want %v", got, wantFiles)
	}
	assertMode(t, testworld.ContainerDir(w.StateDir, "alloc-1"), 0o700|os.ModeDir)
	assertMode(t, testworld.ResultFile(w.StateDir, "alloc-1", "eth1"), 0o600)
	var c struct {
		Kind       string `json:"kind"`
		Interfaces []struct {
			IfName  string          `json:"ifname"`
			Network string          `json:"network"`
			Config  json.RawMessage `json:"config"`
		} `json:"interfaces"`
		IfName string `json:"ifname"`
	}
	testworld.ReadJSON(t, testworld.PlanFile(w.StateDir, "alloc-1"), &c)
	if c.Kind != "nicmuxContainerV2" || len(c.Interfaces) != 2 || c.Interfaces[0].IfName != "eth0" || c.Interfaces[1].IfName != "eth1" ||
		c.Interfaces[1].Network != "storage" || !strings.Contains(string(c.Interfaces[1].Config), `"type":"macvlan"`) || c.IfName != "eth0" {
		t.Errorf("container record = %+v", c)
	}
	var done struct {
		Kind string `json:"kind"`
	}
	testworld.ReadJSON(t, testworld.CompleteFile(w.StateDir, "alloc-1"), &done)
	if done.Kind != "nicmuxCompleteV1" {
		t.Errorf("completion mark = %+v", done)
	}
	var rec struct {
		Network string          `json:"network"`
		Config  json.RawMessage `json:"config"`
		Result  json.RawMessage `json:"result"`
	}
	testworld.ReadJSON(t, testworld.ResultFile(w.StateDir, "alloc-1", "eth1"), &rec)
	if rec.Network != "storage" || !strings.Contains(string(rec.Config), `"type":"macvlan"`) || !strings.Contains(string(rec.Result), res.IPs[1].Address.IP.String()) {
		t.Errorf("eth1 record: network %q config %s result %s", rec.Network, rec.Config, rec.Result)
	}

	if err := w.check(l, r); err != nil {
		t.Fatalf("CHECK after ADD: %v", err)
	}

	if err := w.del(l, r); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if got := testworld.Links(t, netns); len(got) != 0 {
		t.Errorf("links left in netns after DEL: %v", got)
	}
	if got := w.leases("svc"); len(got) != 0 {
		t.Errorf("svc leases left after DEL: %v", got)
	}
	if got := w.leases("storage"); len(got) != 0 {
		t.Errorf("storage leases left after DEL: %v", got)
	}
	if got := w.stateFiles(); len(got) != 0 {
		t.Errorf("state left after DEL: %v", got)
	}
	if got := testworld.BridgePorts(t, w.Bridge); len(got) != 0 {
		t.Errorf("bridge ports left after DEL: %v", got)
	}
}

// TestIsolation shows what each chain is handed: its own CNI_IFNAME, and a
// prevResult holding only its own interface's result, on ADD and on CHECK.
func TestIsolation(t *testing.T) {
	w := newWorld(t)
	l := w.list(w.seed(), nil)
	netns := newNS(t)
	r := rt("iso-1", netns)
	r.Args = [][2]string{{"IgnoreUnknown", "true"}, {"NOMAD_JOB_ID", "web"}}

	w.mustAdd(l, r)
	if err := w.check(l, r); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	calls := w.calls()
	var seen []string
	for _, c := range calls {
		seen = append(seen, c.Command+":"+c.IfName)
		prev := prevResult(t, c)
		if prev == nil {
			t.Fatalf("%s on %s: recorder got no prevResult", c.Command, c.IfName)
		}
		for _, iface := range prev.Interfaces {
			if iface.Sandbox != "" && iface.Name != c.IfName {
				t.Errorf("%s on %s: prevResult holds another chain's interface %s", c.Command, c.IfName, iface.Name)
			}
		}
		wantNet := map[string]string{"10.77.0.": "eth0", "10.88.0.": "eth1"}
		for _, ip := range prev.IPs {
			for prefix, owner := range wantNet {
				if strings.HasPrefix(ip.Address.IP.String(), prefix) && owner != c.IfName {
					t.Errorf("%s on %s: prevResult holds %s's address %s", c.Command, c.IfName, owner, ip.Address.String())
				}
			}
		}
		if !strings.Contains(c.Args, "NOMAD_JOB_ID=web") {
			t.Errorf("%s on %s: CNI_ARGS %q lost the runtime's args", c.Command, c.IfName, c.Args)
		}
		if c.Netns != netns || c.ContainerID != "iso-1" {
			t.Errorf("%s on %s: netns %q container %q", c.Command, c.IfName, c.Netns, c.ContainerID)
		}
		var conf struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(c.Stdin, &conf)
		if wantName := map[string]string{"eth0": "svc", "eth1": "storage"}[c.IfName]; conf.Name != wantName {
			t.Errorf("%s on %s: network name %q, want %q", c.Command, c.IfName, conf.Name, wantName)
		}
	}
	sort.Strings(seen) // chains run in parallel
	if !slices.Equal(seen, []string{"ADD:eth0", "ADD:eth1", "CHECK:eth0", "CHECK:eth1"}) {
		t.Errorf("recorded calls = %v", seen)
	}
	if err := w.del(l, r); err != nil {
		t.Fatal(err)
	}
}

// TestSerialOrder: with "parallel": false the chains run in file order on
// ADD and CHECK, and in reverse order on DEL.
func TestSerialOrder(t *testing.T) {
	w := newWorld(t)
	l := w.list(w.seed(), map[string]any{"parallel": false})
	netns := newNS(t)
	r := rt("serial-1", netns)
	w.mustAdd(l, r)
	if err := w.check(l, r); err != nil {
		t.Fatal(err)
	}
	if err := w.del(l, r); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, c := range w.calls() {
		seen = append(seen, c.Command+":"+c.IfName)
	}
	if !slices.Equal(seen, []string{"ADD:eth0", "ADD:eth1", "CHECK:eth0", "CHECK:eth1", "DEL:eth1", "DEL:eth0"}) {
		t.Errorf("recorded calls = %v", seen)
	}
}

// TestParallelSharedResources: chains sharing a bridge and chains sharing
// an IPAM network, attached in parallel, on a bridge created by this very
// ADD, repeatedly: every ADD, CHECK and DEL passes and leases are distinct.
func TestParallelSharedResources(t *testing.T) {
	w := newWorld(t)
	path := w.writeYAML("shared.yaml", `interfaces:
  - ifname: eth0
    network: svc
    plugins: [{type: bridge, bridge: {{.Bridge}}, isGateway: true, ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.77.0.0/24}]]}}]
  - ifname: eth1
    network: svc
    plugins: [{type: bridge, bridge: {{.Bridge}}, ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.77.0.0/24}]]}}]
  - ifname: eth2
    network: svc
    plugins: [{type: bridge, bridge: {{.Bridge}}x, ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.77.0.0/24}]]}}]
  - ifname: eth3
    network: svc
    plugins: [{type: bridge, bridge: {{.Bridge}}y, ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.77.0.0/24}]]}}]
`)
	l := w.list(path, nil)
	for round := 0; round < 4; round++ {
		for _, br := range []string{w.Bridge, w.Bridge + "x", w.Bridge + "y"} {
			if link, err := netlink.LinkByName(br); err == nil {
				_ = netlink.LinkDel(link)
			}
		}
		netns := newNS(t)
		r := rt("shared-1", netns)
		res := w.mustAdd(l, r)
		seen := map[string]bool{}
		for _, ip := range res.IPs {
			seen[ip.Address.IP.String()] = true
		}
		if len(seen) != 4 || len(w.leases("svc")) != 4 {
			t.Errorf("round %d: addresses %v, leases %v", round, res.IPs, w.leases("svc"))
		}
		if err := w.check(l, r); err != nil {
			t.Errorf("round %d: CHECK: %v", round, err)
		}
		if err := w.del(l, r); err != nil {
			t.Fatalf("round %d: DEL: %v", round, err)
		}
		w.assertNothingLeft(netns, "svc")
	}
	for _, br := range []string{w.Bridge + "x", w.Bridge + "y"} {
		if link, err := netlink.LinkByName(br); err == nil {
			_ = netlink.LinkDel(link)
		}
	}
}

func assertSysctl(t *testing.T, netns, key, want string) {
	t.Helper()
	if got := testworld.Sysctl(t, netns, key); got != want {
		t.Errorf("sysctl %s = %s, want %s", key, got, want)
	}
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() & (os.ModePerm | os.ModeDir); got != want {
		t.Errorf("%s mode = %v, want %v", path, got, want)
	}
}

var _ = types100.Result{}
