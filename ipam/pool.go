package ipam

import (
	"net/netip"
	"strings"
)

// pool is one address space shared by every node whose configuration names
// it: range sets (one address of each per owner), cut into blocks.
type pool struct {
	Name                   string
	Sets                   []rangeSet
	BlockBits4, BlockBits6 int
}

// def is the pool's definition as stored, for node to write first.
func (p *pool) def() *poolDef {
	d := &poolDef{Version: recordVersion, BlockPrefixLength: blockLengths{IPv4: p.BlockBits4, IPv6: p.BlockBits6}}
	for _, set := range p.Sets {
		var rs []rangeConf
		for _, r := range set {
			rs = append(rs, r.conf())
		}
		d.Ranges = append(d.Ranges, rs)
	}
	return d
}

func (p *pool) rangesString() string {
	var parts []string
	for _, s := range p.Sets {
		parts = append(parts, "["+s.String()+"]")
	}
	return strings.Join(parts, " ")
}

// setOf is the index of the range set that hands out a, or -1.
func (p *pool) setOf(a netip.Addr) int {
	if b, ok := p.blockOf(a); ok {
		return b.Set
	}
	return -1
}
