package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func tryWithin(s *Store, id string, mode Mode, d time.Duration) (*Lock, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return s.Acquire(ctx, id, mode)
}

func acquireWithin(t testing.TB, s *Store, id string, mode Mode, d time.Duration) *Lock {
	t.Helper()
	l, err := tryWithin(s, id, mode, d)
	if err != nil {
		t.Fatalf("Acquire(%s, %d): %v", id, mode, err)
	}
	return l
}

func lockPath(s *Store, id string) string { return filepath.Join(storePath(s), "locks", id+".lock") }

// assertLockTimeout checks that taking id's lock in mode within d fails
// with ErrLockTimeout naming the lock file, after waiting about d.
func assertLockTimeout(t testing.TB, s *Store, id string, mode Mode, d time.Duration) {
	t.Helper()
	start := time.Now()
	l, err := tryWithin(s, id, mode, d)
	elapsed := time.Since(start)
	if err == nil {
		l.Release()
		t.Fatalf("Acquire(%s, %d) succeeded while the lock is held", id, mode)
	}
	if l != nil {
		t.Error("Acquire returned a lock with its error")
	}
	if !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("Acquire(%s, %d) = %v, want ErrLockTimeout", id, mode, err)
	}
	if path := lockPath(s, id); !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the lock file %s", err, path)
	}
	if elapsed < d-10*time.Millisecond {
		t.Errorf("Acquire gave up after %v, before its %v deadline", elapsed, d)
	}
	if elapsed > d+2*time.Second {
		t.Errorf("Acquire took %v with a %v deadline", elapsed, d)
	}
}

// openFDs counts this process's descriptors open on path: live ones, and
// ones on a file removed from path.
func openFDs(t testing.TB, path string) (live, deleted int) {
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
	for _, forget := range []bool{false, true} {
		t.Run(fmt.Sprintf("forget=%v", forget), func(t *testing.T) {
			s, dir := newStore(t)
			l := acquireWithin(t, s, "c1", Exclusive, time.Second)
			path := filepath.Join(dir, "locks", "c1.lock")
			assertMode(t, filepath.Join(dir, "locks"), 0o700)
			assertMode(t, path, 0o600)
			assertNames(t, filepath.Join(dir, "locks"), "c1.lock")
			// The lock is not a record.
			if s.Has("c1") {
				t.Error("Acquire made a container folder")
			}
			if l.Waited() > time.Second {
				t.Errorf("Waited() = %v for a free lock", l.Waited())
			}
			if forget {
				l.Discard()
				assertGone(t, path)
			} else {
				l.Release()
				if _, err := os.Stat(path); err != nil {
					t.Errorf("Release removed the lock file: %v", err)
				}
			}
			if live, deleted := openFDs(t, path); live+deleted != 0 {
				t.Errorf("%d descriptors left open on the lock file", live+deleted)
			}
		})
	}
}

// Different containers never wait for each other.
func TestLockDifferentContainers(t *testing.T) {
	s, _ := newStore(t)
	ids := []string{"c1", "c2", "c3", "0123456789abcdef", "c1.lock", "c", strings.Repeat("x", MaxIDLength)}
	var locks []*Lock
	for _, id := range ids {
		start := time.Now()
		locks = append(locks, acquireWithin(t, s, id, Exclusive, 200*time.Millisecond))
		if d := time.Since(start); d > 150*time.Millisecond {
			t.Errorf("Acquire(%s) waited %v", id, d)
		}
	}
	for _, id := range ids {
		assertLockTimeout(t, s, id, Exclusive, 20*time.Millisecond)
	}
	for _, l := range locks {
		l.Discard()
	}
}

