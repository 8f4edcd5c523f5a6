package mux

import (
	"encoding/json"
	"sync"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/delegate"
)

// schedule splits a container's chains into groups that may run at the same
// time, each group in file order. Without parallel there is one group.
//
// Chains that plug into the same bridge stay in one group: the bridge
// plugin creates the bridge and pins its MAC from what it read before
// attaching, so two of its ADDs racing on a new bridge can pin different
// MACs, and its CHECK then fails for the first. Different bridges,
// macvlans, and chains sharing an IPAM network (host-local locks its store)
// run concurrently.
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
		g := -1
		for _, br := range bridges(c) {
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
		for _, br := range bridges(c) {
			byBridge[br] = g
		}
	}
	return groups
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

// runGroups calls f for every index of every group: the groups at the same
// time, each group's indices in order, stopping a group at the first index
// for which f returns false. A single group runs on the caller's goroutine.
func runGroups(groups [][]int, f func(i int) bool) {
	runGroup := func(g []int) {
		for _, i := range g {
			if !f(i) {
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

// calls starts chains' delegates ahead of runGroups (see delegate.Call):
// the first chain of every group at once, and each next chain of a group as
// the one before it begins. Different groups touch different chains, so
// take needs no lock.
type calls struct {
	start   func(i int) *delegate.Call
	pending []*delegate.Call
	next    []int // the chain after i in its group, or -1
}

func startCalls(groups [][]int, n int, start func(i int) *delegate.Call) *calls {
	cs := &calls{start: start, pending: make([]*delegate.Call, n), next: make([]int, n)}
	for i := range cs.next {
		cs.next[i] = -1
	}
	for _, g := range groups {
		for j := 0; j+1 < len(g); j++ {
			cs.next[g[j]] = g[j+1]
		}
		if len(g) > 0 {
			cs.pending[g[0]] = start(g[0])
		}
	}
	return cs
}

// take returns chain i's call, started earlier if it was, and starts the
// call of the chain after i in its group.
func (cs *calls) take(i int) *delegate.Call {
	call := cs.pending[i]
	cs.pending[i] = nil
	if call == nil {
		call = cs.start(i)
	}
	if n := cs.next[i]; n >= 0 && cs.pending[n] == nil {
		cs.pending[n] = cs.start(n)
	}
	return call
}

// abort kills what was started and never taken. Call it once the groups
// are done.
func (cs *calls) abort() {
	for i, call := range cs.pending {
		call.Abort()
		cs.pending[i] = nil
	}
}

// later runs f in a goroutine of its own, while the caller goes on; the
// returned func waits for f and returns what it returned, each time it is
// called.
func later[T any](f func() (T, error)) func() (T, error) {
	done := make(chan struct{})
	var v T
	var err error
	go func() {
		defer close(done)
		v, err = f()
	}()
	return func() (T, error) {
		<-done
		return v, err
	}
}

// each calls f for 0..n-1, concurrently when parallel.
func each(n int, parallel bool, f func(i int)) {
	if !parallel || n < 2 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i)
		}()
	}
	wg.Wait()
}
