package main

import (
	"github.com/nicmux/nicmux/test/testworld"
)

// leaks lists what a variant left behind once all its containers are gone:
// host-local leases, nicmux state (but the store-wide files and what keep
// accepts) and ports of its bridge; what cannot be read counts as left.
func (v *variant) leaks(keep func(rel string) bool) []testworld.Leak {
	c := testworld.Census{IPAMDir: v.res.ipamDir, StateDir: v.state, Keep: keep, Bridge: v.res.bridge}
	for _, ch := range v.chains {
		c.Networks = append(c.Networks, ch.Network)
	}
	return c.Leaks()
}

// assertNoLeaks ends the run if the variant left anything behind.
func (v *variant) assertNoLeaks(keep func(rel string) bool) {
	if l := v.leaks(keep); len(l) > 0 {
		fatalf("%s: left behind after DEL: %v", v.label, l)
	}
}

// assertCacheEmpty ends the run if libcni's cache still holds any of the
// run's results: every DEL removes its own.
func (e *env) assertCacheEmpty() {
	if c := e.cacheEntries(); len(c) > 0 {
		fatalf("left in libcni's cache after DEL: %v", c)
	}
}
