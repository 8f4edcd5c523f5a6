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
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Environment of the helper process (see TestHelperProcess).
const (
	envHelper = "NICMUX_STATE_TEST_HELPER" // "hold" or "count"
	envDir    = "NICMUX_STATE_TEST_DIR"
	envID     = "NICMUX_STATE_TEST_ID"
	envHold   = "NICMUX_STATE_TEST_HOLD"  // hold: time to keep the lock after stdin closes
	envSave   = "NICMUX_STATE_TEST_SAVE"  // hold: save a container record while holding
	envRounds = "NICMUX_STATE_TEST_ROUND" // count: rounds
	envFile   = "NICMUX_STATE_TEST_FILE"  // count: counter file
)

// TestHelperProcess is not a test: it is the second process of the
// cross-process lock tests, which run the test binary again with
// -test.run=^TestHelperProcess$ and envHelper set (the os/exec helper-process
// pattern). Run directly, without envHelper, it returns at once.
//
// In mode "hold" it takes the lock, optionally saves an incomplete container
// record (an ADD in progress), prints "locked", waits for its standard input
// to close, keeps the lock for envHold more, and exits without unlocking.
// In mode "count" it increments a counter file under the lock envRounds
// times, removing the lock file on every other unlock.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(envHelper)
	if mode == "" {
		return
	}
	s := &Store{Dir: os.Getenv(envDir)}
	id := os.Getenv(envID)
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	lock := func() func(bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		unlock, err := s.Lock(ctx, id)
		if err != nil {
			fail(err)
		}
		return unlock
	}
	switch mode {
	case "hold":
		hold, err := time.ParseDuration(os.Getenv(envHold))
		if err != nil {
			fail(err)
		}
		lock()
		if os.Getenv(envSave) != "" {
			if err := s.SaveContainer(&Container{ContainerID: id, IfName: "eth0", Interfaces: []string{"eth0"}}); err != nil {
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
		for i := 0; i < rounds; i++ {
			unlock := lock()
			if err := increment(os.Getenv(envFile)); err != nil {
				fail(err)
			}
			unlock(i%2 == 0)
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

func helperCmd(t *testing.T, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

type holder struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *bytes.Buffer
}

// startHolder starts a helper process that takes id's lock and returns once
// it holds it.
func startHolder(t *testing.T, s *Store, id string, hold time.Duration, save bool) *holder {
	t.Helper()
	env := []string{envHelper + "=hold", envDir + "=" + s.Dir, envID + "=" + id, envHold + "=" + hold.String()}
	if save {
		env = append(env, envSave+"=1")
	}
	cmd := helperCmd(t, env...)
	h := &holder{cmd: cmd, stderr: &bytes.Buffer{}}
	cmd.Stderr = h.stderr
	var err error
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- l
	}()
	select {
	case l := <-line:
		if strings.TrimSpace(l) != "locked" {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("helper said %q; stderr: %s", l, h.stderr)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("helper did not take the lock; stderr: %s", h.stderr)
	}
	return h
}

func lockWithin(s *Store, id string, d time.Duration) (func(bool), error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return s.Lock(ctx, id)
}

// assertLockTimeout checks that a Lock of id within d fails with
// ErrLockTimeout naming the lock file, after waiting about d.
func assertLockTimeout(t *testing.T, s *Store, id string, d time.Duration) {
	t.Helper()
	start := time.Now()
	unlock, err := lockWithin(s, id, d)
	elapsed := time.Since(start)
	if err == nil {
		unlock(false)
		t.Fatalf("Lock(%s) succeeded while the lock is held", id)
	}
	if unlock != nil {
		t.Error("Lock returned an unlock function with its error")
	}
	if !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("Lock(%s) = %v, want ErrLockTimeout", id, err)
	}
	if path := s.lockPath(id); !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the lock file %s", err, path)
	}
	if elapsed < d-10*time.Millisecond {
		t.Errorf("Lock gave up after %v, before its %v deadline", elapsed, d)
	}
	if elapsed > d+2*time.Second {
		t.Errorf("Lock took %v with a %v deadline", elapsed, d)
	}
}

// openLockFDs counts this process's descriptors open on path: live ones,
// and ones on a file removed from path.
func openLockFDs(t *testing.T, path string) (live, deleted int) {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("listing descriptors: %v", err)
	}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue // closed meanwhile, or the ReadDir's own descriptor
		}
		switch target {
		case path:
			live++
		case path + " (deleted)":
			deleted++
		}
	}
	return live, deleted
}