// Shared holders run together; an Exclusive holder runs alone. CHECK's
// read-only store takes a real Shared lock where it can make the file.
func TestLockModes(t *testing.T) {
	tests := []struct {
		name             string
		held, want       Mode
		holderReadOnly   bool
		wantWaits        bool
		holderFromHelper bool
	}{
		{"shared beside shared", Shared, Shared, false, false, false},
		{"exclusive waits for shared", Shared, Exclusive, false, true, false},
		{"shared waits for exclusive", Exclusive, Shared, false, true, false},
		{"exclusive waits for exclusive", Exclusive, Exclusive, false, true, false},
		{"exclusive waits for a read-only store's shared", Shared, Exclusive, true, true, false},
		{"shared beside another process's shared", Shared, Shared, false, false, true},
		{"exclusive waits for another process's shared", Shared, Exclusive, false, true, true},
		{"shared waits for another process's exclusive", Exclusive, Shared, false, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			if tc.holderFromHelper {
				startHolder(t, dir, "c1", tc.held, 0)
			} else {
				holder := s
				if tc.holderReadOnly {
					holder = openReadOnly(t, dir)
				}
				defer acquireWithin(t, holder, "c1", tc.held, time.Second).Release()
			}
			if tc.wantWaits {
				assertLockTimeout(t, s, "c1", tc.want, 100*time.Millisecond)
				return
			}
			l := acquireWithin(t, s, "c1", tc.want, 100*time.Millisecond)
			defer l.Release()
			// Both are held: an exclusive locker waits.
			assertLockTimeout(t, s, "c1", Exclusive, 50*time.Millisecond)
		})
	}
}

// The same container waits, within the context.
func TestLockTimesOut(t *testing.T) {
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
			defer acquireWithin(t, s, "c1", Exclusive, time.Second).Release()
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			l, err := s.Acquire(ctx, "c1", Exclusive)
			elapsed := time.Since(start)
			if err == nil {
				l.Release()
				t.Fatal("Acquire succeeded while the lock is held")
			}
			if !errors.Is(err, ErrLockTimeout) {
				t.Fatalf("Acquire = %v, want ErrLockTimeout", err)
			}
			if !strings.Contains(err.Error(), lockPath(s, "c1")) || !strings.Contains(err.Error(), "c1") {
				t.Errorf("error %q does not name the container and its lock file", err)
			}
			if elapsed < tc.min || elapsed > tc.min+2*time.Second {
				t.Errorf("Acquire returned after %v", elapsed)
			}
			// The failed attempt leaves no descriptor behind.
			if live, _ := openFDs(t, lockPath(s, "c1")); live != 1 {
				t.Errorf("%d descriptors open on the lock file, want the holder's only", live)
			}
		})
	}
}

// Once released, the lock can be taken, by a new locker or by one that was
// waiting, whether the holder kept the lock file or removed it.
func TestLockAfterRelease(t *testing.T) {
	let := func(l *Lock, forget bool) {
		if forget {
			l.Discard()
		} else {
			l.Release()
		}
	}
	for _, forget := range []bool{false, true} {
		t.Run(fmt.Sprintf("forget=%v/new locker", forget), func(t *testing.T) {
			s, _ := newStore(t)
			let(acquireWithin(t, s, "c1", Exclusive, time.Second), forget)
			l := acquireWithin(t, s, "c1", Exclusive, 100*time.Millisecond)
			if _, err := os.Stat(lockPath(s, "c1")); err != nil {
				t.Errorf("lock file missing while held: %v", err)
			}
			l.Release()
		})
		t.Run(fmt.Sprintf("forget=%v/waiter", forget), func(t *testing.T) {
			s, _ := newStore(t)
			l := acquireWithin(t, s, "c1", Exclusive, time.Second)
			type res struct {
				l       *Lock
				err     error
				started time.Time
			}
			got := make(chan res, 1)
			go func() {
				started := time.Now()
				l2, err := tryWithin(s, "c1", Exclusive, 5*time.Second)
				got <- res{l2, err, started}
			}()
			select {
			case r := <-got:
				t.Fatalf("waiter returned while the lock is held: %v", r.err)
			case <-time.After(100 * time.Millisecond):
			}
			released := time.Now()
			let(l, forget)
			var r res
			select {
			case r = <-got:
			case <-time.After(5 * time.Second):
				t.Fatal("waiter did not get the lock once released")
			}
			if r.err != nil {
				t.Fatalf("waiter: %v", r.err)
			}
			if waited := released.Sub(r.started); r.l.Waited() < waited {
				t.Errorf("Waited() = %v, want at least the %v it waited", r.l.Waited(), waited)
			}
			assertLockTimeout(t, s, "c1", Exclusive, 50*time.Millisecond)
			r.l.Discard()
		})
	}
}

