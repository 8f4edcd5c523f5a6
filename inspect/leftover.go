package inspect

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/nicmux/nicmux/state"
)

// Leftover is what a record says an interface that could not be released
// may have left, and where to look.
type Leftover struct {
	// Holding is what the record says; without a known result, what the
	// chain holds is unknown.
	Holding
	// NetNS is the namespace its link may still be in; "" when the one ADD
	// attached is gone (the link went with it).
	NetNS string `json:"netns,omitempty"`
	// Abandoned: nothing could even try to release it (its plugins are
	// gone from the CNI path, or no configuration of it is left), so a
	// DEL would have dropped it as well.
	Abandoned bool   `json:"abandoned,omitempty"`
	Error     string `json:"error,omitempty"`
	// Hints are where to look, and commands to clean up by hand.
	Hints []string `json:"hints"`
}

// LeftoverOf says what container id's interface, planned so and with
// result (nil if unknown), may have left when nothing released it: err is
// why, netns the namespace ADD attached if it is still there.
func LeftoverOf(id string, planned state.Planned, result types.Result, netns string, err error, abandoned bool) Leftover {
	plugins := chainConf(planned.Config)
	l := Leftover{Holding: Holding{IfName: planned.IfName, Network: planned.Network, Chain: chainPlugins(plugins), Addresses: []string{}},
		NetNS: netns, Abandoned: abandoned}
	if err != nil {
		l.Error = err.Error()
	}
	if result != nil {
		if res, err := types100.NewResultFromResult(result); err == nil {
			l.MAC, l.Addresses = ownAddresses(res, planned.IfName)
			l.ResultKnown = true
		}
	}
	l.Hints = hints(id, l, plugins)
	return l
}

// hints are where an interface's leftovers may be, and how to remove them
// by hand, for the plugins the reference set has.
func hints(id string, l Leftover, plugins []pluginConf) []string {
	var out []string
	if l.NetNS != "" {
		out = append(out, fmt.Sprintf("link %s in netns %s (with its host side, if it has one): nsenter --net=%s ip link del %s", l.IfName, l.NetNS, l.NetNS, l.IfName))
	}
	seen := map[string]bool{}
	for _, p := range plugins {
		switch {
		case p.IPAM.Type == "host-local":
			dir := p.IPAM.DataDir
			if dir == "" {
				dir = "/var/lib/cni/networks" // host-local's default
			}
			dir = filepath.Join(dir, l.Network)
			if seen[dir] {
				continue
			}
			seen[dir] = true
			if !l.ResultKnown {
				out = append(out, fmt.Sprintf("host-local leases of the container, if any, in %s: grep -l %s %s/*", dir, id, dir))
				continue
			}
			for _, addr := range l.Addresses {
				if ip, _, err := net.ParseCIDR(addr); err == nil {
					out = append(out, fmt.Sprintf("host-local lease of %s: rm %s", ip, filepath.Join(dir, ip.String())))
				}
			}
		case p.IPAM.Type != "":
			out = append(out, fmt.Sprintf("what the IPAM plugin %s holds for container %s in network %s", p.IPAM.Type, id, l.Network))
		}
		if (p.Type == "portmap" || p.Type == "bridge" || p.Type == "ptp") && !seen["iptables"] {
			seen["iptables"] = true
			out = append(out, fmt.Sprintf("iptables rules (portmap, ipMasq) naming the container: iptables-save | grep %s", id))
		}
	}
	if !l.ResultKnown && !slices.ContainsFunc(plugins, func(p pluginConf) bool { return p.IPAM.Type != "" }) && l.NetNS == "" {
		out = append(out, fmt.Sprintf("whatever the chain's plugins hold for container %s, interface %s (its result is unknown)", id, l.IfName))
	}
	return out
}
