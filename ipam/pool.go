package ipam

import (
	"net/netip"
	"strings"
)

// Pool is one address space shared by every node whose configuration names
// it: range sets (one address of each per owner), cut into blocks.
type Pool struct {
	Name                   string
	Sets                   []RangeSet
	BlockBits4, BlockBits6 int
}

// def is the pool's definition as stored, for node to write first.
func (p *Pool) def() *poolDef {
	d := &poolDef{Version: recordVersion, BlockPrefixLength: BlockLengths{IPv4: p.BlockBits4, IPv6: p.BlockBits6}}
	for _, set := range p.Sets {
		var rs []RangeConf
		for _, r := range set {
			rs = append(rs, r.conf())
		}
		d.Ranges = append(d.Ranges, rs)
	}
	return d
}

// size is how many owners the pool can serve: the size of its smallest
// range set.
func (p *Pool) size() u128 {
	var n u128
	for i, set := range p.Sets {
		if s := set.size(); i == 0 || s.cmp(n) < 0 {
			n = s
		}
	}
	return n
}

func (p *Pool) rangesString() string {
	var parts []string
	for _, s := range p.Sets {
		parts = append(parts, "["+s.String()+"]")
	}
	return strings.Join(parts, " ")
}

// setOf is the index of the range set that hands out a, or -1.
func (p *Pool) setOf(a netip.Addr) int {
	if b, ok := p.blockOf(a); ok {
		return b.Set
	}
	return -1
}
