package ipam

import (
	"net/netip"
	"testing"
)

func TestCandidatesAreDistinctBlocksWithRoom(t *testing.T) {
	big := testPool(t, "big", 26, v4("10.20.0.0/16"))
	// A /28 in /30 blocks whose range leaves the first block nothing to
	// hand out: .1 to .3 are outside it.
	small := testPool(t, "small", 30, []rangeConf{{Subnet: "10.40.0.0/28", RangeStart: "10.40.0.4", RangeEnd: "10.40.0.14"}})
	for _, c := range []struct {
		p          *pool
		want       int
		wantsEvery bool
	}{{big, probeBlocks, false}, {small, 3, true}} {
		got, every := c.p.candidates(0, probeBlocks)
		seen := map[netip.Prefix]bool{}
		for _, b := range got {
			if seen[b.Prefix] || !b.hasRoom() {
				t.Errorf("pool %s: block %s twice, or without room", c.p.Name, b.ID())
			}
			seen[b.Prefix] = true
		}
		if len(got) != c.want || every != c.wantsEvery {
			t.Errorf("pool %s: %d candidates, every %v; want %d, %v", c.p.Name, len(got), every, c.want, c.wantsEvery)
		}
	}
}
