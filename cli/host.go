package cli

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"

	"github.com/nicmux/nicmux/conf"
)

// mtuAt is an MTU a chain sets, and where.
type mtuAt struct {
	mtu   int
	at    conf.Position
	field string
}

// checkHost checks what chain iface of ds needs of the host, in the current
// network namespace: that its macvlan, ipvlan or vlan master exists, and that
// no MTU the chain sets (the plugin's own, or tuning's on the interface it
// made) is above the master's, which the kernel refuses ("invalid MTU").
func (v *validator) checkHost(ds []*delegate, iface int) {
	var master *delegate
	var mtus []mtuAt
	for _, d := range ds {
		if d.iface != iface {
			continue
		}
		switch {
		case master == nil && d.facts.Master != "" && (d.Type == "macvlan" || d.Type == "ipvlan" || d.Type == "vlan"):
			if d.facts.LinkInContainer {
				return // the master is in the container's namespace
			}
			master = d
		case d.Type != "tuning":
			continue
		}
		if d.facts.MTU > 0 {
			at, field := d.at("mtu")
			mtus = append(mtus, mtuAt{d.facts.MTU, at, field})
		}
	}
	if master == nil {
		return
	}
	name := master.facts.Master
	at, field := master.at("master")
	link, err := netlink.LinkByName(name)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		v.add(newFinding(sevError, at, field,
			"name a host interface that exists (ip link show); validate checks the host it runs on: run it on the client",
			"master %q does not exist on this host", name))
		return
	}
	if err != nil {
		v.add(newFinding(sevWarning, at, field, "", "cannot check master %q: %v", name, err))
		return
	}
	limit := link.Attrs().MTU
	for _, m := range mtus {
		if m.mtu > limit {
			v.add(newFinding(sevError, m.at, m.field,
				fmt.Sprintf("raise the master's MTU (ip link set %s mtu %d; jumbo frames need the switch ports too) or lower mtu", name, m.mtu),
				"MTU %d is above the MTU %d of master %q", m.mtu, limit, name))
		}
	}
}
