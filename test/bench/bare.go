package main

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// bareRuns is how often each binary is started bare in a run.
const bareRuns = 200

const helloSrc = `package main

import "os"

func main() { os.Stdout.WriteString("hello\n") }
`

// bareBin is a binary started bare, what it must print, and its start
// times, one slice per run.
type bareBin struct {
	label, path, want string
	runs              [][]time.Duration
}

// The bare binaries, in the order bareBins returns them.
const (
	bareNicmux   = iota // bin/nicmux, as Nomad's fingerprint runs it
	bareHello           // a static Go hello-world: the floor
	bareBaseline        // the -baseline nicmux, if any
)

// bareBins returns nicmux run with an empty environment (Nomad's
// fingerprint: it prints its version), a static Go hello-world built like
// nicmux as the floor, the -baseline nicmux if there is one, and
// nicmux-ipam (which Nomad fingerprints too); each has been started a few
// times.
func bareBins(e *env) []*bareBin {
	const version = "CNI nicmux plugin"
	bins := []*bareBin{
		{label: "bin/nicmux (prints its version)", path: filepath.Join(e.bin, "nicmux"), want: version},
		{label: "static Go hello-world (floor)", path: buildHello(e), want: "hello"},
	}
	if e.baseline != "" {
		bins = append(bins, &bareBin{label: "-baseline nicmux", path: filepath.Join(e.baseline, "nicmux"), want: version})
	}
	bins = append(bins, &bareBin{label: "bin/nicmux-ipam (prints its version)", path: filepath.Join(e.bin, "nicmux-ipam"), want: "CNI nicmux-ipam plugin"})
	bins = append(bins, &bareBin{label: "bin/nicmux-ipamd (prints its version)", path: filepath.Join(e.bin, "nicmux-ipamd"), want: "CNI nicmux-ipamd plugin"})
	for range 5 {
		for _, b := range bins {
			runBare(b.path, b.want)
		}
	}
	return bins
}

// bareStarts times every binary bareRuns times, interleaved in an order
// shuffled for run run, as that run's figures.
func bareStarts(bins []*bareBin, run int) {
	rng := rand.New(rand.NewPCG(seed+uint64(run), seed))
	ds := make([][]time.Duration, len(bins))
	for range bareRuns {
		for _, i := range rng.Perm(len(bins)) {
			ds[i] = append(ds[i], runBare(bins[i].path, bins[i].want))
		}
	}
	for i, b := range bins {
		b.runs = append(b.runs, ds[i])
	}
}

// runBare runs bin with an empty environment and checks it printed want.
func runBare(bin, want string) time.Duration {
	var out bytes.Buffer
	cmd := exec.Command(bin)
	cmd.Env = []string{}
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	must(err, "running %s bare (output %q)", bin, out.String())
	if !strings.Contains(out.String(), want) {
		fatalf("%s run bare printed %q, want %q", bin, out.String(), want)
	}
	return d
}

// buildHello builds the hello-world as nicmux is built: static, stripped.
func buildHello(e *env) string { return buildStatic(e, "hello", helloSrc) }

// buildStatic builds a one-file Go program as nicmux is built (static,
// stripped) into the run's folder, with extra -X flags, and returns its path.
func buildStatic(e *env, name, src string, xflags ...string) string {
	dir := e.folder(name)
	must(os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644), "writing %s's source", name)
	must(os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module "+name+"\n\ngo 1.22\n"), 0o644), "writing %s's go.mod", name)
	bin := filepath.Join(dir, "bin", name)
	ldflags := strings.Join(append([]string{"-s", "-w"}, xflags...), " ")
	cmd := exec.Command(goTool(), "build", "-trimpath", "-ldflags="+ldflags, "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	must(err, "building %s: %s", name, out)
	return bin
}

func goTool() string {
	p, err := exec.LookPath("go")
	must(err, "finding the go tool to build the hello-world")
	return p
}
