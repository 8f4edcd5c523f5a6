package state

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// envReadOnly names, in the process TestReadOnlyFileSystem starts, the
// folder it mounts read-only.
const envReadOnly = "NICMUX_STATE_TEST_READONLY"

// assertDirError checks that err is a *dirError about the state folder
// dir, wrapping want when want is not nil.
func assertDirError(t testing.TB, what string, err, want error, dir string) {
	t.Helper()
	var de *dirError
	switch {
	case !errors.As(err, &de):
		t.Errorf("%s = %v (%T), want a *dirError", what, err, err)
	case de.Path != dir:
		t.Errorf("%s: dirError.Path = %q, want %q", what, de.Path, dir)
	case want != nil && !errors.Is(err, want):
		t.Errorf("%s = %v, want it to wrap %v", what, err, want)
	}
}

// refusesWrites checks that every method that writes refuses a read-only
// store with a *dirError, and writes nothing.
func refusesWrites(t testing.TB, s *Store, root string) {
	t.Helper()
	before := snapshot(t, root)
	txn, err := s.Begin(samplePlan("c9"))
	if txn != nil {
		txn.Close()
	}
	assertDirError(t, "Begin", err, nil, storePath(s))
	assertDirError(t, "MarkReleased", s.MarkReleased("c1", "eth0"), nil, storePath(s))
	assertDirError(t, "Remove", s.Remove("c1"), nil, storePath(s))
	assertDirError(t, "CheckWritable", s.CheckWritable(), nil, storePath(s))
	release, err := barrierWithin(s, Shared, time.Second)
	if release != nil {
		release()
	}
	assertDirError(t, "Barrier", err, nil, storePath(s))
	assertUnchanged(t, root, before, "a read-only store")
}

// CHECK and the operator's show open the store read-only: it creates
// nothing, and refuses every write.
func TestOpenReadOnly(t *testing.T) {
	t.Run("empty folder", func(t *testing.T) {
		dir := t.TempDir()
		s := openReadOnly(t, dir)
		if rec := s.Load("c1"); rec.Status != Missing || rec.Err != nil {
			t.Errorf("Load = %+v; want Missing", rec)
		}
		if ids, err := s.Containers(); ids != nil || err != nil {
			t.Errorf("Containers() = %q, %v", ids, err)
		}
		if s.Has("c1") {
			t.Error("Has(c1)")
		}
		// No locks folder: a Shared lock holds nothing, and says so
		// by having nothing to note.
		l := acquireWithin(t, s, "c1", Shared, time.Second)
		if n, err := l.Notes(); n != "" || err != nil {
			t.Errorf("Notes() = %q, %v", n, err)
		}
		if err := errors.Join(l.Note("x"), l.ClearNotes()); err != nil {
			t.Errorf("Note, ClearNotes: %v", err)
		}
		l.Release()
		l.Discard()
		_, err := tryWithin(s, "c1", Exclusive, time.Second)
		assertDirError(t, "Acquire(Exclusive)", err, nil, dir)
		if err := s.SweepLocks(); err != nil {
			t.Errorf("SweepLocks: %v", err)
		}
		refusesWrites(t, s, dir)
		assertNames(t, dir)
	})
	t.Run("populated store", func(t *testing.T) {
		rw, dir := newStore(t)
		p := attach(t, rw, "c1")
		ro := openReadOnly(t, dir)
		if rec := load(t, ro, "c1"); !reflect.DeepEqual(rec.Plan, p) || !rec.Complete {
			t.Errorf("Load = %+v", rec)
		}
		if ids, err := ro.Containers(); err != nil || !slices.Equal(ids, []string{"c1"}) {
			t.Errorf("Containers() = %q, %v", ids, err)
		}
		refusesWrites(t, ro, dir)
		if rec := load(t, rw, "c1"); rec.Interface("eth0").Released {
			t.Error("Release on the read-only store released eth0")
		}
	})
}

