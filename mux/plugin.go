// Package mux is nicmux's plugin logic: one CNI entry that fans a container
// out to several interfaces, each with its own delegate chain, its own
// CNI_IFNAME and its own prevResult, recorded on disk so that CHECK and DEL
// work from what ADD did.
//
// Each verb is a short read over a []*attachment, one per interface
// (attachment.go); the shared prologue is invocation.go, the one place
// that runs chains at the same time is schedule.go, and every release
// (rollback, DEL, stale state, GC) goes through teardown.go.
package mux

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/delegate"
	"github.com/nicmux/nicmux/state"
)

// DefaultLockTimeout bounds the wait for another verb on the same container.
const DefaultLockTimeout = 30 * time.Second

// ErrAlreadyAttached is the plugin-specific CNI code (spec: 100 and up are
// the plugin's) for an ADD refused because the container's interfaces are
// live in the very namespace ADD names.
const ErrAlreadyAttached uint = 100

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
	// DefaultLockTimeout.
	LockTimeout time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// AheadLimit is the delegate runner's (see delegate.Runner); zero
	// means the number of CPUs.
	AheadLimit int
	// Start is when the process's main began, from which the log's phases
	// are measured; zero means when the verb began.
	Start time.Time
}

// New returns a Plugin bound to the process's standard streams.
func New() *Plugin {
	return &Plugin{Stdout: os.Stdout, Stderr: os.Stderr}
}

// Funcs returns the verbs for skel. Errors leave them as *types.Error with
// the spec's code: this is the one place where that conversion happens.
func (p *Plugin) Funcs() skel.CNIFuncs {
	wrap := func(f func(context.Context, *skel.CmdArgs) error) func(*skel.CmdArgs) error {
		return func(args *skel.CmdArgs) error { return ToCNIError(f(context.Background(), args)) }
	}
	return skel.CNIFuncs{
		Add:    wrap(p.Add),
		Check:  wrap(p.Check),
		Del:    wrap(p.Del),
		GC:     wrap(p.GC),
		Status: wrap(p.Status),
	}
}

func (p *Plugin) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Plugin) stderr() io.Writer {
	if p.Stderr != nil {
		return p.Stderr
	}
	return os.Stderr
}

func (p *Plugin) stdout() io.Writer {
	if p.Stdout != nil {
		return p.Stdout
	}
	return os.Stdout
}

func (p *Plugin) lockTimeout() time.Duration {
	if p.LockTimeout == 0 {
		return DefaultLockTimeout
	}
	return p.LockTimeout
}

// codedError carries a CNI error code for an error of nicmux's own.
type codedError struct {
	code uint
	err  error
}

func (e *codedError) Error() string       { return e.err.Error() }
func (e *codedError) Unwrap() error       { return e.err }
func (e *codedError) CNICode() uint       { return e.code }
func withCode(code uint, err error) error { return &codedError{code: code, err: err} }

// coder is an error that knows its CNI code: nicmux's own (codedError),
// conf's, state's and delegate's errors, which a plugin's own CNI error
// inside keeps.
type coder interface {
	error
	CNICode() uint
}

// ToCNIError turns an error into the *types.Error the runtime sees.
func ToCNIError(err error) error {
	if err == nil {
		return nil
	}
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	return types.NewError(CodeOf(err), msg, "")
}

// CodeOf returns the CNI error code for err: that of the first error in the
// tree that carries one (errors.As walks the tree in order), a foreign
// *types.Error's next, a lock timeout's (11, try again later) last; 999
// for an error that carries none.
func CodeOf(err error) uint {
	var c coder
	if errors.As(err, &c) {
		return c.CNICode()
	}
	var te *types.Error
	if errors.As(err, &te) {
		return te.Code
	}
	if errors.Is(err, state.ErrLockTimeout) {
		return types.ErrTryAgainLater
	}
	return types.ErrInternal
}