func TestLockFileAndModes(t *testing.T) {
	for _, remove := range []bool{false, true} {
		t.Run(fmt.Sprintf("remove=%v", remove), func(t *testing.T) {
			s, _ := newStore(t)
			unlock, err := lockWithin(s, "c1", time.Second)
			if err != nil {
				t.Fatalf("Lock: %v", err)
			}
			path := filepath.Join(s.Dir, "locks", "c1.lock")
			assertMode(t, filepath.Join(s.Dir, "locks"), 0o700)
			assertMode(t, s.Dir, 0o700)
			assertMode(t, path, 0o600)
			if names := dirNames(t, filepath.Join(s.Dir, "locks")); len(names) != 1 || names[0] != "c1.lock" {
				t.Errorf("locks folder holds %q", names)
			}
			// The lock is not a record: no container folder appears.
			if _, err := os.Stat(filepath.Join(s.Dir, "containers")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Lock created the containers folder: %v", err)
			}
			unlock(remove)
			_, err = os.Stat(path)
			if remove && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("unlock(true) left the lock file: %v", err)
			}
			if !remove && err != nil {
				t.Errorf("unlock(false) removed the lock file: %v", err)
			}
			if live, deleted := openLockFDs(t, path); live+deleted != 0 {
				t.Errorf("unlock left %d descriptors open on the lock file", live+deleted)
			}
		})
	}
}

// (a) Different containers never wait for each other.
func TestLockDifferentContainers(t *testing.T) {
	s, _ := newStore(t)
	ids := []string{"c1", "c2", "c3", "0123456789abcdef", "c1.lock", "c"}
	var unlocks []func(bool)
	for _, id := range ids {
		start := time.Now()
		unlock, err := lockWithin(s, id, 100*time.Millisecond)
		if err != nil {
			t.Fatalf("Lock(%s) while %d others are held: %v", id, len(unlocks), err)
		}
		if d := time.Since(start); d > 75*time.Millisecond {
			t.Errorf("Lock(%s) waited %v", id, d)
		}
		unlocks = append(unlocks, unlock)
	}
	// Each is really held.
	for _, id := range ids {
		assertLockTimeout(t, s, id, 20*time.Millisecond)
	}
	for _, u := range unlocks {
		u(false)
	}
}

// (b) The same container waits, within the context.
func TestLockSameContainerTimesOut(t *testing.T) {
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		min  time.Duration
	}{
		{"100ms deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 100*time.Millisecond)
		}, 90 * time.Millisecond},
		{"already cancelled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, 0},
		{"cancelled while waiting", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(80*time.Millisecond, cancel)
			return ctx, cancel
		}, 70 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStore(t)
			held, err := lockWithin(s, "c1", time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer held(false)
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			unlock, err := s.Lock(ctx, "c1")
			elapsed := time.Since(start)
			if err == nil {
				unlock(false)
				t.Fatal("Lock succeeded while the lock is held")
			}
			if !errors.Is(err, ErrLockTimeout) {
				t.Fatalf("Lock = %v, want ErrLockTimeout", err)
			}
			if !strings.Contains(err.Error(), s.lockPath("c1")) {
				t.Errorf("error %q does not name the lock file", err)
			}
			if elapsed < tc.min || elapsed > tc.min+2*time.Second {
				t.Errorf("Lock returned after %v", elapsed)
			}
			// The failed attempt leaves no descriptor behind.
			if live, _ := openLockFDs(t, s.lockPath("c1")); live != 1 {
				t.Errorf("%d descriptors open on the lock file, want the holder's only", live)
			}
		})
	}
}

