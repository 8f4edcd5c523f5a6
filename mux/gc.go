package mux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/state"
)

// GC (spec 1.1) releases, as DEL would, every container of this network whose
// attachment (container ID, runtime ifname) the runtime no longer lists as
// valid, then forwards GC to every chain of the attachment sets in use with
// that chain's own valid (container ID, delegate ifname) pairs, so that a
// delegate never collects a live attachment. It goes on past failures and
// reports them all. GC holds the store lock exclusively: no ADD, CHECK or
// DEL runs meanwhile.
func (p *Plugin) GC(ctx context.Context, args *skel.CmdArgs) error {
	return p.do("GC", args, func(inv *invocation) error { return p.gc(ctx, inv) })
}

func (p *Plugin) gc(ctx context.Context, inv *invocation) error {
	args := inv.args
	if inv.nc.DisableGC {
		inv.log.Info("GC disabled by disableGC")
		return nil
	}
	valid := map[types.GCAttachment]bool{}
	for _, a := range inv.nc.GCValid() {
		valid[a] = true
	}
	if !conf.GCValidGiven(args.StdinData) {
		inv.log.Warn("GC without cni.dev/valid-attachments: every attachment of this network is collected")
	}

	lockCtx, cancel := context.WithTimeout(ctx, p.lockTimeout())
	unlockStore, err := inv.store.LockStore(lockCtx, true)
	cancel()
	if err != nil {
		return err
	}
	defer unlockStore()

	ids, err := inv.store.Containers()
	if err != nil {
		return err
	}
	var errs []error
	live := map[string][]types.GCAttachment{} // delegate network -> valid pairs
	sets := map[string]bool{"": true}
	released := 0
	for _, id := range ids {
		keep, set, pairs, err := p.gcContainer(ctx, inv, id, valid)
		if err != nil {
			errs = append(errs, fmt.Errorf("container %s: %w", id, err))
		}
		if keep {
			sets[set] = true
			for network, ps := range pairs {
				live[network] = append(live[network], ps...)
			}
		} else if err == nil {
			released++
		}
	}
	if err := inv.store.SweepLocks(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, p.forwardGC(ctx, inv, sets, live)...)
	inv.log.Info("GC", "containers", len(ids), "released", released)
	return errors.Join(errs...)
}

// gcContainer releases one container unless the runtime lists it as valid
// (or it belongs to another network). It returns whether the container
// stays, with its attachment set and its delegate pairs by network.
func (p *Plugin) gcContainer(ctx context.Context, inv *invocation, id string, valid map[types.GCAttachment]bool) (bool, string, map[string][]types.GCAttachment, error) {
	c, err := inv.store.LoadContainer(id)
	if errors.Is(err, state.ErrNotFound) {
		// A folder without a container record: an ADD crashed before it
		// recorded anything, so no delegate ran.
		return false, "", nil, inv.store.RemoveContainer(id)
	}
	if err != nil {
		return true, "", nil, err // never release what cannot be read
	}
	if c.ListName != inv.nc.Name || valid[types.GCAttachment{ContainerID: id, IfName: c.IfName}] {
		pairs := map[string][]types.GCAttachment{}
		for _, ifname := range c.Interfaces {
			rec, err := inv.store.LoadInterface(id, ifname)
			if err != nil {
				continue
			}
			pairs[rec.Network] = append(pairs[rec.Network], types.GCAttachment{ContainerID: id, IfName: ifname})
		}
		return true, c.Set, pairs, nil
	}
	inv.log.Info("GC: releasing an attachment the runtime no longer lists", "containerID", id, "interfaces", c.Interfaces)
	sub := *inv
	sub.args = &skel.CmdArgs{ContainerID: id, Netns: c.NetNS, IfName: c.IfName, Path: inv.args.Path}
	unlock, err := p.lockContainer(ctx, inv.store, id)
	if err != nil {
		return true, c.Set, nil, err
	}
	err = p.release(ctx, &sub, c, func() (state.NetNSID, error) { return identify(sub.args.Netns) })
	unlock(err == nil)
	if err != nil {
		return true, c.Set, nil, err
	}
	return false, c.Set, nil, nil
}

// forwardGC sends GC to every chain (once per delegate network) of the
// attachment sets in use.
func (p *Plugin) forwardGC(ctx context.Context, inv *invocation, sets map[string]bool, live map[string][]types.GCAttachment) []error {
	var errs []error
	done := map[string]bool{}
	for set := range sets {
		att, err := inv.loadAttachments(set)
		if err != nil {
			errs = append(errs, fmt.Errorf("attachment set %q: %w", set, err))
			continue
		}
		for _, chain := range att.Interfaces {
			if done[chain.Network] || chain.DisableGC || !conf.AtLeast(chain.CNIVersion, "1.1.0") {
				continue
			}
			done[chain.Network] = true
			start := time.Now()
			if err := inv.runner.GC(ctx, chain, live[chain.Network]); err != nil {
				errs = append(errs, fmt.Errorf("%s (network %s): %w", chain.IfName, chain.Network, err))
			}
			inv.vl.step(chain.Network, start)
		}
	}
	return errs
}

// lockContainer takes one container's lock (the caller holds the store lock).
func (p *Plugin) lockContainer(ctx context.Context, store *state.Store, id string) (func(remove bool), error) {
	ctx, cancel := context.WithTimeout(ctx, p.lockTimeout())
	defer cancel()
	return store.Lock(ctx, id)
}

// Status (spec 1.1) reports whether nicmux can serve ADD: the attachment
// file and every attachment set in its folder parse, the state folder is
// writable, and every chain at 1.1.0 or later answers STATUS. Otherwise it
// fails with code 50 naming the file or chain, or with a delegate's own 50
// or 51 (51: existing containers have limited connectivity).
func (p *Plugin) Status(ctx context.Context, args *skel.CmdArgs) error {
	return p.do("STATUS", args, func(inv *invocation) error { return p.status(ctx, inv) })
}

func (p *Plugin) status(ctx context.Context, inv *invocation) error {
	notReady := func(err error) error { return withCode(types.ErrPluginNotAvailable, err) }
	files := []string{inv.nc.Attachments}
	for _, name := range conf.AvailableSets(filepath.Dir(inv.nc.Attachments)) {
		path := filepath.Join(filepath.Dir(inv.nc.Attachments), name+".yaml")
		if path != inv.nc.Attachments {
			files = append(files, path)
		}
	}
	var chains []*conf.Chain
	seen := map[string]bool{}
	for _, f := range files {
		att, err := conf.LoadAttachments(f, conf.Defaults{IfName: "eth0", ListName: inv.nc.Name, CNIVersion: inv.nc.CNIVersion})
		if err != nil {
			return notReady(fmt.Errorf("not ready: %w", err))
		}
		for _, c := range att.Interfaces {
			if !seen[c.Network] {
				seen[c.Network] = true
				chains = append(chains, c)
			}
		}
	}
	if err := writable(inv.nc.StateDir); err != nil {
		return notReady(fmt.Errorf("not ready: state folder %s: %w", inv.nc.StateDir, err))
	}
	for _, c := range chains {
		if !conf.AtLeast(c.CNIVersion, "1.1.0") {
			continue
		}
		if err := inv.runner.Status(ctx, c); err != nil {
			err = fmt.Errorf("not ready: %s (network %s): %w", c.IfName, c.Network, err)
			if code := CodeOf(err); code == types.ErrPluginNotAvailable || code == types.ErrLimitedConnectivity {
				return err
			}
			return notReady(err)
		}
	}
	return nil
}

// writable checks that dir exists (or can be made) and takes a new file.
func writable(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".status-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
