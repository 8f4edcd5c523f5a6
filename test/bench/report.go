package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// results is everything the run measured.
type results struct {
	opts      options
	started   time.Time
	elapsed   time.Duration
	loadStart string
	loadEnd   string
	scens     []scenario
	variants  map[string]*variant // by label
	bare      []*bareBin          // see bareBins
	scale     [][nVerbs]time.Duration
	state     *stateBench
	rss       []map[string][nVerbs]int64 // by run: each nicmux variant's peak RSS per verb, KB (see peakRSS)
	ipam      *ipamBench
	metrics   *metricsBench
}

func (r *results) variant(s scenario, k kind) *variant { return r.variants[s.Name+"/"+k.String()] }

// scenario returns the scenario of that name, if the run has it.
func (r *results) scenario(name string) (scenario, bool) {
	for _, s := range r.scens {
		if s.Name == name {
			return s, true
		}
	}
	return scenario{}, false
}

// over is a figure over the runs: f is one run's value.
func (r *results) over(f func(run int) float64) figure { return overRuns(r.opts.runs, f) }

// medianMS is one run's median of a verb of variant (s, k), in ms.
func (r *results) medianMS(s scenario, k kind, verb, run int) float64 {
	return toMS(median(durations(r.variant(s, k).inRun(run), verb)))
}

// ratioFig is x's median over base's, run by run.
func (r *results) ratioFig(s scenario, base, x kind, verb int) figure {
	return r.over(func(run int) float64 { return r.medianMS(s, x, verb, run) / r.medianMS(s, base, verb, run) })
}

// overheadFig is x's median minus base's, run by run, in ms.
func (r *results) overheadFig(s scenario, base, x kind, verb int) figure {
	return r.over(func(run int) float64 { return r.medianMS(s, x, verb, run) - r.medianMS(s, base, verb, run) })
}

// bareFig is one run's median start of a bare binary, plus add.
func (r *results) bareFig(i int, add time.Duration) figure {
	return r.over(func(run int) float64 { return toMS(median(r.bare[i].runs[run]) + add) })
}

// timeCell words a verb's wall time over samples: "median (p90)" from one
// run, the runs' medians' figure from several.
func (r *results) timeCell(samples []sample, verb int) string {
	if r.opts.runs == 1 {
		return medP90(durations(samples, verb))
	}
	return r.over(func(run int) float64 { return toMS(median(durations(inRun(samples, run), verb))) }).ms()
}

// timeWords says what timeCell and a figure's cell mean.
func (r *results) timeWords() string {
	if r.opts.runs == 1 {
		return "ms: median (p90)"
	}
	return fmt.Sprintf("ms: median of the %d runs' medians (their range)", r.opts.runs)
}

func (r *results) markdown(e *env) string {
	var b strings.Builder
	r.writeFacts(&b, e)
	r.writeTargets(&b)
	r.writeVerbs(&b)
	r.writeBaseline(&b)
	r.writePhases(&b)
	r.writeOwn(&b)
	r.writeBare(&b)
	r.writeScale(&b)
	b.WriteString("\n" + r.ipam.markdown(r.opts.reps))
	b.WriteString("\n" + r.metrics.markdown(r.opts.reps))
	return b.String()
}

func (r *results) writeFacts(b *strings.Builder, e *env) {
	fmt.Fprintf(b, "# nicmux benchmark\n\n")
	fmt.Fprintf(b, "- date: %s (the run took %s)\n", r.started.UTC().Format(time.RFC3339), r.elapsed.Round(time.Second))
	fmt.Fprintf(b, "- command: `%s` (in test/bench; `make bench` runs it, with BENCH_ARGS)\n", command())
	fmt.Fprintf(b, "- machine: %s, %d cores, kernel %s; load average %s at the start, %s at the end\n",
		cpuModel(), runtime.NumCPU(), kernel(), r.loadStart, r.loadEnd)
	fmt.Fprintf(b, "- software: %s, %s, %s, reference plugins %s\n",
		runtime.Version(), depVersion("github.com/containerd/go-cni"),
		depVersion("github.com/containernetworking/cni"), pluginVersion(e))
	if e.baseline != "" {
		fmt.Fprintf(b, "- baseline: %s (%s), as the variants nicmux-serial-base and nicmux-parallel-base\n",
			filepath.Join(e.baseline, "nicmux"), nicmuxVersion(filepath.Join(e.baseline, "nicmux")))
	}
	fmt.Fprintf(b, "- method: %d run(s) of %d measured repetitions, after one warm-up; each repetition runs every "+
		"(scenario, variant) once, in an order shuffled with a fixed seed (%d, plus the run's index); each iteration is a fresh "+
		"container ID in a fresh netns: ADD, CHECK, DEL, each timed around the go-cni/libcni call only. "+
		"A run also times the bare starts, the stateDir comparison and the concurrent containers. "+
		"With several runs, a figure is the median of the runs' figures, with their range. "+
		"Scenarios: seed = eth0 bridge + host-local (default route), eth1 macvlan + host-local + tuning; "+
		"N=n = n macvlans, each on its own veth master, each with host-local on its own /24. "+
		"Every variant has its own IPAM folder, bridge, subnets and nicmux stateDir.\n\n", r.opts.runs, r.opts.reps, seed)
}

