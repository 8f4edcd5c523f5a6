package mux

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/delegate"
	"github.com/nicmux/nicmux/inspect"
	"github.com/nicmux/nicmux/ns"
	"github.com/nicmux/nicmux/state"
)

// releaser releases nics: rollback, DEL, the release of stale state before
// an ADD, GC and the operator's commands all release through its teardown.
type releaser struct {
	runner *delegate.Runner
	store  *state.Store
	log    *slog.Logger
	sets   *sets // the attachment files now, the fallback for a recorded chain
}

// teardown releases nics: each chain's DEL with the arguments and result
// recorded at ADD, last first, going on past failures; with parallel, as
// ADD's groups in reverse (the last group first, each group's chains last
// first).
//
// netns is the namespace to release in; "" when the one ADD attached is
// gone (recreated or removed): nothing in a namespace that replaced it may
// be touched, and chains whose DEL needs their interface get a scratch
// namespace holding one, with the recorded addresses (see needsScratch).
//
// How a release converges (docs/verbs.md):
//   - a chain that fails with its recorded configuration is released with
//     the attachment file's chain for the same interface when that differs:
//     an operator who fixes a broken chain in the file unblocks it;
//   - an interface that nothing can release (its recorded configuration
//     cannot be read and the file has no chain for it, or its plugin
//     binaries are gone from CNI_PATH) is abandoned: reported with what the
//     record says may be left, and dropped;
//   - any other failure keeps the interface for a later DEL or ADD.
//
// It returns the failures, last interface first. Released interfaces are
// marked in the store when some failed, so that the next DEL skips them.
func (r *releaser) teardown(ctx context.Context, nics []*nic, netns string, parallel bool) error {
	var todo []*nic
	for _, n := range nics {
		if !n.released {
			todo = append(todo, n)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	var scratch *ns.Scratch
	if netns == "" {
		scratch = r.scratch(todo)
		defer scratch.Close()
	}
	runGroups(todo, releaseGroups(todo, parallel), func(n *nic) bool {
		n.err = r.release(ctx, n, where(n, netns, scratch))
		n.released = n.err == nil
		return true // best effort: go on past a failure
	})
	var errs []error
	for i := len(todo) - 1; i >= 0; i-- {
		if n := todo[i]; n.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.ifname, n.err))
		}
	}
	if len(errs) > 0 {
		for _, n := range todo {
			if n.released {
				_ = r.store.MarkReleased(n.id, n.ifname)
			}
		}
	}
	return errors.Join(errs...)
}

// where is the namespace n is released in: netns, the scratch namespace
// for a chain that needs one, or none for a name no chain can have put in
// a namespace (see conf.NamespaceOwn): its DEL would delete the
// namespace's own link, or fail on it for ever.
func where(n *nic, netns string, scratch *ns.Scratch) string {
	switch {
	case conf.NamespaceOwn(n.ifname) != "":
		return ""
	case scratch != nil && n.chain != nil && needsScratch(n.chain):
		return scratch.Path()
	}
	return netns
}

// release releases one interface (see teardown).
func (r *releaser) release(ctx context.Context, n *nic, netns string) error {
	err := n.chainErr
	if n.chain != nil {
		if err = r.runner.Del(ctx, n.chain, n.env(netns), n.result); err == nil {
			return nil
		}
	}
	cur := chainFor(r.sets.chains(n.set), n.ifname)
	if cur != nil && !sameChain(cur, n.chain) {
		ferr := r.runner.Del(ctx, cur, n.env(netns), n.result)
		if ferr == nil {
			r.log.Warn("released with the attachment file's chain: the recorded one could not be", "containerID", n.id,
				"interface", n.ifname, "error", err)
			return nil
		}
		err = errors.Join(err, fmt.Errorf("with the attachment file's chain: %w", ferr))
		if !onlyNotFound(ferr) {
			return err
		}
	}
	if n.chain == nil && cur == nil || n.chain != nil && onlyNotFound(err) {
		l := leftover(n, "", err, true)
		r.log.Error("abandoned an interface nothing can release: its record is dropped", "containerID", n.id,
			"interface", n.ifname, "network", l.Network, "mayBeLeft", l.Addresses, "resultKnown", l.ResultKnown,
			"hints", l.Hints, "error", err)
		n.abandoned = err
		return nil
	}
	return err
}

