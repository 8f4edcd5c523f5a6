package ipam

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// maxAttempts bounds the claims one ADD tries when other claims win the
// race for its address or block, and the releases one DEL tries when the
// lease changes under it.
const maxAttempts = 8

// allocator hands out a pool's addresses to the owners of one node. Every
// claim is one compare-and-swap transaction that writes the lease's keys
// only if none of them exists: two owners never get one address, whatever
// runs at the same time on any node. It holds no lock; what it learns of
// etcd it keeps in hint, for the node to record. One allocator serves one
// call.
type allocator struct {
	store Store
	pool  *pool
	keys  keys
	node  string
	// hint is what the node's records say of etcd (its blocks, the pool's
	// definition, the memory's lease), updated with what the call sees.
	hint hint
	// used are the addresses the node's lease records name: the claim's
	// guess avoids them.
	used map[netip.Addr]bool
	// sticky is how long a released owner's addresses are kept for it; 0
	// keeps none.
	sticky time.Duration
	now    func() time.Time
}

// newAllocator returns the allocator of pool for node, whose records say
// h (nil: nothing).
func newAllocator(s Store, p *pool, prefix, node string, h *hint) *allocator {
	a := &allocator{store: s, pool: p, keys: keys{prefix: prefix, pool: p.Name}, node: node, now: time.Now}
	if h != nil {
		a.hint = *h
	}
	return a
}

// claimed is what a claim returns.
type claimed struct {
	Lease *Lease
	// Raw is the lease's value in etcd.
	Raw []byte
	// Held is true when the owner already held the lease (a repeated ADD).
	Held bool
}

// attempt is what one claim carries from one try to the next.
type attempt struct {
	// guess: the first try is one transaction on a guess from the node's
	// records, whose else branch reads what the next needs.
	guess bool
	// remember: the owner's released addresses are tried first; off once
	// another owner was found holding one.
	remember bool
}

// Claim gives owner id one address of each range set: the address want
// names in that set, else the one the owner held when it was last
// released (if still free), else a free one. An owner that holds a lease
// gets it back. claim identifies this claim (newClaimID): a claim whose
// transaction got no answer is looked for under it. Costs: one round trip
// when the node's records guess a free address right; two when they do
// not; two more to claim a block, three when the probe of random blocks
// finds only claimed ones; two more to borrow an address from another
// node's block when no block is free, three in a pool with more blocks
// than the probe; two more per lost race or unanswered transaction, at
// most maxAttempts times.
func (a *allocator) Claim(ctx context.Context, id OwnerID, network string, want []netip.Addr, claim string) (*claimed, error) {
	var lastErr error
	at := &attempt{guess: true, remember: a.sticky > 0}
	for i := range maxAttempts {
		if err := backoff(ctx, i, lastErr); err != nil {
			return nil, err
		}
		c, err := a.claimOnce(ctx, id, network, want, claim, at)
		at.guess = false
		switch {
		case errors.Is(err, ErrUnavailable):
			// A leader change, a member down or stopped: the claim may have
			// been applied, and the next attempt's view tells.
			lastErr = err
			continue
		case errors.Is(err, errRememberedTaken):
			at.remember = false
		case err != nil || c != nil:
			return c, err
		}
		lastErr = nil
	}
	if lastErr != nil {
		return nil, lastErr
	}
	return nil, codeErr(types.ErrTryAgainLater, fmt.Errorf("pool %s: %d claims in a row lost the race for an address to other claims; try again", a.pool.Name, maxAttempts))
}

// claimOnce is one attempt of Claim, within half the time left, so that an
// attempt sent to a member that stopped answering leaves time for another.
// It returns nil and no error when it lost a race.
func (a *allocator) claimOnce(ctx context.Context, id OwnerID, network string, want []netip.Addr, claim string, at *attempt) (*claimed, error) {
	ctx, cancel := halfOf(ctx)
	defer cancel()
	l := &Lease{Version: recordVersion, ContainerID: id.ContainerID, IfName: id.IfName, Network: network,
		Node: a.node, Claim: claim, Time: a.now().UTC()}
	v, c, err := a.start(ctx, l, want, at)
	if err != nil || c != nil {
		return c, err
	}
	if v.lease != nil {
		return a.held(v, want)
	}
	if err := a.checkDef(ctx, v); err != nil {
		return nil, err
	}
	p, err := a.plan(ctx, v, want, at.remember)
	if err != nil {
		return nil, err
	}
	l.Addrs = p.addrs
	ok, got, err := a.store.Txn(ctx, p.txn(a, l, v.memory))
	switch {
	case err != nil:
		return nil, fmt.Errorf("pool %s: claiming %s: %w", a.pool.Name, l, err)
	case ok:
		a.hint.Blocks = v.blocksWith(p.newBlocks)
		return a.claimed(l), nil
	}
	return nil, a.refused(got, p, id)
}

