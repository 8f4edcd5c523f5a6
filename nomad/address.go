package nomad

import (
	"errors"
	"net"
)

// ErrNoAddress is the client's error when the result gives the allocation
// no address: the setup fails. Tools that print the allocation's address
// without checking it show "null/32" for such an allocation.
var ErrNoAddress = errors.New("no interface with an address")

// Address is what the client takes from the result: Address feeds
// address_mode = "alloc" services and NOMAD_ALLOC_IP_*, IPv6
// address_mode = "alloc_ipv6". Interface is the interface they come from.
type Address struct {
	Interface string `json:"interface"`
	IP        string `json:"address"`
	IPv6      string `json:"addressIPv6,omitempty"`
}

// Address picks the allocation's address from res, walking the interface
// names sorted and skipping interfaces without a sandbox (the host side of
// bridges and veths):
//
//   - 1.8.x: the first interface with any IP; Address is its first IP,
//     IPv4 or IPv6;
//   - from 1.9.0: the first interface with an IPv4; Address is its first
//     IPv4, and from 1.10.4 IPv6 its first IPv6;
//   - from 1.11.0: the first interface with any IP; Address is its first
//     IPv4, or without one its first IPv6; IPv6 is its first IPv6.
//
// With no such interface it is ErrNoAddress. Nothing else of the result
// is used but the top-level DNS.
func (r Release) Address(res *Result) (Address, error) {
	for _, name := range res.Names() {
		intf := res.Interfaces[name]
		if intf == nil || intf.Sandbox == "" {
			continue
		}
		v4, v6 := split(intf.IPs)
		switch {
		case !r.atLeast("1.9.0") && len(intf.IPs) > 0:
			return Address{Interface: name, IP: intf.IPs[0].String()}, nil
		case r.atLeast("1.11.0") && len(v4)+len(v6) > 0:
			a := Address{Interface: name}
			if len(v6) > 0 {
				a.IP, a.IPv6 = v6[0], v6[0]
			}
			if len(v4) > 0 {
				a.IP = v4[0]
			}
			return a, nil
		case r.atLeast("1.9.0") && !r.atLeast("1.11.0") && len(v4) > 0:
			a := Address{Interface: name, IP: v4[0]}
			if r.atLeast("1.10.4") && len(v6) > 0 {
				a.IPv6 = v6[0]
			}
			return a, nil
		}
	}
	return Address{}, ErrNoAddress
}

// split sorts IPs into IPv4 and IPv6, in order, as strings.
func split(ips []net.IP) (v4, v6 []string) {
	for _, ip := range ips {
		switch {
		case ip == nil:
		case ip.To4() != nil:
			v4 = append(v4, ip.String())
		default:
			v6 = append(v6, ip.String())
		}
	}
	return v4, v6
}