// (c) Once released, the lock can be taken, by a new locker or by one that
// was waiting.
func TestLockAfterUnlock(t *testing.T) {
	for _, remove := range []bool{false, true} {
		t.Run(fmt.Sprintf("remove=%v/new locker", remove), func(t *testing.T) {
			s, _ := newStore(t)
			unlock, err := lockWithin(s, "c1", time.Second)
			if err != nil {
				t.Fatal(err)
			}
			unlock(remove)
			unlock2, err := lockWithin(s, "c1", 100*time.Millisecond)
			if err != nil {
				t.Fatalf("Lock after unlock(%v): %v", remove, err)
			}
			if _, err := os.Stat(s.lockPath("c1")); err != nil {
				t.Errorf("lock file missing while held: %v", err)
			}
			unlock2(false)
		})
		t.Run(fmt.Sprintf("remove=%v/waiter", remove), func(t *testing.T) {
			s, _ := newStore(t)
			unlock, err := lockWithin(s, "c1", time.Second)
			if err != nil {
				t.Fatal(err)
			}
			got := make(chan error, 1)
			var unlock2 func(bool)
			go func() {
				var err error
				unlock2, err = lockWithin(s, "c1", 5*time.Second)
				got <- err
			}()
			select {
			case err := <-got:
				t.Fatalf("waiter returned while the lock is held: %v", err)
			case <-time.After(100 * time.Millisecond):
			}
			unlock(remove)
			select {
			case err := <-got:
				if err != nil {
					t.Fatalf("waiter: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("waiter did not get the lock once released")
			}
			assertLockTimeout(t, s, "c1", 50*time.Millisecond)
			unlock2(true)
		})
	}
}

// (d) A holder removes the lock file while a waiter is blocked on it. The
// waiter, once it gets the lock on the removed file, must notice and lock
// the file now at the path, so that a third locker waits for it.
func TestLockRemoveRace(t *testing.T) {
	for round := 0; round < 5; round++ {
		t.Run(fmt.Sprintf("round %d", round), func(t *testing.T) {
			s, _ := newStore(t)
			path := s.lockPath("c1")
			unlockA, err := lockWithin(s, "c1", time.Second)
			if err != nil {
				t.Fatal(err)
			}

			type res struct {
				unlock func(bool)
				err    error
			}
			bDone := make(chan res, 1)
			go func() {
				u, err := lockWithin(s, "c1", 10*time.Second)
				bDone <- res{u, err}
			}()
			// Wait until B has the old file open and is waiting on it.
			deadline := time.Now().Add(10 * time.Second)
			for {
				if live, _ := openLockFDs(t, path); live == 2 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("B never opened the lock file")
				}
				time.Sleep(time.Millisecond)
			}
			time.Sleep(10 * time.Millisecond) // B is polling flock
			select {
			case r := <-bDone:
				t.Fatalf("B returned while A holds the lock: %v", r.err)
			default:
			}

			unlockA(true)

			var b res
			select {
			case b = <-bDone:
			case <-time.After(10 * time.Second):
				t.Fatal("B did not get the lock after A released it")
			}
			if b.err != nil {
				t.Fatalf("B: %v", b.err)
			}
			// B holds the file that is at the path, not the removed one.
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("no lock file at the path while B holds the lock: %v", err)
			}
			live, deleted := openLockFDs(t, path)
			if live != 1 || deleted != 0 {
				t.Errorf("descriptors on the lock: %d live, %d on the removed file; want 1 and 0", live, deleted)
			}
			// So C waits for B.
			assertLockTimeout(t, s, "c1", 100*time.Millisecond)
			b.unlock(false)
			unlockC, err := lockWithin(s, "c1", 100*time.Millisecond)
			if err != nil {
				t.Fatalf("C after B released: %v", err)
			}
			unlockC(true)
		})
	}
}

// Many goroutines, some removing the lock file as they release it: never two
// holders at once.
func TestLockMutualExclusion(t *testing.T) {
	s, _ := newStore(t)
	const workers, rounds = 8, 40
	var holders, maxHolders, total int32
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				unlock, err := lockWithin(s, "c1", 30*time.Second)
				if err != nil {
					errs <- err
					return
				}
				n := atomic.AddInt32(&holders, 1)
				for {
					m := atomic.LoadInt32(&maxHolders)
					if n <= m || atomic.CompareAndSwapInt32(&maxHolders, m, n) {
						break
					}
				}
				atomic.AddInt32(&total, 1)
				time.Sleep(50 * time.Microsecond)
				atomic.AddInt32(&holders, -1)
				unlock((w+i)%3 == 0)
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if maxHolders != 1 {
		t.Errorf("%d holders of the same lock at once", maxHolders)
	}
	if total != workers*rounds {
		t.Errorf("%d rounds done, want %d", total, workers*rounds)
	}
}