// mode pairs a nicmux variant with the direct one it is judged against.
type mode struct {
	name           string
	direct, nicmux kind
	base           kind // the same mode of the -baseline binary
}

var modes = []mode{
	{"parallel (default)", directParallel, nicmuxParallel, nicmuxParallelBase},
	{"serial", directSerial, nicmuxSerial, nicmuxSerialBase},
}

func (r *results) writeVerbs(b *strings.Builder) {
	fmt.Fprintf(b, "## Verb wall time, %s\n\n", r.timeWords())
	fmt.Fprintf(b, "direct-serial: one go-cni network per chain, go-cni SetupSerially / Check / Remove. "+
		"direct-parallel: go-cni Setup (concurrent), libcni CHECK and DEL of all networks in goroutines. "+
		"nicmux-*: nicmux as the one go-cni network, `\"parallel\": false` / `true`. "+
		"Ratios are of medians.\n\n")
	r.writeRatios(b, [][2]kind{{directSerial, nicmuxSerial}, {directParallel, nicmuxParallel}})
}

// writeBaseline compares this nicmux with the -baseline binary, both in
// their default settings, serial and parallel.
func (r *results) writeBaseline(b *strings.Builder) {
	if r.opts.baseline == "" {
		return
	}
	fmt.Fprintf(b, "## This nicmux vs the baseline, %s\n\n", r.timeWords())
	fmt.Fprintf(b, "nicmux-*-base: the -baseline binary, with the same conflist, in the same "+
		"rounds; a ratio is new / base: below 1 is faster than the baseline.\n\n")
	r.writeRatios(b, [][2]kind{{nicmuxSerialBase, nicmuxSerial}, {nicmuxParallelBase, nicmuxParallel}})
}

