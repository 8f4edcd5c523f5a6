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
	for key, dst := range map[string]any{"type": &f.IPAM.Type, "subnet": &f.IPAM.Subnet, "ranges": &f.IPAM.Ranges, "routes": &f.IPAM.Routes} {
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
// versions, portmap's capability, default routes and the host facts they
// rely on.
func (v *validator) checkSet(att *set) {
	ds := delegates(att)
	for _, d := range ds {
		at, field := d.at("type")
		v.checkBinary(at, field, "plugin", d.Type, d.chain.CNIVersion, "the chain's")
		if d.facts.IPAM.Type != "" {
			at, field := d.at("ipam.type")
			v.checkBinary(at, field, "IPAM plugin", d.facts.IPAM.Type, d.chain.CNIVersion, "the chain's")
		}
		if d.Type == "portmap" && !d.Capabilities["portMappings"] {
			at, field := d.at("")
			v.add(newFinding(sevError, at, field, "add `capabilities: {portMappings: true}` to this plugin",
				"portmap does not declare capabilities {portMappings: true}, so nicmux hands it no port mappings and no port is forwarded"))
		}
	}
	v.checkDefaultRoutes(ds)
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