// (e) Another process holds the lock: a short wait times out, a longer one
// succeeds once the other process lets go.
func TestLockCrossProcess(t *testing.T) {
	s, _ := newStore(t)
	h := startHolder(t, s, "c1", 300*time.Millisecond, false)

	assertLockTimeout(t, s, "c1", 100*time.Millisecond)
	// Other containers are not held up by it.
	if u, err := lockWithin(s, "c2", 100*time.Millisecond); err != nil {
		t.Errorf("Lock(c2) while another process holds c1: %v", err)
	} else {
		u(true)
	}

	// Let the helper go: it keeps the lock 300ms more, then exits.
	if err := h.stdin.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	unlock, err := lockWithin(s, "c1", 2*time.Second)
	if err != nil {
		t.Fatalf("Lock with 2s: %v (helper stderr: %s)", err, h.stderr)
	}
	defer unlock(true)
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("Lock returned after %v, while the helper still held the lock", d)
	}
	if err := h.cmd.Wait(); err != nil {
		t.Errorf("helper: %v (stderr: %s)", err, h.stderr)
	}
}

// (f) The holder is killed (kill -9 in the middle of a verb): the kernel
// releases its lock, so the next locker gets it at once and finds what the
// holder recorded.
func TestLockHolderKilled(t *testing.T) {
	s, _ := newStore(t)
	h := startHolder(t, s, "c1", time.Hour, true)
	path := s.lockPath("c1")
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	assertLockTimeout(t, s, "c1", 100*time.Millisecond)

	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = h.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("helper exit: %v", err)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper was not killed by SIGKILL: %v", err)
	}

	start := time.Now()
	unlock, err := lockWithin(s, "c1", 500*time.Millisecond)
	if err != nil {
		t.Fatalf("Lock after the holder was killed: %v", err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("Lock took %v after the holder died", d)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Error("the lock file was replaced: the crash should leave it in place")
	}
	c, err := s.LoadContainer("c1")
	if err != nil {
		t.Fatalf("the killed holder's record: %v", err)
	}
	if c.Complete || c.IfName != "eth0" {
		t.Errorf("killed holder's record: %+v", c)
	}
	unlock(true)
}

// Several processes and this one increment a counter under the lock,
// removing the lock file on every other release: no update is lost.
func TestLockCrossProcessCounter(t *testing.T) {
	s, root := newStore(t)
	counter := filepath.Join(root, "counter")
	const procs, rounds = 3, 30
	var cmds []*exec.Cmd
	var stderrs []*bytes.Buffer
	for i := 0; i < procs; i++ {
		cmd := helperCmd(t, envHelper+"=count", envDir+"="+s.Dir, envID+"=c1",
			envRounds+"="+strconv.Itoa(rounds), envFile+"="+counter)
		buf := &bytes.Buffer{}
		cmd.Stderr = buf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
		})
		cmds = append(cmds, cmd)
		stderrs = append(stderrs, buf)
	}
	for i := 0; i < rounds; i++ {
		unlock, err := lockWithin(s, "c1", 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := increment(counter); err != nil {
			unlock(false)
			t.Fatal(err)
		}
		unlock(i%2 == 1)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v (stderr: %s)", i, err, stderrs[i])
		}
	}
	b, err := os.ReadFile(counter)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), strconv.Itoa((procs+1)*rounds); got != want {
		t.Errorf("counter = %s, want %s: two processes held the lock at once", got, want)
	}
}

// Failures other than waiting are reported as such, not as a timeout.
func TestLockErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, s *Store)
		want  string
	}{
		{"locks folder is a file", func(t *testing.T, s *Store) {
			writeRaw(t, filepath.Join(s.Dir, "locks"), []byte("x"))
		}, "creating lock folder"},
		{"lock file is a folder", func(t *testing.T, s *Store) {
			if err := os.MkdirAll(s.lockPath("c1"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, "opening lock"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStore(t)
			tc.setup(t, s)
			start := time.Now()
			unlock, err := lockWithin(s, "c1", 5*time.Second)
			if err == nil {
				unlock(false)
				t.Fatal("Lock succeeded")
			}
			if errors.Is(err, ErrLockTimeout) {
				t.Errorf("error %v reported as a timeout", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("Lock waited %v before failing", d)
			}
		})
	}
}

func BenchmarkLockUnlock(b *testing.B) {
	s := &Store{Dir: b.TempDir()}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		unlock, err := s.Lock(ctx, "c1")
		if err != nil {
			b.Fatal(err)
		}
		unlock(false)
	}
}
