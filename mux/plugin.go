// Package mux holds nicmux's CNI verbs: one CNI entry that fans a container
// out to several interfaces, each with its own delegate chain, its own
// CNI_IFNAME and its own prevResult, recorded on disk so that CHECK and DEL
// work from what ADD did.
//
// verbs.go dispatches each verb to its file (add.go, check.go, del.go,
// gc.go, status.go), each a short read over a []*attachment, one per
// interface (attachment.go); invocation.go is what every verb starts from,
// schedule.go the one place where chains run at the same time, and every
// release (rollback, DEL, stale state, GC) goes through teardown.go.
// op.go is what the operator's commands (package ops) run through.
package mux

import (
	"io"
	"os"
	"time"

	"github.com/nicmux/nicmux/delegate"
	"github.com/nicmux/nicmux/ns"
)

// defaultLockTimeout bounds the wait for another verb on the same container.
const defaultLockTimeout = 30 * time.Second

// Plugin runs nicmux's verbs. Its fields let tests and benchmarks replace
// the process's streams and the way delegates are run.
type Plugin struct {
	// Exec runs delegate plugins; nil runs the binaries in CNI_PATH.
	Exec delegate.Exec
	// Stdout receives the CNI result.
	Stdout io.Writer
	// Stderr receives delegates' stderr and, without a log file, nicmux's
	// warnings and errors.
	Stderr io.Writer
	// LockTimeout bounds the wait for a container's lock; zero means
	// defaultLockTimeout.
	LockTimeout time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Identify identifies the network namespace at a path (see
	// ns.Identify, which refuses anything else); nil means ns.Identify.
	// Unit tests, which cannot make namespaces without root, stand
	// regular files in for them.
	Identify func(path string) (ns.NetNSID, error)
}

// New returns a Plugin bound to the process's standard streams.
func New() *Plugin {
	return &Plugin{Stdout: os.Stdout, Stderr: os.Stderr}
}

// withDefaults returns a copy of p with every field left zero set to its
// default.
func (p *Plugin) withDefaults() *Plugin {
	c := *p
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	if c.LockTimeout == 0 {
		c.LockTimeout = defaultLockTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Identify == nil {
		c.Identify = ns.Identify
	}
	return &c
}
