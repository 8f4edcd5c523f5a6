package ipam

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
)

// addrBlock is an aligned piece of one range that one node claims, so that it
// hands out the block's addresses without contending with other nodes. A
// subnet smaller than the pool's block size is one block.
type addrBlock struct {
	Prefix netip.Prefix
	Set    int // the range set's index
	r      addrRange
}

// ID names the block in keys: its prefix with "-" for "/".
func (b addrBlock) ID() string { return blockID(b.Prefix) }

func blockID(p netip.Prefix) string {
	return p.Addr().String() + "-" + strconv.Itoa(p.Bits())
}

// parseBlockID reads a block's ID back.
func parseBlockID(id string) (netip.Prefix, error) {
	i := strings.LastIndexByte(id, '-')
	if i < 0 {
		return netip.Prefix{}, fmt.Errorf("block %q: not an address-bits pair", id)
	}
	p, err := netip.ParsePrefix(id[:i] + "/" + id[i+1:])
	if err != nil || p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("block %q: not an aligned prefix", id)
	}
	return p, nil
}

// span is the part of the block's range inside the block: the addresses
// the block may hand out lie between first and last.
func (b addrBlock) span() (first, last netip.Addr) {
	first, last = b.Prefix.Addr(), lastAddr(b.Prefix)
	if first.Less(b.r.Start) {
		first = b.r.Start
	}
	if b.r.End.Less(last) {
		last = b.r.End
	}
	return first, last
}

// free lists the addresses of the block that may be handed out and that
// taken (nil: none) does not hold.
func (b addrBlock) free(t taken) []netip.Addr {
	var out []netip.Addr
	first, last := b.span()
	for a := first; a.IsValid() && !last.Less(a); a = a.Next() {
		if b.r.usable(a) && !t.has(a) {
			out = append(out, a)
		}
	}
	return out
}

// hasRoom reports whether the block has an address to hand out.
func (b addrBlock) hasRoom() bool {
	first, last := b.span()
	for a := first; a.IsValid() && !last.Less(a); a = a.Next() {
		if b.r.usable(a) {
			return true
		}
	}
	return false
}

// blockBits is the prefix length of r's blocks.
func (p *pool) blockBits(r addrRange) int {
	bits := p.BlockBits6
	if r.Subnet.Addr().Is4() {
		bits = p.BlockBits4
	}
	return max(bits, r.Subnet.Bits())
}

// blockOf returns the block that holds a, if the pool hands a out.
func (p *pool) blockOf(a netip.Addr) (addrBlock, bool) {
	for i, set := range p.Sets {
		if r, ok := set.find(a); ok {
			pre, _ := a.Prefix(p.blockBits(r))
			return addrBlock{Prefix: pre, Set: i, r: r}, true
		}
	}
	return addrBlock{}, false
}

// blockByID returns the pool's block named id.
func (p *pool) blockByID(id string) (addrBlock, bool) {
	pre, err := parseBlockID(id)
	if err != nil {
		return addrBlock{}, false
	}
	for i, set := range p.Sets {
		for _, r := range set {
			if r.Subnet.Contains(pre.Addr()) && pre.Bits() == p.blockBits(r) {
				return addrBlock{Prefix: pre, Set: i, r: r}, true
			}
		}
	}
	return addrBlock{}, false
}

// rangeBlocks is how the blocks of one range are numbered: count blocks
// of prefix length bits from the one at first.
type rangeBlocks struct {
	r     addrRange
	bits  int
	first u128
	count u128
}

func (p *pool) rangeBlocks(r addrRange) rangeBlocks {
	bits := p.blockBits(r)
	host := addrBits(r.Start) - bits
	first := toU128(r.Start).shr(host)
	last := toU128(r.End).shr(host)
	return rangeBlocks{r: r, bits: bits, first: first, count: last.sub(first).add(u64(1))}
}

func (rb rangeBlocks) block(i u128, set int) addrBlock {
	host := addrBits(rb.r.Start) - rb.bits
	a := rb.first.add(i).shl(host).addr(rb.r.Start)
	return addrBlock{Prefix: netip.PrefixFrom(a, rb.bits), Set: set, r: rb.r}
}

// maxBlockWalk bounds the blocks one search for a free block looks at: a
// pool with more blocks than this is never close to full.
const maxBlockWalk = 1 << 20

// setBlocks is how the blocks of range set set are numbered: its ranges'
// blocks one after the other, total in all.
func (p *pool) setBlocks(set int) (parts []rangeBlocks, total u128) {
	for _, r := range p.Sets[set] {
		rb := p.rangeBlocks(r)
		parts = append(parts, rb)
		total = total.add(rb.count)
	}
	return parts, total
}

// candidates returns up to n distinct random blocks of range set set that
// have an address to hand out, in random order, for a claim to look up
// whether nodes claim them. every is true when they are all such blocks
// of the set.
func (p *pool) candidates(set, n int) (out []addrBlock, every bool) {
	parts, total := p.setBlocks(set)
	if k, ok := total.small(n); ok {
		for _, i := range rand.Perm(k) {
			if b := blockAt(parts, u64(uint64(i)), set); b.hasRoom() {
				out = append(out, b)
			}
		}
		return out, true
	}
	seen := map[u128]bool{}
	// A range whose ends cut blocks short may have blocks without an
	// address to hand out: a few more draws make up for them.
	for draws := 0; len(out) < n && draws < 4*n; draws++ {
		i := randBelow(total)
		if seen[i] {
			continue
		}
		seen[i] = true
		if b := blockAt(parts, i, set); b.hasRoom() {
			out = append(out, b)
		}
	}
	return out, false
}

// freeBlock finds a block of range set set that no node claims (claimed
// holds the claimed blocks' IDs) and that has an address to hand out. It
// starts at a random block, so that nodes claiming at once rarely pick the
// same one, and walks on from there.
func (p *pool) freeBlock(set int, claimed map[string]bool) (addrBlock, bool) {
	parts, total := p.setBlocks(set)
	i := randBelow(total)
	steps, ok := total.small(maxBlockWalk)
	if !ok {
		steps = maxBlockWalk
	}
	for range steps {
		b := blockAt(parts, i, set)
		if !claimed[b.ID()] && b.hasRoom() {
			return b, true
		}
		if i = i.add(u64(1)); i == total {
			i = u128{}
		}
	}
	return addrBlock{}, false
}

// blockAt is the i-th block of the ranges.
func blockAt(parts []rangeBlocks, i u128, set int) addrBlock {
	for _, rb := range parts {
		if i.cmp(rb.count) < 0 {
			return rb.block(i, set)
		}
		i = i.sub(rb.count)
	}
	return addrBlock{}
}

// blocks lists every block of range set set, when there are at most limit.
func (p *pool) blocks(set, limit int) ([]addrBlock, bool) {
	var out []addrBlock
	for _, r := range p.Sets[set] {
		rb := p.rangeBlocks(r)
		n, ok := rb.count.small(limit - len(out))
		if !ok {
			return nil, false
		}
		for i := range n {
			out = append(out, rb.block(u64(uint64(i)), set))
		}
	}
	return out, true
}

// randBelow is a uniform-enough random number below n (n > 0).
func randBelow(n u128) u128 {
	if n.hi == 0 {
		return u64(rand.Uint64N(n.lo))
	}
	x := u128{hi: rand.Uint64N(n.hi + 1), lo: rand.Uint64()}
	if x.cmp(n) >= 0 {
		x.hi = 0
	}
	return x
}
