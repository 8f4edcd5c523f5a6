package nomad

import (
	"maps"
	"net"
	"slices"
	"sort"
	"strings"
	"testing"

	gocni "github.com/containerd/go-cni"
	"github.com/vishvananda/netlink"

	"github.com/nicmux/nicmux/test/testworld"
)

// The job's own arguments (examples/nomad/backend.yaml and
// job-backend.nomad.hcl): NICMUX_IPS_<ifname> and NICMUX_MAC_<ifname>
// reach that interface's chain only, as the ips and mac capability
// arguments; `primary: true` on eth1 makes Nomad report eth1's addresses;
// `allow` lets only the backend namespaces select the set.

// backendNetworks are the host-local networks of backend.yaml (and of
// multi.yaml, whose pools it shares).
func backendNetworks(t *testing.T) []string { return networks(t, "multi") }

// installBackend installs the examples, backend.yaml included, with edits.
func (w *world) installBackend(edits ...chainEdit) {
	w.t.Helper()
	w.install(edits...)
	w.installSet("backend", edits...)
}

// backendJob is examples/nomad/job-backend.nomad.hcl.
func backendJob(t *testing.T) jobSpec { return readJobFile(t, "job-backend.nomad.hcl") }

// withArgs returns the job's args with changes (a "" value removes the key).
func withArgs(args map[string]string, changes map[string]string) map[string]string {
	out := maps.Clone(args)
	for k, v := range changes {
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// TestFixedAddressAndMAC is the example job: eth1 gets the job's IPv4 and
// IPv6 addresses from host-local (ips) and its MAC (macvlan's mac), both
// seen in the namespace; no other chain gets them (a recorder declaring
// ips and mac on eth0's chain gets neither), and no delegate sees the
// per-interface keys in CNI_ARGS. eth1 is primary: Nomad reports its
// IPv4 address and, from 1.10.4, its IPv6 one. CHECK on restore passes;
// Remove leaves nothing.
func TestFixedAddressAndMAC(t *testing.T) {
	w := newWorld(t)
	caps := map[string]bool{"ips": true, "mac": true}
	w.installBackend(w.withRecorder("backend", "eth0", map[string]bool{"ips": true, "mac": true, "portMappings": true}),
		w.withRecorder("backend", "eth1", caps))
	job := backendJob(t)
	a := w.allocOf(job, job.CNIArgs)
	res := w.mustSetup(a)

	ips := strings.Split(job.CNIArgs["NICMUX_IPS_eth1"], ",")
	mac := job.CNIArgs["NICMUX_MAC_eth1"]
	w.wantBackend(a, res, ips, mac)
	leases := w.allocLeases("backend", a.ID)
	for _, cidr := range ips {
		if got := leases[ipOf(cidr)]; got != a.ID+"/eth1" {
			t.Errorf("backend lease of %s = %q, want %s/eth1 (host-local took the job's address); leases %v", ipOf(cidr), got, a.ID, leases)
		}
	}
	if len(leases) != len(ips) {
		t.Errorf("backend leases of the allocation = %v, want exactly the job's %v", leases, ips)
	}
	w.wantJobArgsOnEth1Only(w.callsByIf("ADD"), ips, mac)
	v4, v6 := w.wantNomadAddress(res, a, "eth1")
	t.Logf("Nomad %s reports eth1's %s as the allocation's address (from 1.10.4 on, %s as its IPv6 address)", strings.Join(leg.Releases, ", "), v4, v6)

	out := w.node.restore(a)
	if !out.Checked || out.CheckErr != nil || out.Rebuilt {
		t.Fatalf("restore: checked %v, CHECK error %v, rebuilt %v; want a passing CHECK", out.Checked, out.CheckErr, out.Rebuilt)
	}
	w.wantJobArgsOnEth1Only(w.callsByIf("CHECK"), ips, mac)

	failIf(t, w.node.remove(a), "remove")
	w.wantJobArgsOnEth1Only(w.callsByIf("DEL"), ips, mac)
	w.assertClean(a, backendNetworks(t)...)
}

// TestStaticIPAM: the same with eth1's IPAM the static plugin, which holds
// no lease: the job's addresses and MAC are on eth1, Nomad reports them,
// CHECK passes (static compares the recorded ips with the result) and
// Remove leaves nothing.
func TestStaticIPAM(t *testing.T) {
	w := newWorld(t)
	w.installBackend(withIPAM("backend", "eth1", map[string]any{"type": "static"}))
	job := backendJob(t)
	ips := []string{"10.40.0.33/24", "fd00:40::33/64"}
	const mac = "02:00:0a:28:00:21"
	a := w.allocOf(job, withArgs(job.CNIArgs, map[string]string{"NICMUX_IPS_eth1": strings.Join(ips, ","), "NICMUX_MAC_eth1": mac}))
	res := w.mustSetup(a)

	w.wantBackend(a, res, ips, mac)
	if got := w.allocLeases("backend", a.ID); len(got) != 0 {
		t.Errorf("backend leases = %v, want none (static IPAM)", got)
	}
	w.wantNomadAddress(res, a, "eth1")
	out := w.node.restore(a)
	if !out.Checked || out.CheckErr != nil || out.Rebuilt {
		t.Fatalf("restore: checked %v, CHECK error %v, rebuilt %v; want a passing CHECK", out.Checked, out.CheckErr, out.Rebuilt)
	}
	failIf(t, w.node.remove(a), "remove")
	w.assertClean(a, backendNetworks(t)...)
}

// TestFixedAddressCollision: a job asks for the address another
// allocation holds. host-local refuses it; nicmux rolls eth0 and eth1
// back, so every one of Nomad's tries fails the same clean way and the
// allocation leaves nothing. The other allocation is untouched.
func TestFixedAddressCollision(t *testing.T) {
	w := newWorld(t)
	w.installBackend()
	other := w.newAlloc(nil)
	resOther := w.mustSetup(other)
	taken := w.wantOneLease("backend", other.ID, "eth1")

	job := backendJob(t)
	a := w.allocOf(job, withArgs(job.CNIArgs, map[string]string{"NICMUX_IPS_eth1": taken + "/24"}))
	res, errs := w.node.setup(a)
	if res != nil || len(errs) != setupTries {
		t.Fatalf("setup asking for %s: result %v, %d failed tries; want every try refused", taken, res != nil, len(errs))
	}
	t.Logf("every try: %v", errs[0])
	for i, err := range errs {
		for _, p := range []string{"eth1: plugin macvlan:", taken, "not available"} {
			if !strings.Contains(err.Error(), p) {
				t.Errorf("try %d: %v; want host-local's refusal of %s naming eth1's plugin (%q)", i+1, err, taken, p)
			}
		}
		if containsAny(err.Error(), "file exists", "duplicate", "rollback", "already") {
			t.Errorf("try %d tripped over an earlier try's leftovers or failed to roll back: %v", i+1, err)
		}
	}
	w.assertAllocGone(a, backendNetworks(t)...)
	w.wantBridgePorts(1) // the other allocation's
	w.wantAttached(other, resOther, "multi")
	failIf(t, w.node.remove(other), "remove of the other allocation")
	w.assertClean(other, backendNetworks(t)...)
}

// TestAllowRules: backend.yaml allows the namespaces backend and
// backend-*. A job of another namespace, and a job without NOMAD_NAMESPACE
// (Nomad before 1.9.4 sends none), are refused on every try with a code-7
// error naming the namespace and the set, and leave nothing; an allowed
// job gets the set (and Nomad eth1's dynamic addresses: it is primary).
// Then each Nomad release the leg stands for, with the CNI_ARGS it sends:
// before 1.8.2 the job's args never arrive (the default set), 1.8.2 -
// 1.9.3 are refused, 1.9.4 and later get the set.
func TestAllowRules(t *testing.T) {
	w := newWorld(t)
	w.installBackend()
	job := backendJob(t)
	dynamic := withArgs(job.CNIArgs, map[string]string{"NICMUX_IPS_eth1": "", "NICMUX_MAC_eth1": ""})

	type refusal struct {
		name      string
		namespace string
		release   string
		parts     []string
	}
	refused := []refusal{
		{"another namespace", "dev", "", []string{"NOMAD_NAMESPACE", `namespace "dev" may not use the set`, `attachment set "backend"`}},
		{"backend-* needs the dash", "backendx", "", []string{`namespace "backendx" may not use the set`}},
		{"no NOMAD_NAMESPACE, as Nomad 1.8.2 - 1.9.3 send", "backend", "1.9.3", []string{"NOMAD_NAMESPACE: missing", `attachment set "backend"`}},
	}
	var allowed []string // releases of the leg that get the set or the default
	for _, r := range leg.Releases {
		if compareVersions(r, "1.8.2") >= 0 && compareVersions(r, "1.9.4") < 0 {
			refused = append(refused, refusal{"Nomad " + r, "backend", r, []string{"NOMAD_NAMESPACE: missing", "from 1.9.4"}})
		} else {
			allowed = append(allowed, r)
		}
	}
	// Nothing is ever attached: the refusals run at the same time, each
	// spending two seconds in Nomad's pauses between tries.
	t.Run("refused", func(t *testing.T) {
		for _, c := range refused {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				w := w.in(t)
				j := job
				j.Namespace = c.namespace
				a := w.allocOf(j, dynamic)
				a.Release = c.release
				res, errs := w.node.setup(a)
				if res != nil || len(errs) != setupTries {
					t.Fatalf("setup: result %v, %d failed tries; want every try refused", res != nil, len(errs))
				}
				t.Logf("setup in namespace %q (labels of Nomad %q): %v", c.namespace, c.release, errs[0])
				for _, err := range errs {
					testworld.WantCNIError(t, err, 7, c.parts...)
				}
				w.assertAllocGone(a, backendNetworks(t)...)
			})
		}
	})

	j := job
	j.Namespace = "backend-blue"
	a := w.allocOf(j, dynamic)
	res := w.mustSetup(a)
	if got := w.container(a.ID).Set; got != "backend" {
		t.Errorf("recorded set %q, want backend", got)
	}
	w.wantNomadAddress(res, a, "eth1")
	failIf(t, w.node.remove(a), "remove")
	w.assertClean(a, backendNetworks(t)...)

	for _, r := range allowed {
		a := w.allocOf(job, dynamic)
		a.Release = r
		res := w.mustSetup(a)
		set, ifname := "backend", "eth1"
		if compareVersions(r, "1.8.2") < 0 {
			set, ifname = "", "eth0" // no job args: the default set, multi.yaml
		}
		if got := w.container(a.ID).Set; got != set {
			t.Errorf("Nomad %s: recorded set %q, want %q", r, got, set)
		}
		addr, _, err := nomadAddress(res, r)
		if want := ipOf(firstIPv4(testworld.Addrs(t, a.NetNS, ifname))); err != nil || addr != want {
			t.Errorf("Nomad %s reports %q (%v), want %s's %s", r, addr, err, ifname, want)
		}
		failIf(t, w.node.remove(a), "remove")
		w.assertClean(a, backendNetworks(t)...)
	}
}