// A holder removes the lock file while a waiter is blocked on it. The
// waiter, once it gets the lock on the removed file, must notice and lock
// the file now at the path, so that a third locker waits for it.
func TestLockRemoveRace(t *testing.T) {
	for round := range 5 {
		t.Run(fmt.Sprintf("round %d", round), func(t *testing.T) {
			s, _ := newStore(t)
			path := lockPath(s, "c1")
			a := acquireWithin(t, s, "c1", Exclusive, time.Second)
			type res struct {
				l   *Lock
				err error
			}
			bDone := make(chan res, 1)
			go func() {
				l, err := tryWithin(s, "c1", Exclusive, 10*time.Second)
				bDone <- res{l, err}
			}()
			// Wait until B has the old file open and is waiting on it.
			deadline := time.Now().Add(10 * time.Second)
			for {
				if live, _ := openFDs(t, path); live == 2 {
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

			a.Discard()

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
			if live, deleted := openFDs(t, path); live != 1 || deleted != 0 {
				t.Errorf("descriptors on the lock: %d live, %d on the removed file; want 1 and 0", live, deleted)
			}
			// So C waits for B.
			assertLockTimeout(t, s, "c1", Exclusive, 100*time.Millisecond)
			b.l.Release()
			acquireWithin(t, s, "c1", Exclusive, 100*time.Millisecond).Discard()
		})
	}
}

// Many goroutines, exclusive holders removing the lock file as they
// release it now and then, shared holders beside them: never two exclusive
// holders at once, never a shared holder beside an exclusive one.
func TestLockMutualExclusion(t *testing.T) {
	s, _ := newStore(t)
	const writers, readers, rounds = 6, 2, 40
	var exclusive, shared, total atomic.Int32
	var wg sync.WaitGroup
	for w := range writers + readers {
		wg.Go(func() {
			mode := Exclusive
			if w >= writers {
				mode = Shared
			}
			for i := range rounds {
				l, err := tryWithin(s, "c1", mode, 30*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				var bad bool
				if mode == Exclusive {
					bad = exclusive.Add(1) > 1 || shared.Load() != 0
				} else {
					bad = exclusive.Load() != 0
					shared.Add(1)
				}
				if bad {
					t.Errorf("round %d: %d exclusive and %d shared holders at once", i, exclusive.Load(), shared.Load())
				}
				total.Add(1)
				time.Sleep(50 * time.Microsecond)
				if mode == Shared {
					shared.Add(-1)
					l.Release()
					continue
				}
				exclusive.Add(-1)
				if (w+i)%3 == 0 {
					l.Discard()
				} else {
					l.Release()
				}
				if bad {
					return
				}
			}
		})
	}
	wg.Wait()
	if total.Load() != (writers+readers)*rounds {
		t.Errorf("%d rounds done, want %d", total.Load(), (writers+readers)*rounds)
	}
}

// Release and Discard are safe to repeat, and a Discard after Release does
// not remove a successor's lock file.
func TestLockReleaseTwice(t *testing.T) {
	s, _ := newStore(t)
	l := acquireWithin(t, s, "c1", Exclusive, time.Second)
	l.Release()
	l.Release()
	next := acquireWithin(t, s, "c1", Exclusive, time.Second)
	l.Discard()
	if _, err := os.Stat(lockPath(s, "c1")); err != nil {
		t.Fatalf("a released lock's Discard removed its successor's file: %v", err)
	}
	assertLockTimeout(t, s, "c1", Exclusive, 50*time.Millisecond)
	next.Discard()
	next.Discard()
	next.Release()
	assertGone(t, lockPath(s, "c1"))
}

func TestTryAcquire(t *testing.T) {
	for _, held := range []Mode{Shared, Exclusive} {
		t.Run(fmt.Sprintf("held %d", held), func(t *testing.T) {
			s, _ := newStore(t)
			l := acquireWithin(t, s, "c1", held, time.Second)
			start := time.Now()
			if got, err := tryAcquire(s, "c1"); got != nil || err != nil {
				t.Errorf("tryAcquire of a held lock = %v, %v; want nil, nil", got, err)
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("tryAcquire waited %v", d)
			}
			l.Release()
			got, err := tryAcquire(s, "c1")
			if got == nil || err != nil {
				t.Fatalf("tryAcquire of a free lock = %v, %v", got, err)
			}
			// It holds it exclusively.
			assertLockTimeout(t, s, "c1", Shared, 50*time.Millisecond)
			got.Release()
		})
	}
}

// Notes are lines in the lock file: what a holder noted and did not clear
// is its successor's to read, and goes with the file.
func TestNotes(t *testing.T) {
	s, _ := newStore(t)
	l := acquireWithin(t, s, "c1", Exclusive, time.Second)
	if n, err := l.Notes(); n != "" || err != nil {
		t.Errorf("Notes() of a new lock = %q, %v", n, err)
	}
	for _, line := range []string{"pgid 1234", "pgid 5678\n"} {
		if err := l.Note(line); err != nil {
			t.Fatalf("Note(%q): %v", line, err)
		}
	}
	want := "pgid 1234\npgid 5678\n"
	if n, err := l.Notes(); n != want || err != nil {
		t.Errorf("Notes() = %q, %v; want %q", n, err, want)
	}
	l.Release()
	next := acquireWithin(t, s, "c1", Exclusive, time.Second)
	if n, err := next.Notes(); n != want || err != nil {
		t.Errorf("successor's Notes() = %q, %v; want %q", n, err, want)
	}
	if err := next.ClearNotes(); err != nil {
		t.Fatal(err)
	}
	if n, err := next.Notes(); n != "" || err != nil {
		t.Errorf("Notes() after ClearNotes = %q, %v", n, err)
	}
	if err := next.Note("pgid 9"); err != nil {
		t.Fatal(err)
	}
	if n, _ := next.Notes(); n != "pgid 9\n" {
		t.Errorf("Notes() after ClearNotes and Note = %q", n)
	}
	next.Discard()
	if n, err := acquireWithin(t, s, "c1", Exclusive, time.Second).Notes(); n != "" || err != nil {
		t.Errorf("Notes() after Discard = %q, %v: they went with the file", n, err)
	}
}

// Another process holds the lock: a short wait times out, a longer one
// succeeds once the other process lets go.
func TestLockCrossProcess(t *testing.T) {
	s, dir := newStore(t)
	h := startHolder(t, dir, "c1", Exclusive, 300*time.Millisecond)
	assertLockTimeout(t, s, "c1", Shared, 100*time.Millisecond)
	// Other containers are not held up by it.
	acquireWithin(t, s, "c2", Exclusive, 100*time.Millisecond).Discard()

	// Let the helper go: it keeps the lock 300ms more, then exits.
	if err := h.stdin.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	l, err := tryWithin(s, "c1", Exclusive, 5*time.Second)
	if err != nil {
		t.Fatalf("Acquire within 5s: %v (helper stderr: %s)", err, h.stderr)
	}
	defer l.Discard()
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("Acquire returned after %v, while the helper still held the lock", d)
	}
	if err := h.cmd.Wait(); err != nil {
		t.Errorf("helper: %v (stderr: %s)", err, h.stderr)
	}
}

// The holder is killed (kill -9 in the middle of an ADD): the kernel
// releases its lock, so the next locker gets it at once, and finds the
// plan the holder recorded and the notes it left.
func TestLockHolderKilled(t *testing.T) {
	s, dir := newStore(t)
	h := startHolder(t, dir, "c1", Exclusive, time.Hour, envBegin+"=1", envNote+"=pgid 4242")
	path := lockPath(s, "c1")
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	assertLockTimeout(t, s, "c1", Exclusive, 100*time.Millisecond)

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
	l := acquireWithin(t, s, "c1", Exclusive, 2*time.Second)
	defer l.Discard()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Acquire took %v after the holder died", d)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Error("the lock file was replaced: the kill should leave it in place")
	}
	if n, err := l.Notes(); n != "pgid 4242\n" || err != nil {
		t.Errorf("Notes() = %q, %v; want the killed holder's", n, err)
	}
	rec := load(t, openStore(t, dir), "c1")
	if rec.Complete || rec.Plan == nil || len(rec.Plan.Interfaces) != 3 {
		t.Fatalf("the killed holder's record: %+v", rec)
	}
	if rec.Interface("eth0").Result == nil || rec.Interface("net1").Result != nil {
		t.Errorf("results: eth0 %s, net1 %s", rec.Interface("eth0").Result, rec.Interface("net1").Result)
	}
}

// Several processes and this one increment a counter under the lock,
// removing the lock file on every other release: no update is lost.
func TestLockCrossProcessCounter(t *testing.T) {
	s, dir := newStore(t)
	counter := filepath.Join(t.TempDir(), "counter")
	const procs, rounds = 3, 30
	var helpers []*helper
	for range procs {
		helpers = append(helpers, startHelper(t, envHelper+"=count", envDir+"="+dir, envID+"=c1",
			envRounds+"="+strconv.Itoa(rounds), envFile+"="+counter))
	}
	for i := range rounds {
		l := acquireWithin(t, s, "c1", Exclusive, 30*time.Second)
		if err := increment(counter); err != nil {
			l.Release()
			t.Fatal(err)
		}
		if i%2 == 1 {
			l.Discard()
		} else {
			l.Release()
		}
	}
	for i, h := range helpers {
		if err := h.cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v (stderr: %s)", i, err, h.stderr)
		}
	}
	if got, want := string(readRaw(t, counter)), strconv.Itoa((procs+1)*rounds); got != want {
		t.Errorf("counter = %s, want %s: two processes held the lock at once", got, want)
	}
}

