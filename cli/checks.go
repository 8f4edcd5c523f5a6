package cli

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/nicmux/nicmux/conf"
)

// facts are the parts of a delegate's configuration validate checks, read
// leniently: a field of the wrong type is left out (the plugin reports it
// itself).
type facts struct {
	Type            string
	Master          string
	LinkInContainer bool
	MTU             int
	// Bridge is the bridge plugin's bridge, its default filled in;
	// BridgeSet tells whether the configuration names it.
	Bridge    string
	BridgeSet bool
	IPAM      struct {
		Type   string
		Subnet string
		Ranges [][]struct {
			Subnet string `json:"subnet"`
		}
		Routes []struct {
			Dst string `json:"dst"`
		}
		// Addresses are the static plugin's.
		Addresses []struct {
			Address string `json:"address"`
		}
	}
}

func readFacts(b []byte) facts {
	var raw, ipam map[string]json.RawMessage
	_ = json.Unmarshal(b, &raw)
	_ = json.Unmarshal(raw["ipam"], &ipam)
	var f facts
	for key, dst := range map[string]any{"type": &f.Type, "master": &f.Master, "linkInContainer": &f.LinkInContainer,
		"mtu": &f.MTU, "bridge": &f.Bridge} {
		_ = json.Unmarshal(raw[key], dst)
	}
	for key, dst := range map[string]any{"type": &f.IPAM.Type, "subnet": &f.IPAM.Subnet, "ranges": &f.IPAM.Ranges, "routes": &f.IPAM.Routes,
		"addresses": &f.IPAM.Addresses} {
		_ = json.Unmarshal(ipam[key], dst)
	}
	_, f.BridgeSet = raw["bridge"]
	if f.Type == "bridge" && f.Bridge == "" {
		f.Bridge = "cni0" // the bridge plugin's default
	}
	return f
}

