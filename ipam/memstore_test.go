package ipam

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// memStore is the in-memory Store of the allocator's unit tests: the same
// semantics as etcd's transactions, one lock, round trips counted, and
// faults to inject. Only unit tests use it.
type memStore struct {
	mu sync.Mutex
	kv map[string][]byte
	// trips counts round trips (Read and Txn calls).
	trips int
	// down makes every call fail as unreachable.
	down bool
	// lostAnswers makes the next n transactions apply and then fail as
	// unreachable: a client timing out after its write committed.
	lostAnswers int
	// downAfterTxn makes the next transaction apply, and then the store
	// go down: a write that committed just before etcd stopped answering.
	downAfterTxn bool
}

func newMemStore() *memStore { return &memStore{kv: map[string][]byte{}} }

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
		if op.Delete {
			delete(m.kv, op.Key)
		} else {
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
