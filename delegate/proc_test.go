package delegate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// These tests run real plugins: the test binary, under the names TestMain
// knows (see main_test.go).

// realRunner is a Runner of real processes whose plugins write their
// stderr to the returned buffer.
func realRunner() (*Runner, *bytes.Buffer) {
	var stderr bytes.Buffer
	return &Runner{Path: []string{pluginDir}, Stderr: &stderr}, &stderr
}

// run runs the real plugin tp-PART with stdin, the way a chain runs one.
func run(r *Runner, part string, stdin []byte, env Env) ([]byte, error) {
	return r.exec(context.Background(), "ADD", env, "tp-"+part, stdin)
}

func TestProcEcho(t *testing.T) {
	stdin := []byte(strings.Repeat(`{"cniVersion":"1.0.0"}`, 10000)) // 220 kB: more than a pipe holds
	r, stderr := realRunner()
	env := Env{ContainerID: "ctr-1", NetNS: "/run/netns/x", IfName: "eth7", CNIArgs: "K=V;L=W"}
	out, err := run(r, "echo", stdin, env)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, stdin) {
		t.Errorf("stdout: got %d bytes, want the %d bytes of stdin back", len(out), len(stdin))
	}
	want := "command=ADD container=ctr-1 netns=/run/netns/x ifname=eth7 args=K=V;L=W path=" + pluginDir
	if got := stderr.String(); got != want {
		t.Errorf("stderr: got %q, want %q", got, want)
	}
}

