package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"

	"github.com/nicmux/nicmux/test/netnsutil"
	"github.com/nicmux/nicmux/test/testworld"
)

// TestCheckCatchesBrokenInterface breaks eth1 in several ways; CHECK must
// fail naming eth1 and only eth1.
func TestCheckCatchesBrokenInterface(t *testing.T) {
	breakers := map[string]func(l netlink.Link) error{
		"deleted": func(l netlink.Link) error { return netlink.LinkDel(l) },
		"re-addressed": func(l netlink.Link) error {
			return testworld.ReplaceAddrs(&netlink.Handle{}, l, "10.88.0.200/24")
		},
		"down": func(l netlink.Link) error { return netlink.LinkSetDown(l) },
	}
	for name, breakIt := range breakers {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			l := w.list(w.seed(), nil)
			netns := newNS(t)
			r := rt("chk-1", netns)
			w.mustAdd(l, r)
			if err := w.check(l, r); err != nil {
				t.Fatalf("CHECK before breaking: %v", err)
			}
			testworld.InNetns(t, netns, func() error {
				link, err := netlink.LinkByName("eth1")
				if err != nil {
					return err
				}
				return breakIt(link)
			})
			err := w.check(l, r)
			if err == nil {
				t.Fatal("CHECK passed with eth1 " + name)
			}
			if !strings.Contains(err.Error(), "eth1: ") {
				t.Errorf("CHECK error does not name eth1: %v", err)
			}
			if strings.Contains(err.Error(), "eth0: ") {
				t.Errorf("CHECK error blames the healthy eth0: %v", err)
			}
			if err := w.del(l, r); err != nil {
				t.Fatalf("DEL after breaking eth1: %v", err)
			}
			w.assertNothingLeft(netns, "svc", "storage")
		})
	}
}

// TestCheckReportsEveryInterface: with both interfaces broken, one CHECK
// error names both.
func TestCheckReportsEveryInterface(t *testing.T) {
	w := newWorld(t)
	l := w.list(w.seed(), nil)
	netns := newNS(t)
	r := rt("chk-2", netns)
	w.mustAdd(l, r)
	testworld.InNetns(t, netns, func() error {
		for _, n := range []string{"eth0", "eth1"} {
			link, err := netlink.LinkByName(n)
			if err != nil {
				return err
			}
			if err := netlink.LinkSetDown(link); err != nil {
				return err
			}
		}
		return nil
	})
	err := w.check(l, r)
	if err == nil || !strings.Contains(err.Error(), "eth0: ") || !strings.Contains(err.Error(), "eth1: ") {
		t.Fatalf("CHECK error = %v, want both eth0 and eth1 named", err)
	}
	if err := w.del(l, r); err != nil {
		t.Fatal(err)
	}
}

