package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"time"
)

// seed fixes the shuffled order of the variants, so runs are comparable;
// run r of a -runs series shuffles with seed+r.
const seed = 5

// buildMatrix makes every variant of every scenario (the -baseline ones
// only with a baseline); a scenario's macvlan masters are shared by its
// variants.
func buildMatrix(e *env, scens []scenario) []*variant {
	var vs []*variant
	for _, s := range scens {
		var masters []string
		for range s.Masters {
			masters = append(masters, e.addMaster())
		}
		for _, k := range kinds {
			if !k.base() || e.baseline != "" {
				vs = append(vs, newVariant(e, s, k, masters))
			}
		}
	}
	return vs
}

// warmUp runs one unmeasured iteration of every variant: it creates the
// bridges and warms the caches.
func warmUp(vs []*variant) {
	progress("warm-up: one iteration of each of %d variants", len(vs))
	for _, v := range vs {
		v.iterate(-1)
	}
}

// runMatrix runs reps rounds of run run, each running every variant once
// in a shuffled order (its own for every run), then looks for leaks and
// checks nicmux's logs.
func runMatrix(e *env, vs []*variant, reps, run int) {
	rng := rand.New(rand.NewPCG(seed+uint64(run), seed))
	for r := range reps {
		start := time.Now()
		for _, i := range rng.Perm(len(vs)) {
			vs[i].samples = append(vs[i].samples, vs[i].iterate(run))
		}
		progress("run %d, round %d/%d: %.1fs", run+1, r+1, reps, time.Since(start).Seconds())
	}
	for _, v := range vs {
		v.assertNoLeaks(nil)
		if v.kind.nicmux() {
			v.costs() // every measured verb logged "ok", and nothing logged a warning
		}
	}
	e.assertCacheEmpty()
}

func progress(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench: %s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}
