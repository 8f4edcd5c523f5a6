package nomad

import (
	"errors"
	"net"
	"testing"

	gocni "github.com/containerd/go-cni"
)

// iface is a hand-made go-cni interface: sandboxed when sandbox is not "",
// with the given IPs in order.
func iface(sandbox string, ips ...string) *gocni.Config {
	c := &gocni.Config{Sandbox: sandbox}
	for _, ip := range ips {
		c.IPConfigs = append(c.IPConfigs, &gocni.IPConfig{IP: net.ParseIP(ip)})
	}
	return c
}

// TestNomadAddress pins the address model on hand-made go-cni results, at
// the releases where its rule changes and beside them.
func TestNomadAddress(t *testing.T) {
	const ns = "/var/run/netns/alloc"
	// want is addr and addr6 per Nomad release; "error" for errNoAddress.
	type want struct{ addr, addr6 string }
	noAddr := want{"error", ""}
	cases := []struct {
		name   string
		ifaces map[string]*gocni.Config
		want   map[string]want
	}{
		{"nicmux's seed result: host links without sandbox, eth0 and eth1",
			map[string]*gocni.Config{
				"nicmux0": iface(""), "veth1234": iface(""),
				"eth0": iface(ns, "172.26.64.2"), "eth1": iface(ns, "10.40.0.2"),
			},
			map[string]want{"1.8.0": {"172.26.64.2", ""}, "1.9.0": {"172.26.64.2", ""}, "1.10.4": {"172.26.64.2", ""}, "2.0.0": {"172.26.64.2", ""}}},
		{"names sort, file order does not count: eth1 before svc0",
			map[string]*gocni.Config{"svc0": iface(ns, "172.26.64.2"), "eth1": iface(ns, "10.40.0.2")},
			map[string]want{"1.8.5": {"10.40.0.2", ""}, "1.9.6": {"10.40.0.2", ""}, "1.10.5": {"10.40.0.2", ""}}},
		{"sorting is by byte, not number: eth10 before eth2",
			map[string]*gocni.Config{"eth2": iface(ns, "10.0.0.2"), "eth10": iface(ns, "10.0.0.10")},
			map[string]want{"1.8.0": {"10.0.0.10", ""}, "1.10.4": {"10.0.0.10", ""}}},
		{"go-cni's empty eth0 is skipped",
			map[string]*gocni.Config{"eth0": {}, "net1": iface(ns, "192.0.2.7")},
			map[string]want{"1.8.0": {"192.0.2.7", ""}, "1.9.0": {"192.0.2.7", ""}}},
		{"a host link with the address only: no allocation address",
			map[string]*gocni.Config{"eth0": {}, "br0": iface("", "192.0.2.1")},
			map[string]want{"1.8.0": noAddr, "1.9.0": noAddr, "1.10.4": noAddr}},
		{"a sandboxed link without addresses is skipped",
			map[string]*gocni.Config{"eth0": iface(ns), "eth1": iface(ns, "192.0.2.7")},
			map[string]want{"1.8.0": {"192.0.2.7", ""}, "1.10.4": {"192.0.2.7", ""}}},
		{"IPv6 first on one link: 1.8 takes it, 1.9 takes the IPv4, 1.10.4 both",
			map[string]*gocni.Config{"eth0": iface(ns, "2001:db8::2", "192.0.2.2", "2001:db8::3")},
			map[string]want{
				"1.8.0": {"2001:db8::2", ""}, "1.8.11": {"2001:db8::2", ""},
				"1.9.0": {"192.0.2.2", ""}, "1.10.3": {"192.0.2.2", ""},
				"1.10.4": {"192.0.2.2", "2001:db8::2"}, "1.11.0": {"192.0.2.2", "2001:db8::2"},
			}},
		{"an IPv6-only link sorting first: 1.8 and 1.11 take it, 1.9 - 1.10 the next link's IPv4",
			map[string]*gocni.Config{"eth0": iface(ns, "2001:db8::2"), "eth1": iface(ns, "192.0.2.3", "2001:db8::3")},
			map[string]want{"1.8.0": {"2001:db8::2", ""}, "1.9.5": {"192.0.2.3", ""}, "1.10.4": {"192.0.2.3", "2001:db8::3"},
				"1.11.0": {"2001:db8::2", "2001:db8::2"}}},
		{"IPv6 only: 1.8 reports it, 1.9 - 1.10 find no address, 1.11 reports it as both",
			map[string]*gocni.Config{"eth0": iface(ns, "2001:db8::2")},
			map[string]want{"1.8.2": {"2001:db8::2", ""}, "1.9.0": noAddr, "1.10.4": noAddr, "1.10.5": noAddr, "1.11.0": {"2001:db8::2", "2001:db8::2"}}},
		{"no IPv6 on the chosen link: none reported, even if another link has one",
			map[string]*gocni.Config{"eth0": iface(ns, "192.0.2.2"), "eth1": iface(ns, "2001:db8::3")},
			map[string]want{"1.10.4": {"192.0.2.2", ""}, "2.0.0": {"192.0.2.2", ""}}},
		{"a nil entry is skipped",
			map[string]*gocni.Config{"a": nil, "eth0": iface(ns, "192.0.2.2")},
			map[string]want{"1.8.0": {"192.0.2.2", ""}, "1.9.0": {"192.0.2.2", ""}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := &gocni.Result{Interfaces: c.ifaces}
			for release, w := range c.want {
				addr, addr6, err := nomadAddress(res, release)
				if w == noAddr {
					if !errors.Is(err, errNoAddress) || addr != "" || addr6 != "" {
						t.Errorf("Nomad %s: %q, %q, %v; want %v", release, addr, addr6, err, errNoAddress)
					}
					continue
				}
				if err != nil || addr != w.addr || addr6 != w.addr6 {
					t.Errorf("Nomad %s: %q, %q, %v; want %q, %q", release, addr, addr6, err, w.addr, w.addr6)
				}
			}
		})
	}
}

// TestNomadAddressVersions: releases the model does not cover, or that do
// not parse, are errors, not a guess; a nil result is an error.
func TestNomadAddressVersions(t *testing.T) {
	res := &gocni.Result{Interfaces: map[string]*gocni.Config{"eth0": iface("/ns", "192.0.2.2")}}
	for _, v := range []string{"1.7.7", "1.9", "", "1.x.0", "latest"} {
		if addr, _, err := nomadAddress(res, v); err == nil {
			t.Errorf("Nomad %q: %q, want an error", v, addr)
		}
	}
	if _, _, err := nomadAddress(nil, "1.9.0"); err == nil {
		t.Error("a nil result: want an error")
	}
	for _, c := range []struct {
		a, b string
		want int
	}{{"1.9.0", "1.10.0", -1}, {"v1.10.4", "1.10.4", 0}, {"2.0.0", "1.11.9", 1}, {"bad", "0.0.0", -1}} {
		if got := compareVersions(c.a, c.b); got != c.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
