package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/conf"
)

// ipamScratch lists the IPAM plugins whose ADD validate runs on a section,
// as the chain's main plugin runs it at ADD, so that what validate accepts
// is what the plugin in the CNI path accepts: each acts on nothing validate
// does not give it. host-local's ADD takes a lease in a scratch dataDir
// that validate removes; static's ADD only prints its result. The value
// puts the scratch folder into the section.
//
// The plugins' own loaders run in their own binaries: linked into nicmux,
// host-local's allocator package (with the netfilter packages it imports)
// slows the bare start that Nomad's fingerprint and every verb pay
// (test/bench/RESULTS.md).
var ipamScratch = map[string]func(ipam map[string]any, scratch string){
	"host-local": func(ipam map[string]any, scratch string) { ipam["dataDir"] = scratch },
	"static":     func(map[string]any, string) {},
}

// checkIPAM runs the ADD of a delegate's IPAM plugin on its section (see
// ipamScratch) and reports what the plugin refuses; for another IPAM type,
// it says that the section is not checked. A plugin whose binary cannot
// serve the chain's version is reported by checkBinary already.
func (v *validator) checkIPAM(d *delegate) {
	typ := d.facts.IPAM.Type
	bin, pe := v.probes.find("IPAM plugin", typ)
	if pe != nil {
		return
	}
	if vs, pe := v.probes.versions("IPAM plugin", bin, d.chain.CNIVersion); pe != nil || !slices.Contains(vs, d.chain.CNIVersion) {
		return
	}
	scratchOf, ok := ipamScratch[typ]
	if !ok {
		at, field := d.at("ipam.type")
		v.add(newFinding(sevNote, at, field, "the first ADD that uses this chain is the first to try it",
			"validate does not check the section of IPAM type %q: it runs the ADD of %s only", typ, strings.Join(ipamTypes(), " and ")))
		return
	}
	at, field := d.at("ipam")
	scratch, err := os.MkdirTemp("", "nicmux-validate-")
	if err != nil {
		v.add(newFinding(sevNote, at, field, "", "validate could not check the section: %v", err))
		return
	}
	defer os.RemoveAll(scratch)
	stdin, err := ipamStdin(d, func(ipam map[string]any) { scratchOf(ipam, scratch) })
	if err != nil {
		return // the plugin's configuration is reported where it is read
	}
	r := v.probes.run(bin, []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=nicmux-validate", "CNI_NETNS=/nonexistent/nicmux-validate",
		"CNI_IFNAME=" + d.chain.IfName}, stdin)
	if r.err == nil {
		return
	}
	msg := firstLine(r.stderr.String())
	var e types.Error
	if json.Unmarshal(r.stdout.Bytes(), &e) == nil && e.Msg != "" {
		msg = e.Error()
	}
	if r.timedOut {
		msg = fmt.Sprintf("no answer within %s", v.probes.timeout)
	}
	v.add(newFinding(sevError, at, field, "nicmux fails ADD of this interface with the same words until the section is fixed",
		"IPAM plugin %s (%s) refuses this section: %s", typ, bin, msg))
}

// ipamStdin is the configuration the chain's plugin hands its IPAM plugin
// at ADD (its own, with the chain's name and cniVersion), its ipam section
// changed by edit.
func ipamStdin(d *delegate, edit func(ipam map[string]any)) ([]byte, error) {
	var obj map[string]any
	if err := json.Unmarshal(d.Bytes, &obj); err != nil {
		return nil, err
	}
	ipam, ok := obj["ipam"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("no ipam object")
	}
	edit(ipam)
	obj["name"], obj["cniVersion"] = d.chain.Network, d.chain.CNIVersion
	return conf.MarshalJSON(obj)
}

// ipamTypes lists the IPAM types validate checks, sorted.
func ipamTypes() []string {
	var out []string
	for t := range ipamScratch {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}
