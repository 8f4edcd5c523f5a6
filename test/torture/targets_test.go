package torture

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// This file is the ONE place that knows nicmux's on-disk layout. Every
// fault the suite plants in the state folder, and every file the leak
// accounting lets stay, goes through the targets below: when the layout
// changes, change them here and nowhere else.
//
// The layout (docs/state.md):
//
//	<stateDir>/gc.lock                              GC's barrier, stays
//	<stateDir>/plans.slots, plans.boot              the plan journal, stays
//	<stateDir>/containers/<id>/container.json       the plan (every interface's chain, args, netns)
//	<stateDir>/containers/<id>/if-<ifname>.json     one interface's result
//	<stateDir>/containers/<id>/complete.json        the mark of a complete ADD
//	<stateDir>/locks/<id>.lock                      the container's lock

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
		path: func(s, _ string) string { return filepath.Join(s, "containers") }}
	// tFolder is one container's folder.
	tFolder = target{name: "the container folder", dir: true,
		path: func(s, id string) string { return filepath.Join(s, "containers", id) }}
	// tPlan is the record ADD writes before any delegate runs.
	tPlan = target{name: "the plan record",
		path: func(s, id string) string { return filepath.Join(s, "containers", id, "container.json") }}
	// tCompletion is the marker of a completed ADD.
	tCompletion = target{name: "the completion marker",
		path: func(s, id string) string { return filepath.Join(s, "containers", id, "complete.json") }}
	// tLock is the container's lock file.
	tLock = target{name: "the container's lock",
		path: func(s, id string) string { return filepath.Join(s, "locks", id+".lock") }}
	// tLocks is the folder of the lock files.
	tLocks = target{name: "the locks folder", dir: true,
		path: func(s, _ string) string { return filepath.Join(s, "locks") }}
)

// tResult is one interface's result record.
func tResult(ifname string) target {
	return target{name: ifname + "'s result record",
		path: func(s, id string) string { return filepath.Join(s, "containers", id, "if-"+ifname+".json") }}
}

// storeWide lists the state files (relative to the state folder) that stay
// when no container has state: the leak accounting ignores them.
var storeWide = []string{"gc.lock", "plans.slots", "plans.boot"}

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

// stateLeaks lists what a state folder holds for no container: every file
// but the store-wide ones, and every container folder (an empty one too).
func stateLeaks(stateDir string) []string {
	var out []string
	containers := tContainers.path(stateDir, "")
	_ = filepath.Walk(stateDir, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(stateDir, path)
		switch {
		case fi.IsDir() && filepath.Dir(path) == containers:
			entries, _ := os.ReadDir(path)
			if len(entries) == 0 {
				out = append(out, rel+"/ (empty folder)")
			}
		case fi.IsDir():
		case fi.Mode()&os.ModeSymlink != 0:
			out = append(out, rel+" (symlink)")
		default:
			for _, keep := range storeWide {
				if rel == keep {
					return nil
				}
			}
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// stateMentions reports whether any state file names id (a file or folder
// name holding it).
func stateMentions(stateDir, id string) bool {
	for _, l := range stateLeaks(stateDir) {
		if strings.Contains(l, id) {
			return true
		}
	}
	return false
}
