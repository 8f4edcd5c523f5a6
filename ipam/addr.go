package ipam

import (
	"math/big"
	"math/bits"
	"net/netip"
)

// u128 is an address, or a count of addresses, as a 128-bit number: IPv6
// pools count past 64 bits, and block arithmetic must not allocate.
type u128 struct{ hi, lo uint64 }

func u64(n uint64) u128 { return u128{lo: n} }

// toU128 maps an address to its number; an IPv4 address is its 32 bits.
func toU128(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u64(uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3]))
	}
	b := a.As16()
	var x u128
	for i := 0; i < 8; i++ {
		x.hi = x.hi<<8 | uint64(b[i])
		x.lo = x.lo<<8 | uint64(b[8+i])
	}
	return x
}

// addr maps n back to an address of the family of like.
func (x u128) addr(like netip.Addr) netip.Addr {
	if like.Is4() {
		v := uint32(x.lo)
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[7-i] = byte(x.hi >> (8 * i))
		b[15-i] = byte(x.lo >> (8 * i))
	}
	return netip.AddrFrom16(b)
}

func (x u128) cmp(y u128) int {
	switch {
	case x.hi < y.hi || (x.hi == y.hi && x.lo < y.lo):
		return -1
	case x == y:
		return 0
	}
	return 1
}

func (x u128) add(y u128) u128 {
	lo, c := bits.Add64(x.lo, y.lo, 0)
	hi, _ := bits.Add64(x.hi, y.hi, c)
	return u128{hi, lo}
}

func (x u128) sub(y u128) u128 {
	lo, b := bits.Sub64(x.lo, y.lo, 0)
	hi, _ := bits.Sub64(x.hi, y.hi, b)
	return u128{hi, lo}
}

func (x u128) shl(n int) u128 {
	switch {
	case n >= 128:
		return u128{}
	case n >= 64:
		return u128{hi: x.lo << (n - 64)}
	case n == 0:
		return x
	}
	return u128{hi: x.hi<<n | x.lo>>(64-n), lo: x.lo << n}
}

func (x u128) shr(n int) u128 {
	switch {
	case n >= 128:
		return u128{}
	case n >= 64:
		return u128{lo: x.hi >> (n - 64)}
	case n == 0:
		return x
	}
	return u128{hi: x.hi >> n, lo: x.lo>>n | x.hi<<(64-n)}
}

// small reports x as an int when it fits in limit.
func (x u128) small(limit int) (int, bool) {
	if x.hi != 0 || x.lo > uint64(limit) {
		return 0, false
	}
	return int(x.lo), true
}

func (x u128) String() string {
	b := new(big.Int).SetUint64(x.hi)
	b.Lsh(b, 64)
	return b.Or(b, new(big.Int).SetUint64(x.lo)).String()
}

// addrBits is the number of bits of a's family.
func addrBits(a netip.Addr) int {
	if a.Is4() {
		return 32
	}
	return 128
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	host := addrBits(p.Addr()) - p.Bits()
	return toU128(p.Addr()).add(u64(1).shl(host).sub(u64(1))).addr(p.Addr())
}
