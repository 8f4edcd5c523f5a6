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
// runs at the same time on any node. It holds no lock and no state of its
// own; it is safe for concurrent use.
type allocator struct {
	store Store
	pool  *pool
	keys  keys
	node  string
	// hint lists the blocks the node's records say it holds, so that the
	// first read of a claim reads their leases too.
	hint []string
	now  func() time.Time
}

// newAllocator returns the allocator of pool for node, whose records list
// hint as its blocks.
func newAllocator(s Store, p *pool, prefix, node string, hint []string) *allocator {
	return &allocator{store: s, pool: p, keys: keys{prefix: prefix, pool: p.Name}, node: node, hint: hint, now: time.Now}
}

// claimed is what a claim returns.
type claimed struct {
	Lease *Lease
	// Held is true when the owner already held the lease (a repeated ADD).
	Held bool
	// Blocks are the node's blocks, as the claim saw them.
	Blocks []string
}

// Claim gives owner id one address of each range set: the address want
// names in that set, else a free one. An owner that holds a lease gets it
// back. claim identifies this claim (newClaimID): a claim whose transaction
// got no answer is looked for under it. Costs: two round trips when the
// node's blocks have a free address; two more to claim a block; one more
// to borrow an address from another node's block; two more per lost race
// or unanswered transaction, at most maxAttempts times.
func (a *allocator) Claim(ctx context.Context, id OwnerID, network string, want []netip.Addr, claim string) (*claimed, error) {
	var lastErr error
	for i := range maxAttempts {
		if err := backoff(ctx, i, lastErr); err != nil {
			return nil, err
		}
		c, err := a.claimOnce(ctx, id, network, want, claim)
		switch {
		case errors.Is(err, ErrUnavailable):
			// A leader change, a member down or stopped: the claim may have
			// been applied, and the next attempt's view tells.
			lastErr = err
			continue
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
func (a *allocator) claimOnce(ctx context.Context, id OwnerID, network string, want []netip.Addr, claim string) (*claimed, error) {
	ctx, cancel := halfOf(ctx)
	defer cancel()
	v, err := a.view(ctx, id)
	if err != nil {
		return nil, err
	}
	if v.lease != nil {
		return a.held(v, want)
	}
	if err := a.checkDef(ctx, v.def); err != nil {
		return nil, err
	}
	p, err := a.plan(ctx, v, want)
	if err != nil {
		return nil, err
	}
	l := &Lease{Version: recordVersion, ContainerID: id.ContainerID, IfName: id.IfName, Network: network,
		Node: a.node, Addrs: p.addrs, Claim: claim, Time: a.now().UTC()}
	ok, got, err := a.store.Txn(ctx, p.txn(a, l))
	switch {
	case err != nil:
		return nil, fmt.Errorf("pool %s: claiming %s: %w", a.pool.Name, l, err)
	case ok:
		return &claimed{Lease: l, Blocks: v.blocksWith(p.newBlocks)}, nil
	}
	return nil, a.refused(got, p, id)
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
	return &claimed{Lease: v.lease, Held: true, Blocks: v.blocks}, nil
}

// view is what the first read of a claim saw.
type view struct {
	def    *poolDef
	lease  *Lease   // the owner's, if it holds one
	blocks []string // the node's blocks
	// used holds the leased addresses of the blocks in read.
	used map[netip.Addr]bool
	read map[string]bool
}

func (v *view) blocksWith(more []string) []string {
	out := append(slices.Clone(v.blocks), more...)
	sort.Strings(out)
	return slices.Compact(out)
}

// view reads, in one round trip, the pool's definition, the owner's lease,
// the node's blocks and the leases of the blocks the node's records list.
func (a *allocator) view(ctx context.Context, id OwnerID) (*view, error) {
	reads := []Read{get(a.keys.def()), get(a.keys.owner(id)), keysUnder(a.keys.nodeBlocks(a.node))}
	for _, b := range a.hint {
		reads = append(reads, keysUnder(a.keys.blockLeases(b)))
	}
	got, err := a.store.Read(ctx, reads...)
	if err != nil {
		return nil, fmt.Errorf("pool %s: reading the node's blocks: %w", a.pool.Name, err)
	}
	v := &view{used: map[netip.Addr]bool{}, read: map[string]bool{}}
	if len(got[0]) > 0 {
		if v.def, err = decodeDef(got[0][0]); err != nil {
			return nil, err
		}
	}
	if len(got[1]) > 0 {
		if v.lease, err = decodeLease(got[1][0].Key, got[1][0].Value); err != nil {
			return nil, codeErr(types.ErrIOFailure, err)
		}
	}
	for _, kv := range got[2] {
		v.blocks = append(v.blocks, last(kv.Key))
	}
	for i, b := range a.hint {
		v.read[b] = true
		a.markUsed(v.used, got[3+i])
	}
	return v, nil
}

// markUsed adds the addresses of lease keys to used.
func (a *allocator) markUsed(used map[netip.Addr]bool, kvs []KV) {
	for _, kv := range kvs {
		if _, ip, ok := a.keys.leaseAddr(kv.Key); ok {
			used[ip] = true
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
// one subnet as two pools.
func (a *allocator) checkDef(ctx context.Context, stored *poolDef) error {
	mine := a.pool.def()
	if stored == nil {
		mine.Node, mine.Time = a.node, a.now().UTC()
		ok, got, err := a.store.Txn(ctx, Txn{If: []Cond{absent(a.keys.def())}, Then: []Op{put(a.keys.def(), encode(mine))}, Else: []Read{get(a.keys.def())}})
		if err != nil {
			return fmt.Errorf("pool %s: writing its definition: %w", a.pool.Name, err)
		}
		if ok || len(got[0]) == 0 {
			return nil
		}
		if stored, err = decodeDef(got[0][0]); err != nil {
			return err
		}
	}
	if !mine.sameAs(stored) {
		return configErr("pool %s: this node's ranges %s (blocks /%d, /%d) disagree with the pool's in etcd, %s (blocks /%d, /%d), written by node %s at %s: every node of a pool must list the same ranges; fix the configuration or name another pool",
			a.pool.Name, mine.rangesString(), mine.BlockPrefixLength.IPv4, mine.BlockPrefixLength.IPv6,
			stored.rangesString(), stored.BlockPrefixLength.IPv4, stored.BlockPrefixLength.IPv6, stored.Node, stored.Time.Format(time.RFC3339))
	}
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
