package nomad

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	gocni "github.com/containerd/go-cni"

	"github.com/nicmux/nicmux/test/testworld"
)

// leases returns the host-local leases of a network: IP -> "allocID/ifname".
func (w *world) leases(network string) map[string]string {
	w.t.Helper()
	leases, err := w.Leases(network)
	failIf(w.t, err, "reading leases")
	return leases
}

// allocLeases returns the leases of a network held by an allocation.
func (w *world) allocLeases(network, allocID string) map[string]string {
	w.t.Helper()
	return testworld.HeldBy(w.leases(network), allocID)
}

// wantOneLease asserts that the allocation holds exactly one lease in a
// network, for ifname, and returns its IP.
func (w *world) wantOneLease(network, allocID, ifname string) string {
	w.t.Helper()
	got := w.allocLeases(network, allocID)
	if len(got) != 1 {
		w.t.Errorf("network %s leases of %s = %v, want exactly one, for %s", network, allocID, got, ifname)
		return ""
	}
	for ip, owner := range got {
		if owner != allocID+"/"+ifname {
			w.t.Errorf("network %s lease %s is held by %s, want %s/%s", network, ip, owner, allocID, ifname)
		}
		return ip
	}
	return ""
}

// stateFiles lists what the state folder holds for an allocation (see
// testworld.StateLeft), relative to the folder.
func (w *world) stateFiles(allocID string) []string {
	w.t.Helper()
	left, err := testworld.StateLeft(w.StateDir)
	failIf(w.t, err, "listing the state folder")
	var out []string
	for _, f := range left {
		if strings.Contains(f, allocID) {
			out = append(out, f)
		}
	}
	return out
}

// containerRecord is the part of nicmux's container.json (its plan) the
// suite reads, and whether complete.json marks the ADD complete.
type containerRecord struct {
	ContainerID    string `json:"containerID"`
	AttachmentFile string `json:"attachmentFile"`
	Set            string `json:"set"`
	Planned        []struct {
		IfName string `json:"ifname"`
	} `json:"interfaces"`
	Interfaces []string `json:"-"`
	Complete   bool     `json:"-"`
}

func (w *world) container(allocID string) containerRecord {
	w.t.Helper()
	var c containerRecord
	testworld.ReadJSON(w.t, testworld.PlanFile(w.StateDir, allocID), &c)
	for _, p := range c.Planned {
		c.Interfaces = append(c.Interfaces, p.IfName)
	}
	_, err := os.Stat(testworld.CompleteFile(w.StateDir, allocID))
	c.Complete = err == nil
	return c
}

// wantState asserts the allocation's complete state: one record per
// interface, the set ADD chose, and the lock.
func (w *world) wantState(allocID, set string, ifnames ...string) {
	w.t.Helper()
	want := []string{filepath.Join("containers", allocID, "complete.json"), filepath.Join("containers", allocID, "container.json")}
	for _, n := range ifnames {
		want = append(want, filepath.Join("containers", allocID, "if-"+n+".json"))
	}
	want = append(want, filepath.Join("locks", allocID+".lock"))
	sort.Strings(want)
	if got := w.stateFiles(allocID); strings.Join(got, " ") != strings.Join(want, " ") {
		w.t.Errorf("state files = %v, want %v", got, want)
	}
	c := w.container(allocID)
	if !c.Complete || c.Set != set || strings.Join(c.Interfaces, " ") != strings.Join(ifnames, " ") {
		w.t.Errorf("container record = %+v, want complete, set %q, interfaces %v", c, set, ifnames)
	}
	if file := set; file != "" && filepath.Base(c.AttachmentFile) != file+".yaml" {
		w.t.Errorf("container record's attachment file = %s, want %s.yaml", c.AttachmentFile, file)
	}
}

// allocRule reports whether a line of the nat table belongs to an
// allocation: it names its ID (portmap's comments), or it is a DNAT rule
// of one of its host ports.
func allocRule(a *alloc) func(line string) bool {
	return func(line string) bool {
		return strings.Contains(line, a.ID) || strings.Contains(line, "DNAT") && slices.ContainsFunc(a.Ports, func(p gocni.PortMapping) bool {
			return strings.Contains(line, fmt.Sprintf("--dport %d ", p.HostPort))
		})
	}
}

