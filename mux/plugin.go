// Package mux is nicmux's plugin logic: one CNI entry that fans a container
// out to several interfaces, each with its own delegate chain, its own
// CNI_IFNAME and its own prevResult, recorded on disk so that CHECK and DEL
// work from what ADD did.
package mux

import (
	"context"
	"io"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/delegate"
	"github.com/nicmux/nicmux/state"
)

// Version is nicmux's own release, printed when it is run bare.
const Version = "0.1.0"

// DefaultLockTimeout bounds the wait for another verb on the same container.
const DefaultLockTimeout = 30 * time.Second

// ErrAlreadyAttached is the plugin-specific CNI code (spec: 100 and up are
// the plugin's) for an ADD refused because the container's interfaces are
// live in the very namespace ADD names.
const ErrAlreadyAttached uint = 100

// About is what a bare run prints: Nomad fingerprints every binary in its
// cni_path by running it without CNI_COMMAND and reading a version.
func About() string { return "CNI nicmux plugin v" + Version }

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

func (p *Plugin) runner(args *skel.CmdArgs, nc *conf.NetConf) *delegate.Runner {
	var path []string
	for _, d := range strings.Split(args.Path, string(os.PathListSeparator)) {
		if d != "" {
			path = append(path, d)
		}
	}
	return &delegate.Runner{Path: path, Exec: p.Exec, Stderr: p.stderr(),
		NoPrestart: nc.Prestart != nil && !*nc.Prestart, AheadLimit: p.AheadLimit}
}

func (p *Plugin) lockTimeout() time.Duration {
	if p.LockTimeout == 0 {
		return DefaultLockTimeout
	}
	return p.LockTimeout
}

// lock takes the store lock shared (keeping GC out) and then the container's
// own lock, within LockTimeout. unlock(true) also removes the container's
// lock file, once its state is gone.
func (p *Plugin) lock(ctx context.Context, store *state.Store, id string) (func(remove bool), error) {
	ctx, cancel := context.WithTimeout(ctx, p.lockTimeout())
	defer cancel()
	unlockStore, err := store.LockStore(ctx, false)
	if err != nil {
		return nil, err
	}
	unlock, err := store.Lock(ctx, id)
	if err != nil {
		unlockStore()
		return nil, err
	}
	return func(remove bool) {
		unlock(remove)
		unlockStore()
	}, nil
}

// codedError carries a CNI error code for an error of nicmux's own.
type codedError struct {
	code uint
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

func withCode(code uint, err error) error { return &codedError{code: code, err: err} }

// ToCNIError turns an error into the *types.Error the runtime sees. The code
// is that of the first error in the tree that carries one: a delegate's own
// CNI error keeps its code.
func ToCNIError(err error) error {
	if err == nil {
		return nil
	}
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	return types.NewError(CodeOf(err), msg, "")
}

// CodeOf returns the CNI error code for err.
func CodeOf(err error) uint {
	if code, ok := findCode(err); ok {
		return code
	}
	return types.ErrInternal
}

func findCode(err error) (uint, bool) {
	switch e := err.(type) {
	case nil:
		return 0, false
	case *codedError:
		return e.code, true
	case *types.Error:
		return e.Code, true
	case *conf.Error:
		return e.CNICode(), true
	case *delegate.NotFoundError:
		return types.ErrInvalidNetworkConfig, true
	case *state.CorruptError:
		return types.ErrIOFailure, true
	}
	if err == state.ErrLockTimeout {
		return types.ErrTryAgainLater, true
	}
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, inner := range u.Unwrap() {
			if code, ok := findCode(inner); ok {
				return code, true
			}
		}
	case interface{ Unwrap() error }:
		return findCode(u.Unwrap())
	}
	return 0, false
}
