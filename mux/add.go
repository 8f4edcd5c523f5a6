package mux

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/delegate"
	"github.com/nicmux/nicmux/state"
)

// invocation is what every verb starts from: the parsed configuration, the
// logger, the store and the delegate runner.
type invocation struct {
	args   *skel.CmdArgs
	nc     *conf.NetConf
	log    *slog.Logger
	store  *state.Store
	runner *delegate.Runner
	vl     *verbLog
}

func (p *Plugin) begin(verb string, args *skel.CmdArgs) (*invocation, func(), error) {
	nc, err := conf.ParseNetConf(args.StdinData)
	if err != nil {
		return nil, func() {}, err
	}
	log, closeLog := p.logger(nc)
	inv := &invocation{
		args:   args,
		nc:     nc,
		log:    log,
		store:  &state.Store{Dir: nc.StateDir},
		runner: p.runner(args, nc),
		vl:     &verbLog{log: log, verb: verb, id: args.ContainerID, start: p.now()},
	}
	inv.runner.Observe = inv.vl.process
	return inv, closeLog, nil
}

// do runs one verb: it reads nicmux's configuration, opens the log, and logs
// the verb's outcome.
func (p *Plugin) do(verb string, args *skel.CmdArgs, f func(*invocation) error) (err error) {
	inv, closeLog, err := p.begin(verb, args)
	defer closeLog()
	if err != nil {
		return err
	}
	defer func() { inv.vl.done(err) }()
	return f(inv)
}

// locked runs f holding the store lock (shared) and the container's lock.
// f reports whether the container's state is gone, so that its lock file
// goes too.
func (p *Plugin) locked(ctx context.Context, inv *invocation, f func() (gone bool, err error)) error {
	unlock, err := p.lock(ctx, inv.store, inv.args.ContainerID)
	if err != nil {
		return err
	}
	gone, err := f()
	unlock(gone)
	return err
}

// loadAttachments reads the attachment file chosen by the set name.
func (inv *invocation) loadAttachments(set string) (*conf.Attachments, error) {
	file, err := conf.ResolveSet(inv.nc.Attachments, set)
	if err != nil {
		return nil, err
	}
	return conf.LoadAttachments(file, conf.Defaults{IfName: inv.args.IfName, ListName: inv.nc.Name, CNIVersion: inv.nc.CNIVersion})
}

// parallel reports whether independent chains run at the same time: the
// default, unless the configuration says "parallel": false.
func (inv *invocation) parallel() bool {
	return inv.nc.Parallel == nil || *inv.nc.Parallel
}

func (inv *invocation) env(ifname, netns string) delegate.Env {
	return delegate.Env{
		ContainerID:    inv.args.ContainerID,
		NetNS:          netns,
		IfName:         ifname,
		CNIArgs:        inv.args.Args,
		CapabilityArgs: inv.nc.RuntimeConfig,
	}
}

// Add attaches every interface of the attachment file and prints the merged
// result. On any failure it releases what it attached and leaves no state
// behind.
func (p *Plugin) Add(ctx context.Context, args *skel.CmdArgs) error {
	return p.do("ADD", args, func(inv *invocation) error { return p.add(ctx, inv) })
}

func (p *Plugin) add(ctx context.Context, inv *invocation) error {
	// The namespace is identified while the attachment file is read.
	current := identifyAsync(inv.args.Netns)
	set := conf.SetFromArgs(inv.args.Args)
	att, err := inv.loadAttachments(set)
	if err != nil {
		return err
	}
	// The first delegates start now: their start-up overlaps identifying
	// the namespace, the lock and the plan, and they get their
	// configuration once the plan is on disk.
	groups := schedule(att.Interfaces, inv.parallel())
	calls := startCalls(groups, len(att.Interfaces), func(k int) *delegate.Call {
		chain := att.Interfaces[k]
		return inv.runner.Start(ctx, "ADD", chain, inv.env(chain.IfName, inv.args.Netns))
	})
	defer calls.abort()
	nsID, err := current()
	if err != nil {
		return withCode(types.ErrInvalidEnvironmentVariables, fmt.Errorf("CNI_NETNS: %w", err))
	}
	if nsID.IsZero() {
		return withCode(types.ErrInvalidEnvironmentVariables, fmt.Errorf("CNI_NETNS: no network namespace at %q", inv.args.Netns))
	}
	return p.locked(ctx, inv, func() (bool, error) {
		old, err := inv.store.LoadContainer(inv.args.ContainerID)
		switch {
		case errors.Is(err, state.ErrNotFound):
		case err != nil:
			return false, err
		default:
			if err := p.replaceStale(ctx, inv, old, nsID); err != nil {
				return false, err
			}
		}
		return p.attach(ctx, inv, att, set, nsID, groups, calls)
	})
}

