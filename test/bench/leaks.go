package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nicmux/nicmux/test/netnsutil"
)

// leaks lists what a variant left behind once all its containers are gone:
// host-local leases, nicmux state files (but the store-wide ones, see
// storeWide, and what keep accepts) and ports of its bridge.
func (v *variant) leaks(keep func(rel string) bool) ([]string, error) {
	var out []string
	for _, c := range v.chains {
		l, err := leases(filepath.Join(v.res.ipamDir, c.Network))
		if err != nil {
			return nil, err
		}
		out = append(out, l...)
	}
	if v.state != "" {
		s, err := stateFiles(v.state, keep)
		if err != nil {
			return nil, err
		}
		out = append(out, s...)
	}
	if v.res.bridge != "" {
		ports, err := netnsutil.BridgePorts(v.res.bridge)
		if err != nil {
			return nil, err
		}
		for _, p := range ports {
			out = append(out, "bridge port "+p)
		}
	}
	return out, nil
}

// assertNoLeaks ends the run if the variant left anything behind.
func (v *variant) assertNoLeaks(keep func(rel string) bool) {
	l, err := v.leaks(keep)
	must(err, "%s: looking for leaks", v.label)
	if len(l) > 0 {
		fatalf("%s: left behind after DEL: %v", v.label, l)
	}
}

// leases lists host-local's lease files in a network's folder.
func leases(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.Name() != "lock" && !strings.HasPrefix(e.Name(), "last_reserved_ip") {
			out = append(out, "lease "+filepath.Join(dir, e.Name()))
		}
	}
	return out, nil
}

// stateFiles lists the files of a nicmux state folder, relative to it.
func stateFiles(dir string, keep func(rel string) bool) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && path == dir {
			return filepath.SkipDir
		}
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if !storeWide(rel) && (keep == nil || !keep(rel)) {
			out = append(out, "state "+rel)
		}
		return nil
	})
	return out, err
}

// assertCacheEmpty ends the run if libcni's cache still holds any of the
// run's results: every DEL removes its own.
func (e *env) assertCacheEmpty() {
	if c := e.cacheEntries(); len(c) > 0 {
		fatalf("left in libcni's cache after DEL: %v", c)
	}
}

// storeWide reports whether a state file belongs to no container and
// stays: GC's barrier, and the plan journal and its boot record that a
// 0.2.0 baseline writes.
func storeWide(rel string) bool {
	return rel == "gc.lock" || rel == "plans.slots" || rel == "plans.boot"
}