// subnets returns the IPAM subnets, normalised and sorted.
func (f *facts) subnets() []string {
	var out []string
	add := func(s string) {
		if _, n, err := net.ParseCIDR(s); err == nil {
			s = n.String()
		}
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	add(f.IPAM.Subnet)
	for _, set := range f.IPAM.Ranges {
		for _, r := range set {
			add(r.Subnet)
		}
	}
	slices.Sort(out)
	return out
}

// subnetAt is a subnet an interface's IPAM puts it on, and the field that
// says so.
type subnetAt struct {
	net   *net.IPNet
	field string // below the plugin, e.g. "ipam.ranges[0][1].subnet"
}

// subnetsAt returns the subnets the IPAM section puts the interface on:
// host-local's subnet and ranges, static's addresses' networks.
func (f *facts) subnetsAt() []subnetAt {
	var out []subnetAt
	add := func(cidr, field string) {
		if _, n, err := net.ParseCIDR(cidr); err == nil {
			out = append(out, subnetAt{n, field})
		}
	}
	add(f.IPAM.Subnet, "ipam.subnet")
	for i, set := range f.IPAM.Ranges {
		for j, r := range set {
			add(r.Subnet, fmt.Sprintf("ipam.ranges[%d][%d].subnet", i, j))
		}
	}
	for i, a := range f.IPAM.Addresses {
		add(a.Address, fmt.Sprintf("ipam.addresses[%d].address", i))
	}
	return out
}

// delegate is one plugin of an attachment set, with where it is written
// and what validate reads of it.
type delegate struct {
	att   *set
	iface int // the chain's index in att.Interfaces
	chain *conf.Chain
	*conf.Plugin
	field string // "interfaces[i].plugins[j]"
	facts facts
}

func (d *delegate) at(sub string) (conf.Position, string) {
	field := d.field
	if sub != "" {
		field += "." + sub
	}
	return d.att.loc.Locate(field), field
}

// delegates lists the plugins of a set's chains, in order.
func delegates(att *set) []*delegate {
	var out []*delegate
	for i, c := range att.Interfaces {
		for j, p := range c.Plugins {
			out = append(out, &delegate{att: att, iface: i, chain: c, Plugin: p,
				field: fmt.Sprintf("interfaces[%d].plugins[%d]", i, j), facts: readFacts(p.Bytes)})
		}
	}
	return out
}

// checkSet checks one attachment set's chains: their plugins' binaries and
// versions, their IPAM sections, portmap's capability, default routes,
// overlapping subnets and the host facts they rely on.
func (v *validator) checkSet(att *set) {
	ds := delegates(att)
	for _, d := range ds {
		at, field := d.at("type")
		v.checkBinary(at, field, "plugin", d.Type, d.chain.CNIVersion, "the chain's")
		if d.facts.IPAM.Type != "" {
			at, field := d.at("ipam.type")
			v.checkBinary(at, field, "IPAM plugin", d.facts.IPAM.Type, d.chain.CNIVersion, "the chain's")
			v.checkIPAM(d)
		}
		if d.Type == "portmap" && !d.Capabilities["portMappings"] {
			at, field := d.at("")
			v.add(newFinding(sevError, at, field, "add `capabilities: {portMappings: true}` to this plugin",
				"portmap does not declare capabilities {portMappings: true}, so nicmux hands it no port mappings and no port is forwarded"))
		}
	}
	v.checkDefaultRoutes(ds)
	v.checkOverlaps(ds)
	for i := range att.Interfaces {
		v.checkHost(ds, i)
	}
}

// defaultRoute returns the family of a default route's destination, or "".
func defaultRoute(dst string) string {
	_, n, err := net.ParseCIDR(dst)
	if err != nil {
		return ""
	}
	if ones, _ := n.Mask.Size(); ones != 0 {
		return ""
	}
	if n.IP.To4() != nil {
		return "IPv4"
	}
	return "IPv6"
}

// checkDefaultRoutes reports a second chain of a set whose IPAM installs a
// default route of a family another chain already routes: chains run in
// parallel, so which route the kernel picks is down to timing.
func (v *validator) checkDefaultRoutes(ds []*delegate) {
	type routeAt struct {
		d  *delegate
		at conf.Position
	}
	first := map[string]routeAt{}
	for _, d := range ds {
		for k, r := range d.facts.IPAM.Routes {
			fam := defaultRoute(r.Dst)
			if fam == "" {
				continue
			}
			at, field := d.at(fmt.Sprintf("ipam.routes[%d].dst", k))
			prev, seen := first[fam]
			switch {
			case !seen:
				first[fam] = routeAt{d, at}
			case prev.d.iface != d.iface:
				v.add(newFinding(sevError, at, field, "keep the default route on one interface (usually eth0) and give the others routes to specific networks",
					"a second %s default route in this set (the first: interfaces[%d], %s, at %s): the container gets two, and which one carries its traffic depends on which chain came up first",
					fam, prev.d.iface, prev.d.chain.IfName, prev.at))
			}
		}
	}
}

// checkOverlaps reports two interfaces of a set on overlapping subnets:
// the container gets a route to each through its own interface. With the
// same subnet, which one carries the traffic is down to which came up
// first (an error); with one inside the other, the narrower route wins
// for its addresses (a warning: it may be meant).
func (v *validator) checkOverlaps(ds []*delegate) {
	type use struct {
		d *delegate
		subnetAt
	}
	var seen []use
	reported := map[[2]int]bool{}
	for _, d := range ds {
		for _, sub := range d.facts.subnetsAt() {
			for _, prev := range seen {
				pair := [2]int{prev.d.iface, d.iface}
				if prev.d.iface == d.iface || reported[pair] || !overlap(prev.net, sub.net) {
					continue
				}
				reported[pair] = true
				v.reportOverlap(prev.d, prev.subnetAt, d, sub)
			}
			seen = append(seen, use{d, sub})
		}
	}
}

func (v *validator) reportOverlap(first *delegate, a subnetAt, second *delegate, b subnetAt) {
	at, field := second.at(b.field)
	firstAt, _ := first.at(a.field)
	onesA, _ := a.net.Mask.Size()
	onesB, _ := b.net.Mask.Size()
	if onesA == onesB {
		v.add(newFinding(sevError, at, field, "give each interface of a set a subnet of its own",
			"subnet %s is also interfaces[%d] (%s)'s, at %s: the container gets two routes to it, and which interface its traffic to it takes depends on which chain came up first",
			b.net, first.iface, first.chain.IfName, firstAt))
		return
	}
	v.add(newFinding(sevWarning, at, field, "give each interface of a set a subnet of its own, unless the narrower route is what you mean",
		"subnet %s overlaps interfaces[%d] (%s)'s %s, at %s: the container's traffic to the narrower one's addresses takes its interface, the rest the other's",
		b.net, first.iface, first.chain.IfName, a.net, firstAt))
}

// overlap reports whether two subnets share an address.
func overlap(a, b *net.IPNet) bool { return a.Contains(b.IP) || b.Contains(a.IP) }

// checkBridges reports chains, of one set or of several, that plug into one
// bridge with different subnets: with isGateway the bridge gets a gateway
// address in each, and containers on one layer-2 segment do not reach each
// other's subnet.
func (v *validator) checkBridges() {
	type bridgeUse struct {
		at      conf.Position
		subnets []string
	}
	first := map[string]bridgeUse{}
	for _, att := range v.sets {
		for _, d := range delegates(att) {
			subnets := d.facts.subnets()
			if d.Type != "bridge" || len(subnets) == 0 {
				continue
			}
			sub := ""
			if d.facts.BridgeSet {
				sub = "bridge"
			}
			at, field := d.at(sub)
			prev, ok := first[d.facts.Bridge]
			switch {
			case !ok:
				first[d.facts.Bridge] = bridgeUse{at, subnets}
			case !slices.Equal(prev.subnets, subnets):
				v.add(newFinding(sevWarning, at, field, "chains that plug into one bridge should share its subnet (and network name, so that host-local hands each address out once); give another subnet another bridge",
					"bridge %q with subnet %s; %s puts it on %s", d.facts.Bridge, strings.Join(subnets, ", "), prev.at, strings.Join(prev.subnets, ", ")))
			}
		}
	}
}
