package torture

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"

	"github.com/nicmux/nicmux/test/testworld"
)

// Classes that race verbs of one container ID (issue 17): many rounds
// each, counted in the summary.

func raceClasses(t *testing.T) {
	runClass(t, "race/lock-exclusive-never-overlap", 1, lockNeverOverlaps)
}

// --- spans: when each delegate call ran --------------------------------------

// span is one delegate call as the torture plugin's "span" file tells it:
// from its start to the end of its pass-through.
type span struct {
	verb, id   string
	pid        int
	begin, end int64 // CLOCK_MONOTONIC ns; end 0: never ended
}

func (s span) String() string {
	return fmt.Sprintf("%s %s (pid %d, %d..%d)", s.verb, s.id, s.pid, s.begin, s.end)
}

// readSpans reads a span file (see the torture plugin).
func readSpans(path string) ([]span, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	open := map[int]*span{}
	var out []*span
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var what, verb, id, ifname string
		var pid int
		var ns int64
		if n, _ := fmt.Sscanf(sc.Text(), "%s %s %s %s %d %d", &what, &verb, &id, &ifname, &pid, &ns); n != 6 {
			return nil, fmt.Errorf("span line %q", sc.Text())
		}
		if what == "begin" {
			s := &span{verb: verb, id: id, pid: pid, begin: ns}
			open[pid] = s
			out = append(out, s)
		} else if s := open[pid]; s != nil {
			s.end = ns
			delete(open, pid)
		}
	}
	spans := make([]span, len(out))
	for i, s := range out {
		spans[i] = *s
	}
	return spans, sc.Err()
}

// exclusiveOverlaps returns the pairs of calls for one container that ran
// at once while one of them was an ADD's or a DEL's: their verbs held the
// container's lock at once, one of them exclusively. A call that never
// ended (its verb was killed) lasts for ever.
func exclusiveOverlaps(spans []span) [][2]span {
	byID := map[string][]span{}
	for _, s := range spans {
		byID[s.id] = append(byID[s.id], s)
	}
	var out [][2]span
	for _, ss := range byID {
		sort.Slice(ss, func(i, j int) bool { return ss[i].begin < ss[j].begin })
		for i, a := range ss {
			for _, b := range ss[i+1:] {
				end := a.end
				if end == 0 {
					end = 1<<63 - 1
				}
				if b.begin >= end {
					break
				}
				if a.verb != "CHECK" || b.verb != "CHECK" {
					out = append(out, [2]span{a, b})
				}
			}
		}
	}
	return out
}

// --- 2. two exclusive holders never overlap ----------------------------------

// lockNeverOverlaps: each round, an ADD, a DEL and six CHECKs of a new
// container ID start at once, in a random order, through one pass-through
// plugin that notes when it runs (and takes 2 ms doing it). ADD and DEL
// hold the container's lock exclusively, CHECK shared: no ADD's or DEL's
// call may run beside another call for the same container. A CHECK that
// finds no state holds the lock without calling anything: that is the
// verb that removed the lock file the others held.
func lockNeverOverlaps(tr *trial) {
	w := tr.w
	spans := filepath.Join(w.Dir, "spans")
	w.extra["logLevel"] = "debug"
	w.opts.only = map[string][]plugin{"eth0": {{"type": "torture", "torture": plugin{"span": spans, "delayMs": 2}}}}
	w.writeAttachments()
	w.quiet = true
	netns := w.newNetns()
	rounds := 100 * *flagTrials
	const checks = 6
	outcomes := map[string]int{}
	var mu sync.Mutex
	for i := 0; i < rounds; i++ {
		c := &ctr{id: "t" + testworld.RandHex(8), netns: netns}
		verbs := []string{"ADD", "DEL"}
		for range checks {
			verbs = append(verbs, "CHECK")
		}
		tr.rng.Shuffle(len(verbs), func(a, b int) { verbs[a], verbs[b] = verbs[b], verbs[a] })
		var wg sync.WaitGroup
		for _, verb := range verbs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := w.run(nil, verb, c, nil)
				mu.Lock()
				outcomes[verb+" "+strconv.FormatBool(o.ok())]++
				mu.Unlock()
				tr.check(!o.hung, "%s hung in a round of concurrent verbs: %s", verb, o)
			}()
		}
		wg.Wait()
		tr.check(w.del(c).ok(), "the DEL ending round %d", i)
		w.forgetRuns()
	}
	all, err := readSpans(spans)
	if err != nil {
		tr.fatalf("reading the spans: %v", err)
	}
	over := exclusiveOverlaps(all)
	for k, n := range outcomes {
		tr.logf("%s: %d", k, n)
	}
	tr.count("rounds", rounds)
	tr.count("delegate calls", len(all))
	tr.count("ADDs that succeeded", outcomes["ADD true"])
	tr.count("exclusive overlaps", len(over))
	for _, o := range over[:min(len(over), 5)] {
		tr.logf("at once: %s and %s", o[0], o[1])
		for _, l := range w.LogLines(o[0].id) {
			tr.logf("log: %s", l)
		}
	}
	tr.check(len(over) == 0, "%d delegate calls ran beside an ADD's or a DEL's for the same container over %d rounds (%d calls): two verbs held its lock at once, one exclusively",
		len(over), rounds, len(all))
}
