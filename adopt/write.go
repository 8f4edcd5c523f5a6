package adopt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// nicmuxVersion is the cniVersion of the conflist adopt writes: the one
// docs/nomad.md recommends (no STATUS before every setup and teardown,
// CHECK works).
const nicmuxVersion = "1.0.0"

// result writes the attachment file and the conflist of a split.
func (s *splitter) result(l *list, o Options) (*Result, error) {
	if !filepath.IsAbs(o.Attachments) {
		return nil, fmt.Errorf("the attachment file's path %q must be absolute: nicmux's entry names it", o.Attachments)
	}
	r := &Result{Name: l.Name}
	var entries []*yaml.Node
	caps := map[string]bool{}
	for _, c := range s.chains {
		network := l.Name + "-" + c.ifname
		r.Interfaces = append(r.Interfaces, Interface{IfName: c.ifname, Network: network, Plugins: c.types, Unwrapped: c.unwrapped})
		entries = append(entries, c.entry(network, l.CNIVersion))
		for _, k := range c.caps {
			caps[k] = true
		}
	}
	var err error
	if r.Attachments, err = attachmentFile(entries, o.Source); err != nil {
		return nil, err
	}
	if r.Conflist, err = conflist(l, o, caps); err != nil {
		return nil, err
	}
	r.Notes = notes(l, r, s.loopback)
	return r, nil
}

// entry is an interface of the attachment file. Its chain keeps the list's
// cniVersion when that is not nicmux's list's.
func (c *chain) entry(network, cniVersion string) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode}
	pair := func(k string, v *yaml.Node) { m.Content = append(m.Content, scalar(k), v) }
	pair("ifname", scalar(c.ifname))
	pair("network", scalar(network))
	if cniVersion != nicmuxVersion {
		pair("cniVersion", scalar(cniVersion))
	}
	seq := &yaml.Node{Kind: yaml.SequenceNode}
	for _, p := range c.plugins {
		seq.Content = append(seq.Content, block(p))
	}
	pair("plugins", seq)
	return m
}

func scalar(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

// block is a copy of a node read from JSON, in YAML's block style with
// quotes only where needed.
func block(n *yaml.Node) *yaml.Node {
	c := *n
	c.Style = 0
	c.Content = nil
	for _, x := range n.Content {
		c.Content = append(c.Content, block(x))
	}
	return &c
}

func attachmentFile(entries []*yaml.Node, source string) ([]byte, error) {
	seq := &yaml.Node{Kind: yaml.SequenceNode, Content: entries}
	doc := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{scalar("interfaces"), seq}}
	doc.HeadComment = "Written by nicmux adopt from " + source + ": one interface per interface plugin,\n" +
		"with the plugins that act on it; wrappers taken off (nicmux sets CNI_IFNAME per interface)."
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}

// nicmuxEntry is the nicmux plugin of the conflist adopt writes.
type nicmuxEntry struct {
	Type         string          `json:"type"`
	Attachments  string          `json:"attachments"`
	StateDir     string          `json:"stateDir,omitempty"`
	LogFile      string          `json:"logFile,omitempty"`
	Capabilities map[string]bool `json:"capabilities,omitempty"`
}

type confList struct {
	CNIVersion   string `json:"cniVersion"`
	Name         string `json:"name"`
	DisableCheck bool   `json:"disableCheck,omitempty"`
	DisableGC    bool   `json:"disableGC,omitempty"`
	Plugins      []any  `json:"plugins"`
}

// conflist is nicmux's list: the same name, nicmux declaring every
// capability a chain declares (libcni passes a capability only to a
// plugin of the list that declares it), loopback after it.
func conflist(l *list, o Options, caps map[string]bool) ([]byte, error) {
	e := nicmuxEntry{Type: "nicmux", Attachments: o.Attachments, StateDir: o.StateDir, LogFile: o.LogFile}
	if len(caps) > 0 {
		e.Capabilities = caps
	}
	c := confList{CNIVersion: nicmuxVersion, Name: l.Name, DisableCheck: l.DisableCheck, DisableGC: l.DisableGC,
		Plugins: []any{e, map[string]string{"type": "loopback"}}}
	b, err := json.MarshalIndent(c, "", "  ")
	return append(b, '\n'), err
}

// notes say what the operator must know about the split.
func notes(l *list, r *Result, loopback bool) []string {
	var out []string
	var networks []string
	for _, it := range r.Interfaces {
		networks = append(networks, it.Network)
	}
	sort.Strings(networks)
	out = append(out, fmt.Sprintf("host-local keys leases on the network name: the chain's leases were under %q, nicmux's are under %s",
		l.Name, strings.Join(networks, ", ")))
	if l.CNIVersion != nicmuxVersion {
		out = append(out, fmt.Sprintf("the conflist is at cniVersion %s; the chains keep the list's %s", nicmuxVersion, l.CNIVersion))
	}
	if !loopback {
		out = append(out, "loopback added after nicmux: it brings the allocation's lo up")
	}
	return out
}
