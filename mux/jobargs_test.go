package mux

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/nicmux/nicmux/delegate/delegatetest"
	"github.com/nicmux/nicmux/ns"
)

// jobYAML: eth0's alpha declares ips (and portMappings), eth1's beta ips
// and mac, beta2 mac only, eth2's gamma nothing.
const jobYAML = `interfaces:
  - ifname: eth0
    plugins:
      - {type: alpha, capabilities: {ips: true, portMappings: true}}
      - {type: alpha2}
  - ifname: eth1
    network: storage
    plugins:
      - {type: beta, capabilities: {ips: true, mac: true}, ipam: {type: static}}
      - {type: beta2, capabilities: {mac: true}}
  - ifname: eth2
    plugins:
      - {type: gamma}
`

// Nomad 1.9.4+'s arguments, and the job's for eth1.
const (
	nomadIdentity = "IgnoreUnknown=true;NOMAD_REGION=global;NOMAD_NAMESPACE=backend;NOMAD_JOB_ID=db;NOMAD_GROUP_NAME=db;NOMAD_ALLOC_ID=" + testID
	eth1Args      = "NICMUX_IPS_eth1=10.40.0.17/24,fd00:40::17/64;NICMUX_MAC_eth1=02:00:0A:28:00:11"
	portMaps      = `[{"hostPort":20001,"containerPort":8080,"protocol":"tcp"}]`
)

// withRuntimeConfig is ADD's CmdArgs with the runtime's port mappings in
// nicmux's configuration, as libcni injects them.
func (h *harness) withRuntimeConfig(a *skel.CmdArgs) *skel.CmdArgs {
	a.StdinData = bytes.Replace(a.StdinData, []byte(`"type":"nicmux",`),
		[]byte(`"type":"nicmux","capabilities":{"portMappings":true},"runtimeConfig":{"portMappings":`+portMaps+`},`), 1)
	return a
}

// runtimeConfig returns a call's runtimeConfig, each value as JSON text.
func runtimeConfig(t *testing.T, c delegatetest.Call) map[string]string {
	t.Helper()
	raw, ok := c.Conf["runtimeConfig"]
	if !ok {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: runtimeConfig %s: %v", c, raw, err)
	}
	out := map[string]string{}
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

// wantEth1Args is what each plugin of jobYAML gets with eth1Args: the job's
// arguments reach eth1's chain only, each plugin those it declares.
var wantEth1Args = map[string]map[string]string{
	"alpha":  {"portMappings": portMaps}, // declares ips, but the job gave eth0 none
	"alpha2": nil,
	"beta":   {"ips": `["10.40.0.17/24","fd00:40::17/64"]`, "mac": `"02:00:0a:28:00:11"`},
	"beta2":  {"mac": `"02:00:0a:28:00:11"`},
	"gamma":  nil,
}

func assertRuntimeConfigs(t *testing.T, verb string, calls []delegatetest.Call, wantArgs string) {
	t.Helper()
	if len(calls) != 5 {
		t.Fatalf("%s calls = %v, want one per plugin", verb, delegatetest.Summary(calls))
	}
	for _, c := range calls {
		if got, want := runtimeConfig(t, c), wantEth1Args[c.Plugin]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: runtimeConfig = %v, want %v", c, got, want)
		}
		if c.Args != wantArgs {
			t.Errorf("%s: CNI_ARGS = %q, want %q (the per-interface keys reach no delegate as such)", c, c.Args, wantArgs)
		}
	}
}

