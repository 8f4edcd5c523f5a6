// Command bench measures nicmux side by side with the delegate chains it
// runs attached directly by go-cni, serially and in parallel, with the real
// reference plugins in real network namespaces; then nicmux's own cost, its
// bare start, and how it scales. It writes a markdown table (see -out).
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
	reps int
	ns   []int
	out  string
	bin  string
}

func parseFlags() options {
	var o options
	var ns string
	flag.IntVar(&o.reps, "reps", 15, "measured repetitions of every variant")
	flag.StringVar(&ns, "n", "1,2,4,8,16", "interface counts of the macvlan scenarios")
	flag.StringVar(&o.out, "out", "", "markdown file to write the results to (default: stdout only)")
	flag.StringVar(&o.bin, "bin", "../../bin", "the repository's bin folder (nicmux, plugins/)")
	flag.Parse()
	if o.reps < 1 || flag.NArg() > 0 {
		fatalf("usage: bench [-reps n] [-n 1,2,4] [-out file.md] [-bin dir]")
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

func run(o options) {
	e := newEnv(o.bin)
	r := &results{opts: o, started: time.Now(), loadStart: loadAvg(), scens: scenarios(o.ns), variants: map[string]*variant{}}
	vs := buildMatrix(e, r.scens)
	for _, v := range vs {
		r.variants[v.label] = v
	}
	runMatrix(e, vs, o.reps)
	progress("bare starts")
	r.bareNicmux, r.bareHello = bareStarts(e)
	progress("scale: %d containers at once", scaleContainers)
	r.scalePhases = scaleConcurrent(e)
	progress("scale: stateDir with %d containers", fillCount)
	r.stateEmpty, r.stateFull = scaleState(e, o.reps)
	e.assertCacheEmpty()
	r.elapsed, r.loadEnd = time.Since(r.started), loadAvg()
	md := r.markdown(e)
	fmt.Print(md)
	if o.out != "" {
		must(os.WriteFile(o.out, []byte(md), 0o644), "writing %s", o.out)
		progress("wrote %s", o.out)
	}
}
