// Command bench measures nicmux side by side with the delegate chains it
// runs attached directly by go-cni, serially and in parallel, with the real
// reference plugins in real network namespaces; then nicmux's own cost, its
// bare start, and how it scales. It writes a markdown table (see -out).
//
// -runs repeats all of it and reports each figure as the median of the
// runs' figures with their range; -baseline adds a second nicmux binary
// (an older release) as variants of their own, interleaved with the rest.
//
// It needs root, and re-runs itself in a private network namespace so every
// "host" link it makes dies with it. Any failure ends the run.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nicmux/nicmux/test/netnsutil"
)

type options struct {
	reps     int
	runs     int
	ns       []int
	out      string
	bin      string
	baseline string
	only     string
	// ipamVariants are more nicmux-ipam binaries for the plugin-alone
	// probe: LABEL=PATH,...
	ipamVariants string
}

func parseFlags() options {
	var o options
	var ns string
	flag.IntVar(&o.reps, "reps", 15, "measured repetitions of every variant in a run")
	flag.IntVar(&o.runs, "runs", 1, "runs of everything, each shuffled its own way; figures are the median of the runs' and their range")
	flag.StringVar(&ns, "n", "1,2,4,8,16", "interface counts of the macvlan scenarios")
	flag.StringVar(&o.out, "out", "", "markdown file to write the results to (default: stdout only)")
	flag.StringVar(&o.bin, "bin", "../../bin", "the repository's bin folder (nicmux, plugins/)")
	flag.StringVar(&o.baseline, "baseline", "", "a folder holding another nicmux binary (e.g. the previous release) "+
		"to run as the variants nicmux-serial-base and nicmux-parallel-base")
	flag.StringVar(&o.ipamVariants, "ipam-variants", "", "more nicmux-ipam binaries, `LABEL=PATH,...`, to run beside bin's in the plugin-alone probe")
	flag.StringVar(&o.only, "only", "", "run one phase alone and put its section in place in -out: ipam (nicmux-ipam's figures), metrics (metricsFile's cost)")
	flag.Parse()
	if o.reps < 1 || o.runs < 1 || flag.NArg() > 0 || (o.only != "" && o.only != "ipam" && o.only != "metrics") {
		fatalf("usage: bench [-reps n] [-runs k] [-n 1,2,4] [-out file.md] [-bin dir] [-baseline dir]")
	}
	for _, f := range strings.Split(ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 64 {
			fatalf("-n: %q is not an interface count from 1 to 64", f)
		}
		o.ns = append(o.ns, n)
	}
	return o
}

func main() {
	o := parseFlags()
	if os.Geteuid() != 0 {
		fatalf("the benchmark makes network namespaces and links: run it as root")
	}
	if code := netnsutil.ReexecInPrivateNetns(); code >= 0 {
		os.Exit(code)
	}
	run(o)
	cleanupAll()
}

// run sets everything up and warms it, then runs the matrix, the bare
// starts, the stateDir comparison and the concurrent containers o.runs
// times.
func run(o options) {
	if o.only == "ipam" {
		runIPAMOnly(o)
		return
	}
	if o.only == "metrics" {
		runMetricsOnly(o)
		return
	}
	e := newEnv(o.bin, o.baseline)
	r := &results{opts: o, started: time.Now(), loadStart: loadAvg(), scens: scenarios(o.ns), variants: map[string]*variant{}}
	vs := buildMatrix(e, r.scens)
	for _, v := range vs {
		r.variants[v.label] = v
	}
	warmUp(vs)
	r.bare = bareBins(e)
	progress("scale: filling a stateDir with %d containers", fillCount)
	r.state = newStateBench(e)
	r.ipam = newIPAMBench(e, o.ipamVariants)
	r.metrics = newMetricsBench(e)
	for run := range o.runs {
		runMatrix(e, vs, o.reps, run)
		progress("run %d: peak RSS", run+1)
		r.rss = append(r.rss, peakRSS(vs))
		progress("run %d: bare starts", run+1)
		bareStarts(r.bare, run)
		progress("run %d: stateDir with %d containers", run+1, fillCount)
		r.state.measure(o.reps, run)
		progress("run %d: %d containers at once", run+1, scaleContainers)
		r.scale = append(r.scale, scaleConcurrent(e))
		r.ipam.measure(o.reps, run)
		r.metrics.measure(o.reps, run)
		e.assertCacheEmpty()
	}
	r.elapsed, r.loadEnd = time.Since(r.started), loadAvg()
	md := r.markdown(e)
	fmt.Print(md)
	if o.out != "" {
		md += keptSection(o.out)
		must(os.WriteFile(o.out, []byte(md), 0o644), "writing %s", o.out)
		progress("wrote %s", o.out)
	}
}

// keptHeading starts the part of the results file the benchmark does not
// write: the figures measured by hand (see "Machinery kept or removed").
const keptHeading = "## Machinery kept or removed"

// keptSection returns the section of the results file at path that begins
// at keptHeading, up to the next "## " heading or the end; "" when there is
// none. The benchmark rewrites the file but keeps it.
func keptSection(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.Index(s, "\n"+keptHeading)
	if i < 0 {
		return ""
	}
	kept := s[i+1:]
	if j := strings.Index(kept[len(keptHeading):], "\n## "); j >= 0 {
		kept = kept[:len(keptHeading)+j+1]
	}
	return "\n" + strings.TrimRight(kept, "\n") + "\n"
}
