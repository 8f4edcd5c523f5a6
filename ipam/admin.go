package ipam

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

// What the operator's commands read and change across pools: the pools
// etcd defines, their blocks, and a node's holdings.

// listPools reads every pool defined under prefix, sorted by name; a
// definition that cannot be read is reported in bad.
func listPools(ctx context.Context, s Store, prefix string) (pools []*pool, bad []error, err error) {
	k := keys{prefix: prefix}
	got, err := s.Read(ctx, under(k.defs()))
	if err != nil {
		return nil, nil, fmt.Errorf("listing the pools: %w", err)
	}
	for _, kv := range got[0] {
		d, err := decodeDef(kv)
		if err == nil {
			var p *pool
			if p, err = poolFromDef(last(kv.Key), d); err == nil {
				pools = append(pools, p)
				continue
			}
		}
		bad = append(bad, err)
	}
	sort.Slice(pools, func(i, j int) bool { return pools[i].Name < pools[j].Name })
	return pools, bad, nil
}

// poolFromDef is the pool a stored definition describes.
func poolFromDef(name string, d *poolDef) (*pool, error) {
	sets, err := parseRangeSets(d.Ranges)
	if err != nil {
		return nil, fmt.Errorf("pool %s: its definition: %w", name, err)
	}
	p := &pool{Name: name, Sets: sets, BlockBits4: defaultBlock4, BlockBits6: defaultBlock6}
	if err := p.setBlockBits(&d.BlockPrefixLength); err != nil {
		return nil, fmt.Errorf("pool %s: its definition: %w", name, err)
	}
	return p, nil
}

// blockInfo is a claimed block.
type blockInfo struct {
	ID   string    `json:"block"`
	Node string    `json:"node"`
	Time time.Time `json:"time"`
	raw  KV
}

// Blocks lists the pool's claimed blocks.
func (a *allocator) Blocks(ctx context.Context) ([]blockInfo, []error, error) {
	got, err := a.store.Read(ctx, under(a.keys.blocks()))
	if err != nil {
		return nil, nil, fmt.Errorf("pool %s: listing its blocks: %w", a.pool.Name, err)
	}
	var out []blockInfo
	var bad []error
	for _, kv := range got[0] {
		c, err := decodeBlockClaim(kv.Key, kv.Value)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		out = append(out, blockInfo{ID: last(kv.Key), Node: c.Node, Time: c.Time, raw: kv})
	}
	return out, bad, nil
}

// FreeBlock drops a node's claim of a block, if it is still the one
// listed; the block's leases stay.
func (a *allocator) FreeBlock(ctx context.Context, b blockInfo) (bool, error) {
	ok, _, err := a.store.Txn(ctx, Txn{If: []Cond{holds(b.raw.Key, b.raw.Value)},
		Then: []Op{del(b.raw.Key), del(a.keys.nodeBlock(b.Node, b.ID))}})
	if err != nil {
		return false, fmt.Errorf("pool %s: freeing block %s of node %s: %w", a.pool.Name, b.ID, b.Node, err)
	}
	return ok, nil
}

// setReport is one range set's use: of its size, the addresses leased
// (used), those kept for their released owners a while (kept: taken by
// another owner only when nothing else is free), and the rest (free).
type setReport struct {
	Ranges string      `json:"ranges"`
	Size   json.Number `json:"size"`
	Used   int         `json:"used"`
	Kept   int         `json:"kept"`
	Free   json.Number `json:"free"`
}

// nodeBlocks are the blocks one node claims in a pool.
type nodeBlocks struct {
	Node   string   `json:"node"`
	Blocks []string `json:"blocks"`
}

// poolReport is what show prints of a pool.
type poolReport struct {
	Pool   string       `json:"pool"`
	Sets   []setReport  `json:"rangeSets"`
	Blocks []nodeBlocks `json:"blocksPerNode"`
	Leases []*Lease     `json:"leases"`
	Errors []string     `json:"errors,omitempty"`
}

// Report reads the pool's use: sizes, blocks per node and leases, those of
// node only when node is set.
func (a *allocator) Report(ctx context.Context, node string) (*poolReport, error) {
	r := &poolReport{Pool: a.pool.Name, Leases: []*Lease{}}
	held, bad, err := a.Leases(ctx)
	if err != nil {
		return nil, err
	}
	blocks, badBlocks, err := a.Blocks(ctx)
	if err != nil {
		return nil, err
	}
	for _, e := range append(bad, badBlocks...) {
		r.Errors = append(r.Errors, e.Error())
	}
	for _, h := range held {
		if node == "" || h.Lease.Node == node {
			r.Leases = append(r.Leases, h.Lease)
		}
	}
	if r.Sets, err = a.setReports(ctx, held); err != nil {
		return nil, err
	}
	r.Blocks = perNode(blocks, node)
	return r, nil
}

// setReports counts each range set's leased and kept addresses.
func (a *allocator) setReports(ctx context.Context, held []holding) ([]setReport, error) {
	got, err := a.store.Read(ctx, keysUnder(a.keys.kept()))
	if err != nil {
		return nil, fmt.Errorf("pool %s: listing its kept addresses: %w", a.pool.Name, err)
	}
	t := newTaken()
	for _, h := range held {
		for _, ip := range h.Lease.IPs() {
			t.leased[ip] = true
		}
	}
	a.markTaken(t, got...)
	out := make([]setReport, len(a.pool.Sets))
	for i, set := range a.pool.Sets {
		out[i] = setReport{Ranges: set.String(), Size: json.Number(set.size().String())}
	}
	for ip := range t.leased {
		if s := a.pool.setOf(ip); s >= 0 {
			out[s].Used++
		}
	}
	for ip := range t.kept {
		if s := a.pool.setOf(ip); s >= 0 && !t.leased[ip] {
			out[s].Kept++
		}
	}
	for i, set := range a.pool.Sets {
		out[i].Free = json.Number(set.size().sub(u64(uint64(out[i].Used + out[i].Kept))).String())
	}
	return out, nil
}

// perNode groups blocks by node, of node only when it is set.
func perNode(blocks []blockInfo, node string) []nodeBlocks {
	by := map[string][]string{}
	for _, b := range blocks {
		if node == "" || b.Node == node {
			by[b.Node] = append(by[b.Node], b.ID)
		}
	}
	out := []nodeBlocks{}
	for n, ids := range by {
		sort.Strings(ids)
		out = append(out, nodeBlocks{Node: n, Blocks: ids})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// ipList writes addresses for a table.
func ipList(l *Lease) string {
	var s []string
	for _, a := range l.IPs() {
		s = append(s, a.String())
	}
	return strings.Join(s, ",")
}