// TestCheckDrift: CHECK verifies what ADD set up. A changed or deleted
// attachment file is logged as drift, never a failure, and DEL still
// releases exactly what ADD created.
func TestCheckDrift(t *testing.T) {
	w := newWorld(t)
	path := w.seed()
	l := w.list(path, nil)
	netns := newNS(t)
	r := rt("drift-1", netns)
	w.mustAdd(l, r)

	changed := strings.Replace(seedYAML, `arp_ignore: "1"`, `arp_ignore: "2"`, 1) + `  - ifname: eth2
    plugins: [{type: macvlan, master: {{.Master}}, ipam: {type: host-local, dataDir: {{.IPAMDir}}, ranges: [[{subnet: 10.66.0.0/24}]]}}]
`
	w.writeYAML("multi.yaml", changed)
	if err := w.check(l, r); err != nil {
		t.Fatalf("CHECK failed on drift: %v", err)
	}
	if b, _ := os.ReadFile(w.LogFile); !strings.Contains(string(b), "drift") {
		t.Errorf("drift not logged:\n%s", b)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := w.check(l, r); err != nil {
		t.Fatalf("CHECK failed with the attachment file deleted: %v", err)
	}
	if err := w.del(l, r); err != nil {
		t.Fatalf("DEL with the attachment file deleted: %v", err)
	}
	w.assertNothingLeft(netns, "svc", "storage")
	if got := w.leases("multi-eth2"); len(got) != 0 {
		t.Errorf("eth2 (never attached) has leases: %v", got)
	}
}

// TestDelIdempotent: DEL twice; DEL after the namespace is gone; DEL of a
// container nicmux never saw (falls back to the attachment file's chains).
func TestDelIdempotent(t *testing.T) {
	w := newWorld(t)
	l := w.list(w.seed(), nil)

	t.Run("twice", func(t *testing.T) {
		netns := newNS(t)
		r := rt("del-1", netns)
		w.mustAdd(l, r)
		for i := 0; i < 2; i++ {
			if err := w.del(l, r); err != nil {
				t.Fatalf("DEL %d: %v", i+1, err)
			}
		}
		w.assertNothingLeft(netns, "svc", "storage")
	})

	t.Run("netns gone", func(t *testing.T) {
		netns := newNS(t)
		r := rt("del-2", netns)
		w.mustAdd(l, r)
		if err := netnsutil.DestroyAt(netns); err != nil {
			t.Fatal(err)
		}
		if err := w.del(l, r); err != nil {
			t.Fatalf("DEL with the netns gone: %v", err)
		}
		r.NetNS = ""
		if err := w.del(l, r); err != nil {
			t.Fatalf("DEL with no netns at all: %v", err)
		}
		for _, n := range []string{"svc", "storage"} {
			if got := w.leases(n); len(got) != 0 {
				t.Errorf("%s leases left: %v", n, got)
			}
		}
		if got := w.stateFiles(); len(got) != 0 {
			t.Errorf("state left: %v", got)
		}
		if got := testworld.BridgePorts(t, w.Bridge); len(got) != 0 {
			t.Errorf("bridge ports left: %v", got)
		}
	})

	t.Run("no state", func(t *testing.T) {
		netns := newNS(t)
		before := len(w.calls())
		if err := w.del(l, rt("never-added", netns)); err != nil {
			t.Fatalf("DEL of an unknown container: %v", err)
		}
		var seen []string
		for _, c := range w.calls()[before:] {
			seen = append(seen, c.Command+":"+c.IfName+":"+c.ContainerID)
		}
		if !slices.Equal(seen, []string{"DEL:eth1:never-added", "DEL:eth0:never-added"}) {
			t.Errorf("fallback DEL calls = %v, want eth1 then eth0", seen)
		}
		if got := w.stateFiles(); len(got) != 0 {
			t.Errorf("state left: %v", got)
		}
	})

	// A DEL repeated after the operator removed the network: nicmux records
	// before it acts, so without state it holds nothing; failing would make
	// the runtime retry forever.
	t.Run("no state and no attachment file", func(t *testing.T) {
		missing := w.list(filepath.Join(w.Dir, "gone.yaml"), nil)
		if err := w.del(missing, rt("never-added-2", "")); err != nil {
			t.Fatalf("DEL: %v", err)
		}
		if b, _ := os.ReadFile(w.LogFile); !strings.Contains(string(b), "nothing to release") {
			t.Errorf("the log does not say why DEL did nothing:\n%s", b)
		}
	})
}

// TestConcurrentContainers attaches, checks and deletes many containers at
// once on the same bridge and IPAM networks.
func TestConcurrentContainers(t *testing.T) {
	const n = 64 // issue 5: 64 containers at once
	w := newWorld(t)
	l := w.list(w.seed(), nil)
	nets := make([]string, n)
	for i := range nets {
		nets[i] = newNS(t)
	}
	run := func(verb string, f func(i int) error) {
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				errs[i] = f(i)
			}(i)
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("%s c%d: %v", verb, i, err)
			}
		}
	}
	// The bridge plugin pins the bridge's MAC on each ADD from what it read
	// before attaching; ADDs racing to create the bridge can pin different
	// MACs, and the bridge's own CHECK then fails for the earlier ones. A
	// first container creates the bridge, as on any running client.
	first := newNS(t)
	w.mustAdd(l, rt("first", first))
	defer func() {
		if err := w.del(l, rt("first", first)); err != nil {
			t.Error(err)
		}
	}()
	ips := make([]string, n)
	run("ADD", func(i int) error {
		res, err := w.add(l, rt(fmt.Sprintf("c%d", i), nets[i]))
		if err == nil {
			ips[i] = res.IPs[0].Address.IP.String() + "," + res.IPs[1].Address.IP.String()
		}
		return err
	})
	if t.Failed() {
		t.FailNow()
	}
	sorted := append([]string(nil), ips...)
	sort.Strings(sorted)
	for i := 1; i < n; i++ {
		if sorted[i] == sorted[i-1] {
			t.Errorf("two containers share addresses %s", sorted[i])
		}
	}
	if got := len(w.leases("svc")); got != n+1 {
		t.Errorf("svc leases = %d, want %d", got, n+1)
	}
	if got := len(testworld.BridgePorts(t, w.Bridge)); got != n+1 {
		t.Errorf("bridge ports = %d, want %d", got, n+1)
	}
	run("CHECK", func(i int) error { return w.check(l, rt(fmt.Sprintf("c%d", i), nets[i])) })
	run("DEL", func(i int) error { return w.del(l, rt(fmt.Sprintf("c%d", i), nets[i])) })
	for i := range nets {
		if got := testworld.Links(t, nets[i]); len(got) != 0 {
			t.Errorf("c%d links left: %v", i, got)
		}
	}
	for _, nw := range []string{"svc", "storage"} {
		if got := w.leases(nw); len(got) != 1 {
			t.Errorf("%s leases left besides the first container's: %v", nw, got)
		}
	}
	wantState := []string{"containers/first/complete.json", "containers/first/container.json", "containers/first/if-eth0.json", "containers/first/if-eth1.json", "locks/first.lock"}
	if got := w.stateFiles(); !slices.Equal(got, wantState) {
		t.Errorf("state left: %v", got)
	}
	if got := testworld.BridgePorts(t, w.Bridge); len(got) != 1 {
		t.Errorf("bridge ports left besides the first container's: %v", got)
	}
}