// TestJobArgsReachTheirChainOnly: NICMUX_IPS_eth1 and NICMUX_MAC_eth1
// become eth1's ips and mac capability arguments, handed to the plugins of
// eth1's chain that declare them and to no other chain; ADD records them
// with eth1, and CHECK and DEL, which Nomad calls without the job's
// arguments, use the recorded ones.
func TestJobArgsReachTheirChainOnly(t *testing.T) {
	modes(t, func(t *testing.T, h *harness) {
		h.write("multi.yaml", jobYAML)
		h.mustAdd(h.withRuntimeConfig(h.args(eth1Args + ";" + nomadIdentity)))
		assertRuntimeConfigs(t, "ADD", h.fake.CallsOf("ADD"), nomadIdentity)

		rec := h.mustRecord()
		for _, it := range rec.Interfaces {
			if it.CNIArgs != nomadIdentity {
				t.Errorf("%s: recorded CNI_ARGS %q, want %q", it.IfName, it.CNIArgs, nomadIdentity)
			}
			var keys []string
			for k := range it.CapabilityArgs {
				keys = append(keys, k)
			}
			want := map[string]string{"eth0": "[portMappings]", "eth1": "[ips mac portMappings]", "eth2": "[portMappings]"}[it.IfName]
			if got := sortedString(keys); got != want {
				t.Errorf("%s: recorded capability arguments %v, want %s", it.IfName, keys, want)
			}
		}

		// CHECK from Nomad gets the job's arguments again, changed or not:
		// the recorded ones count. (The netlink check fails on the
		// harness's fake namespace; the delegates' CHECK runs anyway.)
		h.fake.Reset()
		check := h.withRuntimeConfig(h.args("IgnoreUnknown=true;NICMUX_IPS_eth1=10.9.9.9/24"))
		err := h.p.Check(context.Background(), check)
		if err == nil || strings.Count(err.Error(), "plugin ") != strings.Count(err.Error(), "plugin nicmux (netlink check): ") {
			t.Errorf("CHECK = %v, want the netlink check's failure alone", err)
		}
		assertRuntimeConfigs(t, "CHECK", h.fake.CallsOf("CHECK"), nomadIdentity)

		h.fake.Reset()
		if err := h.del(h.args("")); err != nil {
			t.Fatalf("DEL: %v", err)
		}
		assertRuntimeConfigs(t, "DEL", h.fake.CallsOf("DEL"), nomadIdentity)
		h.assertNoState()
	})
}

func sortedString(s []string) string {
	slices.Sort(s)
	return "[" + strings.Join(s, " ") + "]"
}

// TestJobArgsRefused: an argument for an interface the set does not have,
// one that does not parse, one for a chain where no plugin declares the
// capability, an unknown NICMUX_ key, and a job the set's allow rule does
// not let in: each is a code-7 error naming the key and the interface (or
// the namespace and the set), before any delegate runs and before the
// plan is recorded.
func TestJobArgsRefused(t *testing.T) {
	h := newHarness(t)
	h.write("multi.yaml", jobYAML)
	h.write("backend.yaml", "allow: {namespaces: [backend], jobs: [\"db*\"]}\n"+jobYAML)
	for _, tc := range []struct {
		args  string
		parts []string
	}{
		{"NICMUX_IPS_eth3=10.40.0.17/24", []string{"CNI_ARGS: NICMUX_IPS_eth3: interface eth3: not in attachment set \"multi\"", "eth0, eth1, eth2"}},
		{"NICMUX_IPS_eth1=10.40.0.300/24", []string{"CNI_ARGS: NICMUX_IPS_eth1: interface eth1:", `"10.40.0.300/24" is not an IP address`}},
		{"NICMUX_MAC_eth1=02:00:0a", []string{"NICMUX_MAC_eth1: interface eth1:", "not a 48-bit MAC address"}},
		{"NICMUX_MAC_eth2=02:00:0a:28:00:11", []string{"NICMUX_MAC_eth2: interface eth2: no plugin of its chain declares the \"mac\" capability"}},
		{"NICMUX_MAC_eth0=02:00:0a:28:00:11", []string{"NICMUX_MAC_eth0: interface eth0: no plugin of its chain declares the \"mac\" capability"}},
		{"NICMUX_IP_eth1=10.40.0.17/24", []string{"NICMUX_IP_eth1: not an argument nicmux knows"}},
		{"NICMUX_ATTACHMENTS=backend;NOMAD_NAMESPACE=dev;NOMAD_JOB_ID=db", []string{`NOMAD_NAMESPACE: namespace "dev" may not use the set`, `attachment set "backend"`}},
		{"NICMUX_ATTACHMENTS=backend;NOMAD_NAMESPACE=backend;NOMAD_JOB_ID=web", []string{`NOMAD_JOB_ID: job "web" in namespace "backend" may not use the set`, `attachment set "backend"`}},
		{"NICMUX_ATTACHMENTS=backend;IgnoreUnknown=true", []string{"NOMAD_NAMESPACE: missing", `attachment set "backend"`}},
	} {
		err := h.add(h.args(tc.args))
		if err == nil || codeOf(err) != types.ErrInvalidNetworkConfig {
			t.Errorf("%s: error = %v (code %d), want code 7", tc.args, err, codeOf(err))
			continue
		}
		for _, p := range tc.parts {
			if !strings.Contains(err.Error(), p) {
				t.Errorf("%s: error %q does not contain %q", tc.args, err, p)
			}
		}
	}
	if n := len(h.fake.Calls()); n != 0 {
		t.Errorf("%d delegate calls: %v", n, delegatetest.Summary(h.fake.Calls()))
	}
	h.assertNoState()

	// The allowed job gets the set.
	h.mustAdd(h.args("NICMUX_ATTACHMENTS=backend;NOMAD_NAMESPACE=backend;NOMAD_JOB_ID=db-1;" + eth1Args))
	if rec := h.mustRecord(); rec.Plan.Set != "backend" {
		t.Errorf("recorded set %q, want backend", rec.Plan.Set)
	}
}