// toRelease makes the nics a release of rec works on: those of the record
// (fromRecord) and, when its plan is lost, one for every chain of the
// attachment file that its result records do not describe: without the
// plan, the file is the best guess of what ADD attached.
func (r *releaser) toRelease(rec *state.Record) []*nic {
	nics := fromRecord(rec)
	if rec.Plan != nil {
		return nics
	}
	known := map[string]bool{}
	for _, n := range nics {
		known[n.ifname] = true
	}
	set := rec.Set()
	for _, c := range r.sets.chains(set) {
		if known[c.IfName] {
			continue
		}
		nics = append(nics, &nic{id: rec.ContainerID, set: set, ifname: c.IfName, chain: c,
			planned: state.Planned{IfName: c.IfName, Network: c.Network, CNIVersion: c.CNIVersion}})
	}
	return nics
}

// scratch makes a scratch namespace holding the interfaces of nics whose
// chain needs one, or returns nil: without one (nicmux lacks the privilege,
// or no chain needs it) those chains get an empty CNI_NETNS.
func (r *releaser) scratch(nics []*nic) *ns.Scratch {
	var need []*nic
	for _, n := range nics {
		if n.chain != nil && needsScratch(n.chain) && conf.NamespaceOwn(n.ifname) == "" {
			need = append(need, n)
		}
	}
	if len(need) == 0 {
		return nil
	}
	s, err := ns.NewScratch()
	if err != nil {
		r.log.Warn("releasing without the interfaces' namespace", "error", err)
		return nil
	}
	for _, n := range need {
		if err := s.Add(n.ifname, n.result); err != nil {
			r.log.Warn("scratch namespace", "interface", n.ifname, "error", err)
		}
	}
	return s
}

// needsScratch reports whether a chain's DEL needs a namespace holding its
// container interface. The reference bridge and ptp plugins read the
// interface's addresses to remove their ipMasq rules, and tuning restores
// its backup onto the interface before it deletes the backup: with an
// empty CNI_NETNS they release their IPAM only, and the rules and the
// backup stay for good. sbr locks and enters the namespace's path: with an
// empty CNI_NETNS its DEL fails, and the chain is never released. Other
// plugins keep the empty CNI_NETNS they always got for a namespace that is
// gone (host-device, for one, would move whatever it finds there to the
// host).
func needsScratch(c *conf.Chain) bool {
	for _, p := range c.Plugins {
		switch p.Type {
		case "bridge", "ptp", "tuning", "sbr":
			return true
		}
	}
	return false
}

// chainFor returns the chain for ifname among chains, or nil.
func chainFor(chains []*conf.Chain, ifname string) *conf.Chain {
	for _, c := range chains {
		if c.IfName == ifname {
			return c
		}
	}
	return nil
}

// sameChain reports whether two chains have the same configuration.
func sameChain(a, b *conf.Chain) bool {
	if a == nil || b == nil {
		return a == b
	}
	ab, aerr := a.ConfList()
	bb, berr := b.ConfList()
	return aerr == nil && berr == nil && slices.Equal(ab, bb)
}

// onlyNotFound reports whether every failure in err is a plugin binary
// missing from CNI_PATH.
func onlyNotFound(err error) bool {
	if err == nil {
		return false
	}
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range u.Unwrap() {
			if !onlyNotFound(e) {
				return false
			}
		}
		return true
	}
	var nf *delegate.NotFoundError
	return errors.As(err, &nf)
}

// leftover says what an interface nothing released may have left: netns
// is the namespace ADD attached, if it is still there.
func leftover(n *nic, netns string, err error, abandoned bool) inspect.Leftover {
	planned := n.planned
	planned.IfName = n.ifname
	return inspect.LeftoverOf(n.id, planned, n.result, netns, err, abandoned)
}
