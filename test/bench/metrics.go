package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	gocni "github.com/containerd/go-cni"
)

// initRuns is how often each binary is started with GODEBUG=inittrace=1
// in a run.
const initRuns = 30

// metricsBench measures what metricsFile costs (issue 21): nicmux's
// default (parallel) mode without and with it, the seed job and one
// macvlan, interleaved in the same rounds; and the start of a binary
// that links the Prometheus library (nicmux-metrics) next to nicmux's and
// a static hello-world's, with their package initialisation.
type metricsBench struct {
	pairs [][2]*variant // per scenario: without, with metricsFile
	files []string      // the textfiles, per scenario
	bare  []*bareBin
	inits []*initBin
	runs  int
}

// initBin is a binary's package initialisation, summed from
// GODEBUG=inittrace=1, one slice per run.
type initBin struct {
	label, path string
	pkgs        int
	runs        [][]time.Duration
}

func newMetricsBench(e *env) *metricsBench {
	mb := &metricsBench{}
	for _, s := range scenarios([]int{1}) {
		var masters []string
		for range s.Masters {
			masters = append(masters, e.addMaster())
		}
		off := newVariant(e, s, nicmuxParallel, masters)
		on := newVariant(e, s, nicmuxParallel, masters)
		file := filepath.Join(e.folder("textfile-"+e.name("")), "nicmux.prom")
		on.withMetrics(file)
		mb.pairs = append(mb.pairs, [2]*variant{off, on})
		mb.files = append(mb.files, file)
		off.iterate(-1)
		on.iterate(-1)
	}
	hello := buildHello(e)
	mb.bare = []*bareBin{
		{label: "bin/nicmux (prints its version)", path: filepath.Join(e.bin, "nicmux"), want: "CNI nicmux plugin"},
		{label: "static Go hello-world (floor)", path: hello, want: "hello"},
		{label: "bin/nicmux-metrics (links the Prometheus library)", path: filepath.Join(e.bin, "nicmux-metrics"), want: "CNI nicmux-metrics plugin"},
	}
	for _, b := range mb.bare {
		mb.inits = append(mb.inits, &initBin{label: b.label, path: b.path})
	}
	return mb
}

// withMetrics sets metricsFile in the variant's nicmux entry.
func (v *variant) withMetrics(file string) {
	v.label += "+metricsFile"
	var list map[string]any
	must(json.Unmarshal(v.conflist, &list), "%s: decoding the conflist", v.label)
	list["plugins"].([]any)[0].(map[string]any)["metricsFile"] = file
	v.conflist = mustJSON(list)
	var err error
	v.cni, err = gocni.New(gocni.WithPluginDir(v.dirs), gocni.WithInterfacePrefix("eth"), gocni.WithConfListBytes(v.conflist))
	must(err, "%s: go-cni", v.label)
}

// measure runs reps rounds, each running every variant once in a shuffled
// order, then the bare starts and the package initialisations.
func (mb *metricsBench) measure(reps, run int) {
	var vs []*variant
	for _, p := range mb.pairs {
		vs = append(vs, p[0], p[1])
	}
	rng := rand.New(rand.NewPCG(seed+uint64(run), seed))
	for r := range reps {
		for _, i := range rng.Perm(len(vs)) {
			vs[i].samples = append(vs[i].samples, vs[i].iterate(run))
		}
		progress("metrics, run %d, round %d/%d", run+1, r+1, reps)
	}
	for _, v := range vs {
		v.assertNoLeaks(nil)
		v.costs() // every verb logged "ok", and nothing (the renderer neither) a warning
	}
	for i, f := range mb.files {
		mb.checkTextfile(f, mb.pairs[i][1])
	}
	bareStarts(mb.bare, run)
	for _, ib := range mb.inits {
		ib.runs = append(ib.runs, nil)
		for range initRuns {
			d, n := initTrace(ib.path)
			ib.runs[run] = append(ib.runs[run], d)
			ib.pkgs = n
		}
	}
	mb.runs++
}