// TestJobArgsChangedOnNextAdd: the next ADD of the same allocation, in a
// recreated namespace, with another address: the stale attachment is
// released with the recorded arguments, then attached with the new ones.
func TestJobArgsChangedOnNextAdd(t *testing.T) {
	h := newHarness(t)
	h.write("multi.yaml", jobYAML)
	h.mustAdd(h.args("NICMUX_IPS_eth1=10.40.0.17/24"))
	h.fake.Reset()
	h.netns = h.newNetNS("netns-b")
	h.mustAdd(h.args("NICMUX_IPS_eth1=10.40.0.18/24"))
	for _, c := range h.fake.Calls() {
		if c.Plugin != "beta" {
			continue
		}
		want := map[string]string{"DEL": `["10.40.0.17/24"]`, "ADD": `["10.40.0.18/24"]`}[c.Command]
		if got := runtimeConfig(t, c)["ips"]; got != want {
			t.Errorf("%s: ips %s, want %s", c, got, want)
		}
	}
	if got := delegatetest.Summary(h.fake.CallsOf("DEL")); len(got) != 5 {
		t.Errorf("stale release = %v, want every plugin's DEL", got)
	}
}

// TestDelWithoutStateIgnoresBadArgs: a DEL with no state falls back to the
// attachment file; job arguments that ADD would refuse do not stop it.
func TestDelWithoutStateIgnoresBadArgs(t *testing.T) {
	h := newHarness(t)
	h.write("multi.yaml", jobYAML)
	if err := h.del(h.args("NICMUX_MAC_eth2=02:00:0a:28:00:11")); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if got := delegatetest.Summary(h.fake.CallsOf("DEL")); len(got) != 5 {
		t.Errorf("DEL calls = %v, want the file's chains", got)
	}
	for _, c := range h.fake.Calls() {
		if c.Args != "" {
			t.Errorf("%s: CNI_ARGS %q: nicmux's own arguments reach no delegate", c, c.Args)
		}
	}
	h.fake.Reset()
	if err := h.del(h.args("NICMUX_IPS_eth1=10.40.0.17/24")); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	for _, c := range h.fake.CallsOf("DEL") {
		if c.Plugin == "beta" && runtimeConfig(t, c)["ips"] != `["10.40.0.17/24"]` {
			t.Errorf("%s: runtimeConfig %v, want the arguments of the DEL that has them", c, runtimeConfig(t, c))
		}
	}
	h.assertNoState()
}

// primaryYAML is multiYAML with eth1 primary.
var primaryYAML = strings.Replace(multiYAML, "    network: storage\n", "    network: storage\n    primary: true\n", 1)

