package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/nicmux/nicmux/test/netnsutil"
	"github.com/nicmux/nicmux/test/testworld"
)

// cniCacheDir is libcni's default cache, which go-cni always uses: the ADD
// results CHECK and DEL read back live in its results folder.
const cniCacheDir = "/var/lib/cni"

// env is one benchmark run: the binaries, a temporary folder holding every
// variant's IPAM, state and log, and name sources that never repeat.
type env struct {
	bin      string // folder holding nicmux
	plugins  string // folder holding the reference plugins
	baseline string // folder holding the -baseline nicmux, or ""
	dir      string
	// tag is in every network, link and container name of the run, so the
	// run can find (and remove) exactly what it left in libcni's cache.
	tag string

	seq     atomic.Int64
	subnets atomic.Int64

	mu     sync.Mutex
	netnss map[string]bool
}

func newEnv(bin, baseline string) *env {
	bin, err := filepath.Abs(bin)
	must(err, "resolving -bin")
	e := &env{bin: bin, plugins: filepath.Join(bin, "plugins"), tag: testworld.RandHex(2), netnss: map[string]bool{}}
	for _, p := range []string{filepath.Join(bin, "nicmux"), e.plugin("bridge"), e.plugin("macvlan"),
		e.plugin("host-local"), e.plugin("tuning")} {
		if _, err := os.Stat(p); err != nil {
			fatalf("missing %s: run `make build plugins` first (or `make bench`)", p)
		}
	}
	if baseline != "" {
		e.baseline, err = filepath.Abs(baseline)
		must(err, "resolving -baseline")
		if _, err := os.Stat(filepath.Join(e.baseline, "nicmux")); err != nil {
			fatalf("-baseline: %v", err)
		}
	}
	e.dir, err = os.MkdirTemp("", "nicmux-bench-")
	must(err, "making the run's folder")
	atCleanup(func() { _ = os.RemoveAll(e.dir) })
	atCleanup(e.removeCacheEntries)
	atCleanup(e.destroyAllNetns)
	return e
}

func (e *env) plugin(name string) string { return filepath.Join(e.plugins, name) }
func (e *env) pluginDirs() []string      { return []string{e.bin, e.plugins} }

// baselineDirs is pluginDirs with the -baseline nicmux instead of bin's.
func (e *env) baselineDirs() []string { return []string{e.baseline, e.plugins} }

// name returns a run-unique name: the run's tag, a kind and a sequence number.
func (e *env) name(kind string) string {
	return fmt.Sprintf("nmb%s%s%d", e.tag, kind, e.seq.Add(1))
}

// subnet returns a /24 no other chain of the run uses.
func (e *env) subnet() string {
	k := e.subnets.Add(1)
	if k >= 64*256 {
		fatalf("out of subnets")
	}
	return fmt.Sprintf("10.%d.%d.0/24", 64+k/256, k%256)
}

// folder makes a folder under the run's folder.
func (e *env) folder(parts ...string) string {
	dir := filepath.Join(append([]string{e.dir}, parts...)...)
	must(os.MkdirAll(dir, 0o755), "making %s", dir)
	return dir
}

// newNetns makes a fresh container namespace under /run/netns.
func (e *env) newNetns() string {
	path := filepath.Join("/run/netns", e.name("ns"))
	must(netnsutil.CreateAt(path), "making a container netns")
	e.mu.Lock()
	e.netnss[path] = true
	e.mu.Unlock()
	return path
}

func (e *env) destroyNetns(path string) {
	must(netnsutil.DestroyAt(path), "removing netns %s", path)
	e.mu.Lock()
	delete(e.netnss, path)
	e.mu.Unlock()
}

func (e *env) destroyAllNetns() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for path := range e.netnss {
		_ = netnsutil.DestroyAt(path)
	}
}

// cacheEntries lists the run's files in libcni's results cache.
func (e *env) cacheEntries() []string {
	m, _ := filepath.Glob(filepath.Join(cniCacheDir, "results", "nmb"+e.tag+"*"))
	return m
}

func (e *env) removeCacheEntries() {
	for _, f := range e.cacheEntries() {
		_ = os.Remove(f)
	}
}

// addMaster makes a veth pair to serve as a macvlan master; it dies with
// the private netns at the latest.
func (e *env) addMaster() string {
	name := e.name("m")
	del, err := netnsutil.AddVethMaster(name)
	must(err, "making macvlan master")
	atCleanup(del)
	return name
}
