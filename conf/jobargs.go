package conf

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/utils"
)

// CNI_ARGS keys nicmux reads on ADD besides argSet: a job's per-interface
// arguments ("<prefix><ifname>"), and Nomad's identity of the job (1.9.4
// and later). Every key of nicmuxPrefix is nicmux's: none reaches a
// delegate.
const (
	nicmuxPrefix = "NICMUX_"
	argIPsPrefix = "NICMUX_IPS_"
	argMACPrefix = "NICMUX_MAC_"
	argNamespace = "NOMAD_NAMESPACE"
	argJobID     = "NOMAD_JOB_ID"
)

// capabilityOf maps a per-interface key's prefix to the runtime capability
// it becomes, and says which plugins honour it (for error hints).
var capabilityOf = map[string]struct{ name, hint string }{
	argIPsPrefix: {"ips", "on the main plugin (bridge, macvlan, ...) whose ipam honours it: host-local or static"},
	argMACPrefix: {"mac", "on a plugin that honours it: macvlan, bridge or tuning"},
}

// JobArgs is what ADD's CNI_ARGS tell nicmux about the job.
type JobArgs struct {
	// Namespace and JobID are NOMAD_NAMESPACE and NOMAD_JOB_ID; "" when
	// absent.
	Namespace, JobID string
	// ifaces are the per-interface arguments, sorted by key.
	ifaces []ifaceArg
	// Delegated is CNI_ARGS as the delegates get it: without nicmux's own
	// keys (NICMUX_*: the set, and the per-interface keys, which reach
	// their own chain only, as capability arguments), which a delegate
	// that parses CNI_ARGS strictly would refuse as unknown. Every other
	// pair is kept as the runtime sent it, empty ones included.
	Delegated string
}

// ifaceArg is one per-interface argument of a job: the capability argument
// it becomes for that interface's chain.
type ifaceArg struct {
	Key        string // as written in CNI_ARGS, e.g. NICMUX_IPS_eth1
	IfName     string
	Capability string // "ips" or "mac"
	Value      json.RawMessage
}

// ParseJobArgs reads ADD's CNI_ARGS ("K=V;K=V", in any order). A
// per-interface argument that does not parse, names no valid interface or
// is given twice, an unknown NICMUX_ key (a typo would otherwise be
// ignored) and a NOMAD_ identity key given twice are errors (code 7)
// naming the key; all of them are reported.
func ParseJobArgs(cniArgs string) (*JobArgs, error) {
	j := &JobArgs{Delegated: DelegatedArgs(cniArgs)}
	var errs []error
	seen := map[string]bool{}
	bad := func(key, format string, args ...any) {
		errs = append(errs, &Error{Code: types.ErrInvalidNetworkConfig, File: "CNI_ARGS", Field: key, Msg: fmt.Sprintf(format, args...)})
	}
	for _, kv := range strings.Split(cniArgs, ";") {
		k, v, _ := strings.Cut(kv, "=")
		prefix, ifname := splitIfaceKey(k)
		again := seen[k]
		seen[k] = true
		switch {
		case k == argNamespace || k == argJobID:
			if again {
				bad(k, "given more than once")
			}
			if k == argNamespace {
				j.Namespace = v
			} else {
				j.JobID = v
			}
		case prefix != "":
			if again {
				bad(k, "interface %s: given more than once", ifname)
				continue
			}
			if e := utils.ValidateInterfaceName(ifname); e != nil {
				bad(k, "%q after %s is not a valid interface name: %s", ifname, prefix, cniMsg(e))
				continue
			}
			val, err := parseCapability(prefix, v)
			if err != nil {
				bad(k, "interface %s: %v", ifname, err)
				continue
			}
			j.ifaces = append(j.ifaces, ifaceArg{Key: k, IfName: ifname, Capability: capabilityOf[prefix].name, Value: val})
		case strings.HasPrefix(k, nicmuxPrefix) && k != argSet:
			bad(k, "not an argument nicmux knows (%s, %s<ifname>, %s<ifname>)", argSet, argIPsPrefix, argMACPrefix)
		}
	}
	if len(errs) > 0 {
		sort.Slice(errs, func(a, b int) bool { return errs[a].Error() < errs[b].Error() })
		return nil, errors.Join(errs...)
	}
	sort.Slice(j.ifaces, func(a, b int) bool { return j.ifaces[a].Key < j.ifaces[b].Key })
	return j, nil
}