func TestProcLargeOutput(t *testing.T) {
	p, err := startProc(filepath.Join(pluginDir, "tp-streams"), nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.feed(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Written interleaved: neither stream may wait for the other.
	if want := strings.Repeat("o", 960<<10); string(out) != want {
		t.Errorf("stdout: got %d bytes, want %d of 'o'", len(out), len(want))
	}
	if cut, total := p.stdout.cut(); cut || total != 960<<10 {
		t.Errorf("stdout cut = %v of %d bytes, want all 960 KiB kept", cut, total)
	}
	if got := p.stderr.bytes(); string(got) != strings.Repeat("e", maxStderr) {
		t.Errorf("stderr: kept %d bytes, want the first %d", len(got), maxStderr)
	}
	if cut, total := p.stderr.cut(); !cut || total != 320<<10 {
		t.Errorf("stderr cut = %v of %d bytes, want cut of 320 KiB", cut, total)
	}

	// The Runner passes what it kept of stderr on, saying it was cut.
	r, stderr := realRunner()
	if _, err := run(r, "streams", nil, Env{}); err != nil {
		t.Fatal(err)
	}
	want := strings.Repeat("e", maxStderr) + fmt.Sprintf("\n[nicmux: the plugin's stderr was cut at %d of %d bytes]\n", maxStderr, 320<<10)
	if got := stderr.String(); got != want {
		t.Errorf("stderr passed on: %d bytes ending %q, want %d ending %q", len(got), tail(got), len(want), tail(want))
	}
}

func tail(s string) string { return s[max(0, len(s)-80):] }

func TestProcFailures(t *testing.T) {
	for _, tc := range []struct {
		part string
		code uint
		// msg is the whole message, or its parts in order.
		msg []string
	}{
		{"fail", 11, []string{"try later"}},
		{"silent", 999, []string{"plugin failed (exit status 3) with no error message"}},
		{"stderr", 999, []string{`plugin failed (exit status 2); its stderr: "something broke"`}},
		{"garbage", 999, []string{`plugin failed (exit status 1) with output that is not a CNI error: "garbage garbage `,
			`garbage "... (cut: 10000 bytes in all)`}},
		{"code0", 999, []string{`plugin failed (exit status 1) with a CNI error without a code: "{\"cniVersion\":\"1.0.0\",\"code\":0,\"msg\":\"zero\"}"`}},
		{"signal", 999, []string{"plugin failed (killed by signal terminated) with no error message"}},
		{"bigmsg", 11, []string{`"mmmm`, `mmm"... (cut: 10000 bytes in all)`}},
	} {
		t.Run(tc.part, func(t *testing.T) {
			r, _ := realRunner()
			_, err := run(r, tc.part, []byte(`{"cniVersion":"1.0.0"}`), Env{})
			var e *types.Error
			if !errors.As(err, &e) {
				t.Fatalf("error = %v (%T), want a *types.Error", err, err)
			}
			if e.Code != tc.code {
				t.Errorf("code = %d, want %d (%v)", e.Code, tc.code, err)
			}
			rest := e.Msg
			for _, m := range tc.msg {
				i := strings.Index(rest, m)
				if i < 0 {
					t.Fatalf("message %q: no %q in order", e.Msg, m)
				}
				rest = rest[i+len(m):]
			}
			if rest != "" || (len(tc.msg) == 1 && e.Msg != tc.msg[0]) {
				t.Errorf("message %q, want %q", e.Msg, tc.msg)
			}
			if len(e.Msg) > maxQuoted+200 {
				t.Errorf("message of %d bytes, want the quote capped at %d", len(e.Msg), maxQuoted)
			}
		})
	}
	t.Run("CNI error details", func(t *testing.T) {
		r, _ := realRunner()
		_, err := run(r, "fail", []byte("{}"), Env{})
		var e *types.Error
		if !errors.As(err, &e) || e.Details != "2 bytes in" {
			t.Errorf("error = %#v, want the plugin's details kept", err)
		}
	})
	t.Run("not found", func(t *testing.T) {
		r, _ := realRunner()
		_, err := run(r, "missing", nil, Env{})
		var nf *NotFoundError
		if !errors.As(err, &nf) || nf.CNICode() != 7 {
			t.Errorf("error = %v, want a NotFoundError", err)
		}
	})
}

// A plugin that writes without end costs nicmux no memory: 100 MB on stdout
// by a failing plugin leave a capped message and the heap as it was.
func TestProcFlood(t *testing.T) {
	r, _ := realRunner()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	// The peak resident size, reset to the current one.
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatal(err)
	}
	rss := memStatus(t, "VmRSS")
	_, err := run(r, "flood", nil, Env{})
	runtime.ReadMemStats(&after)
	// The kernel's RSS counters are approximate (per-CPU, folded in now
	// and then): the peak may read below the size read before.
	var grown uint64
	if hwm := memStatus(t, "VmHWM"); hwm > rss {
		grown = hwm - rss
	}
	var e *types.Error
	if !errors.As(err, &e) || e.Code != 999 {
		t.Fatalf("error = %v, want a 999", err)
	}
	want := fmt.Sprintf(`plugin failed (exit status 1) with output cut at %d bytes: "%s"... (cut: %d bytes in all)`,
		maxStdout, strings.Repeat("x", maxQuoted), 100<<20)
	if e.Msg != want {
		t.Errorf("message of %d bytes %q..., want %q...", len(e.Msg), tail(e.Msg), tail(want))
	}
	// What is kept is 1 MiB, grown by append (5 MiB allocated in all);
	// the race detector's shadow memory triples the resident size.
	few := uint64(10 << 20)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > few {
		t.Errorf("reading 100 MB allocated %d MB, want less than %d", alloc>>20, few>>20)
	}
	if raceEnabled() {
		few *= 3
	}
	if grown > few {
		t.Errorf("the peak resident size grew by %d MB, want less than %d", grown>>20, few>>20)
	}
	t.Logf("allocated %d kB; peak resident size grew by %d kB", (after.TotalAlloc-before.TotalAlloc)>>10, grown>>10)
}

func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	return ok && slices.ContainsFunc(bi.Settings, func(s debug.BuildSetting) bool { return s.Key == "-race" && s.Value == "true" })
}

// memStatus returns a size from /proc/self/status (VmRSS, VmHWM).
func memStatus(t *testing.T, key string) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/self/status", key)
	return 0
}

// A plugin past its time is killed with what it started, and the error
// names the timeout.
func TestProcTimeout(t *testing.T) {
	const timeout = 2 * time.Second
	dir := t.TempDir()
	r, _ := realRunner()
	r.Timeout = timeout
	procs := &procLog{}
	r.Started = procs.add
	start := time.Now()
	_, err := run(r, "family", nil, Env{CNIArgs: "DIR=" + dir})
	took := time.Since(start)
	family := pids(t, readMarker(t, dir, "family"))
	leader := procs.wait(t, 1)[0].Pid
	if took < timeout || took > timeout+time.Second {
		t.Errorf("returned after %v, want %v to %v", took, timeout, timeout+time.Second)
	}
	const msg = "killed, with its process group: timed out after 2s (delegateTimeout)"
	var e *types.Error
	if !errors.As(err, &e) || e.Code != 999 || e.Msg != msg || err.Error() != msg {
		t.Errorf("error = %v, want a 999 naming the timeout", err)
	}
	var te *timeoutError
	if !errors.As(err, &te) || te.Timeout != timeout || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want its cause a timeoutError", err)
	}
	if running(leader) {
		t.Errorf("the plugin %d is still running", leader)
	}
	for _, pid := range family {
		if !eventually(2*time.Second, func() bool { return !running(pid) }) {
			t.Errorf("the plugin's child %d is still running", pid)
		}
	}
}

