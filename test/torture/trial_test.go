package torture

import (
	"fmt"
	"hash/fnv"
	"math/rand"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nicmux/nicmux/test/testworld"
)

// maskRE matches what differs between trials with the same symptom.
var maskRE = regexp.MustCompile(`CNI-(DN-|SN-)?[0-9a-f]{20,}|\bt[0-9a-f]{12,16}\b|torture-[0-9a-f]+|tb[0-9a-f]{8}|tm[0-9a-f]{8}|\b10\.\d+\.\d+\.\d+\b|nicmux-torture-\d+|\b\d+(\.\d+)?(ms|s|µs|m)\b|pid \d+|\b\d{3,}\b`)

// trial is one run of a trial class: its own world (folders, bridge,
// namespaces), its own random source, the checks that failed and the leaks
// found at its end.
type trial struct {
	t     *testing.T
	class string
	n     int
	seed  int64
	rng   *rand.Rand
	w     *world
	mu    sync.Mutex
	fails []string
	log   []string
	up    map[string]int // upstream causes seen by the trial's own checks
	// counts are what the trial counted (rounds, races won), summed per
	// class in the summary.
	counts map[string]int
	// settleFor is how long the leak accounting waits for the trial's
	// processes to end first.
	settleFor time.Duration
	// noLeakCheck skips the accounting (a trial whose own checks say all).
	noLeakCheck bool
}

// fatal ends a trial early; runTrial recovers it.
type fatal struct{ msg string }

func (tr *trial) fatalf(format string, args ...any) {
	panic(fatal{fmt.Sprintf(format, args...)})
}

func (tr *trial) logf(format string, args ...any) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.log = append(tr.log, fmt.Sprintf(format, args...))
}

// check records a failed acceptance check unless ok. It returns ok.
func (tr *trial) check(ok bool, format string, args ...any) bool {
	if !ok {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		tr.fails = append(tr.fails, fmt.Sprintf(format, args...))
	}
	return ok
}

// upstreamf counts a failure a reference plugin causes whatever nicmux
// does: named, not failing.
func (tr *trial) upstreamf(plugin, format string, args ...any) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.up == nil {
		tr.up = map[string]int{}
	}
	tr.up["plugin "+plugin+": "+fmt.Sprintf(format, args...)]++
}

// count adds n to what the trial counted under name.
func (tr *trial) count(name string, n int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.counts == nil {
		tr.counts = map[string]int{}
	}
	tr.counts[name] += n
}

// must fails the trial and ends it unless o succeeded.
func (tr *trial) must(o outcome, what string) {
	if !o.ok() {
		tr.check(false, "%s: %s", what, o)
		panic(fatal{""})
	}
}

func classSeed(class string, n int) int64 {
	h := fnv.New64a()
	h.Write([]byte(class))
	return baseSeed ^ int64(h.Sum64()&0x7fffffffffff) + int64(n)*7919
}

// runClass runs trials of a class as one subtest.
func runClass(t *testing.T, class string, trials int, f func(tr *trial)) {
	t.Run(class, func(t *testing.T) {
		for i := 0; i < trials; i++ {
			if *flagTrial >= 0 && i != *flagTrial {
				continue
			}
			runTrial(t, class, i, f)
		}
	})
}

func runTrial(t *testing.T, class string, n int, f func(tr *trial)) {
	seed := classSeed(class, n)
	tr := &trial{t: t, class: class, n: n, seed: seed, rng: rand.New(rand.NewSource(seed)), settleFor: 2 * time.Second}
	start := time.Now()
	var leaks []leak
	func() {
		defer func() {
			if r := recover(); r != nil {
				ft, ok := r.(fatal)
				if !ok {
					panic(r)
				}
				if ft.msg != "" {
					tr.fails = append(tr.fails, "setup: "+ft.msg)
				}
			}
		}()
		tr.w = newWorld(tr)
		f(tr)
	}()
	if tr.w != nil {
		defer tr.w.cleanup()
		if !tr.noLeakCheck {
			tr.w.settle(tr.settleFor)
			leaks = tr.w.leaks()
		}
	}
	counts, up := map[string]int{}, map[string]int{}
	for k, v := range tr.up {
		up[k] += v
	}
	var own []string
	for _, l := range leaks {
		if l.cause != "" {
			up["plugin "+l.plugin+": "+short(l.cause, 60)]++
			tr.logf("leak caused upstream: %s", l)
			continue
		}
		counts[l.Class]++
		own = append(own, l.String())
	}
	if len(own) > 0 {
		byClass := map[string]int{}
		for _, l := range leaks {
			if l.cause == "" {
				byClass[l.Class]++
			}
		}
		var parts []string
		for _, c := range testworld.LeakClasses() {
			if byClass[c] > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", byClass[c], c))
			}
		}
		tr.fails = append(tr.fails, "leaks after the trial: "+strings.Join(parts, ", "))
	}
	failed := len(tr.fails) > 0
	symptom := ""
	if failed {
		symptom = tr.fails[0]
	}
	record(class, failed, counts, up, tr.counts, symptomKey(symptom), time.Since(start))
	if !failed {
		t.Logf("trial %d ok (%s)", n, time.Since(start).Round(time.Millisecond))
		if testing.Verbose() {
			for _, l := range tr.log {
				t.Logf("  %s", short(l, 300))
			}
		}
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s trial %d FAILED (seed %d; reproduce: cd test/torture && go test -count=1 -run 'TestTorture/%s$' . -args -torture.seed=%d -torture.trial=%d)\n",
		class, n, seed, class, baseSeed, n)
	for _, f := range tr.fails {
		fmt.Fprintf(&b, "  FAIL: %s\n", f)
	}
	for _, l := range own {
		fmt.Fprintf(&b, "  left: %s\n", short(l, 300))
	}
	fmt.Fprintf(&b, " steps:\n")
	for _, l := range tr.log {
		fmt.Fprintf(&b, "  %s\n", short(l, 600))
	}
	if tr.w != nil {
		fmt.Fprintf(&b, " nicmux runs:\n%s", tr.w.runsLog())
		fmt.Fprintf(&b, " nicmux log (tail):\n%s\n", tr.w.logTail(40))
	}
	t.Error(b.String())
}

// symptomKey shortens a failure for the summary: numbers and IDs that
// differ between trials are masked so that equal symptoms group.
func symptomKey(s string) string {
	s = short(s, 240)
	s = maskRE.ReplaceAllString(s, "#")
	return s
}

// trials scales a class's trial count by the knob.
func trials(perKnob int) int {
	n := perKnob * *flagTrials
	if n < 1 {
		n = 1
	}
	return n
}
