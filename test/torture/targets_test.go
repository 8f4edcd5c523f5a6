package torture

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/nicmux/nicmux/test/testworld"
)

// Every fault the suite plants in the state folder goes through the
// targets below. Their paths come from testworld's layout of the state
// folder (testworld.PlanFile, ...), which the leak accounting uses too:
// when the layout changes, it changes there.

// target is one thing in a state folder, for one container.
type target struct {
	// name is how failures name it.
	name string
	// path is where it is; "" when this layout has no such thing (the
	// fault is then not planted, and the trial says so).
	path func(stateDir, id string) string
	// dir is set for a folder.
	dir bool
}

var (
	// tContainers is the folder of all containers' folders.
	tContainers = target{name: "the containers folder", dir: true,
		path: func(s, _ string) string { return testworld.ContainersDir(s) }}
	// tFolder is one container's folder.
	tFolder = target{name: "the container folder", dir: true,
		path: testworld.ContainerDir}
	// tPlan is the record ADD writes before any delegate runs.
	tPlan = target{name: "the plan record",
		path: testworld.PlanFile}
	// tCompletion is the marker of a completed ADD.
	tCompletion = target{name: "the completion marker",
		path: testworld.CompleteFile}
	// tLock is the container's lock file.
	tLock = target{name: "the container's lock",
		path: testworld.LockFile}
	// tLocks is the folder of the lock files.
	tLocks = target{name: "the locks folder", dir: true,
		path: func(s, _ string) string { return testworld.LocksDir(s) }}
)

// tResult is one interface's result record.
func tResult(ifname string) target {
	return target{name: ifname + "'s result record",
		path: func(s, id string) string { return testworld.ResultFile(s, id, ifname) }}
}

// at returns the target's path in a world, for container id.
func (tg target) at(w *world, id string) string { return tg.path(w.StateDir, id) }

// exists reports whether the target is there (a symlink counts).
func (tg target) exists(w *world, id string) bool {
	p := tg.at(w, id)
	if p == "" {
		return false
	}
	_, err := os.Lstat(p)
	return err == nil
}

// truncate empties the target file (a crash between create and write).
func (tg target) truncate(w *world, id string) error {
	return tg.rewrite(w, id, nil)
}

// corrupt replaces the target file's content with bytes that are not a
// record (half a JSON document).
func (tg target) corrupt(w *world, id string) error {
	return tg.rewrite(w, id, []byte(`{"kind": "nicmuxCont`))
}

func (tg target) rewrite(w *world, id string, b []byte) error {
	p := tg.at(w, id)
	if p == "" {
		return fmt.Errorf("%s: no such thing in this layout", tg.name)
	}
	if _, err := os.Stat(p); err != nil {
		return fmt.Errorf("%s: %w", tg.name, err)
	}
	return os.WriteFile(p, b, 0o600)
}

// remove deletes the target (a folder with all it holds).
func (tg target) remove(w *world, id string) error {
	p := tg.at(w, id)
	if p == "" {
		return fmt.Errorf("%s: no such thing in this layout", tg.name)
	}
	if _, err := os.Lstat(p); err != nil {
		return fmt.Errorf("%s: %w", tg.name, err)
	}
	return os.RemoveAll(p)
}

// symlinkTo plants a symbolic link to dest where the target would be,
// making its parent folders as nicmux would (0700).
func (tg target) symlinkTo(w *world, id, dest string) error {
	p := tg.at(w, id)
	if p == "" {
		return fmt.Errorf("%s: no such thing in this layout", tg.name)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return os.Symlink(dest, p)
}

// snapshot is a saved copy of a target, to put back.
type snapshot struct {
	tg    target
	id    string
	files map[string][]byte // relative path -> content ("" for the target file itself)
}

// save copies the target (a file, or a folder's files) into memory.
func (tg target) save(w *world, id string) (*snapshot, error) {
	p := tg.at(w, id)
	if p == "" {
		return nil, fmt.Errorf("%s: no such thing in this layout", tg.name)
	}
	s := &snapshot{tg: tg, id: id, files: map[string][]byte{}}
	err := filepath.Walk(p, func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(p, path)
		if rel == "." {
			rel = ""
		}
		s.files[rel] = b
		return nil
	})
	return s, err
}

// restore puts a saved target back as it was.
func (s *snapshot) restore(w *world) error {
	p := s.tg.at(w, s.id)
	_ = os.RemoveAll(p)
	for rel, b := range s.files {
		dst := filepath.Join(p, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			return err
		}
	}
	return nil
}
