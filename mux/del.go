package mux

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/types/create"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/delegate"
	"github.com/nicmux/nicmux/state"
)

// Del releases every recorded interface in reverse order, each with the
// configuration, arguments and result stored at ADD. It goes on past a
// failing interface and returns all failures; the state is removed only once
// every interface is released, so a repeated DEL can finish the job. Without
// state it falls back to the chains of the current attachment file.
func (p *Plugin) Del(ctx context.Context, args *skel.CmdArgs) error {
	return p.do("DEL", args, func(inv *invocation) error {
		// The namespace is identified while the lock is taken and the
		// records read.
		current := identifyAsync(args.Netns)
		return p.locked(ctx, inv, func() (bool, error) {
			c, err := inv.store.LoadContainer(args.ContainerID)
			switch {
			case errors.Is(err, state.ErrNotFound):
				err = p.delWithoutState(ctx, inv)
			case err == nil:
				err = p.release(ctx, inv, c, current)
			}
			return err == nil, err
		})
	})
}

// release runs DEL for each of a container's recorded interfaces, last
// first, removing each record once released and the container's state once
// all are. An interface whose namespace is no longer the one recorded gets
// an empty CNI_NETNS: its links went with the old namespace, and nothing in
// a namespace that replaced it may be touched. current identifies the
// namespace at CNI_NETNS now; one that cannot be identified is logged and
// taken for none.
func (p *Plugin) release(ctx context.Context, inv *invocation, c *state.Container, current func() (state.NetNSID, error)) error {
	n := len(c.Interfaces)
	failures := make([]error, n)
	// Records are read first, so the DELs can be scheduled like the ADDs.
	stored := make([]*storedIf, n)
	chains := make([]*conf.Chain, n)
	for i, ifname := range c.Interfaces {
		stored[i], failures[i] = loadStored(inv.store, c.ContainerID, ifname)
		chains[i] = &conf.Chain{IfName: ifname}
		if stored[i] != nil {
			chains[i] = stored[i].chain
		}
	}
	cur, err := current()
	if err != nil {
		inv.log.Warn("cannot identify netns; releasing without it", "netns", inv.args.Netns, "error", err)
	}
	groups := reversed(schedule(chains, inv.parallel()))
	calls := startCalls(groups, n, func(i int) *delegate.Call {
		if stored[i] == nil {
			return nil
		}
		return inv.runner.Start(ctx, "DEL", stored[i].chain, releaseEnv(inv, stored[i].rec, cur))
	})
	defer calls.abort()
	runGroups(groups, func(i int) bool {
		if stored[i] == nil {
			return true
		}
		start := time.Now()
		failures[i] = p.releaseOne(inv, stored[i], calls.take(i))
		inv.vl.step(c.Interfaces[i], start)
		return true // best effort: go on past a failure
	})
	var errs []error
	for i := n - 1; i >= 0; i-- {
		if failures[i] != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Interfaces[i], failures[i]))
		}
	}
	if len(errs) > 0 {
		// The records of the interfaces released are gone for good.
		return errors.Join(append(errs, inv.store.Sync(c.ContainerID))...)
	}
	return inv.store.RemoveContainer(c.ContainerID)
}

// storedIf is one interface's record with its chain and result rebuilt.
type storedIf struct {
	rec   *state.Interface
	chain *conf.Chain
	prev  types.Result
}

// loadStored reads one interface's record; it returns nil and no error
// when there is none (never attached, or already released).
func loadStored(store *state.Store, id, ifname string) (*storedIf, error) {
	rec, err := store.LoadInterface(id, ifname)
	if errors.Is(err, state.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	chain, prev, err := storedChain(rec)
	if err != nil {
		return nil, err
	}
	return &storedIf{rec: rec, chain: chain, prev: prev}, nil
}

// releaseEnv is what an interface's DEL gets: the arguments stored at ADD,
// and the namespace only if it is still the one ADD attached.
func releaseEnv(inv *invocation, rec *state.Interface, cur state.NetNSID) delegate.Env {
	netns := ""
	if cur.Same(rec.NetNSID) {
		netns = inv.args.Netns
	}
	return storedEnv(inv, rec, netns)
}

// storedEnv is the environment of an interface's delegates with the
// arguments stored at ADD.
func storedEnv(inv *invocation, rec *state.Interface, netns string) delegate.Env {
	env := inv.env(rec.IfName, netns)
	env.CNIArgs, env.CapabilityArgs = rec.CNIArgs, rec.CapabilityArgs
	return env
}

func (p *Plugin) releaseOne(inv *invocation, s *storedIf, call *delegate.Call) error {
	if _, err := call.Run(s.prev); err != nil {
		return err
	}
	// Unlinked at once, so that a DEL repeated after a crash skips it; made
	// durable by release, once for all interfaces.
	return inv.store.UnlinkInterface(s.rec.ContainerID, s.rec.IfName)
}

// storedChain rebuilds an interface's chain and result from its record.
func storedChain(rec *state.Interface) (*conf.Chain, types.Result, error) {
	chain, err := conf.ChainFromConfList(rec.IfName, rec.Config)
	if err != nil {
		return nil, nil, fmt.Errorf("stored configuration: %w", err)
	}
	if r := strings.TrimSpace(string(rec.Result)); r == "" || r == "null" {
		return chain, nil, nil
	}
	res, err := create.Create(rec.CNIVersion, rec.Result)
	if err != nil {
		return nil, nil, fmt.Errorf("stored result: %w", err)
	}
	res, err = res.GetAsVersion(chain.CNIVersion)
	if err != nil {
		return nil, nil, fmt.Errorf("stored result: %w", err)
	}
	return chain, res, nil
}

// delWithoutState handles DEL for a container nicmux has no record of: the
// runtime may be repeating a DEL or cleaning up after a failed ADD. To be
// safe the current attachment file's chains are released, which delegates
// treat as a no-op when they hold nothing; if the file cannot be read there
// is nothing left to do.
func (p *Plugin) delWithoutState(ctx context.Context, inv *invocation) error {
	att, err := inv.loadAttachments(conf.SetFromArgs(inv.args.Args))
	if err != nil {
		// nicmux records its plan before any delegate acts, so without
		// state it holds nothing: the container was never attached, or a
		// DEL already released it. Failing would only make the runtime
		// retry forever.
		inv.log.Warn("no state for container and no attachment file to fall back on: nothing to release",
			"containerID", inv.args.ContainerID, "error", err)
		return nil
	}
	inv.log.Info("no state for container; releasing the attachment file's chains", "containerID", inv.args.ContainerID, "file", att.File)
	var errs []error
	for i := len(att.Interfaces) - 1; i >= 0; i-- {
		chain := att.Interfaces[i]
		start := time.Now()
		err := inv.runner.Del(ctx, chain, inv.env(chain.IfName, inv.args.Netns), nil)
		inv.vl.step(chain.IfName, start)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", chain.IfName, err))
		}
	}
	return errors.Join(errs...)
}
