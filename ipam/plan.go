package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// plan is the addresses one claim tries, one per range set, and the blocks
// it claims with them.
type plan struct {
	addrs     []Address
	from      []source // where each address comes from
	newBlocks []string // blocks the claim claims for the node
}

// source is where a plan's address comes from.
type source int

const (
	chosen     source = iota // a free address the claim picked
	wanted                   // the runtime asked for it
	remembered               // the owner held it when it was last released
)

// wide is what a claim reads beyond the node's blocks, at most once, on
// the rare paths: when the node needs a block, whether nodes claim a few
// random blocks (the probe), and, when every one of those is claimed, the
// claimed blocks' IDs; when no block is free, the leased addresses.
type wide struct {
	// cands are the probe's blocks of each range set, in random order;
	// every[set] is true when they are all the set's blocks.
	cands map[int][]addrBlock
	every map[int]bool
	// claimed holds the blocks known to be claimed, or full of others'
	// leases; all is true once it holds every claimed block of the pool.
	claimed map[string]bool
	all     bool
	taken   *taken
}

// plan chooses the addresses of a claim: the one asked for in a range set,
// else the owner's remembered one (when remember is set and the view does
// not show it taken), else a free one.
func (a *allocator) plan(ctx context.Context, v *view, want []netip.Addr, remember bool) (*plan, error) {
	p := &plan{}
	w := &wide{}
	var mem []netip.Addr
	if remember && v.memory != nil {
		mem = v.memory.IPs()
	}
	for set := range a.pool.Sets {
		if addr, ok := a.inSet(want, set); ok {
			p.add(a.address(addr), wanted)
			continue
		}
		if addr, ok := a.inSet(mem, set); ok && !v.taken.leased[addr] {
			p.add(a.address(addr), remembered)
			continue
		}
		addr, block, err := a.choose(ctx, v, w, p, set)
		if err != nil {
			return nil, err
		}
		p.add(Address{IP: addr, Block: block}, chosen)
	}
	return p, nil
}

// inSet returns the address of addrs in range set set, if any.
func (a *allocator) inSet(addrs []netip.Addr, set int) (netip.Addr, bool) {
	i := slices.IndexFunc(addrs, func(x netip.Addr) bool { return a.pool.setOf(x) == set })
	if i < 0 {
		return netip.Addr{}, false
	}
	return addrs[i], true
}

// address is addr, which the pool hands out, with its block.
func (a *allocator) address(addr netip.Addr) Address {
	b, _ := a.pool.blockOf(addr)
	return Address{IP: addr, Block: b.ID()}
}

func (p *plan) add(ad Address, from source) {
	p.addrs, p.from = append(p.addrs, ad), append(p.from, from)
}

// guess plans a claim from the node's records alone: in each range set,
// the address asked for, else a random address of the blocks the hint
// lists that no lease record of the node names. Nil when the records
// cannot tell: no block of a set, or no pool definition that agrees with
// this node's.
func (a *allocator) guess(want []netip.Addr) *plan {
	if a.hint.Def == "" || len(a.hint.Blocks) == 0 {
		return nil
	}
	if d, err := decodeDef(KV{Key: "hint", Value: []byte(a.hint.Def)}); err != nil || !a.pool.def().sameAs(d) {
		return nil
	}
	p := &plan{}
	for set := range a.pool.Sets {
		if addr, ok := a.inSet(want, set); ok {
			p.add(a.address(addr), wanted)
			continue
		}
		var free []Address
		for _, id := range a.hint.Blocks {
			if b, ok := a.pool.blockByID(id); ok && b.Set == set {
				for _, f := range b.free(taken{leased: a.used}) {
					free = append(free, Address{IP: f, Block: id})
				}
			}
		}
		if len(free) == 0 {
			return nil
		}
		p.add(pick(free), chosen)
	}
	return p
}

