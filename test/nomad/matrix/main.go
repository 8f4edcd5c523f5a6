// Command matrix runs the go-cni suite once per leg of package legs (one
// per Nomad go-cni / cni pin, and one with the reference plugins Nomad's
// setup script installs). Run it from test/nomad, as root:
//
//	go run ./matrix [-j 4] [-legs nomad-1.8.0,...] [-run regexp] [-v]
//
// It compiles each modfile's test binary once (the two legs on go.mod share
// one; all share the Go build cache), and runs up to -j legs at a time:
// each run isolates itself in new network and mount namespaces, and most of
// a leg's time is spent in Nomad's one-second pauses between setup tries,
// so legs overlap well even on two cores. Each leg's output is printed
// whole when it ends, then a summary; the exit status is 1 if any leg
// failed.
//
// With -table it prints the table of tested versions docs/nomad.md shows.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nicmux/nicmux/test/nomad/legs"
)

func main() {
	os.Exit(run())
}

// run runs the legs and returns the exit status: 1 if a leg failed.
func run() int {
	jobs := flag.Int("j", 4, "legs run at the same time")
	only := flag.String("legs", "", "comma-separated legs to run (default: all)")
	goCmd := flag.String("go", "go", "the go command")
	runRE := flag.String("run", "", "passed to the test binaries as -test.run")
	verbose := flag.Bool("v", false, "passed to the test binaries as -test.v")
	timeout := flag.Duration("timeout", 20*time.Minute, "per leg, passed as -test.timeout")
	table := flag.Bool("table", false, "print docs/nomad.md's table of tested versions and exit")
	flag.Parse()
	if *table {
		fmt.Print(legs.Markdown())
		return 0
	}
	if *jobs < 1 {
		fatalf("-j must be at least 1")
	}
	selected, err := pick(*only)
	if err != nil {
		fatalf("%v", err)
	}
	suiteDir, err := os.Getwd()
	if err != nil {
		fatalf("%v", err)
	}
	if _, err := os.Stat(filepath.Join(suiteDir, "legs", "legs.go")); err != nil {
		fatalf("run it from test/nomad: %v", err)
	}
	tmp, err := os.MkdirTemp("", "nicmux-nomad-legs-")
	if err != nil {
		fatalf("%v", err)
	}
	defer os.RemoveAll(tmp)
	// An interrupt from the terminal reaches the test binaries too, which
	// stop and clean up after themselves; this process waits for them, then
	// removes its binaries. (A handler, not SIG_IGN, which they would
	// inherit.)
	signal.Notify(make(chan os.Signal, 1), os.Interrupt)

	args := []string{"-test.count=1", "-test.timeout=" + timeout.String()}
	if *runRE != "" {
		args = append(args, "-test.run="+*runRE)
	}
	if *verbose {
		args = append(args, "-test.v")
	}
	r := &runner{goCmd: *goCmd, dir: suiteDir, tmp: tmp, args: args, builds: map[string]*build{}}
	start := time.Now()
	outcomes := make([]outcome, len(selected))
	sem := make(chan struct{}, *jobs)
	var wg sync.WaitGroup
	for i, l := range selected {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			outcomes[i] = r.leg(l)
			r.report(outcomes[i])
		}()
	}
	wg.Wait()

	failed := 0
	fmt.Printf("\ngo-cni suite, %d legs, -j %d, %s wall:\n", len(selected), *jobs, time.Since(start).Round(100*time.Millisecond))
	for _, o := range outcomes {
		status := "ok  "
		if o.err != nil {
			status = "FAIL"
			failed++
		}
		fmt.Printf("  %s %-28s Nomad %-23s go-cni %-8s cni %-7s plugins %-7s build %5.1fs  run %5.1fs\n", status, o.leg.Name,
			o.leg.Nomad, o.leg.GoCNI, o.leg.CNI, o.leg.Plugins, o.build.Seconds(), o.run.Seconds())
	}
	if failed > 0 {
		fmt.Printf("%d of %d legs failed\n", failed, len(selected))
		return 1
	}
	return 0
}

// pick returns the legs named in a comma-separated list, or all.
func pick(list string) ([]legs.Leg, error) {
	if list == "" {
		return legs.All, nil
	}
	var out []legs.Leg
	for _, name := range strings.Split(list, ",") {
		l, err := legs.Lookup(strings.TrimSpace(name))
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

type runner struct {
	goCmd, dir, tmp string
	args            []string

	mu     sync.Mutex
	builds map[string]*build // by modfile
	out    sync.Mutex        // serializes reports
}

// build is one modfile's test binary, compiled once.
type build struct {
	once sync.Once
	bin  string
	took time.Duration
	log  []byte
	err  error
}

type outcome struct {
	leg        legs.Leg
	build, run time.Duration
	output     []byte
	err        error
}

// binary compiles the test binary for a modfile, once.
func (r *runner) binary(modfile string) *build {
	r.mu.Lock()
	b := r.builds[modfile]
	if b == nil {
		b = &build{}
		r.builds[modfile] = b
	}
	r.mu.Unlock()
	b.once.Do(func() {
		start := time.Now()
		b.bin = filepath.Join(r.tmp, strings.NewReplacer("/", "_", ".", "_").Replace(modfile)+".test")
		cmd := exec.Command(r.goCmd, "test", "-c", "-modfile="+modfile, "-o", b.bin, ".")
		cmd.Dir = r.dir
		b.log, b.err = cmd.CombinedOutput()
		b.took = time.Since(start)
	})
	return b
}

// leg runs one leg's test binary with NICMUX_NOMAD_LEG set.
func (r *runner) leg(l legs.Leg) outcome {
	o := outcome{leg: l}
	b := r.binary(l.Modfile)
	o.build = b.took
	if b.err != nil {
		o.output, o.err = b.log, fmt.Errorf("building with -modfile=%s: %w", l.Modfile, b.err)
		return o
	}
	var out bytes.Buffer
	cmd := exec.Command(b.bin, r.args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), legs.Env+"="+l.Name)
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	o.err = cmd.Run()
	o.run = time.Since(start)
	o.output = out.Bytes()
	return o
}

// report prints a finished leg's output, whole.
func (r *runner) report(o outcome) {
	r.out.Lock()
	defer r.out.Unlock()
	status := "ok"
	if o.err != nil {
		status = "FAIL: " + o.err.Error()
	}
	fmt.Printf("=== %s\n%s", o.leg.Name, o.output)
	if len(o.output) > 0 && !bytes.HasSuffix(o.output, []byte("\n")) {
		fmt.Println()
	}
	fmt.Printf("--- %s %s (run %.1fs)\n", o.leg.Name, status, o.run.Seconds())
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "matrix: "+format+"\n", args...)
	os.Exit(2)
}