// On a read-only file system (a read-only bind mount in a mount namespace
// of its own, made by running this test again in a new process), CHECK's
// store reads, takes its Shared lock without a lock file, and refuses
// every write with a *dirError, as does a store opened for writing.
func TestReadOnlyFileSystem(t *testing.T) {
	if root := os.Getenv(envReadOnly); root != "" {
		readOnlyChecks(t, root)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("a bind mount needs root")
	}
	root := t.TempDir()
	dir := filepath.Join(root, "state")
	s := openStore(t, dir)
	attach(t, s, "c1")
	l := acquireWithin(t, s, "c2", Exclusive, time.Second)
	if err := l.Note("pgid 7"); err != nil {
		t.Fatal(err)
	}
	l.Release()
	if err := os.Mkdir(filepath.Join(root, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root)

	cmd := exec.Command(os.Args[0], "-test.run=^TestReadOnlyFileSystem$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), envReadOnly+"="+root)
	// Go makes the new namespace's mounts private before it runs the
	// test binary, so the bind mount stays in it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("the read-only checks failed: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "read-only checks done") {
		t.Fatalf("the read-only checks did not run:\n%s", out.String())
	}
	assertUnchanged(t, root, before, "the read-only checks")
}

// readOnlyChecks runs in the process TestReadOnlyFileSystem started: it
// mounts root read-only, in its own mount namespace, and uses the stores
// under it.
func readOnlyChecks(t *testing.T, root string) {
	if err := unix.Mount(root, root, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	if err := unix.Mount("", root, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("read-only remount: %v", err)
	}
	if err := os.WriteFile(filepath.Join(root, "probe"), nil, 0o600); !errors.Is(err, unix.EROFS) {
		t.Fatalf("writing on the read-only mount: %v, want EROFS", err)
	}
	dir := filepath.Join(root, "state")

	t.Run("read-only store", func(t *testing.T) {
		s := openReadOnly(t, dir)
		if rec := load(t, s, "c1"); !reflect.DeepEqual(rec.Plan, samplePlan("c1")) || !rec.Complete || rec.Interface("net2").Result == nil {
			t.Errorf("Load = %+v", rec)
		}
		if ids, err := s.Containers(); err != nil || !slices.Equal(ids, []string{"c1"}) {
			t.Errorf("Containers() = %q, %v", ids, err)
		}
		// No lock file, and none can be made: the lock holds nothing.
		l := acquireWithin(t, s, "c1", Shared, time.Second)
		if n, err := l.Notes(); n != "" || err != nil {
			t.Errorf("Notes() = %q, %v", n, err)
		}
		l.Release()
		// The lock file is there: the Shared lock is real.
		l = acquireWithin(t, s, "c2", Shared, time.Second)
		if n, err := l.Notes(); n != "pgid 7\n" || err != nil {
			t.Errorf("Notes() = %q, %v", n, err)
		}
		f, err := os.Open(filepath.Join(dir, "locks", "c2.lock"))
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
			t.Errorf("an exclusive flock beside the Shared lock: %v, want EWOULDBLOCK", err)
		}
		f.Close()
		l.Release()
		_, err = tryWithin(s, "c1", Exclusive, time.Second)
		assertDirError(t, "Acquire(Exclusive)", err, unix.EROFS, dir)
		refusesWrites(t, s, root)
	})
	t.Run("store opened for writing", func(t *testing.T) {
		s := openStore(t, dir)
		if rec := load(t, s, "c1"); rec.Plan == nil {
			t.Error("no plan")
		}
		txn, err := s.Begin(samplePlan("c3"))
		if txn != nil {
			txn.Close()
		}
		assertDirError(t, "Begin", err, unix.EROFS, dir)
		assertDirError(t, "CheckWritable", s.CheckWritable(), unix.EROFS, dir)
		_, err = tryWithin(s, "c1", Exclusive, time.Second)
		assertDirError(t, "Acquire(Exclusive)", err, unix.EROFS, dir)
		release, err := barrierWithin(s, Exclusive, time.Second)
		if release != nil {
			release()
		}
		assertDirError(t, "Barrier", err, unix.EROFS, dir)
	})
	t.Run("empty folder", func(t *testing.T) {
		empty := filepath.Join(root, "empty")
		s, err := Open(empty)
		if s != nil {
			s.Close()
		}
		assertDirError(t, "Open", err, unix.EROFS, empty)
		s = openReadOnly(t, empty)
		if rec := s.Load("c1"); rec.Status != Missing || rec.Err != nil {
			t.Errorf("Load = %+v; want Missing", rec)
		}
		acquireWithin(t, s, "c1", Shared, time.Second).Release()
		refusesWrites(t, s, empty)
	})
	if !t.Failed() {
		t.Log("read-only checks done")
	}
}
