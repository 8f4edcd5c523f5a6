package mux

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/ns"
	"github.com/nicmux/nicmux/state"
)

// gcForwardLimit bounds GC's forwarding to the delegates, during which ADDs
// wait to record their plans (see state.Store.Barrier): a hung delegate
// must not hold up the node's ADDs. A delegate's GC reads and removes a
// few files (host-local's leases): milliseconds. One cut short has
// collected part of what it would have, and the next GC goes on.
const gcForwardLimit = time.Second

// GC (spec 1.1) releases, as DEL would, every container of this network
// whose attachment (container ID, runtime ifname) the runtime no longer
// lists as valid, then forwards GC to every chain of the attachment files
// with the attachments nicmux still knows, so that a delegate never
// collects a live one. A valid attachment is never collected, whatever
// state nicmux has or lacks for it: a container whose record cannot be read
// is neither released nor left out of what the delegates are told is
// valid. It goes on past failures and reports them all.
func (p *Plugin) GC(ctx context.Context, args *skel.CmdArgs) error {
	return p.do(ctx, "GC", args, (*verb).gc)
}

func (v *verb) gc(ctx context.Context) error {
	if v.nc.DisableGC {
		v.log.Info("GC disabled by disableGC")
		return nil
	}
	valid := map[types.GCAttachment]bool{}
	for _, a := range v.nc.GCValid() {
		valid[a] = true
	}
	if !conf.GCValidGiven(v.args.StdinData) {
		v.log.Warn("GC without cni.dev/valid-attachments: every attachment of this network is collected")
	}
	if err := v.openStore(false); err != nil {
		return err
	}
	stale := func(rec *state.Record) string {
		if rec.Plan.ListName == v.nc.Name && !valid[types.GCAttachment{ContainerID: rec.ContainerID, IfName: rec.Plan.IfName}] {
			return "the runtime no longer lists it"
		}
		return ""
	}
	released := 0
	var errs []error
	for _, c := range v.collect(ctx, stale) {
		switch {
		case c.err != nil:
			errs = append(errs, c.error())
		case c.released && c.reason != "":
			released++
		}
	}
	errs = append(errs, v.forward(ctx, validIDs(valid))...)
	v.log.Info("GC", "released", released)
	return errors.Join(errs...)
}

func validIDs(valid map[types.GCAttachment]bool) []string {
	var ids []string
	for a := range valid {
		ids = append(ids, a.ContainerID)
	}
	return ids
}

// collected is what collect did with one container.
type collected struct {
	id string
	// reason is why the predicate called it stale; "" for a folder that
	// held no plan, or a record that cannot be read.
	reason  string
	ifnames []string // its interfaces, as the record read first names them
	// released: its interfaces were released and its state removed.
	released bool
	// unreadable: its record cannot be read (err says why), so it was
	// left alone.
	unreadable bool
	err        error // why it was not released
}

// error is c's failure, naming its container.
func (c collected) error() error {
	if c.id == "" || c.err == nil {
		return c.err
	}
	return fmt.Errorf("container %s: %w", c.id, c.err)
}

// collect releases, as DEL would, every container with state for which
// stale gives a reason, each under its lock, and removes the folders a
// crash left without a plan. A container whose record cannot be read is
// never released: its error is reported. It returns an entry for every
// container it released or failed on (a failure to list the containers or
// to sweep the lock files has no ID).
func (v *verb) collect(ctx context.Context, stale func(*state.Record) string) []collected {
	ids, err := v.store.Containers()
	if err != nil {
		return []collected{{err: err}}
	}
	var out []collected
	for _, id := range ids {
		rec := v.store.Load(id)
		c := collected{id: id}
		switch rec.Status {
		case state.Missing, state.Empty:
			// A folder a crash left before its plan was recorded: no
			// delegate ran.
		case state.PlanLost, state.Unreadable, state.Unsafe, state.Failed:
			out = append(out, collected{id: id, unreadable: true, err: rec.Err})
			continue
		default:
			if c.reason = stale(rec); c.reason == "" {
				continue
			}
			c.ifnames = rec.IfNames()
		}
		if c.released, c.err = v.collectOne(ctx, id, stale); c.err != nil || c.released {
			out = append(out, c)
		}
	}
	if err := v.store.SweepLocks(); err != nil {
		out = append(out, collected{err: err})
	}
	return out
}

// collectOne releases one container under its lock, having read its record
// again: an ADD may have replaced it meanwhile, or a DEL removed it. A
// folder without a plan is removed, and counts as released.
func (v *verb) collectOne(ctx context.Context, id string, stale func(*state.Record) string) (released bool, err error) {
	err = v.locked(ctx, id, state.Exclusive, func() error {
		rec := v.store.Load(id)
		switch rec.Status {
		case state.Missing:
			return nil // a DEL was first: nothing of ours to report
		case state.Empty:
			if err := v.store.Remove(id); err != nil {
				return err
			}
			released = true
			return nil
		case state.PlanLost, state.Unreadable, state.Unsafe, state.Failed:
			return rec.Err
		}
		reason := stale(rec)
		if reason == "" {
			return nil
		}
		v.log.Info(v.name+": releasing a stale attachment", "containerID", id, "reason", reason, "interfaces", rec.IfNames())
		netns := ""
		if cur, err := ns.Identify(rec.Plan.NetNS); err == nil && cur.Same(rec.Plan.NetNSID) {
			netns = rec.Plan.NetNS
		}
		if err := v.teardown(ctx, v.toRelease(rec), netns, v.nc.Parallel); err != nil {
			return err
		}
		released = true
		return v.store.Remove(id)
	})
	return released, err
}