// Shared holders that Discard their lock, as a CHECK of a container without
// state does, never remove a lock file: one that did could remove the file
// an exclusive holder locked after it, and let a third verb lock a new
// one beside it. Exclusive holders in other processes lose no update.
func TestLockSharedHolderNeverRemoves(t *testing.T) {
	_, dir := newStore(t)
	counter := filepath.Join(t.TempDir(), "counter")
	const counters, peekers, rounds = 2, 3, 400
	var peeking []*helper
	for range peekers {
		peeking = append(peeking, startHelper(t, envHelper+"=peek", envDir+"="+dir, envID+"=c1"))
	}
	var counting []*helper
	for range counters {
		counting = append(counting, startHelper(t, envHelper+"=count", envDir+"="+dir, envID+"=c1",
			envRounds+"="+strconv.Itoa(rounds), envFile+"="+counter))
	}
	for i, h := range counting {
		if err := h.cmd.Wait(); err != nil {
			t.Fatalf("counter %d: %v (stderr: %s)", i, err, h.stderr)
		}
	}
	for i, h := range peeking {
		_ = h.stdin.Close()
		if err := h.cmd.Wait(); err != nil {
			t.Fatalf("peeker %d: %v (stderr: %s)", i, err, h.stderr)
		}
	}
	if got, want := string(readRaw(t, counter)), strconv.Itoa(counters*rounds); got != want {
		t.Errorf("counter = %s, want %s: two exclusive holders held the lock at once", got, want)
	}
}