// wantBackend asserts what a setup of backend.yaml made: eth0 and eth1 in
// the netns, eth1 with exactly ips and mac, eth0 one address in its pool;
// go-cni's result keeps both interfaces' addresses, with only the primary
// eth1 sandboxed.
func (w *world) wantBackend(a *alloc, res *gocni.Result, ips []string, mac string) {
	w.t.Helper()
	if got := testworld.Links(w.t, a.NetNS); !slices.Equal(got, []string{"eth0", "eth1"}) {
		w.t.Fatalf("links in the netns = %v, want eth0 and eth1", got)
	}
	want := append([]string(nil), ips...)
	sort.Strings(want)
	if got := testworld.Addrs(w.t, a.NetNS, "eth1"); !slices.Equal(got, want) {
		w.t.Errorf("eth1 addresses = %v, want the job's %v", got, want)
	}
	if got := testworld.MAC(w.t, a.NetNS, "eth1"); got != mac {
		w.t.Errorf("eth1 MAC = %s, want the job's %s", got, mac)
	}
	eth0 := testworld.Addrs(w.t, a.NetNS, "eth0")
	if len(eth0) != 1 || !inSubnet(eth0[0], "172.26.64.0/20") {
		w.t.Errorf("eth0 addresses = %v, want one in the service pool", eth0)
	}
	for ifname, sandbox := range map[string]string{"eth0": "", "eth1": a.NetNS} {
		got := res.Interfaces[ifname]
		if got == nil || got.Sandbox != sandbox || len(got.IPConfigs) == 0 {
			w.t.Errorf("go-cni result for %s = %s, want sandbox %q (eth1 is primary) and its addresses", ifname, toJSON(got), sandbox)
		}
	}
	if got := res.Interfaces["eth1"]; got != nil && got.Mac != mac {
		w.t.Errorf("go-cni result for eth1 has MAC %s, want %s", got.Mac, mac)
	}
}

