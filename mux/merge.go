package mux

import (
	"fmt"
	"slices"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/nicmux/nicmux/ns"
)

// merge combines the chains' results, given in attachment order, into one
// result at cniVersion, which is what the runtime (go-cni, and through it
// Nomad) reads:
//
//   - every chain's interfaces, in order;
//   - every IP with its interface index remapped into the merged list. An IP
//     without an index is put on its chain's container interface (added if
//     the chain reported none), because go-cni files an IP without an index
//     under "eth0", whatever interface it is on;
//   - routes concatenated; DNS from the first chain that has any;
//   - with a primary interface (the attachment file's `primary: true`),
//     only that chain's interfaces keep their sandbox (see shapeForPrimary).
//
// ifnames[k] and netns name chain k's container interface; primary is ""
// or one of ifnames.
func merge(results []types.Result, ifnames []string, netns, cniVersion, primary string) (types.Result, error) {
	out := &types100.Result{CNIVersion: types100.ImplementedSpecVersion}
	if len(ifnames) < len(results) {
		return nil, fmt.Errorf("merging %d results for %d interfaces", len(results), len(ifnames))
	}
	var keep []int // the primary chain's interfaces in out
	for k, r := range results {
		if r == nil {
			return nil, fmt.Errorf("%s: no result to merge", ifnames[k])
		}
		res, err := types100.NewResultFromResult(r)
		if err != nil {
			return nil, fmt.Errorf("%s: converting result: %w", ifnames[k], err)
		}
		offset := len(out.Interfaces)
		for _, iface := range res.Interfaces {
			out.Interfaces = append(out.Interfaces, iface.Copy())
		}
		own := -1
		if i := ns.OwnInterface(res, ifnames[k]); i >= 0 {
			own = offset + i
		}
		for _, ip := range res.IPs {
			c := ip.Copy()
			var idx int
			switch {
			case ip.Interface != nil && *ip.Interface >= 0 && *ip.Interface < len(res.Interfaces):
				idx = offset + *ip.Interface
			default:
				if own < 0 {
					out.Interfaces = append(out.Interfaces, &types100.Interface{Name: ifnames[k], Sandbox: netns})
					own = len(out.Interfaces) - 1
				}
				idx = own
			}
			c.Interface = &idx
			out.IPs = append(out.IPs, c)
		}
		for _, rt := range res.Routes {
			out.Routes = append(out.Routes, rt.Copy())
		}
		if out.DNS.IsEmpty() && !res.DNS.IsEmpty() {
			out.DNS = *res.DNS.Copy()
		}
		if ifnames[k] == primary {
			for i := offset; i < len(out.Interfaces); i++ {
				keep = append(keep, i)
			}
			if own >= 0 && out.Interfaces[own].Sandbox == "" {
				out.Interfaces[own].Sandbox = netns
			}
		}
	}
	if primary != "" {
		shapeForPrimary(out, keep)
	}
	return out.GetAsVersion(cniVersion)
}

// shapeForPrimary clears the sandbox of every interface but keep (the
// primary chain's), so that Nomad takes the primary interface's addresses
// as the allocation's: go-cni files interfaces by name, and Nomad takes the
// alphabetically first one with a sandbox and an IPv4 address (1.8.x: any
// address), whatever the file order, skipping those without a sandbox (the
// host side). The IPs stay, each on its interface. CHECK and DEL do not
// read this result (each interface's own record serves them), but
// whatever else does sees the other container interfaces as host-side
// ones (docs/nomad.md, "The allocation address").
func shapeForPrimary(res *types100.Result, keep []int) {
	for i, iface := range res.Interfaces {
		if !slices.Contains(keep, i) {
			iface.Sandbox = ""
		}
	}
}