// attach plans, runs the chains, completes and prints the merged result, or
// rolls back. It reports whether the container's state is gone.
func (p *Plugin) attach(ctx context.Context, inv *invocation, att *conf.Attachments, set string, nsID state.NetNSID, groups [][]int, calls *calls) (gone bool, err error) {
	c, recs, err := p.plan(inv, att, set, nsID)
	if err != nil {
		return false, err
	}
	// The record that marks the container complete is written while the
	// chains run; complete only puts it in place.
	done := *c
	done.Complete = true
	finished := later(func() (*state.Pending, error) { return inv.store.PrepareContainer(&done) })
	results, toRelease, saved, err := p.addChains(inv, att.Interfaces, recs, groups, calls)
	var merged types.Result
	if err == nil {
		merged, err = p.complete(inv, c, results, saved, finished)
	} else {
		_ = saved() // the rollback needs the results on disk, should it fail
		_ = discard(finished)
	}
	if err != nil {
		if rbErr := p.rollback(ctx, inv, c.Interfaces, toRelease, results); rbErr != nil {
			return false, errors.Join(err, fmt.Errorf("rollback: %w", rbErr))
		}
		return true, err
	}
	warnAddressOrder(inv.log, merged, c.Interfaces)
	return false, merged.PrintTo(p.stdout())
}

// plan records, before any delegate gets its configuration, the container
// and each interface with the exact chain it gets: whatever happens next, a
// later DEL or ADD knows what may need releasing.
func (p *Plugin) plan(inv *invocation, att *conf.Attachments, set string, nsID state.NetNSID) (c *state.Container, recs []*state.Interface, err error) {
	args := inv.args
	c = &state.Container{
		ContainerID:    args.ContainerID,
		IfName:         args.IfName,
		NetNS:          args.Netns,
		NetNSID:        nsID,
		ListName:       inv.nc.Name,
		CNIVersion:     inv.nc.CNIVersion,
		AttachmentFile: att.File,
		Set:            set,
		Created:        p.now().UTC(),
	}
	recs = make([]*state.Interface, len(att.Interfaces))
	for i, chain := range att.Interfaces {
		cfg, err := chain.ConfList()
		if err != nil {
			return nil, nil, fmt.Errorf("%s: encoding the chain: %w", chain.IfName, err)
		}
		c.Interfaces = append(c.Interfaces, chain.IfName)
		recs[i] = &state.Interface{
			ContainerID:    args.ContainerID,
			IfName:         chain.IfName,
			Network:        chain.Network,
			CNIVersion:     chain.CNIVersion,
			Config:         cfg,
			NetNS:          args.Netns,
			NetNSID:        nsID,
			CNIArgs:        args.Args,
			CapabilityArgs: inv.nc.RuntimeConfig,
		}
	}
	// The folder is made, then the records are written (each fsynced, then
	// renamed into place) while the folder's entry is synced, then the
	// folder itself: only then does any delegate get its configuration
	// (those started ahead start up meanwhile). A crash in between leaves
	// at worst a container without its record, which GC and a later ADD
	// treat as never attached, as it is.
	id := args.ContainerID
	if err := inv.store.MakeContainerDir(id); err != nil {
		return nil, nil, err
	}
	errs := make([]error, len(recs)+2)
	each(len(recs)+2, true, func(i int) {
		switch i {
		case len(recs):
			errs[i] = inv.store.SaveContainer(c)
		case len(recs) + 1:
			errs[i] = inv.store.SyncContainers()
		default:
			errs[i] = inv.store.SaveInterface(recs[i])
		}
	})
	err = errors.Join(errs...)
	if err == nil {
		err = inv.store.Sync(id)
	}
	if err != nil {
		return nil, nil, errors.Join(err, inv.store.RemoveContainer(id))
	}
	return c, recs, nil
}

// addChains runs every chain's ADD (see schedule for what runs at the same
// time) and records each result in the background. It returns the results
// (partial ones for failed chains) and, per chain, the part that may hold
// resources (nil for a chain that never ran), for the rollback; saved waits
// for the records and reports their failures. Failures come back in file
// order.
func (p *Plugin) addChains(inv *invocation, chains []*conf.Chain, recs []*state.Interface, groups [][]int, calls *calls) (results []types.Result, toRelease []*conf.Chain, saved func() error, err error) {
	results = make([]types.Result, len(chains))
	toRelease = make([]*conf.Chain, len(chains))
	errs := make([]error, len(chains))
	saveErrs := make([]error, len(chains))
	var saves sync.WaitGroup
	runGroups(groups, func(k int) bool {
		chain := chains[k]
		start := time.Now()
		res, err := calls.take(k).Run(nil)
		inv.vl.step(chain.IfName, start)
		results[k] = res
		if err != nil {
			toRelease[k] = delegate.Prefix(chain, delegate.Attempted(err))
			errs[k] = fmt.Errorf("%s: %w", chain.IfName, err)
			return false
		}
		toRelease[k] = chain
		// Recorded at once, so that a rollback that fails, or a crash
		// before the ADD completes, leaves the result for the DEL that
		// finishes the job; in the background, so that its fsync overlaps
		// the next chain.
		saves.Add(1)
		go func() {
			defer saves.Done()
			if err := saveResult(inv.store, recs[k], res); err != nil {
				saveErrs[k] = fmt.Errorf("%s: %w", chain.IfName, err)
			}
		}()
		return true
	})
	saved = func() error {
		saves.Wait()
		return errors.Join(saveErrs...)
	}
	return results, toRelease, saved, errors.Join(errs...)
}

