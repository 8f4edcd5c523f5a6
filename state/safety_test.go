package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// Every method refuses an unsafe container ID or interface name before it
// becomes part of a path: nothing is read, created or removed, inside or
// outside the state folder, even where a file is planted at the place the
// unchecked path would reach.
func TestPathSafety(t *testing.T) {
	badIDs := []string{"../x", "a/b", "", ".", "..", "x y", "../../etc", "/abs", "c1/../c2", strings.Repeat("l", MaxIDLength+1)}
	badIfNames := []string{"../e", "a/b", "toolongifname1234", "a:b", "", ".", "..", "e 1", "../../../x"}

	type call struct {
		name string
		do   func(s *Store) error
	}
	acquire := func(s *Store, id string, mode Mode) error {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		l, err := s.Acquire(ctx, id, mode)
		if l != nil {
			l.Release()
			return errors.New("returned a lock")
		}
		return err
	}
	idCalls := func(id string) []call {
		return []call{
			{"Begin", func(s *Store) error {
				txn, err := s.Begin(samplePlan(id))
				if txn != nil {
					txn.Close()
					return errors.New("returned a transaction")
				}
				return err
			}},
			{"Load", func(s *Store) error {
				rec := s.Load(id)
				if rec.Status != Failed || rec.Plan != nil || len(rec.Interfaces) > 0 {
					return fmt.Errorf("returned %+v", rec)
				}
				return rec.Err
			}},
			{"MarkReleased", func(s *Store) error { return s.MarkReleased(id, "eth0") }},
			{"Remove", func(s *Store) error { return s.Remove(id) }},
			{"Acquire shared", func(s *Store) error { return acquire(s, id, Shared) }},
			{"Acquire exclusive", func(s *Store) error { return acquire(s, id, Exclusive) }},
			{"tryAcquire", func(s *Store) error {
				l, err := tryAcquire(s, id)
				if l != nil || err == nil {
					return fmt.Errorf("returned %v, %v", l, err)
				}
				return err
			}},
		}
	}
	ifCalls := func(ifname string) []call {
		return []call{
			{"Begin", func(s *Store) error {
				p := samplePlan("c2")
				p.Interfaces[1].IfName = ifname
				txn, err := s.Begin(p)
				if txn != nil {
					txn.Close()
					return errors.New("returned a transaction")
				}
				return err
			}},
			{"MarkReleased", func(s *Store) error { return s.MarkReleased("c1", ifname) }},
		}
	}

	// plant writes, at the paths the unchecked names lead to, records that
	// would be accepted if read, so that reads, writes and removals
	// through them would all show.
	plant := func(t *testing.T, dir, id, ifname string) {
		p := samplePlan(id)
		writeRaw(t, filepath.Join(dir, "containers", id, "container.json"), mustJSON(t, containerFile{Kind: kindContainer, Plan: *p}))
		writeRaw(t, filepath.Join(dir, "containers", "c1", "if-"+ifname+".json"),
			mustJSON(t, interfaceFile{Kind: kindInterface, ContainerID: "c1", Planned: samplePlanned(ifname, "x")}))
		if lock := filepath.Join(dir, "locks", id+".lock"); len(filepath.Base(lock)) <= 255 {
			writeRaw(t, lock, nil)
		}
	}
	check := func(t *testing.T, root string, s *Store, c call, wantCNI bool) {
		t.Helper()
		before := snapshot(t, root)
		err := c.do(s)
		if err == nil {
			t.Fatalf("%s accepted it", c.name)
		}
		var te *types.Error
		if wantCNI && !errors.As(err, &te) {
			t.Errorf("%s: error %v is not a validation error", c.name, err)
		}
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrLockTimeout) {
			t.Errorf("%s: error %v is not a validation error", c.name, err)
		}
		assertUnchanged(t, root, before, c.name)
	}
	// The store is deep enough that "../../etc" from its containers
	// folder is still inside the test's folder.
	newDeepStore := func(t *testing.T) (*Store, string, string) {
		root := t.TempDir()
		dir := filepath.Join(root, "a", "b", "c", "state")
		return openStore(t, dir), dir, root
	}
	for _, id := range badIDs {
		for _, c := range idCalls(id) {
			t.Run(fmt.Sprintf("id %.20q %s", id, c.name), func(t *testing.T) {
				s, dir, root := newDeepStore(t)
				check(t, root, s, c, true)
				attach(t, s, "c1")
				plant(t, dir, id, "eth0")
				check(t, root, s, c, true)
				if s.Has(id) {
					t.Errorf("Has(%q) = true", id)
				}
			})
		}
	}
	for _, ifname := range badIfNames {
		for _, c := range ifCalls(ifname) {
			t.Run(fmt.Sprintf("ifname %q %s", ifname, c.name), func(t *testing.T) {
				s, dir, root := newDeepStore(t)
				attach(t, s, "c1")
				check(t, root, s, c, true)
				plant(t, dir, "c1", ifname)
				check(t, root, s, c, true)
			})
		}
	}
	t.Run("SaveResult of an interface not planned", func(t *testing.T) {
		s, dir, root := newDeepStore(t)
		txn := begin(t, s, samplePlan("c1"))
		for _, ifname := range badIfNames {
			plant(t, dir, "c1", ifname)
			check(t, root, s, call{"SaveResult", func(*Store) error { return txn.SaveResult(ifname, sampleResult(ifname, "10.0.0.1/8")) }}, false)
		}
	})
}

