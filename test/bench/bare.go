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

// bareRuns is how often each binary is started bare.
const bareRuns = 200

const helloSrc = `package main

import "os"

func main() { os.Stdout.WriteString("hello\n") }
`

// bareStarts times nicmux run with an empty environment (Nomad's
// fingerprint: it prints its version) and, as the floor, a static Go
// hello-world built like nicmux, interleaved in a shuffled order.
func bareStarts(e *env) (nicmux, hello []time.Duration) {
	nm, hw := filepath.Join(e.bin, "nicmux"), buildHello(e)
	for range 5 {
		runBare(nm, "CNI nicmux plugin")
		runBare(hw, "hello")
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	for range bareRuns {
		if rng.IntN(2) == 0 {
			nicmux = append(nicmux, runBare(nm, "CNI nicmux plugin"))
			hello = append(hello, runBare(hw, "hello"))
		} else {
			hello = append(hello, runBare(hw, "hello"))
			nicmux = append(nicmux, runBare(nm, "CNI nicmux plugin"))
		}
	}
	return nicmux, hello
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
