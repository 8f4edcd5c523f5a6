package mux

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/nicmux/nicmux/conf"
)

// This file is the one place where chains run at the same time.

// schedule splits a container's chains into groups that may run at the same
// time, each group in file order. Without parallel there is one group.
//
// Chains that plug into the same bridge stay in one group: the bridge
// plugin creates the bridge and pins its MAC from what it read before
// attaching, so two of its ADDs racing on a new bridge can pin different
// MACs, and its CHECK then fails for the first. Different bridges,
// macvlans, and chains sharing an IPAM network (host-local locks its store)
// run concurrently. A chain that is not known (nil) runs alone.
func schedule(chains []*conf.Chain, parallel bool) [][]int {
	if !parallel {
		all := make([]int, len(chains))
		for i := range all {
			all[i] = i
		}
		return [][]int{all}
	}
	var groups [][]int
	byBridge := map[string]int{}
	for i, c := range chains {
		brs := bridges(c)
		g := -1
		for _, br := range brs {
			if j, ok := byBridge[br]; ok {
				g = j
				break
			}
		}
		if g < 0 {
			g = len(groups)
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
		for _, br := range brs {
			byBridge[br] = g
		}
	}
	return groups
}

// releaseGroups are a teardown's groups: ADD's, reversed.
func releaseGroups(nics []*nic, parallel bool) [][]int {
	return reversed(schedule(chains(nics), parallel))
}

// checkGroups are CHECK's groups for n chains: CHECK only reads, so chains
// that share a bridge need not wait for each other.
func checkGroups(n int, parallel bool) [][]int {
	return schedule(make([]*conf.Chain, n), parallel)
}

// reversed returns the groups for a teardown: the last group first, each
// group's chains last first.
func reversed(groups [][]int) [][]int {
	out := make([][]int, 0, len(groups))
	for g := len(groups) - 1; g >= 0; g-- {
		r := make([]int, 0, len(groups[g]))
		for i := len(groups[g]) - 1; i >= 0; i-- {
			r = append(r, groups[g][i])
		}
		out = append(out, r)
	}
	return out
}

// bridges returns the bridges a chain's plugins plug into.
func bridges(c *conf.Chain) []string {
	if c == nil {
		return nil
	}
	var out []string
	for _, p := range c.Plugins {
		var v struct {
			Bridge *string `json:"bridge"`
		}
		if json.Unmarshal(p.Bytes, &v) != nil {
			continue
		}
		switch {
		case v.Bridge != nil:
			out = append(out, *v.Bridge)
		case p.Type == "bridge":
			out = append(out, "cni0") // the bridge plugin's default
		}
	}
	return out
}

// runGroups calls f for the nics of every group: the groups at the same
// time, each group's nics in order, a group stopping at the first f that
// returns false. It times each call for the verb's log line. A single
// group runs on the caller's goroutine.
func runGroups(nics []*nic, groups [][]int, f func(*nic) bool) {
	runGroup := func(g []int) {
		for _, i := range g {
			start := time.Now()
			ok := f(nics[i])
			nics[i].took = time.Since(start)
			if !ok {
				return
			}
		}
	}
	if len(groups) == 1 {
		runGroup(groups[0])
		return
	}
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runGroup(g)
		}()
	}
	wg.Wait()
}

// together runs every f at the same time and returns when all are done:
// for work that only reads, or that touches nothing the others do (CHECK's
// netlink check beside its chain's, GC forwarded to each network).
func together(fs ...func()) {
	var wg sync.WaitGroup
	for _, f := range fs[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	if len(fs) > 0 {
		fs[0]()
	}
	wg.Wait()
}
