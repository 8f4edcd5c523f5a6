package mux

import (
	"log/slog"
	"sort"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// warnAddressOrder logs a warning when Nomad would not take the first
// interface's address as the allocation's: Nomad sorts interface names and
// takes the first interface with a sandbox and an IPv4 address.
func warnAddressOrder(log *slog.Logger, merged types.Result, ifnames []string) {
	if len(ifnames) == 0 {
		return
	}
	res, err := types100.NewResultFromResult(merged)
	if err != nil {
		return
	}
	if picked := nomadPick(res); picked != "" && picked != ifnames[0] {
		log.Warn("Nomad will report the address of another interface than the first: it takes the alphabetically first sandboxed interface with an IPv4 address",
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
