// Package adopt splits a hand-written multi-interface conflist (a bridge
// for eth0 and a macvlan renamed to eth1 by a wrapper, in one list) into
// what nicmux runs instead: an attachment file with one interface per
// interface-making plugin, each with the meta plugins that act on it, and a
// one-plugin nicmux conflist with the same name, loopback after it. What it
// cannot split safely it refuses, saying why.
package adopt

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Plugins whose role adopt knows. An interface plugin makes the interface
// CNI_IFNAME names; a meta plugin acts on the interface CNI_IFNAME names,
// which an interface plugin before it made.
var (
	interfacePlugins = []string{"bridge", "macvlan", "ipvlan", "ptp", "host-device", "vlan", "tap", "dummy"}
	metaPlugins      = []string{"tuning", "portmap", "bandwidth", "firewall", "sbr", "vrf"}
	ipamPlugins      = []string{"host-local", "static", "dhcp"}
)

// DefaultWrappers are the wrappers adopt knows: a plugin that runs the
// plugin configured under "delegate" with CNI_IFNAME set to its "ifname".
var DefaultWrappers = []string{"ifrename"}

// ifNameDefault is the CNI_IFNAME a Nomad client gives the list's plugins.
const ifNameDefault = "eth0"

// Options say how to write nicmux's configuration.
type Options struct {
	// Attachments is the absolute path the attachment file will have on
	// the client: the nicmux entry's "attachments".
	Attachments string
	// StateDir and LogFile, when set, go into the nicmux entry.
	StateDir, LogFile string
	// Wrappers are the wrapper types to unwrap (DefaultWrappers if nil).
	Wrappers []string
	// Source names the hand-written conflist in the attachment file's
	// header.
	Source string
}

// Interface is one interface of the split.
type Interface struct {
	IfName  string   `json:"ifname"`
	Network string   `json:"network"`
	Plugins []string `json:"plugins"` // types, an IPAM type in parentheses
	// Unwrapped names the wrapper types taken off its plugins.
	Unwrapped []string `json:"unwrapped,omitempty"`
}

// Result is the split: the files to write and what is in them.
type Result struct {
	Name        string      `json:"name"`
	Interfaces  []Interface `json:"interfaces"`
	Attachments []byte      `json:"-"`
	Conflist    []byte      `json:"-"`
	// Notes are what changes for the operator, beyond the split.
	Notes []string `json:"notes,omitempty"`
}

// Refusal is why one plugin of the list cannot be split safely.
type Refusal struct {
	Index  int    `json:"index"` // in the list's plugins, from 0
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

func (r Refusal) String() string {
	return fmt.Sprintf("plugins[%d] (type %q): %s", r.Index, r.Type, r.Reason)
}

// RefusedError lists every refusal of a conflist.
type RefusedError struct{ Refusals []Refusal }

func (e *RefusedError) Error() string {
	var parts []string
	for _, r := range e.Refusals {
		parts = append(parts, r.String())
	}
	return "cannot split safely: " + strings.Join(parts, "; ")
}

// ErrNotAList is Split's error for data that is not a conflist adopt can
// read.
var ErrNotAList = errors.New("not a network configuration list")

// list is the hand-written conflist, as data and as YAML nodes (which keep
// its keys' order for the attachment file).
type list struct {
	CNIVersion   string           `json:"cniVersion"`
	Name         string           `json:"name"`
	DisableCheck bool             `json:"disableCheck"`
	DisableGC    bool             `json:"disableGC"`
	Plugins      []map[string]any `json:"plugins"`
	nodes        []*yaml.Node
}

func parse(data []byte) (*list, error) {
	var l list
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotAList, err)
	}
	if l.Name == "" || len(l.Plugins) == 0 {
		return nil, fmt.Errorf("%w: it needs a name and plugins", ErrNotAList)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil || len(root.Content) == 0 {
		return nil, fmt.Errorf("%w: %v", ErrNotAList, err)
	}
	plugins := value(root.Content[0], "plugins")
	if plugins == nil || len(plugins.Content) != len(l.Plugins) {
		return nil, fmt.Errorf("%w: no plugins list", ErrNotAList)
	}
	l.nodes = plugins.Content
	return &l, nil
}

// value is the node under key in a mapping node, nil if none.
func value(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// Split splits the conflist data, or refuses (*RefusedError).
func Split(data []byte, o Options) (*Result, error) {
	l, err := parse(data)
	if err != nil {
		return nil, err
	}
	if o.Wrappers == nil {
		o.Wrappers = DefaultWrappers
	}
	if !supportedVersion(l.CNIVersion) {
		return nil, &RefusedError{[]Refusal{{Index: -1, Type: "", Reason: fmt.Sprintf(
			"the list's cniVersion %q: nicmux runs chains at 0.3.0 or later", l.CNIVersion)}}}
	}
	s := &splitter{wrappers: o.Wrappers}
	for i := range l.Plugins {
		s.place(i, l.Plugins[i], l.nodes[i])
	}
	if len(s.refusals) > 0 {
		return nil, &RefusedError{s.refusals}
	}
	if len(s.chains) == 0 {
		return nil, &RefusedError{[]Refusal{{Index: -1, Reason: "no plugin makes an interface: there is nothing to split"}}}
	}
	return s.result(l, o)
}

func supportedVersion(v string) bool {
	return slices.Contains([]string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}, v)
}