// start is a claim's first round trip: the claim itself, when the node's
// records guess free addresses (its transaction's else branch reads the
// view), else the view.
func (a *allocator) start(ctx context.Context, l *Lease, want []netip.Addr, at *attempt) (*view, *claimed, error) {
	id := l.Owner()
	var p *plan
	if at.guess {
		p = a.guess(want)
	}
	if p == nil {
		v, err := a.view(ctx, id)
		return v, nil, err
	}
	l.Addrs = p.addrs
	t := p.txn(a, l, nil)
	t.If = append(t.If, holds(a.keys.def(), []byte(a.hint.Def)), absent(a.keys.released(id)))
	for _, ad := range p.addrs {
		t.If = append(t.If, absent(a.keys.keep(ad)))
	}
	t.Else = a.viewReads(id)
	ok, got, err := a.store.Txn(ctx, t)
	switch {
	case err != nil:
		return nil, nil, fmt.Errorf("pool %s: claiming %s: %w", a.pool.Name, l, err)
	case ok:
		return nil, a.claimed(l), nil
	}
	v, err := a.parseView(got)
	return v, nil, err
}

// claimed is what a claim of l that applied returns; the allocator's next
// guess avoids l's addresses.
func (a *allocator) claimed(l *Lease) *claimed {
	a.noteUsed(l, true)
	return &claimed{Lease: l, Raw: l.encode()}
}

// noteUsed marks l's addresses used, or not.
func (a *allocator) noteUsed(l *Lease, used bool) {
	if a.used == nil {
		a.used = map[netip.Addr]bool{}
	}
	for _, ip := range l.IPs() {
		a.used[ip] = used
	}
}

// halfOf bounds ctx to half the time it has left.
func halfOf(ctx context.Context) (context.Context, context.CancelFunc) {
	d, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, time.Until(d)/2)
}

// backoff waits before attempt i when the last one got no answer (a leader
// change, an endpoint going down), and fails once ctx is done.
func backoff(ctx context.Context, i int, lastErr error) error {
	if lastErr == nil {
		return nil
	}
	t := time.NewTimer(time.Duration(i) * 50 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return lastErr
	case <-t.C:
		return nil
	}
}

// held answers a claim of an owner that holds a lease: the same lease,
// unless it asks for another address.
func (a *allocator) held(v *view, want []netip.Addr) (*claimed, error) {
	for _, w := range want {
		if !slices.Contains(v.lease.IPs(), w) {
			return nil, configErr("pool %s: %s asks for %s but holds %s: DEL it first", a.pool.Name, v.lease.Owner(), w, v.lease)
		}
	}
	a.hint.Blocks = v.blocks
	return &claimed{Lease: v.lease, Raw: v.leaseRaw, Held: true}, nil
}

// view is what the first read of a claim saw.
type view struct {
	def    *poolDef
	defRaw []byte
	// lease is the owner's, if it holds one, and leaseRaw its value.
	lease    *Lease
	leaseRaw []byte
	// memory is the owner's lease as it was released, if etcd keeps it.
	memory *Lease
	blocks []string // the node's blocks
	// taken holds the leased and kept addresses of the blocks in read.
	taken taken
	read  map[string]bool
}

// taken are addresses a claim does not pick: leased, or kept for the owner
// that held them until its release.
type taken struct{ leased, kept map[netip.Addr]bool }

func newTaken() taken { return taken{leased: map[netip.Addr]bool{}, kept: map[netip.Addr]bool{}} }

func (t taken) has(a netip.Addr) bool { return t.leased[a] || t.kept[a] }

func (v *view) blocksWith(more []string) []string {
	out := append(slices.Clone(v.blocks), more...)
	sort.Strings(out)
	return slices.Compact(out)
}

// viewReads are the reads of a claim's view: the pool's definition, the
// owner's lease and its released one, the node's blocks, and the leased
// and kept addresses of the blocks the node's records list.
func (a *allocator) viewReads(id OwnerID) []Read {
	reads := []Read{get(a.keys.def()), get(a.keys.owner(id)), get(a.keys.released(id)), keysUnder(a.keys.nodeBlocks(a.node))}
	return append(reads, a.blockReads(a.hint.Blocks)...)
}

