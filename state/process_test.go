package state

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Environment of the helper process (see TestHelperProcess).
const (
	envHelper = "NICMUX_STATE_TEST_HELPER" // "hold", "count", "peek" or "barrier"
	envDir    = "NICMUX_STATE_TEST_DIR"
	envID     = "NICMUX_STATE_TEST_ID"
	envMode   = "NICMUX_STATE_TEST_MODE"  // hold: "shared" or "exclusive"
	envHold   = "NICMUX_STATE_TEST_HOLD"  // hold: time to keep the lock after stdin closes
	envBegin  = "NICMUX_STATE_TEST_BEGIN" // hold: record a plan and eth0's result while holding
	envNote   = "NICMUX_STATE_TEST_NOTE"  // hold: a line to note in the lock
	envRounds = "NICMUX_STATE_TEST_ROUND" // count: rounds
	envFile   = "NICMUX_STATE_TEST_FILE"  // count: counter file; barrier: the mark of GC's hold
)

// TestHelperProcess is not a test: it is the second process of the
// cross-process tests, which run the test binary again with
// -test.run=^TestHelperProcess$ and envHelper set (the os/exec
// helper-process pattern). Run directly, without envHelper, it returns at
// once.
//
// "hold" takes a container's lock, optionally records a plan (an ADD in
// progress) and notes a line, prints "locked", waits for its standard input
// to close, keeps the lock envHold more, and exits without releasing it.
// "count" increments a counter file under the exclusive lock envRounds
// times, removing the lock file (Discard) on every other release. "peek"
// takes the lock Shared and Discards it, over and over, as a CHECK of a
// container without state does, until its standard input closes. "barrier"
// takes GC's barrier Shared over and over, as a stream of ADDs does,
// printing "ready" once it held it, until its standard input closes; it
// fails if it ever holds it while the file envFile exists.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(envHelper)
	if mode == "" {
		return
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	s, err := Open(os.Getenv(envDir))
	if err != nil {
		fail(err)
	}
	id := os.Getenv(envID)
	acquire := func(mode Mode) *Lock {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		l, err := s.Acquire(ctx, id, mode)
		if err != nil {
			fail(err)
		}
		return l
	}
	switch mode {
	case "hold":
		hold, err := time.ParseDuration(os.Getenv(envHold))
		if err != nil {
			fail(err)
		}
		l := acquire(map[string]Mode{"shared": Shared, "exclusive": Exclusive}[os.Getenv(envMode)])
		if os.Getenv(envBegin) != "" {
			txn, err := s.Begin(samplePlan(id))
			if err == nil {
				err = txn.SaveResult("eth0", sampleResult("eth0", "10.1.0.1/16"))
			}
			if err != nil {
				fail(err)
			}
		}
		if note := os.Getenv(envNote); note != "" {
			if err := l.Note(note); err != nil {
				fail(err)
			}
		}
		fmt.Println("locked")
		_, _ = io.Copy(io.Discard, os.Stdin)
		time.Sleep(hold)
		os.Exit(0) // the kernel releases the flock with the process
	case "count":
		rounds, err := strconv.Atoi(os.Getenv(envRounds))
		if err != nil {
			fail(err)
		}
		for i := range rounds {
			l := acquire(Exclusive)
			if err := increment(os.Getenv(envFile)); err != nil {
				fail(err)
			}
			if i%2 == 0 {
				l.Discard()
			} else {
				l.Release()
			}
		}
		os.Exit(0)
	case "peek":
		var stop atomic.Bool
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop.Store(true)
		}()
		for !stop.Load() {
			l := acquire(Shared)
			time.Sleep(500 * time.Microsecond) // a CHECK reads the state meanwhile
			l.Discard()
			// Shared holders that never pause would starve the
			// exclusive ones (flock prefers none).
			time.Sleep(time.Millisecond)
		}
		os.Exit(0)
	case "barrier":
		var stop atomic.Bool
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stop.Store(true)
		}()
		for i := 0; !stop.Load(); i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			release, err := s.Barrier(ctx, Shared)
			cancel()
			if err != nil {
				fail(err)
			}
			if _, err := os.Stat(os.Getenv(envFile)); err == nil {
				fail(errors.New("held GC's barrier Shared while GC held it"))
			}
			if i == 0 {
				fmt.Println("ready")
			}
			time.Sleep(2 * time.Millisecond)
			release()
		}
		os.Exit(0)
	}
	fail(fmt.Errorf("unknown mode %q", mode))
}

// increment adds one to the number in file, slowly enough that two
// unsynchronised incrementers would lose updates.
func increment(file string) error {
	b, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	n := 0
	if len(b) > 0 {
		if n, err = strconv.Atoi(string(b)); err != nil {
			return fmt.Errorf("counter %q: %w", b, err)
		}
	}
	time.Sleep(200 * time.Microsecond)
	return os.WriteFile(file, []byte(strconv.Itoa(n+1)), 0o600)
}

// helper is a running helper process.
type helper struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *bytes.Buffer
}

// startHelper starts the test binary as a helper process (see
// TestHelperProcess), killed with the test if still running.
func startHelper(t *testing.T, env ...string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), env...)
	h := &helper{cmd: cmd, stderr: &bytes.Buffer{}}
	cmd.Stderr = h.stderr
	var err error
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h.stdout = bufio.NewReader(stdout)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return h
}

// expect waits for the helper to print line.
func (h *helper) expect(t *testing.T, line string) {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		l, _ := h.stdout.ReadString('\n')
		got <- l
	}()
	select {
	case l := <-got:
		if strings.TrimSpace(l) != line {
			_ = h.cmd.Process.Kill()
			_ = h.cmd.Wait()
			t.Fatalf("helper said %q, want %q; stderr: %s", l, line, h.stderr)
		}
	case <-time.After(30 * time.Second):
		_ = h.cmd.Process.Kill()
		_ = h.cmd.Wait()
		t.Fatalf("helper did not say %q; stderr: %s", line, h.stderr)
	}
}

// startHolder starts a helper process that takes id's lock in mode and
// returns once it holds it; env adds envBegin or envNote.
func startHolder(t *testing.T, dir, id string, mode Mode, hold time.Duration, env ...string) *helper {
	t.Helper()
	m := "shared"
	if mode == Exclusive {
		m = "exclusive"
	}
	h := startHelper(t, append([]string{envHelper + "=hold", envDir + "=" + dir, envID + "=" + id,
		envMode + "=" + m, envHold + "=" + hold.String()}, env...)...)
	h.expect(t, "locked")
	return h
}
