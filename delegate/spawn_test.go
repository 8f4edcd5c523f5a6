package delegate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// The test binary doubles as the plugin that spawn runs: with
// NICMUX_SPAWN_CHILD set, TestMain acts the part it names and exits.
func TestMain(m *testing.M) {
	if part := os.Getenv("NICMUX_SPAWN_CHILD"); part != "" {
		os.Exit(child(part))
	}
	os.Exit(m.Run())
}

func child(part string) int {
	in, _ := io.ReadAll(os.Stdin)
	switch part {
	case "echo": // stdin to stdout, the environment's CNI_COMMAND to stderr
		os.Stdout.Write(in)
		fmt.Fprintf(os.Stderr, "command=%s", os.Getenv("CNI_COMMAND"))
		return 0
	case "fail": // a CNI error on stdout, exit 1
		fmt.Fprintf(os.Stdout, `{"cniVersion":"1.0.0","code":11,"msg":"try later","details":"%d bytes in"}`, len(in))
		return 1
	case "silent-fail":
		return 3
	case "sleep":
		time.Sleep(time.Minute)
		return 0
	case "big": // more than a pipe holds, on both streams
		out := bytes.Repeat([]byte("x"), 1<<20)
		os.Stdout.Write(out)
		os.Stderr.Write(out[:200000])
		return 0
	}
	return 99
}

// spawn starts path and feeds it stdin at once.
func spawn(ctx context.Context, path string, stdin []byte, env []string) (stdout, stderr []byte, err error) {
	p, err := start(path, env)
	if err != nil {
		return nil, nil, err
	}
	return p.feed(ctx, stdin)
}

func childEnv(part string) []string {
	return append(os.Environ(), "NICMUX_SPAWN_CHILD="+part, "CNI_COMMAND=ADD")
}

func TestSpawnStreams(t *testing.T) {
	stdin := []byte(strings.Repeat(`{"cniVersion":"1.0.0"}`, 10000)) // 220 kB: more than a pipe holds
	var stderr bytes.Buffer
	ex := &RawExec{Stderr: &stderr}
	out, err := ex.ExecPlugin(context.Background(), os.Args[0], stdin, childEnv("echo"))
	if err != nil {
		t.Fatalf("ExecPlugin: %v", err)
	}
	if !bytes.Equal(out, stdin) {
		t.Errorf("stdout: got %d bytes, want the %d bytes of stdin back", len(out), len(stdin))
	}
	if got := stderr.String(); got != "command=ADD" {
		t.Errorf("stderr: got %q, want %q", got, "command=ADD")
	}
}

func TestSpawnLargeOutput(t *testing.T) {
	out, errOut, err := spawn(context.Background(), os.Args[0], nil, childEnv("big"))
	if err != nil {
		t.Fatalf("spawn: %v", err)
	}
	if len(out) != 1<<20 || len(errOut) != 200000 {
		t.Errorf("got %d bytes of stdout and %d of stderr, want %d and 200000", len(out), len(errOut), 1<<20)
	}
}

func TestSpawnFailures(t *testing.T) {
	ex := &RawExec{}
	_, err := ex.ExecPlugin(context.Background(), os.Args[0], []byte("{}"), childEnv("fail"))
	var e *types.Error
	if !errors.As(err, &e) || e.Code != 11 || e.Msg != "try later" || e.Details != "2 bytes in" {
		t.Errorf("a plugin's CNI error: got %#v, want code 11, msg %q, details %q", err, "try later", "2 bytes in")
	}

	_, err = ex.ExecPlugin(context.Background(), os.Args[0], nil, childEnv("silent-fail"))
	if !errors.As(err, &e) || e.Msg != "netplugin failed with no error message: exit status 3" {
		t.Errorf("a silent failure: got %v", err)
	}

	_, err = ex.ExecPlugin(context.Background(), "/nonexistent/plugin", nil, nil)
	if !errors.As(err, &e) || !strings.Contains(e.Msg, "/nonexistent/plugin") || !strings.Contains(e.Msg, "no such file") {
		t.Errorf("a missing binary: got %v, want its path and ENOENT", err)
	}
}

func TestSpawnCanceled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := spawn(ctx, os.Args[0], nil, childEnv("sleep"))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "signal: killed") {
		t.Errorf("got %v, want the child killed and the deadline reported", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("spawn returned after %v: the child was not killed", d)
	}
	if _, err := (&RawExec{}).ExecPlugin(ctx, os.Args[0], nil, childEnv("echo")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a done context: got %v, want no child started", err)
	}
}

// No descriptor outlives a spawn: the memfds are closed whatever happens.
func TestSpawnClosesDescriptors(t *testing.T) {
	count := func() int {
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	before := count()
	for _, part := range []string{"echo", "fail", "silent-fail"} {
		_, _, _ = spawn(context.Background(), os.Args[0], nil, childEnv(part))
	}
	_, _, _ = spawn(context.Background(), "/nonexistent", nil, nil)
	p, err := start(os.Args[0], childEnv("echo"))
	if err != nil {
		t.Fatal(err)
	}
	p.abort()
	if after := count(); after != before {
		t.Errorf("open descriptors: %d before, %d after", before, after)
	}
}

// A plugin started ahead waits for its input, however long that takes,
// and one aborted is killed having done nothing.
func TestStartedWaitsForInput(t *testing.T) {
	ex := &RawExec{}
	s, err := ex.StartPlugin(context.Background(), os.Args[0], childEnv("echo"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	out, err := s.Feed(context.Background(), []byte("late"))
	if err != nil || string(out) != "late" {
		t.Errorf("Feed after a wait: %q, %v", out, err)
	}

	s, err = ex.StartPlugin(context.Background(), os.Args[0], childEnv("echo"))
	if err != nil {
		t.Fatal(err)
	}
	pid := s.(*started).p.pid
	s.Abort()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the aborted plugin %d: kill(0) = %v, want ESRCH (killed and reaped)", pid, err)
	}
}

func TestExitError(t *testing.T) {
	for _, c := range []struct {
		status syscall.WaitStatus
		want   string
	}{
		{0, "exit status 0"},
		{2 << 8, "exit status 2"},
		{syscall.WaitStatus(syscall.SIGKILL), "signal: killed"},
	} {
		if got := exitError(c.status); got != c.want {
			t.Errorf("exitError(%#x) = %q, want %q", uint32(c.status), got, c.want)
		}
	}
}
