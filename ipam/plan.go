package ipam

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// plan is the addresses one claim tries, one per range set, and the blocks
// it claims with them.
type plan struct {
	addrs     []Address
	wanted    []bool   // the address was asked for
	newBlocks []string // blocks the claim claims for the node
}

// wide is what a claim reads of the whole pool, at most once, on the rare
// paths: the claimed blocks' IDs when the node needs a block, and the
// leased addresses when no block is free.
type wide struct {
	claimed map[string]bool
	used    map[netip.Addr]bool
}

// plan chooses the addresses of a claim.
func (a *allocator) plan(ctx context.Context, v *view, want []netip.Addr) (*plan, error) {
	p := &plan{}
	w := &wide{}
	for set := range a.pool.Sets {
		if i := slices.IndexFunc(want, func(x netip.Addr) bool { return a.pool.setOf(x) == set }); i >= 0 {
			b, _ := a.pool.blockOf(want[i])
			p.add(want[i], b.ID(), true)
			continue
		}
		addr, block, err := a.choose(ctx, v, w, p, set)
		if err != nil {
			return nil, err
		}
		p.add(addr, block, false)
	}
	return p, nil
}

func (p *plan) add(a netip.Addr, block string, wanted bool) {
	p.addrs, p.wanted = append(p.addrs, Address{IP: a, Block: block}), append(p.wanted, wanted)
}

// choose picks a free address of range set set: in the node's blocks, else
// in a block it claims, else borrowed from another node's block.
func (a *allocator) choose(ctx context.Context, v *view, w *wide, p *plan, set int) (netip.Addr, string, error) {
	if err := a.readNodeBlocks(ctx, v); err != nil {
		return netip.Addr{}, "", err
	}
	for _, id := range v.blocks {
		if b, ok := a.pool.blockByID(id); ok && b.Set == set {
			if free := b.free(v.used); len(free) > 0 {
				return pick(free), id, nil
			}
		}
	}
	if b, ok, err := a.newBlock(ctx, w, p, set); err != nil || ok {
		return b.addr, b.id, err
	}
	return a.borrow(ctx, w, set)
}

// readNodeBlocks reads the leases of the node's blocks that the first read
// did not (its records did not list them), in one round trip.
func (a *allocator) readNodeBlocks(ctx context.Context, v *view) error {
	var ids []string
	var reads []Read
	for _, id := range v.blocks {
		if !v.read[id] {
			ids = append(ids, id)
			reads = append(reads, keysUnder(a.keys.blockLeases(id)))
		}
	}
	if len(reads) == 0 {
		return nil
	}
	got, err := a.store.Read(ctx, reads...)
	if err != nil {
		return fmt.Errorf("pool %s: reading the node's blocks: %w", a.pool.Name, err)
	}
	for i, id := range ids {
		v.read[id] = true
		a.markUsed(v.used, got[i])
	}
	return nil
}

// pickedBlock is a free address of a block no node claims.
type pickedBlock struct {
	addr netip.Addr
	id   string
}

// newBlock picks a block of set that no node claims, and a free address of
// it, for the claim to claim both.
func (a *allocator) newBlock(ctx context.Context, w *wide, p *plan, set int) (pickedBlock, bool, error) {
	if w.claimed == nil {
		got, err := a.store.Read(ctx, keysUnder(a.keys.blocks()))
		if err != nil {
			return pickedBlock{}, false, fmt.Errorf("pool %s: reading its blocks: %w", a.pool.Name, err)
		}
		w.claimed = map[string]bool{}
		for _, kv := range got[0] {
			w.claimed[last(kv.Key)] = true
		}
	}
	for range maxAttempts {
		b, ok := a.pool.freeBlock(set, w.claimed)
		if !ok {
			return pickedBlock{}, false, nil
		}
		// An unclaimed block may hold leases: borrowed, asked for, or
		// left by a node released by release-node.
		got, err := a.store.Read(ctx, keysUnder(a.keys.blockLeases(b.ID())))
		if err != nil {
			return pickedBlock{}, false, fmt.Errorf("pool %s: reading block %s: %w", a.pool.Name, b.ID(), err)
		}
		used := map[netip.Addr]bool{}
		a.markUsed(used, got[0])
		if free := b.free(used); len(free) > 0 {
			p.newBlocks = append(p.newBlocks, b.ID())
			return pickedBlock{addr: pick(free), id: b.ID()}, true, nil
		}
		w.claimed[b.ID()] = true // full of others' leases: look further
	}
	return pickedBlock{}, false, nil
}