// DelegatedArgs returns CNI_ARGS as the delegates get it (see
// JobArgs.Delegated).
func DelegatedArgs(cniArgs string) string {
	if !strings.Contains(cniArgs, nicmuxPrefix) {
		return cniArgs
	}
	var kept []string
	for _, kv := range strings.Split(cniArgs, ";") {
		if !strings.HasPrefix(kv, nicmuxPrefix) {
			kept = append(kept, kv)
		}
	}
	return strings.Join(kept, ";")
}

// splitIfaceKey splits a per-interface key into its prefix and interface
// name; "" when key is not one.
func splitIfaceKey(key string) (prefix, ifname string) {
	for p := range capabilityOf {
		if rest, ok := strings.CutPrefix(key, p); ok {
			return p, rest
		}
	}
	return "", ""
}

// parseCapability checks a per-interface value and returns it as its
// capability argument's JSON: ips a list of CIDR strings, mac a string.
func parseCapability(prefix, v string) (json.RawMessage, error) {
	switch prefix {
	case argIPsPrefix:
		var ips []string
		seen := map[string]bool{}
		for _, item := range strings.Split(v, ",") {
			item = strings.TrimSpace(item)
			ip, _, err := net.ParseCIDR(item)
			if err != nil {
				return nil, fmt.Errorf("%q is not an IP address in CIDR form, such as 10.40.0.17/24 or fd00:40::17/64", item)
			}
			if seen[ip.String()] {
				return nil, fmt.Errorf("%s is given twice", ip)
			}
			seen[ip.String()] = true
			ips = append(ips, item)
		}
		return MarshalJSON(ips)
	default:
		hw, err := net.ParseMAC(strings.TrimSpace(v))
		switch {
		case err != nil || len(hw) != 6:
			return nil, fmt.Errorf("%q is not a 48-bit MAC address, such as 02:00:0a:28:00:11", v)
		case hw[0]&1 != 0:
			return nil, fmt.Errorf("%s is a multicast address: an interface needs a unicast one (first octet even, e.g. 02:...)", hw)
		case hw.String() == "00:00:00:00:00:00":
			return nil, fmt.Errorf("%s is not a usable address", hw)
		}
		return MarshalJSON(hw.String())
	}
}

// Bind checks the job's per-interface arguments against the set and
// returns the capability arguments each interface's chain gets, by
// interface name: the runtime's, with the job's for that interface on top.
// An argument for an interface the set does not have, or for a chain none
// of whose plugins declares the capability (so none would use it), is an
// error (code 7) naming the key and the interface; all are reported.
func (a *AttachmentFile) Bind(job *JobArgs, runtime map[string]json.RawMessage) (map[string]map[string]json.RawMessage, error) {
	out := map[string]map[string]json.RawMessage{}
	byName := map[string]*Chain{}
	for _, c := range a.Interfaces {
		out[c.IfName] = runtime
		byName[c.IfName] = c
	}
	var errs []error
	bad := func(arg ifaceArg, format string, args ...any) {
		errs = append(errs, &Error{Code: types.ErrInvalidNetworkConfig, File: "CNI_ARGS", Field: arg.Key,
			Msg: fmt.Sprintf("interface %s: ", arg.IfName) + fmt.Sprintf(format, args...)})
	}
	for _, arg := range job.ifaces {
		c := byName[arg.IfName]
		if c == nil {
			bad(arg, "not in attachment set %q (%s), whose interfaces are %s", a.setName(), a.File, strings.Join(a.ifnames(), ", "))
			continue
		}
		if !c.declares(arg.Capability) {
			prefix, _ := splitIfaceKey(arg.Key)
			bad(arg, "no plugin of its chain declares the %q capability, so none would use it: declare capabilities: {%s: true} %s",
				arg.Capability, arg.Capability, capabilityOf[prefix].hint)
			continue
		}
		caps := make(map[string]json.RawMessage, len(out[arg.IfName])+1)
		for k, v := range out[arg.IfName] {
			caps[k] = v
		}
		caps[arg.Capability] = arg.Value
		out[arg.IfName] = caps
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// declares reports whether a plugin of the chain declares capability.
func (c *Chain) declares(capability string) bool {
	for _, p := range c.Plugins {
		if p.Capabilities[capability] {
			return true
		}
	}
	return false
}

func (a *AttachmentFile) ifnames() []string {
	out := make([]string, len(a.Interfaces))
	for i, c := range a.Interfaces {
		out[i] = c.IfName
	}
	return out
}