// The longest container ID works end to end: its lock file's name is the
// longest a file system takes.
func TestMaxIDLength(t *testing.T) {
	s, dir := newStore(t)
	id := strings.Repeat("m", MaxIDLength)
	l := acquireWithin(t, s, id, Exclusive, time.Second)
	p := attach(t, s, id)
	if rec := load(t, s, id); rec.Plan.ContainerID != p.ContainerID || !rec.Complete {
		t.Errorf("record %+v", rec)
	}
	if ids, err := s.Containers(); err != nil || !slices.Equal(ids, []string{id}) {
		t.Errorf("Containers() = %q, %v", ids, err)
	}
	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	l.Discard()
	assertNames(t, filepath.Join(dir, "locks"))
	assertNames(t, filepath.Join(dir, "containers"))
}

// A symbolic link planted at a container's folder is never followed: the
// verbs refuse it, and Remove removes the link, not what it points to.
func TestSymlinkedContainerFolder(t *testing.T) {
	tests := []struct {
		name   string
		target func(t *testing.T, s *Store, dir string) string
	}{
		{"to a folder outside the store", func(t *testing.T, s *Store, dir string) string {
			victim := filepath.Join(t.TempDir(), "victim")
			writeRaw(t, filepath.Join(victim, "container.json"), mustJSON(t, containerFile{Kind: kindContainer, Plan: *samplePlan("c1")}))
			writeRaw(t, filepath.Join(victim, "if-eth0.json"), mustJSON(t, interfaceFile{Kind: kindInterface, ContainerID: "c1", Planned: samplePlanned("eth0", "x")}))
			writeRaw(t, filepath.Join(victim, "precious"), []byte("keep me"))
			return victim
		}},
		{"to another container's folder", func(t *testing.T, s *Store, dir string) string {
			attach(t, s, "c2")
			return containerDir(dir, "c2")
		}},
		{"dangling", func(t *testing.T, s *Store, dir string) string {
			return filepath.Join(t.TempDir(), "missing")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			target := tc.target(t, s, dir)
			link := containerDir(dir, "c1")
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			// What the link points to, or where it would be made.
			watch := target
			if _, err := os.Stat(target); err != nil {
				watch = filepath.Dir(target)
			}
			before := snapshot(t, watch)

			rec := s.Load("c1")
			if rec.Status != Unsafe || rec.Plan != nil || len(rec.Interfaces) > 0 {
				t.Errorf("Load returned %+v", rec)
			}
			assertUnsafe(t, rec.Err, link)
			if txn, err := s.Begin(samplePlan("c1")); err == nil {
				txn.Close()
				t.Error("Begin wrote through the link")
			} else {
				assertUnsafe(t, err, link)
			}
			assertUnsafe(t, s.MarkReleased("c1", "eth0"), link)
			if !s.Has("c1") {
				t.Error("Has = false: a DEL would not remove the link")
			}
			if ids, err := s.Containers(); err != nil || !slices.Contains(ids, "c1") {
				t.Errorf("Containers() = %q, %v; want c1 listed, for GC to report", ids, err)
			}
			assertUnchanged(t, watch, before, "Load, Begin, Release")

			if err := s.Remove("c1"); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			assertGone(t, link)
			assertUnchanged(t, watch, before, "Remove")
		})
	}
}

