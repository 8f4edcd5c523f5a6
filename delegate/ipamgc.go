package delegate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/nicmux/nicmux/conf"
)

// gcVersion is the CNI version where GC begins, at which GCIPAM speaks to
// an IPAM plugin whatever its chain's version.
const gcVersion = "1.1.0"

// ErrNoGC is why GCIPAM skipped an IPAM plugin: it does not speak CNI
// 1.1.0, or refuses GC there.
var ErrNoGC = errors.New("does not support GC (CNI " + gcVersion + ")")

// IPAM is the IPAM section of one plugin of a chain: what GCIPAM collects
// directly, since the reference main plugins (bridge, macvlan, ...) do not
// forward GC to their IPAM plugin, and a chain below 1.1.0 gets no GC at
// all. Its Key is the same for every chain that shares the section's
// leases: one GC per Key is enough.
type IPAM struct {
	// Type is the IPAM plugin's binary (ipam.type).
	Type string
	// Network is the chain's network name, which the IPAM plugin keys its
	// leases by.
	Network string
	// Section is the ipam object, as canonical JSON (keys sorted).
	Section json.RawMessage
	// IfName and Plugin name the first chain and plugin that use it, for
	// errors and the log.
	IfName, Plugin string
}

// Key identifies what the section's GC collects: its type, network and
// configuration.
func (a IPAM) Key() string { return a.Type + "\x00" + a.Network + "\x00" + string(a.Section) }

// IPAMs returns the IPAM sections of c's plugins, in order.
func IPAMs(c *conf.Chain) []IPAM {
	var out []IPAM
	for _, p := range c.Plugins {
		var pc struct {
			IPAM json.RawMessage `json:"ipam"`
		}
		var sec map[string]any
		if json.Unmarshal(p.Bytes, &pc) != nil || json.Unmarshal(pc.IPAM, &sec) != nil {
			continue
		}
		typ, _ := sec["type"].(string)
		canon, err := json.Marshal(sec)
		if typ == "" || err != nil {
			continue
		}
		out = append(out, IPAM{Type: typ, Network: c.Network, Section: canon, IfName: c.IfName, Plugin: p.Type})
	}
	return out
}

// GCIPAM sends GC at CNI 1.1.0 to an IPAM plugin, with its section, its
// network's name and the attachments of that network that are still
// valid, once the plugin's VERSION lists 1.1.0. A plugin that does not
// (or answers GC with an incompatible-version error) is skipped: the error
// is ErrNoGC.
func (r *Runner) GCIPAM(ctx context.Context, a IPAM, valid []types.GCAttachment) error {
	fail := func(err error) error {
		return &PluginError{Plugin: a.Plugin, Err: fmt.Errorf("ipam %s: %w", a.Type, err)}
	}
	ok, err := r.supports(ctx, a.Type, gcVersion)
	if err != nil {
		return fail(err)
	}
	if !ok {
		return fail(ErrNoGC)
	}
	extra, err := validExtra(valid)
	if err != nil {
		return fail(err)
	}
	extra["cniVersion"], _ = json.Marshal(gcVersion)
	extra["name"], _ = json.Marshal(a.Network)
	extra["ipam"] = a.Section
	stdin, err := conf.MarshalJSON(extra)
	if err != nil {
		return fail(err)
	}
	_, err = r.exec(ctx, "GC", Env{}, a.Type, stdin)
	var te *types.Error
	if errors.As(err, &te) && te.Code == types.ErrIncompatibleCNIVersion {
		err = fmt.Errorf("%w: %w", ErrNoGC, err)
	}
	if err != nil {
		return fail(err)
	}
	return nil
}

// supports asks a plugin binary (VERSION) whether it speaks version v.
func (r *Runner) supports(ctx context.Context, binary, v string) (bool, error) {
	out, err := r.exec(ctx, "VERSION", Env{}, binary, fmt.Appendf(nil, `{"cniVersion":%q}`, v))
	if err != nil {
		return false, fmt.Errorf("VERSION: %w", err)
	}
	var info version.PluginInfo
	if r.Exec != nil {
		info, err = r.Exec.Decode(out)
	} else {
		info, err = (&version.PluginDecoder{}).Decode(out)
	}
	if err != nil {
		return false, fmt.Errorf("VERSION: %w", err)
	}
	for _, s := range info.SupportedVersions() {
		if s == v {
			return true, nil
		}
	}
	return false, nil
}
