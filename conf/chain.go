package conf

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// Chain is one interface's delegate plugin chain, resolved: what nicmux runs
// with CNI_IFNAME = IfName, exactly as a runtime runs one network
// configuration list.
type Chain struct {
	IfName       string
	Network      string
	CNIVersion   string
	DisableCheck bool
	DisableGC    bool
	// Primary marks the interface whose addresses the runtime should take
	// as the container's (see the attachment file's `primary`). It is the
	// entry's, not the chain's: ConfList leaves it out.
	Primary bool
	Plugins []*Plugin
}

// Plugin is one entry of a chain.
type Plugin struct {
	Type         string
	Capabilities map[string]bool
	// Bytes is the plugin's configuration object as written, in JSON.
	Bytes []byte
}

// confList is the JSON form of a chain: a .conflist.
type confList struct {
	CNIVersion   string            `json:"cniVersion"`
	Name         string            `json:"name"`
	DisableCheck bool              `json:"disableCheck,omitempty"`
	DisableGC    bool              `json:"disableGC,omitempty"`
	Plugins      []json.RawMessage `json:"plugins"`
}

// ConfList returns the chain as .conflist JSON. nicmux stores these bytes at
// ADD and rebuilds the chain from them for CHECK and DEL, so that both work on
// what ADD used even after the attachment file changed.
func (c *Chain) ConfList() ([]byte, error) {
	cl := confList{CNIVersion: c.CNIVersion, Name: c.Network, DisableCheck: c.DisableCheck, DisableGC: c.DisableGC}
	for _, p := range c.Plugins {
		cl.Plugins = append(cl.Plugins, p.Bytes)
	}
	return MarshalJSON(cl)
}

// ChainFromConfList rebuilds the chain for ifname from .conflist bytes made
// by ConfList.
func ChainFromConfList(ifname string, b []byte) (*Chain, error) {
	c, err := parseConfList(b)
	if err != nil {
		return nil, err
	}
	c.IfName = ifname
	if c.Network == "" {
		return nil, errors.New("conflist has no name")
	}
	if !IsSupportedVersion(c.CNIVersion) {
		return nil, fmt.Errorf("conflist cniVersion %q is not supported", c.CNIVersion)
	}
	return c, nil
}

// parseConfList reads a .conflist, or a single-plugin .conf (an object with a
// "type" and no "plugins"), as a runtime would.
func parseConfList(b []byte) (*Chain, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	var hdr struct {
		CNIVersion string `json:"cniVersion"`
		Name       string `json:"name"`
	}
	if err := json.Unmarshal(b, &hdr); err != nil {
		return nil, err
	}
	c := &Chain{Network: hdr.Name, CNIVersion: hdr.CNIVersion}
	var err error
	if c.DisableCheck, err = readBool(raw, "disableCheck"); err != nil {
		return nil, err
	}
	if c.DisableGC, err = readBool(raw, "disableGC"); err != nil {
		return nil, err
	}
	rawPlugins, isList := raw["plugins"]
	if !isList {
		// A single-plugin .conf: the whole object is the plugin.
		p, err := parsePlugin(b)
		if err != nil {
			return nil, err
		}
		c.Plugins = []*Plugin{p}
		return c, nil
	}
	var plugins []json.RawMessage
	if err := json.Unmarshal(rawPlugins, &plugins); err != nil {
		return nil, fmt.Errorf("plugins: %w", err)
	}
	if len(plugins) == 0 {
		return nil, errors.New("plugins: the list is empty")
	}
	for i, pb := range plugins {
		p, err := parsePlugin(pb)
		if err != nil {
			return nil, fmt.Errorf("plugins[%d]: %w", i, err)
		}
		c.Plugins = append(c.Plugins, p)
	}
	return c, nil
}

func parsePlugin(b []byte) (*Plugin, error) {
	var pc types.PluginConf
	if err := json.Unmarshal(b, &pc); err != nil {
		return nil, err
	}
	if pc.Type == "" {
		return nil, errors.New(`"type" is missing`)
	}
	compact, err := compactJSON(b)
	if err != nil {
		return nil, err
	}
	return &Plugin{Type: pc.Type, Capabilities: pc.Capabilities, Bytes: compact}, nil
}

// readBool reads a boolean the way libcni does: true/false or their strings.
func readBool(raw map[string]json.RawMessage, key string) (bool, error) {
	v, ok := raw[key]
	if !ok {
		return false, nil
	}
	var b bool
	if err := json.Unmarshal(v, &b); err == nil {
		return b, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		switch strings.ToLower(s) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	return false, fmt.Errorf("%s: %s is not a boolean", key, v)
}

// AtLeast reports whether CNI version v is at least min. Unparsable versions
// compare as false.
func AtLeast(v, min string) bool {
	ok, err := version.GreaterThanOrEqualTo(v, min)
	return err == nil && ok
}