// Symbolic links planted at records are never followed either.
func TestSymlinkedRecords(t *testing.T) {
	outside := t.TempDir()
	plan := filepath.Join(outside, "plan.json")
	writeRaw(t, plan, mustJSON(t, containerFile{Kind: kindContainer, Plan: *samplePlan("c1")}))
	result := filepath.Join(outside, "result.json")
	writeRaw(t, result, mustJSON(t, interfaceFile{Kind: kindInterface, ContainerID: "c1", Planned: samplePlanned("eth0", "x"), Result: sampleResult("eth0", "10.0.0.1/8")}))
	missing := filepath.Join(outside, "missing")
	before := snapshot(t, outside)
	link := func(t *testing.T, target, path string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("plan", func(t *testing.T) {
		s, dir := newStore(t)
		path := filepath.Join(containerDir(dir, "c1"), "container.json")
		link(t, plan, path)
		rec := s.Load("c1")
		assertUnsafe(t, rec.Err, path)
		if rec.Status != Unreadable || rec.Plan != nil {
			t.Errorf("Load read the plan through the link: %+v", rec.Plan)
		}
		if err := s.Remove("c1"); err != nil {
			t.Fatal(err)
		}
		assertGone(t, containerDir(dir, "c1"))
	})
	t.Run("result", func(t *testing.T) {
		s, dir := newStore(t)
		begin(t, s, samplePlan("c1"))
		path := filepath.Join(containerDir(dir, "c1"), "if-eth0.json")
		link(t, result, path)
		eth0 := load(t, s, "c1").Interface("eth0")
		assertUnsafe(t, eth0.ResultErr, path)
		if eth0.Result != nil {
			t.Errorf("Load read the result through the link: %s", eth0.Result)
		}
		// A write replaces the link; a release removes it.
		txn := begin(t, s, samplePlan("c2"))
		link(t, missing, filepath.Join(containerDir(dir, "c2"), "if-net1.json"))
		if err := txn.SaveResult("net1", sampleResult("net1", "10.0.0.2/8")); err != nil {
			t.Fatal(err)
		}
		if net1 := load(t, s, "c2").Interface("net1"); net1.Result == nil {
			t.Errorf("net1 after SaveResult over a link: %+v", net1)
		}
		if err := s.MarkReleased("c1", "eth0"); err != nil {
			t.Fatal(err)
		}
		assertGone(t, path)
	})
	t.Run("released mark", func(t *testing.T) {
		s, dir := newStore(t)
		begin(t, s, samplePlan("c1"))
		path := filepath.Join(containerDir(dir, "c1"), "released-eth0")
		link(t, missing, path)
		assertUnsafe(t, s.MarkReleased("c1", "eth0"), path)
	})
	t.Run("leftovers cleared by Begin", func(t *testing.T) {
		s, dir := newStore(t)
		link(t, result, filepath.Join(containerDir(dir, "c1"), "if-eth0.json"))
		link(t, plan, filepath.Join(containerDir(dir, "c1"), ".container.json.tmp-1"))
		begin(t, s, samplePlan("c1"))
		assertNames(t, containerDir(dir, "c1"), "container.json")
	})
	assertUnchanged(t, outside, before, "the store")
}

// A symbolic link planted at a lock file is refused, at once, and nothing
// is created where it points.
func TestSymlinkedLockFile(t *testing.T) {
	outside := t.TempDir()
	existing := filepath.Join(outside, "existing")
	writeRaw(t, existing, []byte("keep me"))
	for _, target := range []string{filepath.Join(outside, "missing"), existing} {
		for _, mode := range []Mode{Shared, Exclusive} {
			t.Run(fmt.Sprintf("%s mode %d", filepath.Base(target), mode), func(t *testing.T) {
				s, dir := newStore(t)
				path := filepath.Join(dir, "locks", "c1.lock")
				if err := os.Symlink(target, path); err != nil {
					t.Fatal(err)
				}
				before := snapshot(t, outside)
				for name, s := range map[string]*Store{"read-write": s, "read-only": openReadOnly(t, dir)} {
					start := time.Now()
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					l, err := s.Acquire(ctx, "c1", mode)
					cancel()
					if l != nil {
						l.Release()
						t.Fatalf("%s: locked through the link", name)
					}
					assertUnsafe(t, err, path)
					if errors.Is(err, ErrLockTimeout) || time.Since(start) > time.Second {
						t.Errorf("%s: %v after %v: not a refusal", name, err, time.Since(start))
					}
				}
				if l, err := tryAcquire(s, "c1"); l != nil || err == nil {
					t.Errorf("tryAcquire = %v, %v", l, err)
				}
				assertUnchanged(t, outside, before, "Acquire")
			})
		}
	}
	t.Run("barrier", func(t *testing.T) {
		s, dir := newStore(t)
		if err := os.Symlink(filepath.Join(outside, "gc-missing"), filepath.Join(dir, "gc.lock")); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, outside)
		for _, mode := range []Mode{Shared, Exclusive} {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			release, err := s.Barrier(ctx, mode)
			cancel()
			if release != nil {
				release()
				t.Fatalf("Barrier(%d) locked through the link", mode)
			}
			assertUnsafe(t, err, filepath.Join(dir, "gc.lock"))
		}
		assertUnchanged(t, outside, before, "Barrier")
	})
}