// A plugin canceled is killed too; the error says why.
func TestProcCanceled(t *testing.T) {
	r, _ := realRunner()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	_, err := r.exec(ctx, "ADD", Env{}, "tp-sleep", nil)
	var e *types.Error
	if !errors.As(err, &e) || e.Code != 999 || e.Msg != "killed, with its process group: context canceled" || !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want a 999 caused by the cancel", err)
	}
}

// A grandchild that keeps the plugin's stdout holds the call up for the
// grace only.
func TestProcOutputGrace(t *testing.T) {
	dir := t.TempDir()
	r, _ := realRunner()
	out, err := run(r, "detach", nil, Env{CNIArgs: "DIR=" + dir})
	returned := time.Now()
	grandchild := pids(t, readMarker(t, dir, "detached"))[0]
	if err != nil || string(out) != `{"cniVersion":"1.0.0"}` {
		t.Errorf("got %q, %v; want the plugin's output", out, err)
	}
	exited, err := strconv.ParseInt(readMarker(t, dir, "exited"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if held := returned.Sub(time.Unix(0, exited)); held > outputGrace+time.Second {
		t.Errorf("the call returned %v after the plugin exited, want about %v", held, outputGrace)
	}
	if !running(grandchild) {
		t.Errorf("the grandchild %d is gone: the test shows nothing", grandchild)
	}
}

// No descriptor outlives a plugin, however it ends.
func TestProcNoFDLeak(t *testing.T) {
	count := func() int {
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	r, _ := realRunner()
	// Each run ends as its plugin says: the descriptors of every way of
	// ending are counted.
	runAs := func(part string, stdin []byte, env Env, wantOK bool) {
		t.Helper()
		if _, err := run(r, part, stdin, env); (err == nil) != wantOK {
			t.Errorf("tp-%s: error %v, want success %v", part, err, wantOK)
		}
	}
	runAs("echo", nil, Env{}, true) // whatever the runtime opens once
	before := count()
	for _, part := range []string{"echo", "streams", "fail", "silent", "garbage", "signal", "missing"} {
		runAs(part, []byte("{}"), Env{}, part == "echo" || part == "streams")
	}
	dir := t.TempDir()
	runAs("detach", nil, Env{CNIArgs: "DIR=" + dir}, true)
	pids(t, readMarker(t, dir, "detached"))
	r.Timeout = 200 * time.Millisecond
	runAs("sleep", nil, Env{}, false)
	p, err := startProc(filepath.Join(pluginDir, "tp-echo"), nil)
	if err != nil {
		t.Fatal(err)
	}
	p.abort()
	if _, err := startProc(filepath.Join(pluginDir, "no-such-plugin"), nil); err == nil {
		t.Error("a missing binary started")
	}
	if after := count(); after != before {
		t.Errorf("open descriptors: %d before, %d after", before, after)
	}
}

// A plugin started and never fed dies when aborted, and is reaped.
func TestProcAbort(t *testing.T) {
	p, err := startProc(filepath.Join(pluginDir, "tp-echo"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pid := p.pid()
	p.abort()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the aborted plugin %d: kill(0) = %v, want ESRCH (killed and reaped)", pid, err)
	}
}

// A plugin dies with the nicmux that started it.
func TestProcParentDeath(t *testing.T) {
	helper, out := startHelper(t, "pdeath", t.TempDir())
	line, err := out.ReadString('\n')
	if err != nil {
		t.Fatalf("the helper said %q: %v", line, err)
	}
	plugin := pids(t, line)[0]
	if !running(plugin) {
		t.Fatalf("the plugin %d is not running", plugin)
	}
	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()
	if !eventually(5*time.Second, func() bool { return !running(plugin) }) {
		t.Errorf("the plugin %d outlived its nicmux by 5s", plugin)
	}
}

func TestStartTicks(t *testing.T) {
	p, err := startProc(filepath.Join(pluginDir, "tp-sleep"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.abort()
	own, err := startTicks(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	ticks, err := startTicks(p.pid())
	if err != nil || ticks < own {
		t.Errorf("the plugin's start ticks = %d, %v; want at least the test's %d", ticks, err, own)
	}
	if _, err := startTicks(1 << 30); err == nil {
		t.Error("a pid that does not exist has start ticks")
	}
}