// Failures other than waiting are reported as such, at once, not as a
// timeout.
func TestLockErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		modes []Mode
	}{
		{"lock file is a folder", func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, "locks", "c1.lock"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, []Mode{Shared, Exclusive}},
		{"locks folder removed", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "locks")); err != nil {
				t.Fatal(err)
			}
		}, []Mode{Exclusive}},
	}
	for _, tc := range tests {
		for _, mode := range tc.modes {
			t.Run(fmt.Sprintf("%s mode %d", tc.name, mode), func(t *testing.T) {
				s, dir := newStore(t)
				tc.setup(t, dir)
				start := time.Now()
				l, err := tryWithin(s, "c1", mode, 5*time.Second)
				if err == nil {
					l.Release()
					t.Fatal("Acquire succeeded")
				}
				var de *dirError
				if !errors.As(err, &de) || errors.Is(err, ErrLockTimeout) {
					t.Errorf("error %v: want a *dirError, not a timeout", err)
				}
				if !strings.Contains(err.Error(), "opening lock") || !strings.Contains(err.Error(), lockPath(s, "c1")) {
					t.Errorf("error %q does not say it could not open the lock file", err)
				}
				if d := time.Since(start); d > time.Second {
					t.Errorf("Acquire waited %v before failing", d)
				}
			})
		}
	}
}