// blockReads read the leased and kept addresses of blocks, keys only.
func (a *allocator) blockReads(blocks []string) []Read {
	var reads []Read
	for _, b := range blocks {
		reads = append(reads, keysUnder(a.keys.blockLeases(b)), keysUnder(a.keys.blockKept(b)))
	}
	return reads
}

// view reads the view in one round trip.
func (a *allocator) view(ctx context.Context, id OwnerID) (*view, error) {
	got, err := a.store.Read(ctx, a.viewReads(id)...)
	if err != nil {
		return nil, fmt.Errorf("pool %s: reading the node's blocks: %w", a.pool.Name, err)
	}
	return a.parseView(got)
}

// parseView reads what viewReads got.
func (a *allocator) parseView(got [][]KV) (*view, error) {
	v := &view{taken: newTaken(), read: map[string]bool{}}
	var err error
	if len(got[0]) > 0 {
		if v.def, err = decodeDef(got[0][0]); err != nil {
			return nil, err
		}
		v.defRaw = got[0][0].Value
	}
	if len(got[1]) > 0 {
		if v.lease, err = decodeLease(got[1][0].Key, got[1][0].Value); err != nil {
			return nil, codeErr(types.ErrIOFailure, err)
		}
		v.leaseRaw = got[1][0].Value
	}
	if len(got[2]) > 0 {
		// A memory that cannot be read is only not used.
		v.memory, _ = decodeLease(got[2][0].Key, got[2][0].Value)
	}
	for _, kv := range got[3] {
		v.blocks = append(v.blocks, last(kv.Key))
	}
	for _, b := range a.hint.Blocks {
		v.read[b] = true
	}
	a.markTaken(v.taken, got[4:]...)
	return v, nil
}

// markTaken adds the addresses of lease and kept keys to t.
func (a *allocator) markTaken(t taken, kvs ...[]KV) {
	for _, list := range kvs {
		for _, kv := range list {
			if _, ip, ok := a.keys.leaseAddr(kv.Key); ok {
				t.leased[ip] = true
			} else if _, ip, ok := addrUnder(kv.Key, a.keys.kept()); ok {
				t.kept[ip] = true
			}
		}
	}
}

func decodeDef(kv KV) (*poolDef, error) {
	d := new(poolDef)
	if err := json.Unmarshal(kv.Value, d); err != nil || d.Version != recordVersion {
		return nil, codeErr(types.ErrIOFailure, fmt.Errorf("%s: not a version %d pool definition", kv.Key, recordVersion))
	}
	return d, nil
}

// checkDef makes sure the store holds the pool's definition and that it is
// this node's: two nodes whose configurations disagree must never hand out
// one subnet as two pools. The definition agreed on goes to the hint.
func (a *allocator) checkDef(ctx context.Context, v *view) error {
	mine := a.pool.def()
	stored, raw := v.def, v.defRaw
	if stored == nil {
		mine.Node, mine.Time = a.node, a.now().UTC()
		raw = encode(mine)
		ok, got, err := a.store.Txn(ctx, Txn{If: []Cond{absent(a.keys.def())}, Then: []Op{put(a.keys.def(), raw)}, Else: []Read{get(a.keys.def())}})
		if err != nil {
			return fmt.Errorf("pool %s: writing its definition: %w", a.pool.Name, err)
		}
		if ok || len(got[0]) == 0 {
			a.hint.Def = string(raw)
			return nil
		}
		if stored, err = decodeDef(got[0][0]); err != nil {
			return err
		}
		raw = got[0][0].Value
	}
	if !mine.sameAs(stored) {
		return configErr("pool %s: this node's ranges %s (blocks /%d, /%d) disagree with the pool's in etcd, %s (blocks /%d, /%d), written by node %s at %s: every node of a pool must list the same ranges; fix the configuration or name another pool",
			a.pool.Name, mine.rangesString(), mine.BlockPrefixLength.IPv4, mine.BlockPrefixLength.IPv6,
			stored.rangesString(), stored.BlockPrefixLength.IPv4, stored.BlockPrefixLength.IPv6, stored.Node, stored.Time.Format(time.RFC3339))
	}
	a.hint.Def = string(raw)
	return nil
}

// newClaimID returns a new random claim ID.
func newClaimID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// pick returns a random element of s.
func pick[T any](s []T) T { return s[mrand.IntN(len(s))] }

// fullErr reports a range set without a free address.
func (a *allocator) fullErr(set int) error {
	n := a.pool.Sets[set].size()
	return codeErr(ErrPoolFull, fmt.Errorf("pool %s is full: range set %s hands out %s addresses and every one is taken",
		a.pool.Name, a.pool.Sets[set], group(n)))
}

// group writes n with thousands separators.
func group(n u128) string {
	s := n.String()
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
