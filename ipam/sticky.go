package ipam

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DefaultSticky is how long etcd keeps a released owner's addresses for
// it by default.
const DefaultSticky = 5 * time.Minute

// memoryLease is the etcd lease a node puts the released leases of its
// owners under: one lease for many releases, so that a DEL costs no round
// trip of its own to remember. Granted for twice the sticky time and used
// while it has at least the sticky time left, it keeps each release for
// between the sticky time and twice that.
type memoryLease struct {
	ID int64 `json:"id"`
	// Until is when etcd ends the lease at the earliest, by the node's
	// clock (read before the grant was asked for).
	Until time.Time `json:"until"`
}

func (m *memoryLease) same(o *memoryLease) bool {
	return (m == nil) == (o == nil) && (m == nil || *m == *o)
}

// remember is the writes that keep l, whose value is value, as its
// owner's released lease for a while, and its addresses kept for the
// owner meanwhile: nothing when the pool keeps none. granted reports a
// lease granted for them, which costs a round trip (once per sticky time,
// per node and pool, the hint keeping it).
func (a *allocator) remember(ctx context.Context, l *Lease, value []byte) (ops []Op, granted bool, err error) {
	if a.sticky <= 0 {
		return nil, false, nil
	}
	now := a.now()
	m := a.hint.Memory
	if m == nil || m.Until.Sub(now) < a.sticky {
		ttl := 2 * a.sticky
		leaseID, err := a.store.Grant(ctx, ttl)
		if errors.Is(err, ErrUnavailable) {
			return nil, false, fmt.Errorf("granting the lease of released addresses: %w", err)
		}
		if err != nil {
			// Stickiness is a preference: the release goes on without it.
			return nil, false, nil
		}
		m, granted = &memoryLease{ID: leaseID, Until: now.Add(ttl)}, true
		a.hint.Memory = m
	}
	ops = []Op{put(a.keys.released(l.Owner()), value)}
	for _, ad := range l.Addrs {
		ops = append(ops, put(a.keys.keep(ad), []byte(l.Owner().String())))
	}
	for i := range ops {
		ops[i].Lease = m.ID
	}
	return ops, granted, nil
}
