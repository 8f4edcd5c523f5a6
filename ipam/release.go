package ipam

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// Release frees owner id's lease and returns it, or nil when the owner
// holds none; etcd keeps the lease as released for a while (sticky), so
// that the owner's next claim gets its addresses back. With claim set it
// frees that claim only: a lease the owner claimed again since is kept.
// rec is what the node records for the owner, if anything. Costs: one
// round trip when etcd holds what the node records, two otherwise, and two
// more each time the owner's lease changes meanwhile or an attempt gets no
// answer.
func (a *allocator) Release(ctx context.Context, id OwnerID, claim string, rec *recorded) (*Lease, error) {
	var lastErr error
	for i := range maxAttempts {
		if err := backoff(ctx, i, lastErr); err != nil {
			return nil, err
		}
		l, done, err := a.releaseOnce(ctx, id, claim, rec)
		rec = nil
		if l != nil && err == nil {
			a.noteUsed(l, false)
		}
		if errors.Is(err, ErrUnavailable) {
			lastErr = fmt.Errorf("pool %s: releasing the lease of %s: %w", a.pool.Name, id, err)
			continue
		}
		if err != nil || done {
			return l, err
		}
		lastErr = nil
	}
	if lastErr != nil {
		return nil, lastErr
	}
	return nil, codeErr(types.ErrTryAgainLater, fmt.Errorf("pool %s: the lease of %s changed %d times while releasing it; try again", a.pool.Name, id, maxAttempts))
}

// releaseOnce is one attempt of Release, within half the time left; done
// is false when the lease changed under it. With rec, its first round trip
// drops what the node records, if etcd holds just that, and reads the
// owner's key otherwise.
func (a *allocator) releaseOnce(ctx context.Context, id OwnerID, claim string, rec *recorded) (*Lease, bool, error) {
	ctx, cancel := halfOf(ctx)
	defer cancel()
	owner := get(a.keys.owner(id))
	var got [][]KV
	if rec != nil && (claim == "" || rec.Lease.Claim == claim) {
		ok, g, err := a.drop(ctx, KV{Key: owner.Key, Value: rec.raw}, rec.Lease, true, owner)
		if err != nil || ok {
			return rec.Lease, err == nil, err
		}
		got = g
	} else {
		g, err := a.store.Read(ctx, owner)
		if err != nil {
			return nil, false, err
		}
		got = g
	}
	if len(got[0]) == 0 {
		return nil, true, nil
	}
	kv := got[0][0]
	l, bad := decodeLease(kv.Key, kv.Value)
	if bad == nil && claim != "" && l.Claim != claim {
		return nil, true, nil
	}
	ok, _, err := a.drop(ctx, kv, l, bad == nil)
	switch {
	case err != nil || !ok:
		return nil, false, err
	case bad != nil:
		// Dropped so that it pins nothing; its addresses, unknown, stay.
		return nil, true, codeErr(types.ErrIOFailure, fmt.Errorf("pool %s: %w: removed %w; the addresses it held stay leased: nicmux-ipam show lists them", a.pool.Name, ErrUnreadable, bad))
	}
	return l, true, nil
}

// drop deletes an owner's key and its lease's keys (l nil: the owner key
// only) if the owner key still holds what was read; with remember, the
// lease stays in etcd as the owner's released one for a while. When the
// owner key holds something else, the transaction answers else.
func (a *allocator) drop(ctx context.Context, owner KV, l *Lease, remember bool, elseReads ...Read) (bool, [][]KV, error) {
	t := Txn{If: []Cond{holds(owner.Key, owner.Value)}, Then: []Op{del(owner.Key)}, Else: elseReads}
	if l != nil {
		for _, ad := range l.Addrs {
			t.Then = append(t.Then, del(a.keys.lease(ad.Block, ad.IP)))
		}
	}
	fresh := false
	if l != nil && remember {
		op, granted, err := a.remember(ctx, l, owner.Value)
		if err != nil {
			return false, nil, err
		}
		t.Then, fresh = append(t.Then, op...), granted
	}
	if a.node != "" {
		t.Then = append(t.Then, a.touch(a.now()))
	}
	ok, got, err := a.store.Txn(ctx, t)
	if errors.Is(err, ErrNoLease) {
		// The memory's lease ended before the node thought (etcd restored
		// from a snapshot): once more, with a new one, or without memory
		// if the new one was the one refused.
		a.hint.Memory = nil
		return a.drop(ctx, owner, l, !fresh, elseReads...)
	}
	return ok, got, err
}

// Lookup returns owner id's lease, or nil.
func (a *allocator) Lookup(ctx context.Context, id OwnerID) (*Lease, error) {
	got, err := a.store.Read(ctx, get(a.keys.owner(id)))
	if err != nil {
		return nil, fmt.Errorf("pool %s: reading the lease of %s: %w", a.pool.Name, id, err)
	}
	if len(got[0]) == 0 {
		return nil, nil
	}
	l, err := decodeLease(got[0][0].Key, got[0][0].Value)
	if err != nil {
		return nil, codeErr(types.ErrIOFailure, err)
	}
	return l, nil
}

// Touch writes the node's last-write key: the node is alive.
func (a *allocator) Touch(ctx context.Context) error {
	if _, _, err := a.store.Txn(ctx, Txn{Then: []Op{a.touch(a.now())}}); err != nil {
		return fmt.Errorf("writing node %s's last write: %w", a.node, err)
	}
	return nil
}

// holding is a lease as listed, with the raw value its release compares.
type holding struct {
	Lease *Lease
	raw   KV
}

// Leases lists the pool's leases, one read of its owner keys. A record
// that cannot be read is listed in bad, never skipped in silence.
func (a *allocator) Leases(ctx context.Context) (held []holding, bad []error, err error) {
	got, err := a.store.Read(ctx, under(a.keys.owners()))
	if err != nil {
		return nil, nil, fmt.Errorf("pool %s: listing its leases: %w", a.pool.Name, err)
	}
	for _, kv := range got[0] {
		l, err := decodeLease(kv.Key, kv.Value)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		held = append(held, holding{Lease: l, raw: kv})
	}
	return held, bad, nil
}

// Free releases a listed lease, if it is still what was listed.
func (a *allocator) Free(ctx context.Context, h holding) (bool, error) {
	ok, _, err := a.drop(ctx, h.raw, h.Lease, false)
	if err != nil {
		return false, fmt.Errorf("pool %s: releasing %s: %w", a.pool.Name, h.Lease, err)
	}
	return ok, nil
}

// nodeTime is what a node's last-write key says, zero when it has none.
func (a *allocator) nodeTime(ctx context.Context, node string) (time.Time, error) {
	got, err := a.store.Read(ctx, get(a.keys.alive(node)))
	if err != nil || len(got[0]) == 0 {
		return time.Time{}, err
	}
	var n nodeAlive
	if err := jsonDecode(got[0][0], &n); err != nil {
		return time.Time{}, err
	}
	return n.Time, nil
}
