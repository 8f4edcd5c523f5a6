// Package torture is nicmux's torture suite: the real binary, driven
// through libcni as a runtime drives it, with the real reference plugins
// and a fault plugin (plugins/torture) in real network namespaces, under
// kill -9 at random points, hanging and misbehaving delegates, full and
// read-only state folders, damaged records and concurrent verbs with GC.
// After every trial it counts what was left behind, by class.
//
// Each trial class is a subtest of TestTorture. The knobs:
//
//	-torture.trials N   how many trials of each randomized class (env TORTURE_TRIALS; default 1: the short pass)
//	-torture.seed S     base seed (env TORTURE_SEED; default: the time); printed with every failure
//	-torture.trial K    run only trial K of each class selected with -run (to reproduce)
//	-torture.report F   also write the summary table to F
//
// It needs root: TestMain re-runs the test binary in private network and
// mount namespaces, so every link, iptables rule and mount it makes dies
// with the run.
package torture

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nicmux/nicmux/test/testworld"
)

var (
	flagTrials = flag.Int("torture.trials", envInt("TORTURE_TRIALS", 1), "trials of each randomized class")
	flagSeed   = flag.Int64("torture.seed", int64(envInt("TORTURE_SEED", 0)), "base seed (0: from the clock)")
	flagTrial  = flag.Int("torture.trial", -1, "run only this trial number of each class")
	flagReport = flag.String("torture.report", "", "write the summary table to this file too")
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// trialEnv is the variable the suite's runtime puts in nicmux's
// environment; nicmux hands its environment to its delegates, and they to
// theirs, so every process started for a trial carries it.
const trialEnv = "TORTURE_TRIAL"

var baseSeed int64

func TestMain(m *testing.M) {
	flag.Parse()
	suite := testworld.Suite{
		Makes:  "the torture suite makes network namespaces, links, iptables rules and mounts",
		Target: "torture",
		Files: []string{testworld.NicmuxBin(), filepath.Join(testworld.PluginsDir(), "bridge"),
			filepath.Join(testworld.TestPluginsDir(), "torture")},
		Tools: []string{"iptables-save", "iptables-restore"},
	}
	if code := suite.Enter(); code >= 0 {
		os.Exit(code)
	}
	baseSeed = *flagSeed
	if baseSeed == 0 {
		baseSeed = time.Now().UnixNano() % 1_000_000_007
	}
	start := time.Now()
	code := m.Run()
	summary := summaryTable(time.Since(start))
	fmt.Print(summary)
	if *flagReport != "" {
		_ = os.WriteFile(*flagReport, []byte(summary), 0o644)
	}
	os.Exit(code)
}

// --- statistics ------------------------------------------------------------

// countsLine lists counts by name.
func countsLine(counts map[string]int) string {
	var names []string
	for k := range counts {
		names = append(names, k)
	}
	sort.Strings(names)
	var parts []string
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s %d", k, counts[k]))
	}
	return strings.Join(parts, ", ")
}

type classStats struct {
	trials, failed int
	leaks          map[string]int
	upstream       map[string]int // "plugin X: cause" -> count
	symptoms       map[string]int // first failed check of a trial -> trials
	counts         map[string]int // what the trials counted (see trial.count)
	wall           time.Duration
}

var (
	statsMu sync.Mutex
	stats   = map[string]*classStats{}
)

func record(class string, failed bool, leaks, upstream, counts map[string]int, symptom string, wall time.Duration) {
	statsMu.Lock()
	defer statsMu.Unlock()
	s := stats[class]
	if s == nil {
		s = &classStats{leaks: map[string]int{}, upstream: map[string]int{}, symptoms: map[string]int{}, counts: map[string]int{}}
		stats[class] = s
	}
	s.trials++
	s.wall += wall
	if failed {
		s.failed++
		s.symptoms[symptom]++
	}
	for k, v := range leaks {
		s.leaks[k] += v
	}
	for k, v := range upstream {
		s.upstream[k] += v
	}
	for k, v := range counts {
		s.counts[k] += v
	}
}

func summaryTable(wall time.Duration) string {
	statsMu.Lock()
	defer statsMu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "\n## nicmux torture summary (seed %d, -torture.trials %d, wall %s)\n\n", baseSeed, *flagTrials, wall.Round(time.Second))
	fmt.Fprintf(&b, "leak columns: items left after the trial's last verb, counted over all trials of the class, attributed to nicmux\n\n")
	fmt.Fprintf(&b, "| class | trials | failed | %s | upstream (not failing) | s |\n|---|---:|---:|%s---|---:|\n",
		strings.Join(testworld.LeakClasses(), " | "), strings.Repeat("---:|", len(testworld.LeakClasses())))
	var names []string
	for n := range stats {
		names = append(names, n)
	}
	sort.Strings(names)
	var tt, tf int
	for _, n := range names {
		s := stats[n]
		tt += s.trials
		tf += s.failed
		var cols []string
		for _, c := range testworld.LeakClasses() {
			cols = append(cols, strconv.Itoa(s.leaks[c]))
		}
		var up []string
		for k, v := range s.upstream {
			up = append(up, fmt.Sprintf("%s ×%d", k, v))
		}
		sort.Strings(up)
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %.1f |\n", n, s.trials, s.failed, strings.Join(cols, " | "), strings.Join(up, "; "), s.wall.Seconds())
	}
	fmt.Fprintf(&b, "\ntotal: %d trials, %d failed\n\n### counts (what the classes that race count, over all their trials)\n\n", tt, tf)
	for _, n := range names {
		if line := countsLine(stats[n].counts); line != "" {
			fmt.Fprintf(&b, "- %s: %s\n", n, line)
		}
	}
	fmt.Fprintf(&b, "\n### symptoms (first failed check of each failed trial)\n\n")
	for _, n := range names {
		s := stats[n]
		var sy []string
		for k, v := range s.symptoms {
			sy = append(sy, fmt.Sprintf("%d× %s", v, k))
		}
		sort.Strings(sy)
		for _, line := range sy {
			fmt.Fprintf(&b, "- %s: %s\n", n, line)
		}
	}
	return b.String()
}
