package mux

import (
	"context"
	"log/slog"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/state"
)

// Op is an operator's command (nicmux gc, nicmux forget) run the way a verb
// runs: with nicmux's entry, its log and one log line for the command, the
// container locks and the one teardown, so that it is safe beside a
// running runtime and shows in the log. Package ops holds what the
// commands decide; Op is what they act through.
type Op struct{ v *invocation }

// StartOp starts the operator's command name (as its log line names it) on
// container id ("" for none), with nicmux's entry as the runtime hands it
// over (the list's name and cniVersion in it) and the folders that hold
// the plugin binaries. End it with End.
func (p *Plugin) StartOp(name, id string, entry []byte, cniPath []string) (*Op, error) {
	v, err := p.start(name, &skel.CmdArgs{ContainerID: id, StdinData: entry, Path: strings.Join(cniPath, ":")})
	if err != nil {
		return nil, err
	}
	return &Op{v}, nil
}

// End writes the command's log line, err being its outcome.
func (o *Op) End(err error) { o.v.finish(err) }

// NetConf is nicmux's entry.
func (o *Op) NetConf() *conf.NetConf { return o.v.nc }

// Log is the entry's log.
func (o *Op) Log() *slog.Logger { return o.v.log }

// Open opens the state folder; readOnly for a command that only reads.
func (o *Op) Open(readOnly bool) (*state.Store, error) {
	err := o.v.openStore(readOnly)
	return o.v.store, err
}

// Lock takes container id's lock exclusively, as DEL does (see
// invocation.lock).
func (o *Op) Lock(ctx context.Context, id string) (unlock func(), err error) {
	return o.v.lock(ctx, id, state.Exclusive)
}

// Collect releases, as DEL would, every container whose plan stale gives a
// reason for, each under its lock, as the GC verb does; with dryRun it
// only says what it would release (see collector.collect).
func (o *Op) Collect(ctx context.Context, stale func(*state.Record) string, dryRun bool) []Collected {
	return collector{o.v}.collect(ctx, stale, dryRun)
}

// ForwardGC forwards GC to the attachment files' chains that speak it
// (cniVersion 1.1.0 or later) and to every chain's IPAM plugin that speaks
// it, whatever the chain's version, with the attachments the state folder
// still records, under the barrier against ADDs recording their plans, as
// the GC verb does. It returns the delegate networks it forwarded to, none
// when nothing speaks GC, and the failures.
func (o *Op) ForwardGC(ctx context.Context) (networks []string, errs []error) {
	return collector{o.v}.forward(ctx, nil)
}

// InterfaceRelease is what a release did with one of a container's
// interfaces.
type InterfaceRelease struct {
	// Planned is its plan (IfName set even when the plan is lost), Result
	// its result: nil when unknown.
	Planned state.Planned
	Result  types.Result
	// Now: it was released by this release.
	Now bool
	// Err says why it was not released: it is kept.
	Err error
	// Abandoned says why nothing could release it: it is dropped with the
	// record.
	Abandoned error
}

// Release releases the interfaces of rec, read under the container's lock
// (Lock), exactly as DEL does, in netns ("" when the namespace ADD
// attached is gone). It does not remove the record: that is the caller's
// to decide. It returns what it did with each interface, and the
// failures.
func (o *Op) Release(ctx context.Context, rec *state.Record, netns string) ([]InterfaceRelease, error) {
	v := o.v
	v.out.set = rec.Set()
	nics := v.rel.toRelease(rec)
	v.out.nics = nics
	before := make([]bool, len(nics))
	for i, n := range nics {
		before[i] = n.released
	}
	err := v.rel.teardown(ctx, nics, netns, v.nc.Parallel)
	out := make([]InterfaceRelease, len(nics))
	for i, n := range nics {
		planned := n.planned
		planned.IfName = n.ifname
		out[i] = InterfaceRelease{Planned: planned, Result: n.result, Now: n.released && !before[i] && n.abandoned == nil,
			Err: n.err, Abandoned: n.abandoned}
	}
	return out, err
}