// TestCorruptState: a truncated or emptied record is reported, naming the
// file, never read as "nothing there", and never pins the container: DEL
// releases every interface from what can still be read (the plan, when a
// result record is torn; the result records and the attachment file, when
// the plan is) and ends with no state.
func TestCorruptState(t *testing.T) {
	w := newWorld(t)
	l := w.list(w.seed(), nil)
	netns := newNS(t)
	r := rt("corrupt-1", netns)
	w.mustAdd(l, r)
	eth1 := testworld.ResultFile(w.StateDir, "corrupt-1", "eth1")
	good, err := os.ReadFile(eth1)
	if err != nil {
		t.Fatal(err)
	}
	testworld.WriteFile(t, eth1, string(good[:len(good)/2]))

	err = w.check(l, r)
	testworld.WantCNIError(t, err, types.ErrIOFailure, "eth1: ", eth1, "corrupt")

	// DEL releases both: eth1 with its planned chain, without prevResult.
	if err := w.del(l, r); err != nil {
		t.Fatalf("DEL with eth1's result torn: %v", err)
	}
	w.assertNothingLeft(netns, "svc", "storage")

	// An empty plan: the container is still attached, so an ADD is refused
	// naming the record; DEL releases it from the result records.
	w.mustAdd(l, r)
	cpath := testworld.PlanFile(w.StateDir, "corrupt-1")
	testworld.WriteFile(t, cpath, "")
	_, err = w.add(l, r)
	testworld.WantCNIError(t, err, 100, "already attached", cpath, "empty")
	if err := w.del(l, r); err != nil {
		t.Fatalf("DEL with the plan emptied: %v", err)
	}
	w.assertNothingLeft(netns, "svc", "storage")
}

