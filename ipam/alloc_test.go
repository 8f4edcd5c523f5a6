package ipam

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const testPrefix = "/t"

// testPool makes a pool from range sets written as "subnet[,start-end[,gw]]".
func testPool(t testing.TB, name string, bits4 int, sets ...[]rangeConf) *pool {
	t.Helper()
	rs, err := parseRangeSets(sets)
	if err != nil {
		t.Fatal(err)
	}
	return &pool{Name: name, Sets: rs, BlockBits4: bits4, BlockBits6: defaultBlock6}
}

func v4(subnet string) []rangeConf { return []rangeConf{{Subnet: subnet}} }

func owner(i int) OwnerID { return OwnerID{ContainerID: fmt.Sprintf("c%04d", i), IfName: "eth1"} }

// claim claims for owner i on a, failing the test on error.
func claim(t testing.TB, a *allocator, i int, want ...netip.Addr) *Lease {
	t.Helper()
	c, err := a.Claim(context.Background(), owner(i), "net", want, newClaimID())
	if err != nil {
		t.Fatalf("claim %d: %v", i, err)
	}
	return c.Lease
}

// leasesOf checks the store's invariants (every address leased once, each
// owner key and its lease keys hold one value) and returns the leased
// addresses.
func leasesOf(t testing.TB, m *memStore, p *pool) map[netip.Addr]string {
	t.Helper()
	k := keys{prefix: testPrefix, pool: p.Name}
	out := map[netip.Addr]string{}
	for _, key := range m.keysUnder(k.leases()) {
		_, ip, ok := k.leaseAddr(key)
		if !ok {
			t.Fatalf("bad lease key %s", key)
		}
		l, err := decodeLease(key, m.kv[key])
		if err != nil {
			t.Fatal(err)
		}
		if string(m.kv[k.owner(l.Owner())]) != string(m.kv[key]) {
			t.Errorf("lease %s: its owner key does not hold the same lease", key)
		}
		out[ip] = l.Owner().String()
	}
	for _, key := range m.keysUnder(k.owners()) {
		l, _ := decodeLease(key, m.kv[key])
		for _, a := range l.IPs() {
			if out[a] != l.Owner().String() {
				t.Errorf("owner %s: %s is not leased to it", key, a)
			}
		}
	}
	return out
}

// trips runs f and returns the round trips it cost.
func trips(m *memStore, f func()) int {
	before := m.count()
	f()
	return m.count() - before
}

func TestRoundTripsPerClaim(t *testing.T) {
	m := newMemStore()
	p := testPool(t, "rt", 26, v4("10.20.0.0/16"))
	a := newAllocator(m, p, testPrefix, "n1", nil)
	// The first claim of the pool on the node: view, the definition, the
	// probe of random blocks' claims, the new block's leases, the claim.
	if got := trips(m, func() { claim(t, a, 0) }); got != 5 {
		t.Errorf("first claim: %d round trips, want 5", got)
	}
	blk, _ := p.blockByID(a.hint.Blocks[0])
	room := len(blk.free(taken{}))
	// What the node records now (its blocks, the definition, its leases)
	// guesses a free address: the claim is one transaction.
	for i := 1; i < room-2; i++ {
		if got := trips(m, func() { claim(t, a, i) }); got != 1 {
			t.Fatalf("claim %d in the node's block: %d round trips, want 1", i, got)
		}
	}
	// A guess that names a leased address (a record the node lost) costs
	// the claim its view: the transaction's else branch, then the claim.
	wrong := newAllocator(m, p, testPrefix, "n1", &a.hint)
	wrong.used = maps.Clone(a.used)
	for _, ip := range blk.free(taken{}) {
		wrong.used[ip] = !a.used[ip]
	}
	if got := trips(m, func() { claim(t, wrong, room-2) }); got != 2 {
		t.Errorf("claim on a wrong guess: %d round trips, want 2", got)
	}
	// Without the node's records: the view, the node's block list, the claim.
	if got := trips(m, func() { claim(t, newAllocator(m, p, testPrefix, "n1", nil), room-1) }); got != 3 {
		t.Errorf("claim without the records: %d round trips, want 3", got)
	}
	// The block is full: the next claim claims a block (two more reads:
	// the probe, the new block's leases).
	for _, ip := range blk.free(taken{}) {
		a.used[ip] = true
	}
	if got := trips(m, func() { claim(t, a, room) }); got != 4 || len(a.hint.Blocks) != 2 {
		t.Errorf("claim in a new block: %d round trips, %d blocks, want 4 and 2", got, len(a.hint.Blocks))
	}
}

