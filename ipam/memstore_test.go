package ipam

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// memStore is the in-memory Store of the allocator's unit tests: the same
// semantics as etcd's transactions, one lock, round trips counted, and
// faults to inject. Only unit tests use it.
type memStore struct {
	mu sync.Mutex
	kv map[string][]byte
	// trips counts round trips (Read and Txn calls); answered the keys
	// their reads answered.
	trips    int
	answered int
	// down makes every call fail as unreachable.
	down bool
	// lostAnswers makes the next n transactions apply and then fail as
	// unreachable: a client timing out after its write committed.
	lostAnswers int
	// downAfterTxn makes the next transaction apply, and then the store
	// go down: a write that committed just before etcd stopped answering.
	downAfterTxn bool
	// leases are the live leases; keyLease the lease each key is under.
	leases    map[int64]bool
	keyLease  map[string]int64
	lastLease int64
}

func newMemStore() *memStore {
	return &memStore{kv: map[string][]byte{}, leases: map[int64]bool{}, keyLease: map[string]int64{}}
}

var errDown = fmt.Errorf("memstore: %w", ErrUnavailable)

func (m *memStore) Read(ctx context.Context, reads ...Read) ([][]KV, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.trips++
	if m.down {
		return nil, errDown
	}
	return m.read(reads), nil
}

func (m *memStore) read(reads []Read) [][]KV {
	out := make([][]KV, len(reads))
	for i, r := range reads {
		if !r.Prefix {
			if v, ok := m.kv[r.Key]; ok {
				out[i] = []KV{{Key: r.Key, Value: v}}
			}
			continue
		}
		for k, v := range m.kv {
			if strings.HasPrefix(k, r.Key) {
				if r.KeysOnly {
					v = nil
				}
				out[i] = append(out[i], KV{Key: k, Value: v})
			}
		}
		sort.Slice(out[i], func(a, b int) bool { return out[i][a].Key < out[i][b].Key })
	}
	for _, kvs := range out {
		m.answered += len(kvs)
	}
	return out
}

func (m *memStore) Txn(ctx context.Context, t Txn) (bool, [][]KV, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.trips++
	if m.down {
		return false, nil, errDown
	}
	for _, c := range t.If {
		v, ok := m.kv[c.Key]
		if (c.Value == nil && ok) || (c.Value != nil && (!ok || string(v) != string(c.Value))) {
			return false, m.read(t.Else), nil
		}
	}
	for _, op := range t.Then {
		if op.Lease != 0 && !m.leases[op.Lease] {
			return false, nil, fmt.Errorf("memstore: lease %x: %w", op.Lease, ErrNoLease)
		}
	}
	for _, op := range t.Then {
		delete(m.keyLease, op.Key)
		switch {
		case op.Delete:
			delete(m.kv, op.Key)
		case op.Lease != 0:
			m.keyLease[op.Key] = op.Lease
			fallthrough
		default:
			m.kv[op.Key] = append([]byte{}, op.Value...)
		}
	}
	if m.downAfterTxn {
		m.downAfterTxn, m.down = false, true
		return false, nil, errDown
	}
	if m.lostAnswers > 0 {
		m.lostAnswers--
		return false, nil, errDown
	}
	return true, nil, nil
}

func (m *memStore) Grant(ctx context.Context, ttl time.Duration) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.trips++
	if m.down {
		return 0, errDown
	}
	m.lastLease++
	m.leases[m.lastLease] = true
	return m.lastLease, nil
}

// expire ends every lease, and the keys under them go.
func (m *memStore) expire() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.keyLease {
		delete(m.kv, k)
	}
	m.keyLease, m.leases = map[string]int64{}, map[int64]bool{}
}

func (m *memStore) Close() error { return nil }

func (m *memStore) setDown(down bool) {
	m.mu.Lock()
	m.down = down
	m.mu.Unlock()
}

// count returns the round trips so far.
func (m *memStore) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.trips
}

// answeredKeys returns the keys the store's reads answered so far.
func (m *memStore) answeredKeys() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.answered
}

// keysUnder lists the stored keys with prefix, sorted.
func (m *memStore) keysUnder(prefix string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for k := range m.kv {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// nodeBlocks lists the blocks node claims in p, as its records would.
func (m *memStore) nodeBlocks(p *pool, node string) []string {
	var out []string
	for _, k := range m.keysUnder(keys{prefix: testPrefix, pool: p.Name}.nodeBlocks(node)) {
		out = append(out, last(k))
	}
	return out
}