// SweepLocks removes the lock files of containers without state that
// nobody holds, and only those.
func TestSweepLocks(t *testing.T) {
	s, dir := newStore(t)
	locks := filepath.Join(dir, "locks")
	for _, id := range []string{"gone", "held", "live", "salvage", "empty"} {
		acquireWithin(t, s, id, Exclusive, time.Second).Release()
	}
	held := acquireWithin(t, s, "held", Shared, time.Second)
	defer held.Release()
	attach(t, s, "live")
	attach(t, s, "salvage")
	if err := os.Remove(filepath.Join(containerDir(dir, "salvage"), "container.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(containerDir(dir, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, stray := range []string{"bad name.lock", "notes.txt", ".c9.lock"} {
		writeRaw(t, filepath.Join(locks, stray), nil)
	}
	for i := range 2 {
		if err := s.SweepLocks(); err != nil {
			t.Fatalf("SweepLocks call %d: %v", i+1, err)
		}
	}
	assertNames(t, locks, "held.lock", "live.lock", "salvage.lock", "bad name.lock", "notes.txt", ".c9.lock")
	// The held lock is still the one held.
	assertLockTimeout(t, s, "held", Exclusive, 50*time.Millisecond)
	// A store opened read-only before the locks folder existed sweeps
	// nothing.
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := openReadOnly(t, empty).SweepLocks(); err != nil {
		t.Errorf("SweepLocks of a store without locks: %v", err)
	}
}

func barrierWithin(s *Store, mode Mode, d time.Duration) (func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return s.Barrier(ctx, mode)
}

func mustBarrier(t testing.TB, s *Store, mode Mode, d time.Duration) func() {
	t.Helper()
	release, err := barrierWithin(s, mode, d)
	if err != nil {
		t.Fatalf("Barrier(%d): %v", mode, err)
	}
	return release
}

func assertBarrierTimeout(t testing.TB, s *Store, mode Mode, d time.Duration) {
	t.Helper()
	release, err := barrierWithin(s, mode, d)
	if err == nil {
		release()
		t.Fatalf("Barrier(%d) taken while it should wait", mode)
	}
	if !errors.Is(err, ErrLockTimeout) || !strings.Contains(err.Error(), filepath.Join(storePath(s), "gc.lock")) {
		t.Errorf("Barrier(%d) = %v, want ErrLockTimeout naming gc.lock", mode, err)
	}
}

// ADDs recording their plans (Shared) run together; a GC (Exclusive) runs
// alone. A wait given up leaves nothing held behind it.
func TestBarrier(t *testing.T) {
	s, dir := newStore(t)
	r1 := mustBarrier(t, s, Shared, 100*time.Millisecond)
	r2 := mustBarrier(t, s, Shared, 100*time.Millisecond)
	assertMode(t, filepath.Join(dir, "gc.lock"), 0o600)
	assertBarrierTimeout(t, s, Exclusive, 100*time.Millisecond)
	// The GC that gave up does not hold ADDs back.
	mustBarrier(t, s, Shared, 100*time.Millisecond)()
	r1()
	assertBarrierTimeout(t, s, Exclusive, 50*time.Millisecond)
	r2()

	gc := mustBarrier(t, s, Exclusive, 100*time.Millisecond)
	assertBarrierTimeout(t, s, Shared, 100*time.Millisecond)
	assertBarrierTimeout(t, s, Exclusive, 50*time.Millisecond)
	gc()
	// Nor does a second GC that gave up.
	mustBarrier(t, s, Shared, 100*time.Millisecond)()
	mustBarrier(t, s, Exclusive, 100*time.Millisecond)()
	// The barrier is no container's lock.
	defer mustBarrier(t, s, Exclusive, 100*time.Millisecond)()
	acquireWithin(t, s, "c1", Exclusive, 100*time.Millisecond).Discard()
}

// A steady stream of ADDs, each holding the barrier Shared while another
// still does, never leaves gc.lock free. A GC still gets in, and no ADD
// gets in while it holds the barrier.
func TestBarrierExclusiveNotStarved(t *testing.T) {
	s, dir := newStore(t)
	mark := filepath.Join(t.TempDir(), "gc-holds")
	h := startHelper(t, envHelper+"=barrier", envDir+"="+dir, envFile+"="+mark)
	h.expect(t, "ready")

	var gcHolds, stop atomic.Bool
	var rounds atomic.Int64
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * time.Millisecond)
			for !stop.Load() {
				release, err := barrierWithin(s, Shared, 30*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				beside := gcHolds.Load()
				rounds.Add(1)
				time.Sleep(4 * time.Millisecond)
				release()
				if beside {
					t.Error("an ADD held the barrier beside GC")
					return
				}
			}
		})
	}
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()
	// The stream is steady: gc.lock is never free for long enough to be
	// taken by a plain poll.
	raw, err := os.Open(filepath.Join(dir, "gc.lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	free := 0
	for range 100 {
		if unix.Flock(int(raw.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			free++
			_ = unix.Flock(int(raw.Fd()), unix.LOCK_UN)
		}
		time.Sleep(time.Millisecond)
	}
	if free > 50 {
		t.Fatalf("gc.lock free at %d of 100 polls: the stream of ADDs is not steady, the test would show nothing", free)
	}

	start := time.Now()
	gc, err := barrierWithin(s, Exclusive, 20*time.Second)
	if err != nil {
		t.Fatalf("GC starved: %v after %v", err, time.Since(start))
	}
	t.Logf("GC got the barrier after %v", time.Since(start))
	gcHolds.Store(true)
	writeRaw(t, mark, nil)
	before := rounds.Load()
	time.Sleep(100 * time.Millisecond)
	if n := rounds.Load() - before; n != 0 {
		t.Errorf("%d ADDs took the barrier while GC held it", n)
	}
	if err := os.Remove(mark); err != nil {
		t.Fatal(err)
	}
	gcHolds.Store(false)
	gc()
	// The ADDs waited; they were not stopped.
	deadline := time.Now().Add(10 * time.Second)
	for rounds.Load() == before && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if rounds.Load() == before {
		t.Error("no ADD took the barrier after GC released it")
	}
	if err := h.stdin.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.cmd.Wait(); err != nil {
		t.Errorf("helper: %v (stderr: %s)", err, h.stderr)
	}
	if slices.Contains(dirNames(t, filepath.Dir(mark)), filepath.Base(mark)) {
		t.Error("mark left")
	}
}

func BenchmarkAcquireRelease(b *testing.B) {
	s, _ := newStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		l, err := s.Acquire(ctx, "c1", Exclusive)
		if err != nil {
			b.Fatal(err)
		}
		l.Release()
	}
}