// chain is one interface being built.
type chain struct {
	ifname    string
	plugins   []*yaml.Node
	types     []string
	unwrapped []string
	caps      []string
}

// splitter places the plugins of a list, in order, on their interfaces.
type splitter struct {
	wrappers []string
	chains   []*chain
	refusals []Refusal
	loopback bool
}

func (s *splitter) refuse(i int, typ, format string, args ...any) {
	s.refusals = append(s.refusals, Refusal{Index: i, Type: typ, Reason: fmt.Sprintf(format, args...)})
}

func (s *splitter) chainOf(ifname string) *chain {
	for _, c := range s.chains {
		if c.ifname == ifname {
			return c
		}
	}
	return nil
}

// place puts plugin i on the interface it acts on: its wrapper's ifname,
// else the list's CNI_IFNAME.
func (s *splitter) place(i int, p map[string]any, node *yaml.Node) {
	typ, _ := p["type"].(string)
	ifname, wrapper := ifNameDefault, ""
	if slices.Contains(s.wrappers, typ) {
		var ok bool
		if ifname, p, node, ok = s.unwrap(i, typ, p, node); !ok {
			return
		}
		wrapper, typ = typ, p["type"].(string)
	} else if key := nestedPlugin(p); key != "" {
		s.refuse(i, typ, "it holds a plugin configuration under %q: a wrapper adopt does not know, so it cannot tell the interface it acts on; "+
			"if it runs that plugin with CNI_IFNAME set to its \"ifname\", name it with -wrapper %s", key, typ)
		return
	}
	switch {
	case typ == "loopback" && wrapper == "":
		s.loopback = true // nicmux's conflist has its own, after nicmux
	case slices.Contains(interfacePlugins, typ):
		s.addInterface(i, typ, ifname, wrapper, p, node)
	case slices.Contains(metaPlugins, typ):
		s.addMeta(i, typ, ifname, wrapper, p, node)
	case slices.Contains(ipamPlugins, typ):
		s.refuse(i, typ, "an IPAM plugin as an entry of the list: adopt cannot tell which interface's addresses it manages; put it under its interface plugin's \"ipam\"")
	case typ == "nicmux":
		s.refuse(i, typ, "the list already runs nicmux")
	default:
		s.refuse(i, typ, "adopt cannot tell which interface it acts on: it knows the interface plugins %s and the meta plugins %s",
			strings.Join(interfacePlugins, ", "), strings.Join(metaPlugins, ", "))
	}
}

// unwrap returns a wrapper's ifname and delegate.
func (s *splitter) unwrap(i int, typ string, p map[string]any, node *yaml.Node) (string, map[string]any, *yaml.Node, bool) {
	ifname, _ := p["ifname"].(string)
	d, _ := p["delegate"].(map[string]any)
	dt, _ := d["type"].(string)
	if ifname == "" || dt == "" {
		s.refuse(i, typ, "a wrapper needs \"ifname\" and a \"delegate\" with a \"type\"")
		return "", nil, nil, false
	}
	if slices.Contains(s.wrappers, dt) || nestedPlugin(d) != "" {
		s.refuse(i, typ, "its delegate %q wraps a plugin in turn: adopt unwraps one level", dt)
		return "", nil, nil, false
	}
	return ifname, d, value(node, "delegate"), true
}

// nestedPlugin is the key under which p holds another plugin's
// configuration (an object or a list of objects with a "type"), other than
// its IPAM's; "" if none.
func nestedPlugin(p map[string]any) string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "ipam" {
			continue
		}
		switch v := p[k].(type) {
		case map[string]any:
			if _, ok := v["type"].(string); ok {
				return k
			}
		case []any:
			for _, x := range v {
				if m, ok := x.(map[string]any); ok && m["type"] != nil {
					return k
				}
			}
		}
	}
	return ""
}

func (s *splitter) addInterface(i int, typ, ifname, wrapper string, p map[string]any, node *yaml.Node) {
	if s.chainOf(ifname) != nil {
		s.refuse(i, typ, "it makes a second interface named %s (CNI_IFNAME): in one list it fails ADD with \"file exists\"; "+
			"wrap it to name its interface, then adopt it", ifname)
		return
	}
	c := &chain{ifname: ifname}
	s.chains = append(s.chains, c)
	c.add(typ, wrapper, p, node)
}

func (s *splitter) addMeta(i int, typ, ifname, wrapper string, p map[string]any, node *yaml.Node) {
	c := s.chainOf(ifname)
	if c == nil {
		s.refuse(i, typ, "it acts on %s (CNI_IFNAME), which no plugin before it makes", ifname)
		return
	}
	c.add(typ, wrapper, p, node)
}

func (c *chain) add(typ, wrapper string, p map[string]any, node *yaml.Node) {
	label := typ
	if ipam, ok := p["ipam"].(map[string]any); ok {
		if t, ok := ipam["type"].(string); ok {
			label += "(" + t + ")"
		}
	}
	c.types = append(c.types, label)
	c.plugins = append(c.plugins, node)
	if wrapper != "" && !slices.Contains(c.unwrapped, wrapper) {
		c.unwrapped = append(c.unwrapped, wrapper)
	}
	if caps, ok := p["capabilities"].(map[string]any); ok {
		for k, v := range caps {
			if v == true && !slices.Contains(c.caps, k) {
				c.caps = append(c.caps, k)
			}
		}
	}
}
