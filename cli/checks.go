package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nicmux/nicmux/conf"
)

// checkEntry checks nicmux's entry and the list around it, and returns the
// entry's configuration (nil when it cannot be decoded).
func (v *validator) checkEntry(e *entry) *conf.NetConf {
	v.checkEntryKeys(e)
	nc, err := e.netConf()
	if err != nil {
		v.entryError(e, err)
	}
	v.checkNomadList(e)
	// A version nicmux refuses is reported above; the plugins' VERSION is
	// then only asked, not compared.
	version := e.cniVersion
	if !conf.IsSupportedVersion(version) {
		version = ""
	}
	for i, typ := range e.plugins {
		field := fmt.Sprintf("plugins[%d].type", i)
		if e.index < 0 {
			field = "type"
		}
		if typ != "" {
			v.checkBinary(e.pos(field), field, "plugin", typ, version, "the conflist's")
		}
	}
	if nc != nil && nc.LogFile != "" && filepath.IsAbs(nc.LogFile) {
		v.checkLogFolder(e, filepath.Dir(nc.LogFile))
	}
	return nc
}

// entryError reports conf.ParseNetConf's verdict on the entry, at the field
// it names.
func (v *validator) entryError(e *entry, err error) {
	const hint = "nicmux fails every verb with this entry until it is fixed"
	var ce *conf.Error
	if !errors.As(err, &ce) {
		v.add(newFinding(sevError, e.pos(e.field("")), e.field(""), hint, "%v", err))
		return
	}
	field := e.field(ce.Field)
	switch ce.Field {
	case "cniVersion", "name":
		field = ce.Field // the list's, which libcni sets in every plugin
	case "(top level)":
		field = e.field("")
	}
	msg := ce.Msg
	if ce.Err != nil {
		msg += ": " + ce.Err.Error()
	}
	v.add(newFinding(sevError, e.pos(field), field, hint, "%s", msg))
}

// checkNomadList reports what Nomad needs of the list: a lower-case name
// (it lower-cases the job's mode) and a loopback plugin (without one,
// tasks of the exec and java drivers, which get no lo from elsewhere, have
// it down).
func (v *validator) checkNomadList(e *entry) {
	if e.name != strings.ToLower(e.name) {
		v.add(newFinding(sevWarning, e.pos("name"), "name",
			"write the name in lower case (and the job's mode with it)",
			"%q has capitals: Nomad lower-cases the job's network mode, so cni/%s finds no conflist of this name", e.name, e.name))
	}
	if slices.Contains(e.plugins, "loopback") {
		return
	}
	field, hint := "plugins", `add {"type": "loopback"} after the nicmux entry in "plugins": it brings lo up and passes nicmux's result on`
	if e.index < 0 {
		field, hint = "type", `make this a .conflist whose "plugins" are the nicmux entry, then {"type": "loopback"}`
	}
	v.add(newFinding(sevWarning, e.pos(field), field, hint,
		`no "loopback" plugin in the conflist: the tasks of Nomad's exec and java drivers get their "lo" interface down`))
}

// checkEntryKeys reports the keys of the entry that nicmux does not read:
// encoding/json drops them without a word, so a typo ("logFle",
// "paralel") silently leaves the default in force.
func (v *validator) checkEntryKeys(e *entry) {
	keys := make([]string, 0, len(e.raw))
	for k := range e.raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if known(v.keys, k) {
			continue
		}
		hint := "nicmux's keys: " + strings.Join(v.keys, ", ")
		if s := suggest(v.keys, k); s != "" {
			hint = fmt.Sprintf("did you mean %q?", s)
		}
		field := e.field(k)
		v.add(newFinding(sevError, e.pos(field), field, hint, "unknown key: nicmux ignores it"))
	}
}

func (v *validator) checkLogFolder(e *entry, dir string) {
	field := e.field("logFile")
	fi, err := os.Stat(dir)
	problem, hint := "", "point logFile at a file in an existing folder"
	switch {
	case errors.Is(err, os.ErrNotExist):
		problem, hint = "does not exist", "create it (mkdir -p "+dir+") or point logFile at an existing folder"
	case err != nil:
		problem = "cannot be read: " + err.Error()
	case !fi.IsDir():
		problem = "is not a folder"
	default:
		return
	}
	v.add(newFinding(sevWarning, e.pos(field), field, hint,
		"the folder %s %s: nicmux cannot open its log and writes warnings and errors to stderr, which Nomad does not keep", dir, problem))
}

// checkEntryPortmap reports a portmap delegate behind an entry that does
// not declare portMappings: libcni then hands nicmux no port mappings, and
// no port is forwarded.
func (v *validator) checkEntryPortmap(e *entry, nc *conf.NetConf) {
	if nc == nil || nc.Capabilities["portMappings"] {
		return
	}
	for _, att := range v.sets {
		for i, c := range att.Interfaces {
			for j, p := range c.Plugins {
				if p.Type != "portmap" {
					continue
				}
				field := e.field("capabilities")
				if _, ok := e.raw["capabilities"]; !ok {
					field = e.field("")
				}
				use := att.loc.Locate(fmt.Sprintf("interfaces[%d].plugins[%d]", i, j))
				v.add(newFinding(sevError, e.pos(field), field, `add "capabilities": {"portMappings": true} to the nicmux entry`,
					`the nicmux entry does not declare "capabilities": {"portMappings": true}, but %s (interfaces[%d], %s) uses portmap: the runtime hands nicmux no port mappings, so no port is forwarded`,
					use, i, c.IfName))
				return
			}
		}
	}
}

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
