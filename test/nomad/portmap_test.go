package nomad

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/nicmux/nicmux/test/testworld"
)

// TestPortMappings: Nomad's port mappings (one per port and protocol) reach
// the chain that declares portMappings (eth0's: portmap, and a recorder
// beside it) and not eth1's chain; the DNAT rules go to eth0's address.
func TestPortMappings(t *testing.T) {
	w := newWorld(t)
	w.install(w.withRecorder("multi", "eth0", map[string]bool{"portMappings": true}), w.withRecorder("multi", "eth1", nil))
	a := w.newAlloc(nil)
	res := w.mustSetup(a)
	w.wantAttached(a, res, "multi")
	eth0 := w.wantAllocAddress(res, a, "eth0")
	eth1 := ipOf(testworld.Addrs(t, a.NetNS, "eth1")[0])

	w.wantMappingsOnEth0Only(a, w.callsByIf("ADD"))
	w.wantDNAT(a, eth0)
	if got := testworld.Iptables(t, "nat", "DNAT", "--to-destination "+eth1+":"); len(got) != 0 {
		t.Errorf("DNAT rules to eth1's %s: %v", eth1, got)
	}
	if got := testworld.Iptables(t, "nat", a.ID); len(got) == 0 {
		t.Errorf("no nat rule names the allocation: the leak checks, which look for its ID, would miss portmap's rules")
	}

	failIf(t, w.node.remove(a), "remove")
	w.wantMappingsOnEth0Only(a, w.callsByIf("DEL"))
	w.assertClean(a, networks(t, "multi")...)
}

// wantMappingsOnEth0Only asserts that the recorders saw one call per chain,
// with Nomad's port mappings on eth0's only, and Nomad's CNI_ARGS on both.
func (w *world) wantMappingsOnEth0Only(a *alloc, calls map[string]testworld.Call) {
	w.t.Helper()
	if len(calls) != 2 {
		w.t.Fatalf("recorded calls = %v, want one on eth0 and one on eth1", calls)
	}
	if got, want := portMappings(w.t, calls["eth0"]), normJSON(a.Ports); got != want {
		w.t.Errorf("eth0's chain got portMappings %s, want Nomad's %s", got, want)
	}
	if got := portMappings(w.t, calls["eth1"]); got != "" {
		w.t.Errorf("eth1's chain got portMappings %s, want none", got)
	}
	for ifname, c := range calls {
		for _, kv := range []string{"IgnoreUnknown=true", "NOMAD_ALLOC_ID=" + a.ID, "NOMAD_JOB_ID=" + a.JobID, "NOMAD_GROUP_NAME=" + a.Group} {
			if !strings.Contains(c.Args, kv) {
				w.t.Errorf("%s's chain got CNI_ARGS %q, without %s", ifname, c.Args, kv)
			}
		}
	}
}

// wantDNAT asserts that the allocation's DNAT rules are exactly one per
// port and protocol, from its host port to ip and the job's port.
func (w *world) wantDNAT(a *alloc, ip string) {
	w.t.Helper()
	var want []string
	for _, p := range a.Ports {
		want = append(want, fmt.Sprintf("%s:%d", ip, p.ContainerPort))
		rules := testworld.Iptables(w.t, "nat", "-j DNAT", "-p "+p.Protocol, fmt.Sprintf("--dport %d ", p.HostPort),
			fmt.Sprintf("--to-destination %s:%d", ip, p.ContainerPort))
		if len(rules) != 1 {
			w.t.Errorf("%s DNAT rules from %d to %s:%d = %v, want one", p.Protocol, p.HostPort, ip, p.ContainerPort, rules)
		}
	}
	sort.Strings(want)
	if got := dnatTargets(w.t, a); !slices.Equal(got, want) {
		w.t.Errorf("DNAT targets = %v, want %v", got, want)
	}
}

// portMappings returns the runtimeConfig.portMappings a recorded call was
// handed, as JSON, or "" if none.
func portMappings(t *testing.T, c testworld.Call) string {
	t.Helper()
	var conf struct {
		RuntimeConfig struct {
			PortMappings json.RawMessage `json:"portMappings"`
		} `json:"runtimeConfig"`
	}
	failIf(t, c.Decode(&conf), "decoding a recorded call")
	if len(conf.RuntimeConfig.PortMappings) == 0 {
		return ""
	}
	return normJSON(conf.RuntimeConfig.PortMappings)
}

// normJSON returns v as JSON with object keys sorted, so that encodings of
// the same data compare equal.
func normJSON(v any) string {
	b, ok := v.(json.RawMessage)
	if !ok {
		b = []byte(toJSON(v))
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		return "invalid JSON: " + err.Error()
	}
	return toJSON(generic)
}

// callsByIf returns the recorder's calls for one verb by interface name
// (chains may run in parallel: the log's order is not the file's).
func (w *world) callsByIf(verb string) map[string]testworld.Call {
	w.t.Helper()
	out := map[string]testworld.Call{}
	for _, c := range w.calls(verb) {
		if _, dup := out[c.IfName]; dup {
			w.t.Errorf("the recorder on %s was called twice for %s", c.IfName, verb)
		}
		out[c.IfName] = c
	}
	return out
}

// calls reads the recorder's log for one verb.
func (w *world) calls(verb string) []testworld.Call {
	w.t.Helper()
	all, err := w.Calls()
	failIf(w.t, err, "reading the recorder's log")
	return slices.DeleteFunc(all, func(c testworld.Call) bool { return c.Command != verb })
}