// choose picks a free address of range set set: in the node's blocks, else
// in a block it claims, else borrowed from another node's block.
func (a *allocator) choose(ctx context.Context, v *view, w *wide, p *plan, set int) (netip.Addr, string, error) {
	if err := a.readNodeBlocks(ctx, v); err != nil {
		return netip.Addr{}, "", err
	}
	for _, id := range v.blocks {
		if b, ok := a.pool.blockByID(id); ok && b.Set == set {
			if free := b.free(v.taken); len(free) > 0 {
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
	for _, id := range v.blocks {
		if !v.read[id] {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	got, err := a.store.Read(ctx, a.blockReads(ids)...)
	if err != nil {
		return fmt.Errorf("pool %s: reading the node's blocks: %w", a.pool.Name, err)
	}
	for _, id := range ids {
		v.read[id] = true
	}
	a.markTaken(v.taken, got...)
	return nil
}

// pickedBlock is a free address of a block no node claims.
type pickedBlock struct {
	addr netip.Addr
	id   string
}

// probeBlocks is how many random blocks of a range set a claim that needs
// a block looks up in one read. The claim falls back to reading every
// claimed block of the pool only when all of them are claimed: with the
// pool 90% full, 3 claims in 100.
const probeBlocks = 32

// newBlock picks a block of set that no node claims, and a free address of
// it, for the claim to claim both: among the probe's blocks, else, when
// each of those is claimed, from a random start among all the pool's
// blocks. It reads the leases of at most maxAttempts blocks.
func (a *allocator) newBlock(ctx context.Context, w *wide, p *plan, set int) (pickedBlock, bool, error) {
	if err := a.probe(ctx, w, set); err != nil {
		return pickedBlock{}, false, err
	}
	tries := 0
	for _, b := range w.cands[set] {
		if w.claimed[b.ID()] {
			continue
		}
		if tries++; tries > maxAttempts {
			return pickedBlock{}, false, nil
		}
		if pb, ok, err := a.tryBlock(ctx, w, p, b); err != nil || ok {
			return pb, ok, err
		}
	}
	if w.every[set] {
		return pickedBlock{}, false, nil
	}
	if err := a.readClaimed(ctx, w); err != nil {
		return pickedBlock{}, false, err
	}
	for ; tries < maxAttempts; tries++ {
		b, ok := a.pool.freeBlock(set, w.claimed)
		if !ok {
			return pickedBlock{}, false, nil
		}
		if pb, ok, err := a.tryBlock(ctx, w, p, b); err != nil || ok {
			return pb, ok, err
		}
	}
	return pickedBlock{}, false, nil
}

// probe looks up, in one round trip, whether nodes claim probeBlocks
// random blocks of each range set from set on (the sets a claim has yet to
// choose in), keys only: its cost does not depend on how many blocks are
// claimed.
func (a *allocator) probe(ctx context.Context, w *wide, set int) error {
	if w.cands != nil {
		return nil
	}
	w.cands, w.every, w.claimed = map[int][]addrBlock{}, map[int]bool{}, map[string]bool{}
	var reads []Read
	var ids []string
	for s := set; s < len(a.pool.Sets); s++ {
		w.cands[s], w.every[s] = a.pool.candidates(s, probeBlocks)
		for _, b := range w.cands[s] {
			reads = append(reads, Read{Key: a.keys.block(b.ID()), KeysOnly: true})
			ids = append(ids, b.ID())
		}
	}
	got, err := a.store.Read(ctx, reads...)
	if err != nil {
		return fmt.Errorf("pool %s: reading the claims of %d of its blocks: %w", a.pool.Name, len(reads), err)
	}
	for i, kvs := range got {
		if len(kvs) > 0 {
			w.claimed[ids[i]] = true
		}
	}
	return nil
}

// readClaimed reads the IDs of every claimed block of the pool, keys only.
func (a *allocator) readClaimed(ctx context.Context, w *wide) error {
	if w.all {
		return nil
	}
	got, err := a.store.Read(ctx, keysUnder(a.keys.blocks()))
	if err != nil {
		return fmt.Errorf("pool %s: reading its blocks: %w", a.pool.Name, err)
	}
	for _, kv := range got[0] {
		w.claimed[last(kv.Key)] = true
	}
	w.all = true
	return nil
}

// tryBlock reads the leased and kept addresses of b, which no node claims,
// and picks a free one. An unclaimed block may hold leases: borrowed,
// asked for, or left by a node released by release-node. A block without
// a free address joins w.claimed.
func (a *allocator) tryBlock(ctx context.Context, w *wide, p *plan, b addrBlock) (pickedBlock, bool, error) {
	got, err := a.store.Read(ctx, a.blockReads([]string{b.ID()})...)
	if err != nil {
		return pickedBlock{}, false, fmt.Errorf("pool %s: reading block %s: %w", a.pool.Name, b.ID(), err)
	}
	t := newTaken()
	a.markTaken(t, got...)
	if free := b.free(t); len(free) > 0 {
		p.newBlocks = append(p.newBlocks, b.ID())
		return pickedBlock{addr: pick(free), id: b.ID()}, true, nil
	}
	w.claimed[b.ID()] = true // full of others' leases: look further
	return pickedBlock{}, false, nil
}

// borrow picks a free address of any block of set, when every block is
// claimed: one read of the pool's leased and kept addresses, keys only.
// An address kept for a released owner is taken only when no other is
// free: a pool is full when every address is leased.
func (a *allocator) borrow(ctx context.Context, w *wide, set int) (netip.Addr, string, error) {
	if w.taken == nil {
		got, err := a.store.Read(ctx, keysUnder(a.keys.leases()), keysUnder(a.keys.kept()))
		if err != nil {
			return netip.Addr{}, "", fmt.Errorf("pool %s: reading its leases: %w", a.pool.Name, err)
		}
		t := newTaken()
		a.markTaken(t, got...)
		w.taken = &t
	}
	blocks, ok := a.pool.blocks(set, maxBlockWalk)
	if !ok {
		return netip.Addr{}, "", a.fullErr(set)
	}
	var free, kept []netip.Addr
	for _, b := range blocks {
		free = append(free, b.free(*w.taken)...)
		kept = append(kept, b.free(taken{leased: w.taken.leased})...)
	}
	if len(free) == 0 {
		free = kept
	}
	if len(free) == 0 {
		return netip.Addr{}, "", a.fullErr(set)
	}
	addr := pick(free)
	b, _ := a.pool.blockOf(addr)
	return addr, b.ID(), nil
}

// txn is the claim's transaction: the lease's keys, the owner's key and
// the new blocks, written only if none of them exists; the owner's
// released lease, and what it kept, go with forget.
func (p *plan) txn(a *allocator, l *Lease, forget *Lease) Txn {
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
	if forget != nil {
		t.Then = append(t.Then, del(a.keys.released(l.Owner())))
		for _, ad := range forget.Addrs {
			t.Then = append(t.Then, del(a.keys.keep(ad)))
		}
	}
	t.Then = append(t.Then, a.touch(l.Time))
	return t
}

// touch is the write of the node's last-write key.
func (a *allocator) touch(t time.Time) Op {
	return put(a.keys.alive(a.node), encode(nodeAlive{Version: recordVersion, Time: t.UTC()}))
}

// errRememberedTaken says that another owner holds the address an owner
// held when it was released: the claim tries again without it.
var errRememberedTaken = errors.New("the owner's remembered address is taken")

// refused reads why a claim's transaction did not apply. A requested
// address that another owner holds fails the claim, naming the holder; a
// remembered one is given up; any other loss (the owner claimed meanwhile,
// an address or block taken) is a race to try again.
func (a *allocator) refused(got [][]KV, p *plan, id OwnerID) error {
	if len(got[0]) > 0 {
		return nil
	}
	for i, ad := range p.addrs {
		ip := ad.IP
		if p.from[i] == chosen || len(got[1+i]) == 0 {
			continue
		}
		if p.from[i] == remembered {
			return errRememberedTaken
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
