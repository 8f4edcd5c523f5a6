package ipam

import (
	"fmt"
	"net/netip"
	"strings"
)

// rangeConf is one range as written in the configuration: host-local's
// shape.
type rangeConf struct {
	Subnet     string `json:"subnet"`
	RangeStart string `json:"rangeStart,omitempty"`
	RangeEnd   string `json:"rangeEnd,omitempty"`
	Gateway    string `json:"gateway,omitempty"`
}

// addrRange is one range of a range set, with its defaults filled in: the
// addresses of Subnet from Start to End (inclusive) may be handed out,
// except the subnet's network address, its IPv4 broadcast address and the
// gateway.
type addrRange struct {
	Subnet     netip.Prefix
	Start, End netip.Addr
	Gateway    netip.Addr // zero when there is none
}

// rangeSet is one address family's ranges: an owner gets one address from
// each range set, as host-local gives one per set.
type rangeSet []addrRange

// parseRange checks one range; field names it in messages.
func parseRange(c rangeConf, field string) (addrRange, error) {
	var r addrRange
	p, err := netip.ParsePrefix(c.Subnet)
	if err != nil {
		return r, fmt.Errorf("%s.subnet: %q is not a subnet in CIDR form", field, c.Subnet)
	}
	if p.Masked() != p {
		return r, fmt.Errorf("%s.subnet: %s has host bits set (the subnet is %s)", field, p, p.Masked())
	}
	r.Subnet = p.Masked()
	r.Start, r.End = defaultBounds(r.Subnet)
	if !r.Start.IsValid() {
		return r, fmt.Errorf("%s.subnet: %s is too small to hand out addresses", field, p)
	}
	addr := func(s, name string) (netip.Addr, error) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return a, fmt.Errorf("%s.%s: %q is not an IP address", field, name, s)
		}
		if !r.Subnet.Contains(a) {
			return a, fmt.Errorf("%s.%s: %s is not in subnet %s", field, name, a, r.Subnet)
		}
		return a, nil
	}
	if c.RangeStart != "" {
		if r.Start, err = addr(c.RangeStart, "rangeStart"); err != nil {
			return r, err
		}
	}
	if c.RangeEnd != "" {
		if r.End, err = addr(c.RangeEnd, "rangeEnd"); err != nil {
			return r, err
		}
	}
	if r.End.Less(r.Start) {
		return r, fmt.Errorf("%s: rangeEnd %s is before rangeStart %s", field, r.End, r.Start)
	}
	if c.Gateway != "" {
		if r.Gateway, err = addr(c.Gateway, "gateway"); err != nil {
			return r, err
		}
	}
	return r, nil
}

// defaultBounds are host-local's: from the address after the network
// address to the last one before the IPv4 broadcast address (the last
// address of an IPv6 subnet).
func defaultBounds(p netip.Prefix) (start, end netip.Addr) {
	host := addrBits(p.Addr()) - p.Bits()
	if host < 2 {
		return netip.Addr{}, netip.Addr{}
	}
	start = p.Addr().Next()
	end = lastAddr(p)
	if p.Addr().Is4() {
		end = end.Prev()
	}
	return start, end
}

// usable reports whether a may be handed out from r.
func (r addrRange) usable(a netip.Addr) bool {
	if !r.usableBounds(a) {
		return false
	}
	for _, x := range r.excluded() {
		if a == x {
			return false
		}
	}
	return true
}

// excluded are the addresses of the subnet never handed out, each once:
// the network address, the IPv4 broadcast address, the gateway.
func (r addrRange) excluded() []netip.Addr {
	out := []netip.Addr{r.Subnet.Addr()}
	if r.Subnet.Addr().Is4() {
		out = append(out, lastAddr(r.Subnet))
	}
	if r.Gateway.IsValid() && r.Gateway != out[0] && r.Gateway != out[len(out)-1] {
		out = append(out, r.Gateway)
	}
	return out
}

// size is how many addresses r hands out.
func (r addrRange) size() u128 {
	n := toU128(r.End).sub(toU128(r.Start)).add(u64(1))
	for _, x := range r.excluded() {
		if r.usableBounds(x) {
			n = n.sub(u64(1))
		}
	}
	return n
}

// usableBounds reports whether a is within Start..End.
func (r addrRange) usableBounds(a netip.Addr) bool { return !a.Less(r.Start) && !r.End.Less(a) }

// conf is r as written back in the pool's definition, every default
// spelled out, so that nodes compare ranges, not spellings.
func (r addrRange) conf() rangeConf {
	c := rangeConf{Subnet: r.Subnet.String(), RangeStart: r.Start.String(), RangeEnd: r.End.String()}
	if r.Gateway.IsValid() {
		c.Gateway = r.Gateway.String()
	}
	return c
}

func (s rangeSet) String() string {
	var parts []string
	for _, r := range s {
		parts = append(parts, r.Subnet.String())
	}
	return strings.Join(parts, ",")
}

// find returns the range of s that hands out a, or false.
func (s rangeSet) find(a netip.Addr) (addrRange, bool) {
	for _, r := range s {
		if r.Subnet.Contains(a) {
			return r, r.usable(a)
		}
	}
	return addrRange{}, false
}

// size is how many addresses s hands out.
func (s rangeSet) size() u128 {
	var n u128
	for _, r := range s {
		n = n.add(r.size())
	}
	return n
}

// parseRangeSets checks the configuration's ranges: every set non-empty,
// one family per set, and no two subnets of the pool overlapping.
func parseRangeSets(confs [][]rangeConf) ([]rangeSet, error) {
	if len(confs) == 0 {
		return nil, fmt.Errorf("ranges: missing: give at least one range set, e.g. [[{\"subnet\": \"10.20.0.0/16\"}]]")
	}
	var sets []rangeSet
	var all []addrRange
	for i, rc := range confs {
		if len(rc) == 0 {
			return nil, fmt.Errorf("ranges[%d]: empty range set", i)
		}
		var set rangeSet
		for j, c := range rc {
			field := fmt.Sprintf("ranges[%d][%d]", i, j)
			r, err := parseRange(c, field)
			if err != nil {
				return nil, err
			}
			if r.Subnet.Addr().Is4() != set.family4(r) {
				return nil, fmt.Errorf("%s.subnet: %s is not of the family of %s: a range set holds one family", field, r.Subnet, set[0].Subnet)
			}
			for _, o := range all {
				if o.Subnet.Overlaps(r.Subnet) {
					return nil, fmt.Errorf("%s.subnet: %s overlaps %s", field, r.Subnet, o.Subnet)
				}
			}
			set = append(set, r)
			all = append(all, r)
		}
		sets = append(sets, set)
	}
	return sets, nil
}

// family4 is whether s holds IPv4 ranges; an empty set takes r's family.
func (s rangeSet) family4(r addrRange) bool {
	if len(s) == 0 {
		return r.Subnet.Addr().Is4()
	}
	return s[0].Subnet.Addr().Is4()
}
