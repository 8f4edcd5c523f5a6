package mux

import (
	"log/slog"
	"sort"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// warnAddressOrder logs a warning when Nomad would not take the address
// the attachment file means as the allocation's: the primary interface's,
// or without one, the first interface's. Nomad sorts interface names and
// takes the first interface with a sandbox and an IPv4 address.
func warnAddressOrder(log *slog.Logger, merged types.Result, ifnames []string, primary string) {
	if len(ifnames) == 0 {
		return
	}
	res, err := types100.NewResultFromResult(merged)
	if err != nil {
		return
	}
	picked := nomadPick(res)
	switch {
	case primary != "" && picked != primary:
		// The others' sandboxes are cleared: Nomad 1.9 and later find no
		// address at all, 1.8 takes the primary's first IPv6 address.
		log.Warn("Nomad will not report the primary interface's address: it has no IPv4 address, and Nomad takes the first sandboxed interface with one",
			"primary", primary)
	case primary == "" && picked != "" && picked != ifnames[0]:
		log.Warn("Nomad will report the address of another interface than the first: it takes the alphabetically first sandboxed interface with an IPv4 address; mark the interface you mean primary: true",
			"first", ifnames[0], "nomadPicks", picked)
	}
}

// nomadPick returns the interface Nomad takes the allocation address from.
func nomadPick(res *types100.Result) string {
	var names []string
	for i, iface := range res.Interfaces {
		if iface.Sandbox == "" {
			continue
		}
		for _, ip := range res.IPs {
			if ip.Interface != nil && *ip.Interface == i && ip.Address.IP.To4() != nil {
				names = append(names, iface.Name)
				break
			}
		}
	}
	if len(names) == 0 {
		return ""
	}
	sort.Strings(names)
	return names[0]
}