// allocNATRules returns the lines of the nat table that belong to an
// allocation (allocRule).
func allocNATRules(t *testing.T, a *alloc) []string {
	t.Helper()
	mine := allocRule(a)
	return slices.DeleteFunc(testworld.Iptables(t, "nat"), func(l string) bool { return !mine(l) })
}

// dnatTargets returns the --to-destination of the allocation's DNAT rules,
// one per rule, sorted.
func dnatTargets(t *testing.T, a *alloc) []string {
	t.Helper()
	var out []string
	for _, r := range allocNATRules(t, a) {
		if _, dst, ok := strings.Cut(r, "--to-destination "); ok && strings.Contains(r, "-j DNAT") {
			out = append(out, strings.Fields(dst)[0])
		}
	}
	sort.Strings(out)
	return out
}

// cachedResults lists libcni's cached results for an allocation: the files
// Nomad's CHECK on restore reads.
func cachedResults(t *testing.T, allocID string) []string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join("/var/lib/cni/results", "*-"+allocID+"-*"))
	failIf(t, err, "listing libcni's cache")
	return matches
}

// assertAllocGone checks that an allocation left nothing of its own: no
// link in its netns, no lease in the networks, no state, no nat rule, no
// cached result.
func (w *world) assertAllocGone(a *alloc, networks ...string) {
	w.t.Helper()
	w.assertNoneOf(a, w.StateDir, networks)
}

// assertResourcesGone checks that an allocation holds no link in its
// netns, no lease in the networks, no nat rule and no cached result;
// nicmux's state is not looked at.
func (w *world) assertResourcesGone(a *alloc, networks ...string) {
	w.t.Helper()
	w.assertNoneOf(a, "", networks)
}

// assertNoneOf checks that the allocation left nothing in the places
// assertAllocGone names, its state only when stateDir is set.
func (w *world) assertNoneOf(a *alloc, stateDir string, networks []string) {
	w.t.Helper()
	testworld.WantNoLeaks(w.t, testworld.Census{Netns: []string{a.NetNS}, IPAMDir: w.IPAMDir, Networks: networks,
		StateDir: stateDir, Owner: a.ID, Tables: []string{"nat"}, Rule: allocRule(a)})
	if got := cachedResults(w.t, a.ID); len(got) != 0 {
		w.t.Errorf("libcni cache left: %v", got)
	}
}

// assertClean checks that an allocation left nothing and that the bridge
// has no port: for tests whose world has no other allocation.
func (w *world) assertClean(a *alloc, networks ...string) {
	w.t.Helper()
	w.assertAllocGone(a, networks...)
	w.wantBridgePorts(0)
}

// wantAllocAddress asserts that Nomad, at every release the leg models
// (nomadAddress), reports ifname's address in the netns as the
// allocation's, and no IPv6 address (the examples have none). It returns
// that address.
func (w *world) wantAllocAddress(res *gocni.Result, a *alloc, ifname string) string {
	w.t.Helper()
	addrs := testworld.Addrs(w.t, a.NetNS, ifname)
	if len(addrs) != 1 {
		w.t.Fatalf("%s addresses in the netns = %v, want one", ifname, addrs)
	}
	want := ipOf(addrs[0])
	for _, release := range leg.Releases {
		addr, addr6, err := nomadAddress(res, release)
		if err != nil || addr != want || addr6 != "" {
			w.t.Errorf("Nomad %s reports address %q, IPv6 address %q (%v); want %s's %s and none (result %s)",
				release, addr, addr6, err, ifname, want, toJSON(res.Interfaces))
		}
	}
	return want
}

func containsAny(s string, parts ...string) bool {
	for _, p := range parts {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// wantBridgePorts asserts that the bridge has n ports. A veth whose peer
// was in a destroyed netns goes away only when the kernel has cleaned the
// namespace up, which it does in the background: wait for that first.
func (w *world) wantBridgePorts(n int) {
	w.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := testworld.BridgePorts(w.t, w.Bridge)
		if len(got) == n {
			return
		}
		if time.Now().After(deadline) {
			w.t.Errorf("bridge ports = %v, want %d", got, n)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
