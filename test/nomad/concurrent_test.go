package nomad

import (
	"sync"
	"testing"
)

// TestConcurrentAllocations: a Nomad client starts and stops allocations
// at the same time. Each gets its own links and exactly one lease per
// network, and each Remove releases only its own.
func TestConcurrentAllocations(t *testing.T) {
	w := newWorld(t)
	w.install()
	// A running client already has the bridge and portmap's iptables
	// chains; plugins creating them concurrently race (portmap's
	// "CHAIN_USER_ADD failed (File exists)"), which is theirs to fix, and
	// which Nomad's retries absorb.
	first := w.newAlloc(nil)
	w.mustSetup(first)
	failIf(t, w.node.remove(first), "remove of the first allocation")
	allocs := make([]*alloc, 6)
	for i := range allocs {
		allocs[i] = w.newAlloc(nil)
	}
	results := make([]error, len(allocs))
	parallel(len(allocs), func(i int) {
		res, errs := w.node.setup(allocs[i])
		if res == nil {
			results[i] = firstErr(errs)
		} else if len(errs) > 0 {
			t.Logf("allocation %s attached after %d failed tries: %v", allocs[i].ID, len(errs), errs)
		}
	})
	seen := map[string]bool{}
	for i, a := range allocs {
		failIf(t, results[i], "setup of allocation "+a.ID)
		for _, si := range exampleSet(t, "multi") {
			ip := w.wantOneLease(si.Network, a.ID, si.IfName)
			if seen[ip] {
				t.Errorf("%s was given to two allocations", ip)
			}
			seen[ip] = true
		}
	}
	w.wantBridgePorts(len(allocs))
	parallel(len(allocs), func(i int) { results[i] = w.node.remove(allocs[i]) })
	for i, a := range allocs {
		failIf(t, results[i], "remove of allocation "+a.ID)
		w.assertClean(a, networks(t, "multi")...)
	}
}

// parallel runs f(0) ... f(n-1) at the same time and waits for all.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i)
		}()
	}
	wg.Wait()
}

func firstErr(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return errs[0]
}