// A release costs one round trip when etcd holds what the node records,
// two when the node records nothing; remembering the released lease costs
// a grant once per sticky time.
func TestRoundTripsPerRelease(t *testing.T) {
	m := newMemStore()
	p := testPool(t, "rel", 26, v4("10.21.0.0/24"))
	a := newAllocator(m, p, testPrefix, "n1", nil)
	a.sticky = time.Minute
	var held []*claimed
	for i := range 3 {
		c, err := a.Claim(context.Background(), owner(i), "net", nil, newClaimID())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	release := func(i int, rec *recorded) {
		if l, err := a.Release(context.Background(), owner(i), "", rec); err != nil || l == nil {
			t.Fatalf("release %d: %v, %v", i, l, err)
		}
	}
	if got := trips(m, func() { release(0, &recorded{Lease: held[0].Lease, raw: held[0].Raw}) }); got != 2 {
		t.Errorf("first release: %d round trips, want 2 (the grant, the release)", got)
	}
	if got := trips(m, func() { release(1, &recorded{Lease: held[1].Lease, raw: held[1].Raw}) }); got != 1 {
		t.Errorf("release of what the node records: %d round trips, want 1", got)
	}
	if got := trips(m, func() { release(2, nil) }); got != 2 {
		t.Errorf("release without a record: %d round trips, want 2", got)
	}
	if got := trips(m, func() { _, _ = a.Release(context.Background(), owner(2), "", nil) }); got != 1 {
		t.Errorf("release of nothing: %d round trips, want 1", got)
	}
	if n := len(m.keysUnder(keys{prefix: testPrefix, pool: "rel"}.base() + "/released/")); n != 3 {
		t.Errorf("%d released leases kept, want 3", n)
	}
}

// claimBlocks writes the claims of blocks of p for node, as a claim does.
func claimBlocks(m *memStore, p *pool, node string, blocks []addrBlock) {
	k := keys{prefix: testPrefix, pool: p.Name}
	claim := encode(blockClaim{Version: recordVersion, Node: node, Time: time.Now().UTC()})
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range blocks {
		m.kv[k.block(b.ID())] = claim
		m.kv[k.nodeBlock(node, b.ID())] = nil
	}
}

// A node's claim of a block costs the same round trips, and reads as many
// keys, with 90% of the pool's blocks claimed as with 10%: it looks up a
// few random blocks' claims, not every claimed block.
func TestBlockClaimCostsNoMoreWhenThePoolIsFull(t *testing.T) {
	cost := map[int][2]int{}
	for _, lvl := range []int{10, 90} {
		m := newMemStore()
		p := testPool(t, "fill", 26, v4("10.20.0.0/16"))
		claim(t, newAllocator(m, p, testPrefix, "first", nil), 0)
		all, _ := p.blocks(0, maxBlockWalk)
		claimBlocks(m, p, "filler", all[:len(all)*lvl/100])
		var tr, keys []int
		for i := 1; i <= 21; i++ {
			a := newAllocator(m, p, testPrefix, fmt.Sprintf("new%d", i), nil)
			before := m.answeredKeys()
			tr = append(tr, trips(m, func() { claim(t, a, i) }))
			keys = append(keys, m.answeredKeys()-before)
		}
		slices.Sort(tr)
		slices.Sort(keys)
		cost[lvl] = [2]int{tr[10], keys[10]}
	}
	// The median claim: the view, the probe, the new block's leases, the
	// claim; the probe answers at most probeBlocks keys, the view one.
	for lvl, c := range cost {
		if c[0] != 4 || c[1] > probeBlocks+1 {
			t.Errorf("pool %d%% full: a block's claim costs %d round trips and reads %d keys (medians), want 4 and at most %d", lvl, c[0], c[1], probeBlocks+1)
		}
	}
}

// When every block the probe looks up is claimed, the claim reads every
// claimed block and finds the last free one; once none is free, a claim
// borrows an address.
func TestBlockClaimFallbackFindsTheLastFreeBlock(t *testing.T) {
	fellBack := 0
	for run := range 10 {
		m := newMemStore()
		p := testPool(t, "last", 26, v4("10.20.0.0/16"))
		claim(t, newAllocator(m, p, testPrefix, "first", nil), 0)
		all, _ := p.blocks(0, maxBlockWalk)
		k := keys{prefix: testPrefix, pool: p.Name}
		var others []addrBlock
		for _, b := range all {
			if m.kv[k.block(b.ID())] == nil {
				others = append(others, b)
			}
		}
		free := pick(others)
		claimBlocks(m, p, "filler", slices.DeleteFunc(others, func(b addrBlock) bool { return b == free }))
		a := newAllocator(m, p, testPrefix, "late", nil)
		var l *Lease
		n := trips(m, func() { l = claim(t, a, run+1) })
		if got := l.Addrs[0].Block; got != free.ID() {
			t.Fatalf("run %d: claimed in block %s, want the last free block %s", run, got, free.ID())
		}
		switch n {
		case 5: // the view, the probe, every claimed block, the block's leases, the claim
			fellBack++
		case 4: // the probe drew the free block
		default:
			t.Errorf("run %d: %d round trips, want 4 or 5", run, n)
		}
		// No block is free now: the view, the probe, every claimed block,
		// the pool's leases, the claim of a borrowed address.
		if run == 0 {
			if n := trips(m, func() { claim(t, newAllocator(m, p, testPrefix, "borrower", nil), 99) }); n != 5 {
				t.Errorf("a borrow in a pool larger than the probe: %d round trips, want 5", n)
			}
		}
	}
	// The probe draws the free block in 1 claim of 32.
	if fellBack == 0 {
		t.Error("no claim fell back to reading every claimed block")
	}
}

func TestConcurrentClaimsNeverShareAnAddress(t *testing.T) {
	m := newMemStore()
	p := testPool(t, "race", 28, v4("10.30.0.0/24"))
	const nodes, per = 4, 40
	var wg sync.WaitGroup
	errs := make(chan error, nodes*per)
	for n := range nodes {
		// Each claim is a process of its own, starting from what the
		// node's records said after its first claim: their guesses collide.
		first := newAllocator(m, p, testPrefix, fmt.Sprintf("node%d", n), nil)
		claim(t, first, n*per)
		for i := 1; i < per; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a := newAllocator(m, p, testPrefix, fmt.Sprintf("node%d", n), &first.hint)
				if _, err := a.Claim(context.Background(), owner(n*per+i), "net", nil, newClaimID()); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := len(leasesOf(t, m, p)); got != nodes*per {
		t.Errorf("%d addresses leased, want %d", got, nodes*per)
	}
}

func TestExhaustionBorrowAndReuse(t *testing.T) {
	m := newMemStore()
	// 10.40.0.0/28 hands out .1 to .14; blocks of 4.
	p := testPool(t, "small", 30, v4("10.40.0.0/28"))
	a := newAllocator(m, p, testPrefix, "a", nil)
	b := newAllocator(m, p, testPrefix, "b", nil)
	for i := range 10 {
		claim(t, a, i)
	}
	// b finds one free block, then borrows from a's blocks.
	for i := 10; i < 14; i++ {
		claim(t, b, i)
	}
	keysBefore := len(m.keysUnder(testPrefix))
	_, err := b.Claim(context.Background(), owner(99), "net", nil, newClaimID())
	if codeOf(err) != ErrPoolFull || !strings.Contains(err.Error(), "pool small is full") || !strings.Contains(err.Error(), "hands out 14 addresses") {
		t.Fatalf("claim of a full pool: code %d, %v", codeOf(err), err)
	}
	if got := len(m.keysUnder(testPrefix)); got != keysBefore {
		t.Errorf("the failed claim left %d keys more", got-keysBefore)
	}
	freed, err := a.Release(context.Background(), owner(3), "", nil)
	if err != nil || freed == nil {
		t.Fatalf("release: %v, %v", freed, err)
	}
	var got *Lease
	// b's blocks are full and no block is free: view, the probe (of every
	// block: the pool has fewer than probeBlocks), the pool's leases (keys
	// only), the claim.
	if n := trips(m, func() { got = claim(t, b, 99) }); n != 4 {
		t.Errorf("borrowing claim: %d round trips, want 4", n)
	}
	if got.IPs()[0] != freed.IPs()[0] {
		t.Errorf("b got %s, want the freed %s", got.IPs()[0], freed.IPs()[0])
	}
	if n := len(leasesOf(t, m, p)); n != 14 {
		t.Errorf("%d leases, want 14", n)
	}
}

func TestRequestedAddress(t *testing.T) {
	m := newMemStore()
	p := testPool(t, "static", 26, v4("10.50.0.0/24"))
	a := newAllocator(m, p, testPrefix, "a", nil)
	b := newAllocator(m, p, testPrefix, "b", nil)
	want := netip.MustParseAddr("10.50.0.77")
	if got := claim(t, a, 1, want); got.IPs()[0] != want {
		t.Fatalf("got %s, want %s", got.IPs()[0], want)
	}
	if got := claim(t, a, 1, want); got.IPs()[0] != want {
		t.Fatalf("repeated: got %s", got.IPs()[0])
	}
	_, err := b.Claim(context.Background(), owner(2), "net", []netip.Addr{want}, newClaimID())
	if codeOf(err) != 7 || !strings.Contains(err.Error(), "held by container c0001 (eth1) on node a") {
		t.Fatalf("conflict: code %d, %v", codeOf(err), err)
	}
	_, err = a.Claim(context.Background(), owner(1), "net", []netip.Addr{netip.MustParseAddr("10.50.0.78")}, newClaimID())
	if codeOf(err) != 7 || !strings.Contains(err.Error(), "holds 10.50.0.77") {
		t.Fatalf("other address for a holder: code %d, %v", codeOf(err), err)
	}
}

func TestClaimWhoseAnswerIsLost(t *testing.T) {
	m := newMemStore()
	p := testPool(t, "lost", 26, v4("10.60.0.0/24"))
	a := newAllocator(m, p, testPrefix, "a", nil)
	claim(t, a, 0)
	m.lostAnswers = 1
	c, err := a.Claim(context.Background(), owner(1), "net", nil, "claim-1")
	if err != nil {
		t.Fatal(err)
	}
	if c.Lease.Claim != "claim-1" || len(leasesOf(t, m, p)) != 2 {
		t.Fatalf("claim %s, %d leases: want the one committed claim", c.Lease.Claim, len(leasesOf(t, m, p)))
	}
	again := claim(t, a, 1)
	if again.IPs()[0] != c.Lease.IPs()[0] || again.Claim != "claim-1" {
		t.Errorf("repeated claim got %s (%s), want %s", again.IPs()[0], again.Claim, c.Lease.IPs()[0])
	}
}

func TestReleaseOfOneClaimKeepsALaterOne(t *testing.T) {
	m := newMemStore()
	p := testPool(t, "claims", 26, v4("10.70.0.0/24"))
	a := newAllocator(m, p, testPrefix, "a", nil)
	old := claim(t, a, 1)
	if _, err := a.Release(context.Background(), owner(1), "", nil); err != nil {
		t.Fatal(err)
	}
	claim(t, a, 1)
	if l, err := a.Release(context.Background(), owner(1), old.Claim, nil); err != nil || l != nil {
		t.Fatalf("release of the old claim: %v, %v", l, err)
	}
	if n := len(leasesOf(t, m, p)); n != 1 {
		t.Errorf("%d leases, want the later claim's", n)
	}
	if l, err := a.Release(context.Background(), owner(1), "", nil); err != nil || l == nil {
		t.Fatalf("release: %v, %v", l, err)
	}
	if l, err := a.Release(context.Background(), owner(1), "", nil); err != nil || l != nil {
		t.Fatalf("second release: %v, %v", l, err)
	}
	if n := len(m.keysUnder(keys{prefix: testPrefix, pool: "claims"}.owners())); n != 0 {
		t.Errorf("%d owner keys left", n)
	}
}

func TestPoolDefinitionsMustAgree(t *testing.T) {
	m := newMemStore()
	a := newAllocator(m, testPool(t, "shared", 26, v4("10.80.0.0/24")), testPrefix, "a", nil)
	b := newAllocator(m, testPool(t, "shared", 26, v4("10.80.0.0/23")), testPrefix, "b", nil)
	claim(t, a, 1)
	_, err := b.Claim(context.Background(), owner(2), "net", nil, newClaimID())
	if codeOf(err) != 7 || !strings.Contains(err.Error(), "disagree with the pool's in etcd") || !strings.Contains(err.Error(), "written by node a") {
		t.Fatalf("code %d, %v", codeOf(err), err)
	}
}

func TestDualStackClaimsOneAddressPerSet(t *testing.T) {
	m := newMemStore()
	p := testPool(t, "dual", 26, v4("10.90.0.0/24"), []rangeConf{{Subnet: "fd90::/64"}})
	a := newAllocator(m, p, testPrefix, "a", nil)
	l := claim(t, a, 1)
	if len(l.Addrs) != 2 || !l.Addrs[0].IP.Is4() || !l.Addrs[1].IP.Is6() {
		t.Fatalf("lease %s", l)
	}
	if n := len(leasesOf(t, m, p)); n != 2 {
		t.Errorf("%d lease keys, want 2", n)
	}
}

func TestUnavailableStore(t *testing.T) {
	m := newMemStore()
	p := testPool(t, "down", 26, v4("10.95.0.0/24"))
	a := newAllocator(m, p, testPrefix, "a", nil)
	m.setDown(true)
	_, err := a.Claim(context.Background(), owner(1), "net", nil, newClaimID())
	if !errors.Is(err, ErrUnavailable) || codeOf(err) != 11 {
		t.Fatalf("claim with the store down: code %d, %v", codeOf(err), err)
	}
}

// freeOwner releases owner i on a, failing the test on error.
func freeOwner(t testing.TB, a *allocator, i int) *Lease {
	t.Helper()
	l, err := a.Release(context.Background(), owner(i), "", nil)
	if err != nil || l == nil {
		t.Fatalf("release %d: %v, %v", i, l, err)
	}
	return l
}

// An owner released a moment ago gets its addresses back, and no other
// owner gets them meanwhile, unless nothing else is free.
func TestReleasedOwnerGetsItsAddressesBack(t *testing.T) {
	m := newMemStore()
	// Each range set hands out 14 addresses, in one block.
	p := testPool(t, "sticky", 28, v4("10.23.0.0/28"), []rangeConf{{Subnet: "fd23::/124", RangeStart: "fd23::1", RangeEnd: "fd23::e"}})
	a := newAllocator(m, p, testPrefix, "n1", nil)
	a.sticky = time.Minute
	first := claim(t, a, 1)
	freeOwner(t, a, 1)
	for i := 2; i <= 13; i++ {
		if l := claim(t, a, i); slices.ContainsFunc(l.IPs(), func(ip netip.Addr) bool { return slices.Contains(first.IPs(), ip) }) {
			t.Fatalf("owner %d got %s, kept for owner 1 (%s)", i, l, first)
		}
	}
	again := claim(t, a, 1)
	if !slices.Equal(again.IPs(), first.IPs()) {
		t.Fatalf("owner 1 claimed again %s, want its %s", again, first)
	}
	base := keys{prefix: testPrefix, pool: "sticky"}.base()
	if k := m.keysUnder(base + "/released/"); len(k) != 0 {
		t.Errorf("claimed again, the released lease stays: %v", k)
	}
	if k := m.keysUnder(base + "/kept/"); len(k) != 0 {
		t.Errorf("claimed again, its addresses stay kept: %v", k)
	}
	// Pool full but for one owner's kept addresses: another owner takes
	// them, and the owner, back, gets other addresses, never the holder's.
	claim(t, a, 14)
	freeOwner(t, a, 1)
	kept := claim(t, a, 15)
	if !slices.Equal(kept.IPs(), first.IPs()) {
		t.Fatalf("owner 15 got %s in a pool full but for %s", kept, first)
	}
	freeOwner(t, a, 2)
	back := claim(t, a, 1)
	if slices.Equal(back.IPs(), first.IPs()) {
		t.Fatalf("owner 1 took back %s, which owner 14 holds", back)
	}
	leasesOf(t, m, p)
}

// An owner's released addresses that another owner asked for meanwhile
// stay that owner's; once etcd ends the memory, a claim picks freely.
func TestRememberedAddressIsNeverStolen(t *testing.T) {
	m := newMemStore()
	p := testPool(t, "steal", 26, v4("10.24.0.0/24"))
	a := newAllocator(m, p, testPrefix, "n1", nil)
	b := newAllocator(m, p, testPrefix, "n2", nil)
	a.sticky, b.sticky = time.Minute, time.Minute
	first := claim(t, a, 1)
	freeOwner(t, a, 1)
	if got := claim(t, b, 2, first.IPs()...); !slices.Equal(got.IPs(), first.IPs()) {
		t.Fatalf("owner 2 asked for %s, got %s", first, got)
	}
	again := claim(t, a, 1)
	if slices.Equal(again.IPs(), first.IPs()) {
		t.Fatalf("owner 1 took %s from owner 2", again)
	}
	// The memory's lease ends (etcd restored from an older snapshot): the
	// node's next release gets a new one.
	freeOwner(t, a, 1)
	m.expire()
	if n := len(m.keysUnder(keys{prefix: testPrefix, pool: "steal"}.base() + "/released/")); n != 0 {
		t.Fatalf("%d released leases after their lease ended", n)
	}
	claim(t, a, 3)
	freeOwner(t, a, 3)
	if n := len(m.keysUnder(keys{prefix: testPrefix, pool: "steal"}.base() + "/released/")); n != 1 {
		t.Errorf("%d released leases, want owner 3's", n)
	}
	leasesOf(t, m, p)
}

// With sticky 0, a release keeps nothing.
func TestStickyOff(t *testing.T) {
	m := newMemStore()
	p := testPool(t, "off", 26, v4("10.25.0.0/24"))
	a := newAllocator(m, p, testPrefix, "n1", nil)
	claim(t, a, 1)
	if n := trips(m, func() { freeOwner(t, a, 1) }); n != 2 {
		t.Errorf("release: %d round trips, want 2", n)
	}
	if k := m.keysUnder(testPrefix); slices.ContainsFunc(k, func(s string) bool { return strings.Contains(s, "/released/") || strings.Contains(s, "/kept/") }) {
		t.Errorf("keys %v", k)
	}
}