// borrow picks a free address of any block of set, when every block is
// claimed: one read of the pool's leased addresses, keys only.
func (a *allocator) borrow(ctx context.Context, w *wide, set int) (netip.Addr, string, error) {
	if w.used == nil {
		got, err := a.store.Read(ctx, keysUnder(a.keys.leases()))
		if err != nil {
			return netip.Addr{}, "", fmt.Errorf("pool %s: reading its leases: %w", a.pool.Name, err)
		}
		w.used = map[netip.Addr]bool{}
		a.markUsed(w.used, got[0])
	}
	blocks, ok := a.pool.blocks(set, maxBlockWalk)
	if !ok {
		return netip.Addr{}, "", a.fullErr(set)
	}
	var free []netip.Addr
	for _, b := range blocks {
		free = append(free, b.free(w.used)...)
	}
	if len(free) == 0 {
		return netip.Addr{}, "", a.fullErr(set)
	}
	addr := pick(free)
	b, _ := a.pool.blockOf(addr)
	return addr, b.ID(), nil
}

// txn is the claim's transaction: the lease's keys, the owner's key and
// the new blocks, written only if none of them exists.
func (p *plan) txn(a *allocator, l *Lease) Txn {
	val := l.encode()
	owner := a.keys.owner(l.Owner())
	t := Txn{If: []Cond{absent(owner)}, Then: []Op{put(owner, val)}, Else: []Read{get(owner)}}
	for _, ad := range p.addrs {
		k := a.keys.lease(ad.Block, ad.IP)
		t.If = append(t.If, absent(k))
		t.Then = append(t.Then, put(k, val))
		t.Else = append(t.Else, get(k))
	}
	claim := encode(blockClaim{Version: recordVersion, Node: a.node, Time: l.Time})
	for _, id := range p.newBlocks {
		t.If = append(t.If, absent(a.keys.block(id)))
		t.Then = append(t.Then, put(a.keys.block(id), claim), put(a.keys.nodeBlock(a.node, id), nil))
	}
	t.Then = append(t.Then, a.touch(l.Time))
	return t
}

// touch is the write of the node's last-write key.
func (a *allocator) touch(t time.Time) Op {
	return put(a.keys.alive(a.node), encode(nodeAlive{Version: recordVersion, Time: t.UTC()}))
}

// refused reads why a claim's transaction did not apply. A requested
// address that another owner holds fails the claim, naming the holder; any
// other loss (the owner claimed meanwhile, an address or block taken) is a
// race to try again.
func (a *allocator) refused(got [][]KV, p *plan, id OwnerID) error {
	if len(got[0]) > 0 {
		return nil
	}
	for i, ad := range p.addrs {
		ip := ad.IP
		if !p.wanted[i] || len(got[1+i]) == 0 {
			continue
		}
		kv := got[1+i][0]
		holder, err := decodeLease(kv.Key, kv.Value)
		if err != nil {
			return configErr("pool %s: %s for %s is taken by a record that cannot be read: %v", a.pool.Name, ip, id, err)
		}
		return configErr("pool %s: %s for %s is held by container %s (%s) on node %s", a.pool.Name, ip, id, holder.ContainerID, holder.IfName, holder.Node)
	}
	return nil
}