// The store's own folders must be folders: a link or a file in their place
// is refused. The state folder itself may be reached through a link (as
// /var/lib often is).
func TestStoreFolders(t *testing.T) {
	for _, name := range []string{"containers", "locks"} {
		for _, kind := range []string{"link", "file"} {
			t.Run(name+" is a "+kind, func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "state")
				elsewhere := filepath.Join(t.TempDir(), "elsewhere")
				if err := os.Mkdir(elsewhere, 0o700); err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(dir, name)
				if kind == "link" {
					if err := os.Mkdir(dir, 0o700); err != nil {
						t.Fatal(err)
					}
					if err := os.Symlink(elsewhere, path); err != nil {
						t.Fatal(err)
					}
				} else {
					writeRaw(t, path, []byte("x"))
				}
				for open, f := range map[string]func(string) (*Store, error){"Open": Open, "OpenReadOnly": OpenReadOnly} {
					s, err := f(dir)
					if s != nil {
						s.Close()
						t.Fatalf("%s accepted it", open)
					}
					assertUnsafe(t, err, path)
				}
				assertNames(t, elsewhere)
			})
		}
	}
	t.Run("state folder reached through a link", func(t *testing.T) {
		real := filepath.Join(t.TempDir(), "real")
		link := filepath.Join(t.TempDir(), "link")
		if err := os.Mkdir(real, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(real, link); err != nil {
			t.Fatal(err)
		}
		s := openStore(t, link)
		attach(t, s, "c1")
		if rec := load(t, openStore(t, real), "c1"); rec.Plan == nil {
			t.Error("no plan")
		}
	})
}

// Folders another user could change are refused, with a message that names
// the folder and says what to do; only nicmux's user may write there.
func TestUnsafeOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing a folder's owner needs root")
	}
	type change struct {
		mode os.FileMode // 0: unchanged
		uid  int         // -1: unchanged
		gid  int         // -1: unchanged
	}
	tests := []struct {
		name   string
		rel    string // under the state folder
		change change
		ok     bool
		advice string
	}{
		{"state folder 0777", ".", change{0o777, -1, -1}, false, "make it 0700"},
		{"state folder group-writable", ".", change{0o770, -1, -1}, false, "make it 0700"},
		{"state folder owned by nobody", ".", change{0, 65534, -1}, false, "chown"},
		{"containers 0777", "containers", change{0o777, -1, -1}, false, "make it 0700"},
		{"containers world-writable", "containers", change{0o702, -1, -1}, false, "make it 0700"},
		{"containers owned by nobody", "containers", change{0, 65534, -1}, false, "chown"},
		{"locks 0777", "locks", change{0o777, -1, -1}, false, "make it 0700"},
		{"locks owned by nobody", "locks", change{0, 65534, -1}, false, "chown"},
		{"container folder 0777", "containers/c1", change{0o777, -1, -1}, false, "make it 0700"},
		{"container folder owned by nobody", "containers/c1", change{0, 65534, -1}, false, "chown"},
		// Readable by others, or of another group, changes nothing.
		{"state folder 0755", ".", change{0o755, -1, -1}, true, ""},
		{"state folder of group nogroup", ".", change{0, -1, 65534}, true, ""},
		{"container folder 0711", "containers/c1", change{0o711, -1, -1}, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			s, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			attach(t, s, "c1")
			s.Close()
			path := filepath.Clean(filepath.Join(dir, tc.rel))
			if tc.change.mode != 0 {
				if err := os.Chmod(path, tc.change.mode); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chown(path, tc.change.uid, tc.change.gid); err != nil {
				t.Fatal(err)
			}
			errs := map[string]error{}
			for name, open := range map[string]func(string) (*Store, error){"Open": Open, "OpenReadOnly": OpenReadOnly} {
				s, err := open(dir)
				if err == nil {
					err = s.Load("c1").Err
					if l, lerr := tryAcquire(s, "c1"); lerr != nil {
						err = errors.Join(err, lerr)
					} else if l != nil {
						l.Release()
					}
					s.Close()
				}
				errs[name] = err
			}
			for name, err := range errs {
				if tc.ok {
					if err != nil {
						t.Errorf("%s: %v", name, err)
					}
					continue
				}
				if err == nil {
					t.Errorf("%s accepted it", name)
					continue
				}
				assertUnsafe(t, err, path)
				if !strings.Contains(err.Error(), tc.advice) {
					t.Errorf("%s: error %q does not say what to do (%q)", name, err, tc.advice)
				}
			}
		})
	}
}
