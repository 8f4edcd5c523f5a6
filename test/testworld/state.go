package testworld

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// The layout of nicmux's state folder (docs/state.md); the suites know it
// from here only:
//
//	<stateDir>/gc.lock                              GC's barrier, stays
//	<stateDir>/plans.slots, plans.boot              the plan journal, stays
//	<stateDir>/containers/<id>/container.json       the plan (every interface's chain, args, netns)
//	<stateDir>/containers/<id>/if-<ifname>.json     one interface's result
//	<stateDir>/containers/<id>/complete.json        the mark of a complete ADD
//	<stateDir>/locks/<id>.lock                      the container's lock
//	<stateDir>/metrics/...                          metricsFile's counters, stay

// ContainersDir is the folder of every container's folder.
func ContainersDir(stateDir string) string { return filepath.Join(stateDir, "containers") }

// ContainerDir is one container's folder.
func ContainerDir(stateDir, id string) string { return filepath.Join(ContainersDir(stateDir), id) }

// PlanFile is the record ADD writes before any delegate runs.
func PlanFile(stateDir, id string) string {
	return filepath.Join(ContainerDir(stateDir, id), "container.json")
}

// ResultFile is one interface's result record.
func ResultFile(stateDir, id, ifname string) string {
	return filepath.Join(ContainerDir(stateDir, id), "if-"+ifname+".json")
}

// CompleteFile marks a complete ADD.
func CompleteFile(stateDir, id string) string {
	return filepath.Join(ContainerDir(stateDir, id), "complete.json")
}

// LocksDir is the folder of the containers' lock files.
func LocksDir(stateDir string) string { return filepath.Join(stateDir, "locks") }

// LockFile is one container's lock.
func LockFile(stateDir, id string) string { return filepath.Join(LocksDir(stateDir), id+".lock") }

// isStoreWide reports whether a state file (relative to the state folder)
// belongs to no container and stays when none has state.
func isStoreWide(rel string) bool {
	return slices.Contains([]string{"gc.lock", "plans.slots", "plans.boot"}, rel) || strings.HasPrefix(rel, "metrics/")
}

// StateLeft lists what a state folder holds for containers, relative to
// it and sorted: every file but the store-wide ones, every symbolic link
// (marked "(symlink)") and every empty container folder (marked "(empty
// folder)"). A folder that is not there holds nothing; what cannot be read
// is in the error, and the walk goes on.
func StateLeft(stateDir string) ([]string, error) {
	var out []string
	var errs []error
	containers := ContainersDir(stateDir)
	_ = filepath.WalkDir(stateDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path != stateDir || !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			return nil
		}
		rel, _ := filepath.Rel(stateDir, path)
		switch {
		case d.IsDir() && filepath.Dir(path) == containers:
			entries, err := os.ReadDir(path)
			if err == nil && len(entries) == 0 {
				out = append(out, rel+"/ (empty folder)")
			}
		case d.IsDir():
		case d.Type()&fs.ModeSymlink != 0:
			out = append(out, rel+" (symlink)")
		case !isStoreWide(rel):
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out, errors.Join(errs...)
}