// forward sends GC to every chain (once per delegate network) of the
// attachment files in the folder, each with the attachments of its network
// that nicmux still knows. It holds GC's barrier (state.Store.Barrier)
// from the moment it reads the records until the delegates are done, so
// that an ADD's plan is either read here or recorded after the delegates'
// GC; and it gives up after gcForwardLimit.
func (v *verb) forward(ctx context.Context, valid []string) []error {
	all, errs := v.everyChain()
	ifnames := make([]string, len(all))
	for i, c := range all {
		ifnames[i] = c.IfName
	}
	chains := onePerNetwork(all, func(c *conf.Chain) bool { return !c.DisableGC && conf.AtLeast(c.CNIVersion, "1.1.0") })
	if len(chains) == 0 {
		return errs
	}
	lockCtx, cancel := v.lockCtx(ctx)
	release, err := v.store.Barrier(lockCtx, state.Exclusive)
	cancel()
	if err != nil {
		return append(errs, err)
	}
	defer release()
	live, err := v.liveAttachments(valid, ifnames)
	if err != nil {
		return append(errs, err)
	}
	ctx, cancel = context.WithTimeout(ctx, min(v.nc.Timeout, gcForwardLimit))
	defer cancel()
	failed := make([]error, len(chains))
	calls := make([]func(), len(chains))
	for i, c := range chains {
		calls[i] = func() {
			if err := v.runner.GC(ctx, c, live(c.Network)); err != nil {
				failed[i] = fmt.Errorf("%s (network %s): %w", c.IfName, c.Network, err)
			}
		}
	}
	together(calls...)
	for _, err := range failed {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// liveAttachments returns, for a delegate network, the (container ID,
// delegate ifname) pairs nicmux must keep there: every interface of every
// container it has state for. A container whose record cannot be read, or
// that the runtime lists as valid without nicmux having state for it,
// keeps every interface name the attachment files use, in every network.
func (v *verb) liveAttachments(valid, ifnames []string) (func(network string) []types.GCAttachment, error) {
	ids, err := v.store.Containers()
	if err != nil {
		return nil, err
	}
	byNetwork := map[string][]types.GCAttachment{}
	var unknown []string
	known := map[string]bool{}
	for _, id := range ids {
		known[id] = true
		rec := v.store.Load(id)
		if rec.Status == state.Missing || rec.Status == state.Empty {
			continue
		}
		if rec.Status != state.Whole {
			unknown = append(unknown, id)
		}
		for _, it := range rec.Interfaces {
			ifnames = append(ifnames, it.IfName)
			if it.Network == "" {
				unknown = append(unknown, id)
				continue
			}
			byNetwork[it.Network] = append(byNetwork[it.Network], types.GCAttachment{ContainerID: id, IfName: it.IfName})
		}
	}
	for _, id := range valid {
		if !known[id] {
			unknown = append(unknown, id)
		}
	}
	return func(network string) []types.GCAttachment {
		out := append([]types.GCAttachment{}, byNetwork[network]...)
		seen := map[types.GCAttachment]bool{}
		for _, a := range out {
			seen[a] = true
		}
		for _, id := range unknown {
			for _, ifname := range ifnames {
				if a := (types.GCAttachment{ContainerID: id, IfName: ifname}); !seen[a] {
					seen[a] = true
					out = append(out, a)
				}
			}
		}
		return out
	}, nil
}

// everyChain returns the chains of the attachment file and of every set in
// its folder, in order, and the failures of the files that do not load.
// Each set is loaded as ADD loads it (conf.LoadSet): one that leads out of
// the folder is a failure, never a chain to call.
func (v *verb) everyChain() ([]*conf.Chain, []error) {
	names := []string{""} // the attachment file itself
	dir := filepath.Dir(v.nc.Attachments)
	for _, name := range conf.AvailableSets(dir) {
		if filepath.Join(dir, name+".yaml") != v.nc.Attachments {
			names = append(names, name)
		}
	}
	d := conf.Defaults{IfName: "eth0", ListName: v.nc.Name, CNIVersion: v.nc.CNIVersion}
	var chains []*conf.Chain
	var errs []error
	for _, name := range names {
		att, err := conf.LoadSet(v.nc.Attachments, name, d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		chains = append(chains, att.Interfaces...)
	}
	return chains, errs
}

// onePerNetwork returns, among the chains keep accepts, the first of each
// delegate network: GC and STATUS go to a network once.
func onePerNetwork(chains []*conf.Chain, keep func(*conf.Chain) bool) []*conf.Chain {
	var out []*conf.Chain
	seen := map[string]bool{}
	for _, c := range chains {
		if !seen[c.Network] && keep(c) {
			seen[c.Network] = true
			out = append(out, c)
		}
	}
	return out
}
