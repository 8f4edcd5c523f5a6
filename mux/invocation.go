package mux

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/delegate"
	"github.com/nicmux/nicmux/ns"
	"github.com/nicmux/nicmux/state"
)

// invocation is one run of a verb: what the runtime handed over, the log,
// and what the verb works with: the delegate runner, the attachment files,
// the state folder and the container lock it holds.
type invocation struct {
	p        *Plugin // with its defaults
	args     *skel.CmdArgs
	nc       *conf.NetConf
	log      *slog.Logger
	closeLog func()
	out      *outcome
	runner   *delegate.Runner
	sets     *sets
	held     held
	store    *state.Store // nil until openStore
	rel      *releaser    // nil until openStore
}

// start begins verb name: it reads nicmux's entry and opens the log.
func (p *Plugin) start(name string, args *skel.CmdArgs) (*invocation, error) {
	start := time.Now()
	nc, err := conf.ParseNetConf(args.StdinData)
	if err != nil {
		return nil, err
	}
	p = p.withDefaults()
	log, closeLog := newLogger(p.Stderr, nc)
	v := &invocation{p: p, args: args, nc: nc, log: log, closeLog: closeLog,
		out: &outcome{log: log, verb: name, id: args.ContainerID, netns: args.Netns, start: start, fig: newFigures(nc)},
		sets: &sets{base: nc.Attachments, log: log,
			d: conf.Defaults{IfName: args.IfName, ListName: nc.Name, CNIVersion: nc.CNIVersion}}}
	v.runner = &delegate.Runner{Path: splitPath(args.Path), Exec: p.Exec, Stderr: p.Stderr, Timeout: nc.Timeout,
		Observe: v.out.delegate, Started: v.held.note}
	return v, nil
}

func splitPath(p string) []string {
	var out []string
	for _, d := range strings.Split(p, string(os.PathListSeparator)) {
		if d != "" {
			out = append(out, d)
		}
	}
	return out
}

// openStore opens the state folder; CHECK and a dry run open it read-only.
func (v *invocation) openStore(readOnly bool) error {
	var err error
	if readOnly {
		v.store, err = state.OpenReadOnly(v.nc.StateDir)
	} else {
		v.store, err = state.Open(v.nc.StateDir)
	}
	v.rel = &releaser{runner: v.runner, store: v.store, log: v.log, sets: v.sets}
	return err
}

// lock takes container id's lock, waiting at most the lock timeout. An
// exclusive holder first kills what a killed predecessor left running, and
// notes its own plugin processes in the lock file while it holds it.
// unlock releases the lock; when the container's state is gone it removes
// the lock file, held exclusively for that (see state.Lock.Discard).
func (v *invocation) lock(ctx context.Context, id string, mode state.Mode) (unlock func(), err error) {
	ctx, cancel := context.WithTimeout(ctx, v.p.LockTimeout)
	lock, err := v.store.Acquire(ctx, id, mode)
	cancel()
	if err != nil {
		return nil, err
	}
	if d := lock.Waited(); d > time.Millisecond {
		v.log.Debug("waited for the container's lock", "containerID", id, "waited", d)
	}
	if mode == state.Exclusive {
		v.out.fig.fenced(fence(v.log, lock, id))
		v.held.hold(lock)
	}
	return func() {
		if mode == state.Exclusive {
			v.held.hold(nil)
			_ = lock.ClearNotes()
		}
		switch {
		case v.store.Has(id):
			lock.Release()
		case mode == state.Exclusive:
			lock.Discard()
		default:
			lock.Release()
			_ = v.store.DropLock(id)
		}
	}, nil
}

// locked opens the state folder, takes the container's lock and reads its
// record. unlock releases the lock (see lock).
func (v *invocation) locked(ctx context.Context, readOnly bool, mode state.Mode) (rec *state.Record, unlock func(), err error) {
	if err := v.openStore(readOnly); err != nil {
		return nil, nil, err
	}
	if unlock, err = v.lock(ctx, v.args.ContainerID, mode); err != nil {
		return nil, nil, err
	}
	rec = v.store.Load(v.args.ContainerID)
	v.out.fig.found(v.out.verb, v.out.id, rec)
	return rec, unlock, nil
}

// identify identifies the namespace at path now. One that cannot be
// identified, or is not a network namespace, is logged and taken for none.
func (v *invocation) identify(path string) ns.NetNSID {
	cur, err := v.p.Identify(path)
	if err != nil {
		v.log.Warn("cannot identify netns; taking it for gone", "netns", path, "error", err)
		return ns.NetNSID{}
	}
	return cur
}
