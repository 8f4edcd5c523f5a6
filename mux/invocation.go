package mux

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/delegate"
	"github.com/nicmux/nicmux/state"
)

// fenceWait bounds the wait for the plugins of a killed nicmux to die.
const fenceWait = 5 * time.Second

// verb is one run of a CNI verb: the parsed configuration, the log, the
// store and the delegate runner every verb starts from.
type verb struct {
	p      *Plugin
	name   string
	args   *skel.CmdArgs
	nc     *conf.NetConf
	log    *slog.Logger
	vl     *verbLog
	store  *state.Store // nil until openStore
	runner *delegate.Runner

	// The container lock held, and the plugin processes started, so that
	// a successor can kill them should nicmux be killed (see noteProc).
	mu    sync.Mutex
	lock  *state.Lock
	procs []delegate.Proc

	// files is current's reading of each attachment set, once per verb.
	filesMu sync.Mutex
	files   map[string][]*conf.Chain
}

// do runs one verb: it reads nicmux's configuration, opens the log, runs f,
// and logs the verb's outcome.
func (p *Plugin) do(ctx context.Context, name string, args *skel.CmdArgs, f func(*verb, context.Context) error) (err error) {
	nc, err := conf.ParseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	start := p.Start
	if start.IsZero() {
		start = p.now()
	}
	log, closeLog := p.logger(nc)
	defer closeLog()
	v := &verb{p: p, name: name, args: args, nc: nc, log: log,
		vl: &verbLog{log: log, verb: name, id: args.ContainerID, netns: args.Netns, start: start}}
	v.vl.mark("parsed")
	v.runner = &delegate.Runner{
		Path:       splitPath(args.Path),
		Exec:       p.Exec,
		Stderr:     p.stderr(),
		Timeout:    nc.Timeout,
		Prestart:   nc.Prestart,
		AheadLimit: p.AheadLimit,
		Observe:    v.vl.call,
		Started:    v.noteProc,
	}
	defer func() {
		v.runner.Close()
		v.store.Close()
		v.vl.done(err)
	}()
	return f(v, ctx)
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

// openStore opens the state folder; CHECK opens it read-only.
func (v *verb) openStore(readOnly bool) error {
	var err error
	if readOnly {
		v.store, err = state.OpenReadOnly(v.nc.StateDir)
	} else {
		v.store, err = state.Open(v.nc.StateDir)
	}
	return err
}

// locked runs f holding container id's lock. An exclusive holder first
// kills what a killed predecessor left running, and notes its own plugin
// processes in the lock file while it holds it. When f is done, every
// plugin process has ended; if the container's state is gone, so is its
// lock file.
func (v *verb) locked(ctx context.Context, id string, mode state.Mode, f func() error) error {
	ctx, cancel := v.lockCtx(ctx)
	lock, err := v.store.Acquire(ctx, id, mode)
	cancel()
	if err != nil {
		return err
	}
	v.vl.mark("locked")
	if d := lock.Waited(); d > time.Millisecond {
		v.log.Debug("waited for the container's lock", "containerID", id, "waited", d)
	}
	if mode == state.Exclusive {
		v.fence(lock, id)
		v.attach(lock)
	}
	defer func() {
		v.runner.Close() // every process started for the container has ended
		if mode == state.Exclusive {
			v.attach(nil)
			_ = lock.ClearNotes()
		}
		if !v.store.Has(id) {
			lock.Discard()
		} else {
			lock.Release()
		}
	}()
	return f()
}

// fence kills the plugins a killed predecessor left running, noted in the
// lock file, before anything else acts on the container.
func (v *verb) fence(lock *state.Lock, id string) {
	notes, err := lock.Notes()
	if err != nil || strings.TrimSpace(notes) == "" {
		return
	}
	killed, err := delegate.Fence(notes, fenceWait)
	if len(killed) > 0 || err != nil {
		v.log.Warn("a nicmux killed mid-verb left plugins running: killed their process groups", "containerID", id,
			"groups", len(killed), "error", err)
	}
	_ = lock.ClearNotes()
}

// attach makes lock the one plugin processes are noted in (nil: none),
// noting those started before.
func (v *verb) attach(lock *state.Lock) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.lock = lock
	if lock != nil {
		for _, p := range v.procs {
			_ = lock.Note(p.Note())
		}
	}
	v.procs = nil
}

// noteProc is the runner's Started: it notes a plugin process in the held
// lock, or keeps it for the lock to come.
func (v *verb) noteProc(p delegate.Proc) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.lock != nil {
		_ = v.lock.Note(p.Note())
		return
	}
	v.procs = append(v.procs, p)
}

// loadAttachments reads the attachment file chosen by the set name.
func (v *verb) loadAttachments(set string) (*conf.Attachments, error) {
	att, err := conf.LoadSet(v.nc.Attachments, set, conf.Defaults{IfName: v.args.IfName, ListName: v.nc.Name, CNIVersion: v.nc.CNIVersion})
	if err != nil {
		return nil, err
	}
	for _, w := range att.Warnings {
		v.log.Warn(w)
	}
	return att, nil
}

// current returns the attachment file's chains as they are now, for
// releases that cannot use what was recorded; nil when the file does not
// load (the reason is logged). Each set is read once per verb.
func (v *verb) current(set string) []*conf.Chain {
	v.filesMu.Lock()
	defer v.filesMu.Unlock()
	if chains, ok := v.files[set]; ok {
		return chains
	}
	var chains []*conf.Chain
	if att, err := v.loadAttachments(set); err != nil {
		v.log.Warn("the attachment file does not load: no fallback for interfaces whose recorded chain cannot be released", "set", set, "error", err)
	} else {
		chains = att.Interfaces
	}
	if v.files == nil {
		v.files = map[string][]*conf.Chain{}
	}
	v.files[set] = chains
	return chains
}

// lockCtx bounds a wait for one of the store's locks.
func (v *verb) lockCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, v.p.lockTimeout())
}

// warmHeads starts the first plugin of each group's first chain, groups
// being those the verb will run: before the verb takes its lock, so that
// the plugins start while it waits.
func (v *verb) warmHeads(name string, atts []*attachment, groups [][]int, netns string) {
	warm := v.warm(name, netns)
	for _, g := range groups {
		if a := atts[g[0]]; !a.released {
			warm(a)
		}
	}
}

// warm returns runGroups' warm hook for verb on netns: the next chain's
// first plugin starts while the chain before it runs.
func (v *verb) warm(name, netns string) func(*attachment) {
	return func(a *attachment) {
		if a.chain != nil && (name != "CHECK" || delegatesCheck(a.chain)) {
			v.runner.Warm(name, a.chain, a.env(netns))
		}
	}
}
