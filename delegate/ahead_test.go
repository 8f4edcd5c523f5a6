package delegate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/conf"
)

// These tests start real plugins ahead: tp-a, tp-b and tp-c (see plugin in
// main_test.go) note in the test's folder when they run (ID.started) and
// when they have read their input (ID.read), with their pid.

// aheadRunner is a Runner that starts ahead, and the log of what it
// started and of its spans. Close is called when the test ends.
func aheadRunner(t *testing.T, limit int) (*Runner, *procLog, *record[Span]) {
	procs, spans := &procLog{}, &record[Span]{}
	r := &Runner{Path: []string{pluginDir}, Prestart: true, AheadLimit: limit, Started: procs.add, Observe: spans.add}
	t.Cleanup(r.Close)
	return r, procs, spans
}

func markerEnv(dir string) Env {
	return Env{ContainerID: "ctr-1", NetNS: "/run/netns/x", IfName: "eth1", CNIArgs: "DIR=" + dir}
}

func markerPid(t *testing.T, dir, name string) int {
	t.Helper()
	pid, err := strconv.Atoi(readMarker(t, dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// gone reports whether pid was killed and reaped.
func gone(pid int) bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

func (r *Runner) liveCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.live
}

// A warm plugin waits, having read nothing, until its chain runs.
func TestWarm(t *testing.T) {
	dir := t.TempDir()
	r, procs, _ := aheadRunner(t, 4)
	c := chainOf(t, "eth1", "n", "1.0.0", `{"type":"tp-a"}`)
	r.Warm("ADD", c, markerEnv(dir))
	warm := procs.wait(t, 1)[0].Pid
	if pid := markerPid(t, dir, "a.started"); pid != warm {
		t.Fatalf("a.started by %d, want the warm %d", pid, warm)
	}
	time.Sleep(100 * time.Millisecond)
	if exists(dir, "a.read") || !running(warm) {
		t.Fatalf("the warm plugin read its input (%v) or is gone (%v) before the chain ran", exists(dir, "a.read"), !running(warm))
	}
	res, _, err := r.Add(context.Background(), c, markerEnv(dir))
	if err != nil || res.Version() != "1.0.0" {
		t.Fatalf("Add: %v, %v", res, err)
	}
	if pid := markerPid(t, dir, "a.read"); pid != warm {
		t.Errorf("the input was read by %d, want the warm %d", pid, warm)
	}
	if n := len(procs.get()); n != 1 {
		t.Errorf("%d processes started, want the warm one only", n)
	}
	if n := r.liveCount(); n != 0 {
		t.Errorf("%d processes counted alive", n)
	}
}

// Each plugin of a chain is started while the one before it runs; DEL
// starts them last first.
func TestStartNextAhead(t *testing.T) {
	for _, verb := range []string{"ADD", "CHECK", "DEL"} {
		t.Run(verb, func(t *testing.T) {
			dir := t.TempDir()
			r, procs, spans := aheadRunner(t, 4)
			// Each plugin waits until the next has started, at most 10 s.
			first, second := `{"type":"tp-a","waitFor":"b"}`, `{"type":"tp-b"}`
			if verb == "DEL" {
				first, second = `{"type":"tp-a"}`, `{"type":"tp-b","waitFor":"a"}`
			}
			c := chainOf(t, "eth1", "n", "1.0.0", first, second)
			prev := testResult("10.0.0.2")
			var err error
			switch verb {
			case "ADD":
				_, _, err = r.Add(context.Background(), c, markerEnv(dir))
			case "CHECK":
				err = r.Check(context.Background(), c, markerEnv(dir), prev)
			case "DEL":
				err = r.Del(context.Background(), c, markerEnv(dir), prev)
			}
			if err != nil {
				t.Fatal(err)
			}
			s := spans.get()
			if len(s) != 2 || len(procs.get()) != 2 {
				t.Fatalf("%d spans and %d processes, want 2", len(s), len(procs.get()))
			}
			if !s[1].Started.Before(s[0].Done) {
				t.Errorf("%s started %v after %s was done, want before", s[1].Plugin, s[1].Started.Sub(s[0].Done), s[0].Plugin)
			}
			if took := s[0].Done.Sub(s[0].Fed); took > 5*time.Second {
				t.Errorf("%s waited %v for the next plugin to start", s[0].Plugin, took)
			}
			if n := r.liveCount(); n != 0 {
				t.Errorf("%d processes counted alive", n)
			}
		})
	}
}

// A chain that stops at a failure kills the plugin started after it, which
// has read nothing.
func TestFailureKillsNext(t *testing.T) {
	for _, verb := range []string{"ADD", "CHECK"} {
		t.Run(verb, func(t *testing.T) {
			dir := t.TempDir()
			r, procs, _ := aheadRunner(t, 4)
			c := chainOf(t, "eth1", "n", "1.0.0", `{"type":"tp-a","waitFor":"b","fail":11}`, `{"type":"tp-b"}`)
			var err error
			var ran *conf.Chain
			if verb == "ADD" {
				_, ran, err = r.Add(context.Background(), c, markerEnv(dir))
			} else {
				err = r.Check(context.Background(), c, markerEnv(dir), testResult("10.0.0.2"))
			}
			var pe *PluginError
			if !errors.As(err, &pe) || pe.Index != 0 || pe.CNICode() != 11 {
				t.Fatalf("error = %v, want a's, code 11", err)
			}
			if verb == "ADD" && (ran == nil || len(ran.Plugins) != 1) {
				t.Errorf("ran = %v, want [tp-a]", pluginTypes(ran))
			}
			ps := procs.get()
			if len(ps) != 2 {
				t.Fatalf("%d processes started, want 2", len(ps))
			}
			// The two start at once: b ahead, a as it is due.
			next := markerPid(t, dir, "b.started")
			if next != ps[0].Pid && next != ps[1].Pid {
				t.Fatalf("b.started by %d, want one of %v", next, ps)
			}
			if !gone(next) {
				t.Errorf("the plugin started ahead (%d) is still there", next)
			}
			if exists(dir, "b.read") {
				t.Error("the plugin started ahead read its input")
			}
			if n := r.liveCount(); n != 0 {
				t.Errorf("%d processes counted alive", n)
			}
		})
	}
}

// Close kills the warm plugins never used.
func TestCloseKillsWarm(t *testing.T) {
	dir := t.TempDir()
	r, procs, _ := aheadRunner(t, 4)
	r.Warm("ADD", chainOf(t, "eth1", "n", "1.0.0", `{"type":"tp-a"}`), markerEnv(dir))
	r.Warm("DEL", chainOf(t, "eth1", "n", "1.0.0", `{"type":"tp-c"}`, `{"type":"tp-b"}`), markerEnv(dir))
	ps := procs.wait(t, 2)
	markerPid(t, dir, "a.started")
	markerPid(t, dir, "b.started") // DEL's first is the last plugin
	r.Close()
	for _, p := range ps {
		if !gone(p.Pid) {
			t.Errorf("the warm plugin %d is still there", p.Pid)
		}
	}
	if exists(dir, "a.read") || exists(dir, "b.read") || exists(dir, "c.started") {
		t.Error("a warm plugin read its input, or the wrong one was started")
	}
	if n := r.liveCount(); n != 0 {
		t.Errorf("%d processes counted alive", n)
	}
	r.Close() // again: nothing left
}

// No more processes are started ahead than AheadLimit allows alive; the
// plugin due is started regardless.
func TestAheadLimit(t *testing.T) {
	dir := t.TempDir()
	r, procs, _ := aheadRunner(t, 2)
	var chains []*conf.Chain
	for _, id := range []string{"a", "b", "c"} {
		c := chainOf(t, "eth1", "n", "1.0.0", fmt.Sprintf(`{"type":"tp-%s"}`, id))
		chains = append(chains, c)
		r.Warm("ADD", c, markerEnv(dir))
	}
	ps := procs.wait(t, 2)
	markerPid(t, dir, "a.started")
	markerPid(t, dir, "b.started")
	time.Sleep(100 * time.Millisecond)
	if len(procs.get()) != 2 || exists(dir, "c.started") {
		t.Errorf("%d processes started ahead, want 2", len(procs.get()))
	}
	if got := liveChildren(t); got != 2 {
		t.Errorf("%d children alive, want 2", got)
	}
	// c is due: started though two are alive, and nothing is started
	// ahead meanwhile.
	if _, _, err := r.Add(context.Background(), chains[2], markerEnv(dir)); err != nil {
		t.Fatal(err)
	}
	if got := len(procs.get()); got != 3 {
		t.Errorf("%d processes started, want 3", got)
	}
	r.Close()
	for _, p := range ps {
		if !gone(p.Pid) {
			t.Errorf("the warm plugin %d is still there", p.Pid)
		}
	}
	if got := liveChildren(t); got != 0 {
		t.Errorf("%d children alive after Close, want 0", got)
	}

	// With a limit of 1, the running plugin is the one alive: the next is
	// started when due.
	dir = t.TempDir()
	r, _, spans := aheadRunner(t, 1)
	c := chainOf(t, "eth1", "n", "1.0.0", `{"type":"tp-a","sleepMs":100}`, `{"type":"tp-b"}`)
	if _, _, err := r.Add(context.Background(), c, markerEnv(dir)); err != nil {
		t.Fatal(err)
	}
	if s := spans.get(); len(s) != 2 || s[1].Started.Before(s[0].Done) {
		t.Errorf("spans %+v: b started before a was done", s)
	}
}

// liveChildren counts the test process's children that are not zombies.
func liveChildren(t *testing.T) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self := strconv.Itoa(os.Getpid())
	n := 0
	for _, e := range entries {
		if f, err := statFields(e.Name()); err == nil && len(f) > 1 && f[1] == self && f[0] != "Z" {
			n++
		}
	}
	return n
}

// A warm plugin started with another environment than its chain runs with
// is not used: a fresh one runs, and the warm one, which only a call with
// its own environment could take, goes at Close.
func TestWarmEnvMismatch(t *testing.T) {
	dir := t.TempDir()
	r, procs, _ := aheadRunner(t, 4)
	c := chainOf(t, "eth1", "n", "1.0.0", `{"type":"tp-a"}`)
	r.Warm("ADD", c, markerEnv(dir))
	warm := procs.wait(t, 1)[0].Pid
	markerPid(t, dir, "a.started")
	env := markerEnv(dir)
	env.CNIArgs += ";K=V"
	if _, _, err := r.Add(context.Background(), c, env); err != nil {
		t.Fatal(err)
	}
	ps := procs.get()
	if len(ps) != 2 {
		t.Fatalf("%d processes started, want 2", len(ps))
	}
	if pid := markerPid(t, dir, "a.read"); pid != ps[1].Pid {
		t.Errorf("the input was read by %d, want the fresh %d", pid, ps[1].Pid)
	}
	r.Close()
	if !gone(warm) {
		t.Errorf("the warm plugin %d is still there", warm)
	}
	if n := r.liveCount(); n != 0 {
		t.Errorf("%d processes counted alive", n)
	}
}

// A plugin missing from the path is reported when due, whether it was to
// be started ahead or not.
func TestAheadNotFound(t *testing.T) {
	dir := t.TempDir()
	r, _, _ := aheadRunner(t, 4)
	c := chainOf(t, "eth1", "n", "1.0.0", `{"type":"tp-a"}`, `{"type":"tp-missing"}`)
	r.Warm("ADD", chainOf(t, "eth1", "n", "1.0.0", `{"type":"tp-missing"}`), markerEnv(dir))
	_, ran, err := r.Add(context.Background(), c, markerEnv(dir))
	var nf *NotFoundError
	var pe *PluginError
	if !errors.As(err, &nf) || !errors.As(err, &pe) || pe.Index != 1 || pe.CNICode() != types.ErrInvalidNetworkConfig {
		t.Errorf("error = %v, want tp-missing not found", err)
	}
	if got := pluginTypes(ran); len(got) != 1 || got[0] != "tp-a" {
		t.Errorf("ran = %v, want [tp-a]", got)
	}
	r.Close()
	if n := r.liveCount(); n != 0 {
		t.Errorf("%d processes counted alive", n)
	}
}

// A Runner with an Exec never starts a process of its own.
func TestWarmWithExec(t *testing.T) {
	f := answer(func(int) ([]byte, error) { return []byte(`{"cniVersion":"1.0.0"}`), nil })
	procs := &procLog{}
	r := &Runner{Path: []string{pluginDir}, Exec: f, Prestart: true, Started: procs.add}
	c := chainOf(t, "eth1", "n", "1.0.0", `{"type":"tp-a"}`, `{"type":"tp-b"}`)
	r.Warm("ADD", c, markerEnv(t.TempDir()))
	if _, _, err := r.Add(context.Background(), c, markerEnv(t.TempDir())); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if n := len(procs.get()); n != 0 || f.calls != 2 {
		t.Errorf("%d processes started and %d calls, want none and 2", n, f.calls)
	}
}
