package ipam

import (
	"context"
	"errors"
	"time"
)

// Store is the cluster's key-value store as the allocator needs it: reads
// and compare-and-swap transactions, each one round trip, linearizable. It
// knows keys and values only; what they mean is the allocator's.
//
// An error wraps ErrUnavailable when the store did not answer in time (a
// transaction may then have been applied or not).
type Store interface {
	// Read answers every read in one round trip, all at one point in time.
	Read(ctx context.Context, reads ...Read) ([][]KV, error)
	// Txn applies t.Then if every condition of t.If holds, else answers
	// t.Else's reads, atomically and in one round trip. ok reports which.
	Txn(ctx context.Context, t Txn) (ok bool, got [][]KV, err error)
	// Grant makes a lease of the store's for ttl: the keys a transaction
	// puts under it go when it ends.
	Grant(ctx context.Context, ttl time.Duration) (int64, error)
	// Close ends the connection.
	Close() error
}

// Read is one key, or every key under a prefix.
type Read struct {
	Key      string
	Prefix   bool // every key starting with Key
	KeysOnly bool // without their values
}

// KV is one key and its value.
type KV struct {
	Key   string
	Value []byte
}

// Cond holds when Key's value is Value, or, with Value nil, when there is
// no Key.
type Cond struct {
	Key   string
	Value []byte
}

// Op writes Value at Key, or deletes Key. A Lease (Grant's) makes the
// key go when the lease ends; a transaction that names a lease the store
// does not know fails with an error that wraps ErrNoLease.
type Op struct {
	Key    string
	Value  []byte
	Delete bool
	Lease  int64
}

// Txn is a compare-and-swap transaction.
type Txn struct {
	If   []Cond
	Then []Op
	Else []Read
}

func get(key string) Read                 { return Read{Key: key} }
func under(prefix string) Read            { return Read{Key: prefix, Prefix: true} }
func keysUnder(prefix string) Read        { return Read{Key: prefix, Prefix: true, KeysOnly: true} }
func put(key string, value []byte) Op     { return Op{Key: key, Value: value} }
func del(key string) Op                   { return Op{Key: key, Delete: true} }
func absent(key string) Cond              { return Cond{Key: key} }
func holds(key string, value []byte) Cond { return Cond{Key: key, Value: value} }

// unanswered is a store that tells onUnanswered of every request it did
// not answer in time (ErrUnavailable): the metrics count them, and the
// daemon drops a store that stopped answering.
type unanswered struct {
	Store
	onUnanswered func()
}

func (u *unanswered) Read(ctx context.Context, reads ...Read) ([][]KV, error) {
	got, err := u.Store.Read(ctx, reads...)
	u.seen(err)
	return got, err
}

func (u *unanswered) Txn(ctx context.Context, t Txn) (bool, [][]KV, error) {
	ok, got, err := u.Store.Txn(ctx, t)
	u.seen(err)
	return ok, got, err
}

func (u *unanswered) Grant(ctx context.Context, ttl time.Duration) (int64, error) {
	id, err := u.Store.Grant(ctx, ttl)
	u.seen(err)
	return id, err
}

func (u *unanswered) seen(err error) {
	if errors.Is(err, ErrUnavailable) {
		u.onUnanswered()
	}
}
