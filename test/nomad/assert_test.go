package nomad

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	gocni "github.com/containerd/go-cni"
	"github.com/containernetworking/cni/pkg/types"
)

// leases returns the host-local leases of a network: IP -> "allocID/ifname".
func (w *world) leases(network string) map[string]string {
	w.t.Helper()
	dir := filepath.Join(w.IPAMDir, network)
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return map[string]string{}
	}
	failIf(w.t, err, "reading leases")
	out := map[string]string{}
	for _, e := range entries {
		if e.Name() == "lock" || strings.HasPrefix(e.Name(), "last_reserved_ip") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		failIf(w.t, err, "reading lease")
		out[e.Name()] = strings.Join(strings.Fields(string(b)), "/")
	}
	return out
}

// allocLeases returns the leases of a network held by an allocation.
func (w *world) allocLeases(network, allocID string) map[string]string {
	w.t.Helper()
	out := map[string]string{}
	for ip, owner := range w.leases(network) {
		if strings.HasPrefix(owner, allocID+"/") {
			out[ip] = owner
		}
	}
	return out
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

// stateFiles lists the files of the state folder that belong to an
// allocation, relative to the folder.
func (w *world) stateFiles(allocID string) []string {
	w.t.Helper()
	var out []string
	_ = filepath.Walk(w.StateDir, func(path string, info os.FileInfo, err error) error {
		rel, _ := filepath.Rel(w.StateDir, path)
		if err == nil && !info.IsDir() && strings.Contains(rel, allocID) {
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
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
	dir := filepath.Join(w.StateDir, "containers", allocID)
	readJSON(w.t, filepath.Join(dir, "container.json"), &c)
	for _, p := range c.Planned {
		c.Interfaces = append(c.Interfaces, p.IfName)
	}
	_, err := os.Stat(filepath.Join(dir, "complete.json"))
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

// natRules returns the lines of `iptables-save -t nat` in the test host's
// namespace that contain every one of parts.
func natRules(t *testing.T, parts ...string) []string {
	t.Helper()
	out, err := exec.Command("iptables-save", "-t", "nat").CombinedOutput()
	failIf(t, err, "iptables-save: "+string(out))
	var rules []string
next:
	for _, line := range strings.Split(string(out), "\n") {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue next
			}
		}
		if strings.HasPrefix(line, "-A ") {
			rules = append(rules, line)
		}
	}
	return rules
}

// allocNATRules returns the nat rules that belong to an allocation: those
// naming its ID (portmap's comments) and the DNAT rules of its host ports.
func allocNATRules(t *testing.T, a *alloc) []string {
	t.Helper()
	rules := natRules(t, a.ID)
	seen := map[int32]bool{}
	for _, p := range a.Ports {
		if !seen[p.HostPort] {
			seen[p.HostPort] = true
			rules = append(rules, natRules(t, "DNAT", fmt.Sprintf("--dport %d ", p.HostPort))...)
		}
	}
	return rules
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
	w.assertResourcesGone(a, networks...)
	if got := w.stateFiles(a.ID); len(got) != 0 {
		w.t.Errorf("state left: %v", got)
	}
}

// assertResourcesGone checks that an allocation holds no link in its
// netns, no lease in the networks, no nat rule and no cached result;
// nicmux's state is not looked at.
func (w *world) assertResourcesGone(a *alloc, networks ...string) {
	w.t.Helper()
	if _, err := os.Stat(a.NetNS); err == nil {
		if got := nsLinks(w.t, a.NetNS); len(got) != 0 {
			w.t.Errorf("links left in the netns: %v", got)
		}
	}
	for _, n := range networks {
		if got := w.allocLeases(n, a.ID); len(got) != 0 {
			w.t.Errorf("leases left in %s: %v", n, got)
		}
	}
	if got := allocNATRules(w.t, a); len(got) != 0 {
		w.t.Errorf("iptables nat rules left: %v", got)
	}
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

// cniCode returns the CNI error code carried by err, or 0.
func cniCode(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// wantCNIError asserts that err is a CNI error with code whose message
// contains every one of parts.
func wantCNIError(t *testing.T, err error, code uint, parts ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("want a CNI error (code %d) containing %q, got success", code, parts)
		return
	}
	if got := cniCode(err); got != code {
		t.Errorf("error code = %d, want %d (error: %v)", got, code, err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

// wantAllocAddress asserts that Nomad, at every release the leg models
// (nomadAddress), reports ifname's address in the netns as the
// allocation's, and no IPv6 address (the examples have none). It returns
// that address.
func (w *world) wantAllocAddress(res *gocni.Result, a *alloc, ifname string) string {
	w.t.Helper()
	addrs := nsAddrs(w.t, a.NetNS, ifname)
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

func equal(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

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
		got := bridgePorts(w.t, w.Bridge)
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