// wantJobArgsOnEth1Only asserts that the recorders saw the job's ips and
// mac on eth1's chain only, and no per-interface key in any CNI_ARGS.
func (w *world) wantJobArgsOnEth1Only(calls map[string]testworld.Call, ips []string, mac string) {
	w.t.Helper()
	if len(calls) != 2 {
		w.t.Fatalf("recorded calls = %v, want one on eth0 and one on eth1", calls)
	}
	if got := runtimeConfig(w.t, calls["eth1"]); got["ips"] != normJSON(ips) || got["mac"] != normJSON(mac) {
		w.t.Errorf("eth1's chain got runtimeConfig %v, want ips %v and mac %s", got, ips, mac)
	}
	got := runtimeConfig(w.t, calls["eth0"])
	if _, ok := got["ips"]; ok {
		w.t.Errorf("eth0's chain got ips: %v", got)
	}
	if _, ok := got["mac"]; ok {
		w.t.Errorf("eth0's chain got mac: %v", got)
	}
	for ifname, c := range calls {
		if strings.Contains(c.Args, "NICMUX_IPS_") || strings.Contains(c.Args, "NICMUX_MAC_") {
			w.t.Errorf("%s's chain got the per-interface keys in CNI_ARGS: %q", ifname, c.Args)
		}
	}
}

