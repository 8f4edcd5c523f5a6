package main

import (
	"encoding/json"
	"fmt"
	"strings"
)

// cniVersion is that of every configuration list of the run.
const cniVersion = "1.0.0"

// chain is one interface's delegate chain: a go-cni network of its own in
// the direct variants, one entry of the attachment file under nicmux. Both
// are rendered from the same plugin objects, so they cannot drift apart.
type chain struct {
	IfName  string
	Network string
	Plugins []map[string]any
}

// resources are what one variant's chains of one scenario use alone: an
// IPAM folder, subnets and a bridge. Macvlan masters are shared by the
// variants of a scenario (a master only parents the containers' macvlans).
type resources struct {
	env     *env
	ipamDir string
	bridge  string
	masters []string
}

// scenario is a set of interfaces to attach.
type scenario struct {
	Name    string
	N       int  // interfaces
	Masters int  // macvlan masters
	Bridged bool // eth0 plugs into a bridge
	chains  func(r resources) []chain
}

func scenarios(ns []int) []scenario {
	out := []scenario{{Name: "seed", N: 2, Masters: 1, Bridged: true, chains: seedChains}}
	for _, n := range ns {
		out = append(out, scenario{Name: fmt.Sprintf("N=%d", n), N: n, Masters: n, chains: macvlanChains})
	}
	return out
}

func hostLocal(r resources, defaultRoute bool) map[string]any {
	ipam := map[string]any{
		"type":    "host-local",
		"dataDir": r.ipamDir,
		"ranges":  [][]map[string]string{{{"subnet": r.env.subnet()}}},
	}
	if defaultRoute {
		ipam["routes"] = []map[string]string{{"dst": "0.0.0.0/0"}}
	}
	return ipam
}

// seedChains is the job nicmux exists for: eth0 on a bridge with host-local
// and a default route, eth1 a macvlan with host-local and tuning.
func seedChains(r resources) []chain {
	tag := "nmb" + r.env.tag
	return []chain{
		{IfName: "eth0", Network: tag + "-svc", Plugins: []map[string]any{{
			"type": "bridge", "bridge": r.bridge, "isGateway": true, "ipam": hostLocal(r, true),
		}}},
		{IfName: "eth1", Network: tag + "-storage", Plugins: []map[string]any{
			{"type": "macvlan", "master": r.masters[0], "mode": "bridge", "ipam": hostLocal(r, false)},
			{"type": "tuning", "sysctl": map[string]string{"net.ipv4.conf.IFNAME.arp_ignore": "1"}},
		}},
	}
}

// macvlanChains gives one macvlan per master, each with host-local on a
// subnet of its own.
func macvlanChains(r resources) []chain {
	var out []chain
	for i, m := range r.masters {
		out = append(out, chain{
			IfName:  fmt.Sprintf("eth%d", i),
			Network: fmt.Sprintf("nmb%s-mv%d", r.env.tag, i),
			Plugins: []map[string]any{{"type": "macvlan", "master": m, "mode": "bridge", "ipam": hostLocal(r, false)}},
		})
	}
	return out
}

// conflist renders a chain as a go-cni network of its own.
func (c chain) conflist() []byte {
	return mustJSON(map[string]any{"cniVersion": cniVersion, "name": c.Network, "plugins": c.Plugins})
}

// attachmentYAML renders chains as nicmux's attachment file. JSON is YAML:
// each chain's plugins are written as the same JSON the direct variants get.
func attachmentYAML(chains []chain) []byte {
	var b strings.Builder
	b.WriteString("interfaces:\n")
	for _, c := range chains {
		fmt.Fprintf(&b, "  - ifname: %s\n    network: %s\n    cniVersion: %q\n    plugins: %s\n",
			c.IfName, c.Network, cniVersion, mustJSON(c.Plugins))
	}
	return []byte(b.String())
}

// nicmuxConflist is the runtime's single CNI network naming nicmux.
func nicmuxConflist(name, attachments, stateDir, logFile string, parallel bool) []byte {
	return mustJSON(map[string]any{"cniVersion": cniVersion, "name": name, "plugins": []any{map[string]any{
		"type": "nicmux", "attachments": attachments, "stateDir": stateDir,
		"logFile": logFile, "logLevel": "info", "parallel": parallel,
	}}})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	must(err, "encoding JSON")
	return b
}
