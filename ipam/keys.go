package ipam

import (
	"net/netip"
	"strings"
)

// keys lays out a pool in the store, under the cluster's prefix:
//
//	<prefix>/defs/<pool>                              the pool's ranges and block size
//	<prefix>/pools/<pool>/blocks/<block>              a block's claim: its node
//	<prefix>/pools/<pool>/nodes/<node>/<block>        the node's list of its blocks
//	<prefix>/pools/<pool>/leases/<block>/<ip>         a lease: its owner
//	<prefix>/pools/<pool>/owners/<containerID>/<if>   the owner's lease (the same value)
//	<prefix>/pools/<pool>/released/<containerID>/<if> the owner's lease as it was released, for a while
//	<prefix>/pools/<pool>/kept/<block>/<ip>           an address kept for its released owner meanwhile
//	<prefix>/nodes/<node>                             the node's last write
//
// A block's leases share a prefix, so a node reads its blocks' leases
// without reading the pool's; an owner's key finds its lease without a
// search, and its released key the addresses it held last.
type keys struct {
	prefix string
	pool   string
}

func (k keys) def() string            { return k.prefix + "/defs/" + k.pool }
func (k keys) defs() string           { return k.prefix + "/defs/" }
func (k keys) base() string           { return k.prefix + "/pools/" + k.pool }
func (k keys) blocks() string         { return k.base() + "/blocks/" }
func (k keys) block(id string) string { return k.blocks() + id }
func (k keys) nodeBlocks(node string) string {
	return k.base() + "/nodes/" + node + "/"
}
func (k keys) nodeBlock(node, id string) string { return k.nodeBlocks(node) + id }
func (k keys) leases() string                   { return k.base() + "/leases/" }
func (k keys) blockLeases(id string) string     { return k.leases() + id + "/" }
func (k keys) lease(id string, a netip.Addr) string {
	return k.blockLeases(id) + a.String()
}
func (k keys) owners() string { return k.base() + "/owners/" }
func (k keys) owner(id OwnerID) string {
	return k.owners() + id.ContainerID + "/" + id.IfName
}
func (k keys) released(id OwnerID) string {
	return k.base() + "/released/" + id.ContainerID + "/" + id.IfName
}
func (k keys) kept() string               { return k.base() + "/kept/" }
func (k keys) blockKept(id string) string { return k.kept() + id + "/" }
func (k keys) keep(ad Address) string     { return k.blockKept(ad.Block) + ad.IP.String() }
func (k keys) nodes() string              { return k.prefix + "/nodes/" }
func (k keys) alive(node string) string   { return k.nodes() + node }

// last is the last part of a key.
func last(key string) string { return key[strings.LastIndexByte(key, '/')+1:] }

// leaseAddr reads the address and block of a lease key.
func (k keys) leaseAddr(key string) (block string, a netip.Addr, ok bool) {
	return addrUnder(key, k.leases())
}

// addrUnder reads the address and block of a key <prefix><block>/<ip>.
func addrUnder(key, prefix string) (block string, a netip.Addr, ok bool) {
	rest, found := strings.CutPrefix(key, prefix)
	if !found {
		return "", a, false
	}
	block, ip, found := strings.Cut(rest, "/")
	if !found {
		return "", a, false
	}
	a, err := netip.ParseAddr(ip)
	return block, a, err == nil
}