// runtimeConfig returns the call's runtimeConfig, each value as normalized
// JSON.
func runtimeConfig(t *testing.T, c testworld.Call) map[string]string {
	t.Helper()
	var conf struct {
		RuntimeConfig map[string]any `json:"runtimeConfig"`
	}
	failIf(t, c.Decode(&conf), "decoding a recorded call")
	out := map[string]string{}
	for k, v := range conf.RuntimeConfig {
		out[k] = normJSON(v)
	}
	return out
}

// wantNomadAddress asserts that Nomad, at every release the leg models
// (nomadAddress), reports ifname's IPv4 address in the netns as the
// allocation's and, from 1.10.4, its IPv6 address as AddressIPv6 (none
// before). It returns both.
func (w *world) wantNomadAddress(res *gocni.Result, a *alloc, ifname string) (v4, v6 string) {
	w.t.Helper()
	var v4s, v6s []string
	for _, cidr := range testworld.Addrs(w.t, a.NetNS, ifname) {
		if net.ParseIP(ipOf(cidr)).To4() != nil {
			v4s = append(v4s, ipOf(cidr))
		} else {
			v6s = append(v6s, ipOf(cidr))
		}
	}
	if len(v4s) != 1 || len(v6s) > 1 {
		w.t.Fatalf("%s addresses: IPv4 %v, IPv6 %v; want one IPv4 and at most one IPv6", ifname, v4s, v6s)
	}
	v4 = v4s[0]
	if len(v6s) == 1 {
		v6 = v6s[0]
	}
	for _, release := range leg.Releases {
		want6 := ""
		if compareVersions(release, "1.10.4") >= 0 {
			want6 = v6
		}
		addr, addr6, err := nomadAddress(res, release)
		if err != nil || addr != v4 || addr6 != want6 {
			w.t.Errorf("Nomad %s reports address %q, IPv6 address %q (%v); want %s's %s and %q (result %s)",
				release, addr, addr6, err, ifname, v4, want6, toJSON(res.Interfaces))
		}
	}
	return v4, v6
}

// firstIPv4 returns the first IPv4 CIDR of addrs, or "".
func firstIPv4(addrs []string) string {
	for _, c := range addrs {
		if net.ParseIP(ipOf(c)).To4() != nil {
			return c
		}
	}
	return ""
}

// nsMAC returns a link's MAC address in a namespace.
func nsMAC(t *testing.T, path, ifname string) string {
	t.Helper()
	var mac string
	testworld.Do(t, path, func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifname)
		if err == nil {
			mac = l.Attrs().HardwareAddr.String()
		}
		return err
	})
	return mac
}

// withIPAM replaces the ipam section of one interface's plugins.
func withIPAM(set, ifname string, ipam map[string]any) chainEdit {
	return func(s, i string, plugins []any) []any {
		if s == set && i == ifname {
			for _, p := range plugins {
				if m := p.(map[string]any); m["ipam"] != nil {
					m["ipam"] = ipam
				}
			}
		}
		return plugins
	}
}