// complete merges the results and, once they are all on disk, puts the
// record marking the container complete in place; one sync of the folder
// makes every rename durable. Should a crash keep the mark but not a
// result, CHECK reports the missing result rather than pass.
func (p *Plugin) complete(inv *invocation, c *state.Container, results []types.Result, saved func() error, finished func() (*state.Pending, error)) (types.Result, error) {
	merged, err := Merge(results, c.Interfaces, inv.args.Netns, inv.nc.CNIVersion)
	if err == nil {
		err = saved()
	}
	if err != nil {
		// Not complete: the plan's record stays, for the rollback.
		return nil, errors.Join(err, discard(finished))
	}
	pending, err := finished()
	if err == nil {
		err = pending.Commit()
	}
	if err == nil {
		err = inv.store.Sync(c.ContainerID)
	}
	if err != nil {
		return nil, err
	}
	return merged, nil
}

// discard waits for the record finished writes and removes it.
func discard(finished func() (*state.Pending, error)) error {
	pending, _ := finished() // nil if it could not be written
	return pending.Discard()
}

func saveResult(store *state.Store, rec *state.Interface, res types.Result) error {
	b, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encoding result: %w", err)
	}
	rec.Result = b
	return store.SaveInterface(rec)
}

// rollback releases, last first, every chain that ran (a failed chain as far
// as it got, with the partial result it reached; nil entries never ran) and
// removes the container's state once all are released. It keeps the state
// of any chain it could not release, so a later ADD or DEL can try again.
func (p *Plugin) rollback(ctx context.Context, inv *invocation, ifnames []string, chains []*conf.Chain, results []types.Result) error {
	var errs []error
	for i := len(chains) - 1; i >= 0; i-- {
		if chain := chains[i]; chain != nil && len(chain.Plugins) > 0 {
			if err := inv.runner.Del(ctx, chain, inv.env(ifnames[i], inv.args.Netns), results[i]); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", ifnames[i], err))
				continue
			}
		}
		if err := inv.store.UnlinkInterface(inv.args.ContainerID, ifnames[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		inv.log.Error("rollback left state behind for a later DEL or ADD", "containerID", inv.args.ContainerID, "error", errors.Join(errs...))
		return errors.Join(append(errs, inv.store.Sync(inv.args.ContainerID))...)
	}
	return inv.store.RemoveContainer(inv.args.ContainerID)
}

// replaceStale deals with an ADD for a container that already has state. If
// the recorded interfaces are live in the same namespace, the ADD is refused
// and nothing changes. Otherwise the state is stale (the namespace was
// recreated, as Nomad does after a failed CHECK or a reboot, or the earlier
// ADD never completed): the old delegates are released with their stored
// configuration, so the new ADD starts clean.
func (p *Plugin) replaceStale(ctx context.Context, inv *invocation, old *state.Container, nsID state.NetNSID) error {
	if old.Complete && old.NetNSID.Same(nsID) {
		if live := liveLinks(inv.args.Netns, old.Interfaces); len(live) > 0 {
			return withCode(ErrAlreadyAttached, fmt.Errorf(
				"container %s is already attached: %s live in netns %s; DEL it first",
				old.ContainerID, strings.Join(live, ", "), inv.args.Netns))
		}
	}
	reason := "the earlier ADD did not complete"
	if !old.NetNSID.Same(nsID) {
		reason = "the network namespace was recreated"
	} else if old.Complete {
		reason = "none of the recorded interfaces is left in the namespace"
	}
	inv.log.Warn("releasing stale attachment before ADD", "containerID", old.ContainerID, "reason", reason, "interfaces", old.Interfaces)
	if err := p.release(ctx, inv, old, func() (state.NetNSID, error) { return nsID, nil }); err != nil {
		return fmt.Errorf("releasing the stale attachment of container %s (%s): %w", old.ContainerID, reason, err)
	}
	return nil
}

// liveLinks returns which of ifnames exist in the namespace at path.
func liveLinks(path string, ifnames []string) []string {
	h, err := openNS(path)
	if err != nil {
		return nil
	}
	defer h.Close()
	var live []string
	for _, ifname := range ifnames {
		if h.linkExists(ifname) {
			live = append(live, ifname)
		}
	}
	return live
}