// writeRatios writes a table of pairs of variants per scenario and verb:
// each pair's times and the ratio of the second's median to the first's.
func (r *results) writeRatios(b *strings.Builder, pairs [][2]kind) {
	fmt.Fprintf(b, "| scenario | verb |")
	for _, p := range pairs {
		fmt.Fprintf(b, " %s | %s | ratio |", p[0], p[1])
	}
	fmt.Fprintf(b, "\n|---|---|%s\n", strings.Repeat("---:|", 3*len(pairs)))
	for _, s := range r.scens {
		for verb := range nVerbs {
			fmt.Fprintf(b, "| %s | %s |", s.Name, verbNames[verb])
			for _, p := range pairs {
				fmt.Fprintf(b, " %s | %s | %s |", r.timeCell(r.variant(s, p[0]).samples, verb),
					r.timeCell(r.variant(s, p[1]).samples, verb), r.ratioFig(s, p[0], p[1], verb).ratio())
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\n")
}

func (r *results) writeOwn(b *strings.Builder) {
	fmt.Fprintf(b, "## nicmux's own cost: ms, serial / parallel\n\n")
	fmt.Fprintf(b, "nicmux: its time in the verb outside the chains, and outside: the call less the verb (process start "+
		"and exit, libcni), as in the breakdown above. "+
		"Medians; of several runs, the median of the runs' medians (their range). "+
		"peak RSS: nicmux's VmHWM, sampled from outside every %v in an untimed pass (one container per variant and run), "+
		"the largest of the runs; the baseline's beside it when there is one.\n\n", rssEvery)
	base := r.opts.baseline != ""
	fmt.Fprintf(b, "| scenario | verb | nicmux | outside | peak RSS, MB |")
	if base {
		fmt.Fprintf(b, " baseline's peak RSS, MB |")
	}
	fmt.Fprintf(b, "\n|---|---|---:|---:|---:|%s\n", strings.Repeat("---:|", btoi(base)))
	for _, s := range r.scens {
		vs, vp := r.variant(s, nicmuxSerial), r.variant(s, nicmuxParallel)
		for verb := range nVerbs {
			fig := func(v *variant, pick func(cost) []time.Duration) string {
				return r.over(func(run int) float64 { return toMS(median(pick(v.costsOf(v.inRun(run))[verb]))) }).ms()
			}
			own := func(c cost) []time.Duration { return c.own }
			outside := func(c cost) []time.Duration { return c.outside }
			fmt.Fprintf(b, "| %s | %s | %s / %s | %s / %s | %s |", s.Name, verbNames[verb],
				fig(vs, own), fig(vp, own), fig(vs, outside), fig(vp, outside), r.rssPair(s, nicmuxSerial, nicmuxParallel, verb))
			if base {
				fmt.Fprintf(b, " %s |", r.rssPair(s, nicmuxSerialBase, nicmuxParallelBase, verb))
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\n")
}

// rssPair words the largest peak RSS over the runs of two variants of
// scenario s: "serial / parallel", in MB.
func (r *results) rssPair(s scenario, serial, parallel kind, verb int) string {
	mb := func(k kind) float64 {
		var kb int64
		for _, run := range r.rss {
			kb = max(kb, run[r.variant(s, k).label][verb])
		}
		return float64(kb) / 1024
	}
	return fmt.Sprintf("%.1f / %.1f", mb(serial), mb(parallel))
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (r *results) writeBare(b *strings.Builder) {
	fmt.Fprintf(b, "## Bare start (no CNI_COMMAND, empty environment), %d runs each, interleaved\n\n", bareRuns)
	if r.opts.runs > 1 {
		fmt.Fprintf(b, "The median of the %d runs' figures (their range).\n\n", r.opts.runs)
	}
	fmt.Fprintf(b, "| binary | median ms | p90 ms |\n|---|---:|---:|\n")
	for i, bin := range r.bare {
		p := r.over(func(run int) float64 { return toMS(p90(r.bare[i].runs[run])) })
		fmt.Fprintf(b, "| %s | %s | %s |\n", bin.label, r.bareFig(i, 0).ms(), p.ms())
	}
	b.WriteString("\n")
}

func (r *results) writeScale(b *strings.Builder) {
	fmt.Fprintf(b, "## Scale (seed job, nicmux-parallel)\n\n")
	fmt.Fprintf(b, "%d containers at once, each phase's wall time until the last returned; all succeeded, "+
		"and nothing was left (container links, host-local leases, nicmux state but its store-wide files, bridge ports, libcni cache).\n\n", scaleContainers)
	fmt.Fprintf(b, "| phase | wall ms |\n|---|---:|\n")
	for verb := range nVerbs {
		fmt.Fprintf(b, "| %d × %s | %s |\n", scaleContainers, verbNames[verb],
			r.over(func(run int) float64 { return toMS(r.scale[run][verb]) }).ms())
	}
	fmt.Fprintf(b, "\nstateDir holding %d other containers' records vs an empty one, %d interleaved repetitions each "+
		"per run; %s.\n\n", fillCount, r.opts.reps, r.timeWords())
	fmt.Fprintf(b, "| verb | empty stateDir | %d containers | ratio |\n|---|---:|---:|---:|\n", fillCount)
	for verb := range nVerbs {
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", verbNames[verb], r.timeCell(r.state.empty.samples, verb),
			r.timeCell(r.state.full.samples, verb), r.fillFig(verb).ratio())
	}
}

func command() string {
	return strings.TrimSpace("go run . " + strings.Join(os.Args[1:], " "))
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func kernel() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func depVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return path + " " + d.Version
			}
		}
	}
	return path + " (unknown version)"
}

// nicmuxVersion is the first line a nicmux binary prints when run bare.
func nicmuxVersion(bin string) string {
	cmd := exec.Command(bin)
	cmd.Env = []string{}
	out, _ := cmd.CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// pluginVersion is what the bridge plugin prints when run bare.
func pluginVersion(e *env) string {
	out, _ := exec.Command(e.plugin("bridge")).CombinedOutput()
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "v") {
			return f
		}
	}
	return "(unknown) in " + filepath.Dir(e.plugin("bridge"))
}