// TestPrimaryShapesTheResult: with eth1 primary, the merged result keeps
// every interface and IP, but only eth1 keeps its sandbox, so that Nomad
// takes eth1's address; the records (what CHECK and DEL use) keep each
// chain's own result untouched.
func TestPrimaryShapesTheResult(t *testing.T) {
	h := newHarness(t)
	h.write("multi.yaml", primaryYAML)
	// eth0's chain also reports host-side links, as bridge does.
	zero, two := 0, 2
	h.fake.SetResult("alpha2", "eth0", &types100.Result{CNIVersion: "1.1.0",
		Interfaces: []*types100.Interface{{Name: "br0"}, {Name: "veth1"}, {Name: "eth0", Sandbox: h.netns}},
		IPs: []*types100.IPConfig{{Interface: &two, Address: net.IPNet{IP: net.IPv4(172, 26, 64, 2).To4(), Mask: net.CIDRMask(20, 32)}},
			{Interface: &zero, Address: net.IPNet{IP: net.IPv4(172, 26, 64, 1).To4(), Mask: net.CIDRMask(20, 32)}}}})
	h.mustAdd(h.args(""))
	merged := delegatetest.DecodeResult(t, h.stdout.Bytes())
	if got := names(merged); !reflect.DeepEqual(got, []string{"br0", "veth1", "eth0", "eth1", "eth2"}) {
		t.Fatalf("merged interfaces = %v", got)
	}
	for _, iface := range merged.Interfaces {
		if want := map[string]string{"eth1": h.netns}[iface.Name]; iface.Sandbox != want {
			t.Errorf("%s sandbox = %q, want %q", iface.Name, iface.Sandbox, want)
		}
	}
	assertIndicesValid(t, merged)
	if len(merged.IPs) != 4 {
		t.Errorf("merged IPs = %v, want all four kept", merged.IPs)
	}
	if got := nomadPick(merged); got != "eth1" {
		t.Errorf("Nomad picks %q, want the primary eth1", got)
	}
	rec := h.mustRecord()
	for _, ifname := range chainIfs {
		r := delegatetest.DecodeResult(t, rec.Interface(ifname).Result)
		if own := ns.OwnInterface(r, ifname); own < 0 || r.Interfaces[own].Sandbox != h.netns {
			t.Errorf("%s: recorded result %v lost its sandbox", ifname, r.Interfaces)
		}
	}
	if strings.Contains(h.stderr.String(), "Nomad will") {
		t.Errorf("address warning although Nomad picks the primary: %s", h.stderr)
	}
}

// TestPrimaryWithoutIPv4Warns: a primary interface with no IPv4 address
// leaves Nomad (1.9 and later) without an allocation address; nicmux says
// so.
func TestPrimaryWithoutIPv4Warns(t *testing.T) {
	h := newHarness(t)
	h.write("multi.yaml", primaryYAML)
	zero := 0
	h.fake.SetResult("beta2", "eth1", &types100.Result{CNIVersion: "1.1.0",
		Interfaces: []*types100.Interface{{Name: "eth1", Sandbox: h.netns}},
		IPs:        []*types100.IPConfig{{Interface: &zero, Address: net.IPNet{IP: net.ParseIP("fd00::2"), Mask: net.CIDRMask(64, 128)}}}})
	h.mustAdd(h.args(""))
	if !strings.Contains(h.stderr.String(), "Nomad will not report the primary interface's address") || !strings.Contains(h.stderr.String(), "primary=eth1") {
		t.Errorf("stderr = %q, want a warning naming the primary", h.stderr)
	}
}

// TestNoPrimaryWarnsAboutOrder: without a primary, today's warning when
// another interface than the first sorts first, with the hint.
func TestNoPrimaryWarnsAboutOrder(t *testing.T) {
	h := newHarness(t)
	h.write("multi.yaml", strings.Replace(multiYAML, "ifname: eth0", "ifname: svc0", 1))
	h.mustAdd(h.args(""))
	if s := h.stderr.String(); !strings.Contains(s, "first=svc0") || !strings.Contains(s, "nomadPicks=eth1") || !strings.Contains(s, "primary: true") {
		t.Errorf("stderr = %q, want the order warning with the hint", s)
	}
}
