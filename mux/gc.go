package mux

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/delegate"
	"github.com/nicmux/nicmux/state"
)

// errNewerRecords is why GC is not forwarded to the delegates while a
// container recorded by a newer nicmux is in the state folder.
var errNewerRecords = errors.New("GC not forwarded to the chains: a newer nicmux recorded these containers, " +
	"whose interfaces this nicmux cannot list (a delegate's GC would free them)")

// gcForwardLimit bounds GC's forwarding to the delegates, during which ADDs
// wait to record their plans (see state.Store.Barrier): a hung delegate
// must not hold up the node's ADDs. A delegate's GC reads and removes a
// few files (host-local's leases): milliseconds. One cut short has
// collected part of what it would have, and the next GC goes on.
const gcForwardLimit = time.Second

// gc releases every container the runtime no longer lists, then forwards
// GC to the delegates (see Plugin.GC).
func (v *invocation) gc(ctx context.Context) error {
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
	c := collector{v}
	released := 0
	var errs []error
	for _, o := range c.collect(ctx, stale, false) {
		switch {
		case o.Err != nil:
			errs = append(errs, o.error())
		case o.Released && o.Reason != "":
			released++
		}
	}
	_, ferrs := c.forward(ctx, validIDs(valid))
	errs = append(errs, ferrs...)
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

// Collected is what a collection did (in a dry run: would do) with one
// container.
type Collected struct {
	// ContainerID is "" for a failure of the collection as a whole
	// (listing the containers, sweeping the lock files).
	ContainerID string
	// Reason is why the stale predicate called it stale; "" for a folder
	// that held no plan.
	Reason string
	// Interfaces are its interfaces: in a dry run, those not released yet.
	Interfaces []string
	// Released: its interfaces were released and its state removed (in a
	// dry run: would be).
	Released bool
	// Unreadable: its record cannot be read (Err says why), so it was
	// left alone.
	Unreadable bool
	Err        error
}

// error is o's failure, naming its container.
func (o Collected) error() error {
	if o.ContainerID == "" || o.Err == nil {
		return o.Err
	}
	return fmt.Errorf("container %s: %w", o.ContainerID, o.Err)
}

// collector is a GC's walk over the state folder, shared by the GC verb
// and the operator's nicmux gc.
type collector struct{ v *invocation }

// collect releases, as DEL would, every container whose plan stale gives a
// reason for, each under its lock, and removes the folders a crash left
// without a plan. A container whose record cannot be read is never
// released: it is reported. With dryRun it releases nothing, takes no lock
// and says what it would release. It returns an entry for every container
// it released (would release) or failed on.
func (c collector) collect(ctx context.Context, stale func(*state.Record) string, dryRun bool) []Collected {
	ids, err := c.v.store.Containers()
	if err != nil {
		return []Collected{{Err: err}}
	}
	var out []Collected
	for _, id := range ids {
		rec := c.v.store.Load(id)
		c.v.out.fig.found(c.v.out.verb, c.v.out.id, rec)
		o := Collected{ContainerID: id}
		switch rec.Status {
		case state.Missing:
			continue // removed meanwhile
		case state.Empty:
			// A folder a crash left before its plan was recorded: no
			// delegate ran.
		case state.Whole:
			if o.Reason = stale(rec); o.Reason == "" {
				continue
			}
			// A dry run names what a release would release; a real
			// one names the container's interfaces.
			o.Interfaces = rec.IfNames()
			if dryRun {
				o.Interfaces = rec.Unreleased()
			}
		default:
			out = append(out, Collected{ContainerID: id, Unreadable: true, Err: rec.Err})
			continue
		}
		o.Released = dryRun
		if !dryRun {
			o.Released, o.Err = c.collectOne(ctx, id, stale)
		}
		if o.Err != nil || o.Released {
			out = append(out, o)
		}
	}
	if !dryRun {
		if err := c.v.store.SweepLocks(); err != nil {
			out = append(out, Collected{Err: err})
		}
	}
	released, failed := countCollected(out)
	c.v.out.fig.collected(c.v.out.verb, released, failed, dryRun)
	return out
}

// collectOne releases one container under its lock, having read its record
// again: an ADD may have replaced it meanwhile, or a DEL removed it. A
// folder without a plan is removed, and counts as released.
func (c collector) collectOne(ctx context.Context, id string, stale func(*state.Record) string) (released bool, err error) {
	v := c.v
	unlock, err := v.lock(ctx, id, state.Exclusive)
	if err != nil {
		return false, err
	}
	defer unlock()
	rec := v.store.Load(id)
	switch rec.Status {
	case state.Missing:
		return false, nil // a DEL was first: nothing of ours to report
	case state.Empty:
		if err := v.store.Remove(id); err != nil {
			return false, err
		}
		return true, nil
	case state.Whole:
	default:
		return false, rec.Err
	}
	reason := stale(rec)
	if reason == "" {
		return false, nil
	}
	v.log.Info(v.out.verb+": releasing a stale attachment", "containerID", id, "reason", reason, "interfaces", rec.IfNames())
	netns := ""
	if cur, err := v.p.Identify(rec.Plan.NetNS); err == nil && cur.Same(rec.Plan.NetNSID) {
		netns = rec.Plan.NetNS
	}
	if err := v.rel.teardown(ctx, v.rel.toRelease(rec), netns, v.nc.Parallel); err != nil {
		return false, err
	}
	return true, v.store.Remove(id)
}

// forward sends GC to every chain (once per delegate network) of the
// attachment files in the folder that speaks GC (cniVersion 1.1.0 or
// later, no disableGC), and to every IPAM section of every chain without
// disableGC, whatever its version (once per section: see ipamTargets),
// each with the attachments of its network that nicmux still knows; valid
// are the containers the runtime lists. It holds GC's barrier
// (state.Store.Barrier) from the moment it reads the records until the
// delegates are done, so that an ADD's plan is either read here or
// recorded after the delegates' GC; and it gives up after gcForwardLimit.
// It returns the networks it sent GC to (none when nothing speaks GC), and
// the failures.
func (c collector) forward(ctx context.Context, valid []string) (networks []string, errs []error) {
	v := c.v
	all, errs := v.sets.every()
	ifnames := make([]string, len(all))
	for i, ch := range all {
		ifnames[i] = ch.IfName
	}
	chains := onePerNetwork(all, func(ch *conf.Chain) bool { return !ch.DisableGC && conf.AtLeast(ch.CNIVersion, "1.1.0") })
	ipams := ipamTargets(all)
	if len(chains) == 0 && len(ipams) == 0 {
		return nil, errs
	}
	lockCtx, cancel := context.WithTimeout(ctx, v.p.LockTimeout)
	release, err := v.store.Barrier(lockCtx, state.Exclusive)
	cancel()
	if err != nil {
		return nil, append(errs, err)
	}
	defer release()
	live, err := liveAttachments(v.store, valid, ifnames)
	if err != nil {
		return nil, append(errs, err)
	}
	ctx, cancel = context.WithTimeout(ctx, min(v.nc.Timeout, gcForwardLimit))
	defer cancel()
	// Each call files the network it reached ("" for none) and its failure.
	reached := make([]string, len(chains)+len(ipams))
	failed := make([]error, len(reached))
	calls := make([]func(), 0, len(reached))
	for i, ch := range chains {
		calls = append(calls, func() {
			reached[i] = ch.Network
			if err := v.runner.GC(ctx, ch, live(ch.Network)); err != nil {
				failed[i] = fmt.Errorf("%s (network %s): %w", ch.IfName, ch.Network, err)
			}
		})
	}
	for i, a := range ipams {
		k := len(chains) + i
		calls = append(calls, func() { reached[k], failed[k] = c.gcIPAM(ctx, a, live(a.Network)) })
	}
	together(calls...)
	seen := map[string]bool{}
	for i, network := range reached {
		if network != "" && !seen[network] {
			seen[network] = true
			networks = append(networks, network)
		}
		if failed[i] != nil {
			errs = append(errs, failed[i])
		}
	}
	return networks, errs
}

// gcIPAM sends GC to one IPAM section (see delegate.Runner.GCIPAM) and
// returns the network it reached, "" when the IPAM plugin does not speak
// GC: that one is logged and skipped.
func (c collector) gcIPAM(ctx context.Context, a delegate.IPAM, live []types.GCAttachment) (network string, err error) {
	err = c.v.runner.GCIPAM(ctx, a, live)
	if errors.Is(err, delegate.ErrNoGC) {
		c.v.log.Info("GC: an IPAM plugin does not support GC: skipped", "interface", a.IfName, "network", a.Network,
			"delegate", a.Plugin, "ipam", a.Type, "why", err)
		return "", nil
	}
	if err != nil {
		return a.Network, fmt.Errorf("%s (network %s): %w", a.IfName, a.Network, err)
	}
	return a.Network, nil
}

// ipamTargets returns the IPAM sections of the chains without disableGC,
// one per (IPAM type, network, section): chains that share one hold the
// same leases, and one GC collects them.
func ipamTargets(chains []*conf.Chain) []delegate.IPAM {
	var out []delegate.IPAM
	seen := map[string]bool{}
	for _, ch := range chains {
		if ch.DisableGC {
			continue
		}
		for _, a := range delegate.IPAMs(ch) {
			if !seen[a.Key()] {
				seen[a.Key()] = true
				out = append(out, a)
			}
		}
	}
	return out
}

// liveAttachments returns, for a delegate network, the (container ID,
// delegate ifname) pairs nicmux must keep there: every interface of every
// container it has state for. A container whose record cannot be read, or
// that the runtime lists as valid without nicmux having state for it,
// keeps every interface name the attachment files use, in every network.
// A container recorded by a newer nicmux fails it (errNewerRecords):
// which interfaces it holds, in which networks, cannot be known, and the
// delegates' GC would free what they are not told of.
func liveAttachments(store *state.Store, valid, ifnames []string) (func(network string) []types.GCAttachment, error) {
	ids, err := store.Containers()
	if err != nil {
		return nil, err
	}
	byNetwork := map[string][]types.GCAttachment{}
	var unknown, newer []string
	known := map[string]bool{}
	for _, id := range ids {
		known[id] = true
		rec := store.Load(id)
		switch rec.Status {
		case state.Missing, state.Empty:
			continue
		case state.Newer:
			newer = append(newer, id)
		case state.Whole:
		default:
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
	if len(newer) > 0 {
		return nil, fmt.Errorf("%w: %s", errNewerRecords, strings.Join(newer, ", "))
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

// countCollected counts the containers a collection released, and those
// it failed to release (a failure of the collection as a whole, or an
// unreadable record reported, is neither).
func countCollected(out []Collected) (released, failed int) {
	for _, o := range out {
		switch {
		case o.ContainerID == "" || o.Unreadable:
		case o.Err != nil:
			failed++
		case o.Released && o.Reason != "":
			released++
		}
	}
	return released, failed
}