// checkTextfile waits for the renderer to draw every verb of v, and
// fails the run when it does not within 10 s.
func (mb *metricsBench) checkTextfile(path string, v *variant) {
	want := fmt.Sprintf("%d", (len(v.samples)+1)*nVerbs) // the warm-up's too
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		var n float64
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "nicmux_verbs_total{") {
				f, _ := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
				n += f
			}
		}
		if strconv.FormatFloat(n, 'f', -1, 64) == want {
			return
		}
		if time.Now().After(deadline) {
			fatalf("%s: the textfile counts %v verbs, want %s", v.label, n, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// initTrace starts bin bare with GODEBUG=inittrace=1 and sums the clock
// time of its packages' initialisation.
func initTrace(bin string) (time.Duration, int) {
	var stderr bytes.Buffer
	cmd := exec.Command(bin)
	cmd.Env = []string{"GODEBUG=inittrace=1"}
	cmd.Stderr = &stderr
	must(cmd.Run(), "running %s with inittrace", bin)
	var sum float64
	n := 0
	for _, l := range strings.Split(stderr.String(), "\n") {
		// init pkg @0.32 ms, 0.10 ms clock, 312 bytes, 7 allocs
		f := strings.Fields(l)
		if len(f) < 7 || f[0] != "init" || f[6] != "clock," {
			continue
		}
		v, err := strconv.ParseFloat(f[4], 64)
		must(err, "inittrace line %q", l)
		sum += v
		n++
	}
	return time.Duration(sum * float64(time.Millisecond)), n
}

func (mb *metricsBench) over(f func(run int) float64) figure { return overRuns(mb.runs, f) }

// ownFig is one run's median of nicmux's own time in a verb (its log
// line's duration less its chains': the fold and the renderer's start
// included), in ms.
func ownMS(v *variant, verb, run int) float64 {
	return toMS(median(v.costsOf(v.inRun(run))[verb].own))
}

func (mb *metricsBench) markdown(reps int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## metricsFile (issue 21)\n\n")
	fmt.Fprintf(&b, "nicmux in its default (parallel) mode without and with `metricsFile`, each variant its own bridge, "+
		"IPAM and state folder, %d interleaved repetitions per run, %d run(s); a figure is the median of the runs' figures "+
		"(their range). nicmux's own time is its log line's duration less its chains' (the fold into the counters and the "+
		"start of the detached renderer are in it); the call is go-cni's, as a runtime sees it. Every run also checks that "+
		"the textfile counts every verb.\n\n", reps, mb.runs)
	fmt.Fprintf(&b, "| scenario | verb | own, without | own, with | with − without, ms | call, without | call, with | ratio |\n")
	fmt.Fprintf(&b, "|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range mb.pairs {
		off, on := p[0], p[1]
		for verb := range nVerbs {
			call := func(v *variant) func(int) float64 {
				return func(run int) float64 { return toMS(median(durations(v.inRun(run), verb))) }
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", off.scen.Name, verbNames[verb],
				mb.over(func(run int) float64 { return ownMS(off, verb, run) }).ms(),
				mb.over(func(run int) float64 { return ownMS(on, verb, run) }).ms(),
				mb.over(func(run int) float64 { return ownMS(on, verb, run) - ownMS(off, verb, run) }).ms(),
				mb.over(call(off)).ms(), mb.over(call(on)).ms(),
				mb.over(func(run int) float64 { return call(on)(run) / call(off)(run) }).ratio())
		}
	}
	fmt.Fprintf(&b, "\nBare start (no CNI_COMMAND, empty environment), %d runs each, interleaved, and the packages' "+
		"initialisation (GODEBUG=inittrace=1: the sum of every package's init clock time, %d runs each); ms:\n\n", bareRuns, initRuns)
	fmt.Fprintf(&b, "| binary | size MB | packages | init | bare start | p90 |\n|---|---:|---:|---:|---:|---:|\n")
	for i, bin := range mb.bare {
		ib := mb.inits[i]
		fmt.Fprintf(&b, "| %s | %.1f | %d | %s | %s | %s |\n", bin.label, sizeMB(bin.path), ib.pkgs,
			mb.over(func(run int) float64 { return toMS(median(ib.runs[run])) }).ms(),
			mb.over(func(run int) float64 { return toMS(median(bin.runs[run])) }).ms(),
			mb.over(func(run int) float64 { return toMS(p90(bin.runs[run])) }).ms())
	}
	return b.String()
}

// runMetricsOnly runs the phase alone (-only metrics): it prints its
// section and puts it in place of the one in -out.
func runMetricsOnly(o options) {
	e := newEnv(o.bin, "")
	mb := newMetricsBench(e)
	for run := range o.runs {
		mb.measure(o.reps, run)
	}
	md := mb.markdown(o.reps)
	fmt.Print(md)
	if o.out != "" {
		old, _ := os.ReadFile(o.out)
		must(os.WriteFile(o.out, []byte(spliceSection(string(old), md)), 0o644), "writing %s", o.out)
		progress("wrote the metricsFile section of %s", o.out)
	}
}