// TestBadConfig: configuration errors reach the runtime with the spec's
// code and a message naming the file, line, column and field.
func TestBadConfig(t *testing.T) {
	w := newWorld(t)
	netns := newNS(t)
	cases := []struct {
		name, yaml string
		code       uint
		parts      []string
	}{
		{"unknown key", "interfaces:\n  - ifname: eth0\n    plugin: []\n", 7, []string{"bad.yaml:3:5", "interfaces[0].plugin", "unknown field"}},
		{"both", "interfaces:\n  - plugins: [{type: bridge}]\n    conflist: x.conflist\n", 7, []string{"bad.yaml:3:5", "both plugins and conflist"}},
		{"neither", "interfaces:\n  - ifname: eth0\n", 7, []string{"bad.yaml:2:5", "neither plugins nor conflist"}},
		{"duplicate ifname", "interfaces:\n  - plugins: [{type: bridge}]\n  - ifname: eth0\n    plugins: [{type: bridge}]\n", 7, []string{"bad.yaml:3:5", `duplicate interface "eth0"`}},
		{"bad ifname", "interfaces:\n  - ifname: eth0\n    plugins: [{type: bridge}]\n  - ifname: a:b\n    plugins: [{type: bridge}]\n", 7, []string{"bad.yaml:4:13", "interfaces[1].ifname"}},
		{"empty list", "interfaces: []\n", 7, []string{"bad.yaml:1:13", "interfaces", "empty"}},
		{"no type", "interfaces:\n  - plugins: [{bridge: br0}]\n", 7, []string{"bad.yaml:2:15", "interfaces[0].plugins[0].type"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(w.Dir, "bad.yaml")
			testworld.WriteFile(t, path, c.yaml)
			_, err := w.add(w.list(path, nil), rt("bad-1", netns))
			testworld.WantCNIError(t, err, c.code, c.parts...)
			if got := w.stateFiles(); len(got) != 0 {
				t.Errorf("state left by a refused ADD: %v", got)
			}
		})
	}
	t.Run("missing attachments", func(t *testing.T) {
		l := w.list("", nil)
		_, err := w.add(l, rt("bad-2", netns))
		testworld.WantCNIError(t, err, types.ErrInvalidNetworkConfig, "attachments", "required")
	})
	t.Run("attachments not a string", func(t *testing.T) {
		l := w.list("x", map[string]any{"attachments": 42})
		_, err := w.add(l, rt("bad-3", netns))
		testworld.WantCNIError(t, err, types.ErrDecodingFailure, "attachments")
	})
	t.Run("missing plugin binary", func(t *testing.T) {
		path := filepath.Join(w.Dir, "missing.yaml")
		testworld.WriteFile(t, path, "interfaces:\n  - plugins: [{type: no-such-plugin}]\n")
		_, err := w.add(w.list(path, nil), rt("bad-4", netns))
		testworld.WantCNIError(t, err, types.ErrInvalidNetworkConfig, "eth0: plugin no-such-plugin")
		if strings.Contains(err.Error(), "rollback") {
			t.Errorf("a plugin that never ran was rolled back: %v", err)
		}
		if got := w.stateFiles(); len(got) != 0 {
			t.Errorf("state left: %v", got)
		}
	})
}

// TestBareRun: Nomad fingerprints nicmux by running it with no arguments
// and no CNI_COMMAND; it prints the release and the commit `nicmux version`
// reports.
func TestBareRun(t *testing.T) {
	cmd := exec.Command(testworld.NicmuxBin())
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bare nicmux: %v\n%s", err, out)
	}
	j, err := exec.Command(testworld.NicmuxBin(), "version", "-json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Version, Commit string }
	if err := json.Unmarshal(j, &v); err != nil || v.Version == "" || v.Commit == "" {
		t.Fatalf("nicmux version -json: %s (%v)", j, err)
	}
	about := "CNI nicmux plugin " + v.Version
	if hash, dirty, _ := strings.Cut(v.Commit, "-"); v.Commit != "unknown" {
		about += " (commit " + hash[:min(12, len(hash))] + strings.TrimSuffix("-"+dirty, "-") + ")"
	}
	want := about + "\nCNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0\n"
	if string(out) != want {
		t.Errorf("bare output %q, want %q", out, want)
	}
}
