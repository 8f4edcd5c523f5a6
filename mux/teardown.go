package mux

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/delegate"
	"github.com/nicmux/nicmux/ns"
)

// teardown releases atts: each chain's DEL with the arguments and result
// recorded at ADD, last first, going on past failures; with parallel, as
// ADD's groups in reverse (the last group first, each group's chains last
// first). Rollback, DEL, the release of stale state and GC all release
// through it.
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
//     record says may be left, and no longer kept;
//   - any other failure keeps the interface for a later DEL or ADD.
//
// It returns the failures, last interface first. Released interfaces are
// marked in the store when some failed, so that the next DEL skips them.
func (v *verb) teardown(ctx context.Context, atts []*attachment, netns string, parallel bool) error {
	var todo []*attachment
	for _, a := range atts {
		if !a.released {
			todo = append(todo, a)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	var scratch *ns.Scratch
	if netns == "" {
		scratch = v.scratch(todo)
		defer scratch.Close()
	}
	where := func(a *attachment) string {
		if scratch != nil && a.chain != nil && needsScratch(a.chain) {
			return scratch.Path()
		}
		return netns
	}
	warm := func(a *attachment) {
		if a.chain != nil {
			v.runner.Warm("DEL", a.chain, a.env(where(a)))
		}
	}
	runGroups(todo, releaseGroups(todo, parallel), warm, func(a *attachment) bool {
		a.err = v.release(ctx, a, where(a))
		a.released = a.err == nil
		return true // best effort: go on past a failure
	})
	var errs []error
	for i := len(todo) - 1; i >= 0; i-- {
		if a := todo[i]; a.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.ifname, a.err))
		}
	}
	if len(errs) > 0 {
		for _, a := range todo {
			if a.released {
				_ = v.store.MarkReleased(a.id, a.ifname)
			}
		}
	}
	return errors.Join(errs...)
}

// release releases one interface (see teardown).
func (v *verb) release(ctx context.Context, a *attachment, netns string) error {
	err := a.chainErr
	if a.chain != nil {
		if err = v.runner.Del(ctx, a.chain, a.env(netns), a.result); err == nil {
			return nil
		}
	}
	cur := chainFor(v.current(a.set), a.ifname)
	if cur != nil && !sameChain(cur, a.chain) {
		ferr := v.runner.Del(ctx, cur, a.env(netns), a.result)
		if ferr == nil {
			v.log.Warn("released with the attachment file's chain: the recorded one could not be", "containerID", a.id,
				"interface", a.ifname, "error", err)
			return nil
		}
		err = errors.Join(err, fmt.Errorf("with the attachment file's chain: %w", ferr))
		if !onlyNotFound(ferr) {
			return err
		}
	}
	if a.chain == nil && cur == nil || a.chain != nil && onlyNotFound(err) {
		l := leftover(a, "", err, true)
		v.log.Error("abandoned an interface nothing can release: its record is dropped", "containerID", a.id,
			"interface", a.ifname, "network", l.Network, "mayBeLeft", l.Addresses, "resultKnown", l.ResultKnown,
			"hints", l.Hints, "error", err)
		a.abandoned = err
		return nil
	}
	return err
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

// scratch makes a scratch namespace holding the interfaces of atts whose
// chain needs one, or returns nil: without one (nicmux lacks the privilege,
// or no chain needs it) those chains get an empty CNI_NETNS, as before.
func (v *verb) scratch(atts []*attachment) *ns.Scratch {
	var need []*attachment
	for _, a := range atts {
		if a.chain != nil && needsScratch(a.chain) {
			need = append(need, a)
		}
	}
	if len(need) == 0 {
		return nil
	}
	s, err := ns.NewScratch()
	if err != nil {
		v.log.Warn("releasing without the interfaces' namespace", "error", err)
		return nil
	}
	for _, a := range need {
		if err := s.Add(a.ifname, a.result); err != nil {
			v.log.Warn("scratch namespace", "interface", a.ifname, "error", err)
		}
	}
	return s
}

// needsScratch reports whether a chain's DEL needs its container interface
// to undo what it set up on the host. The reference bridge and ptp plugins
// read the interface's addresses to remove their ipMasq rules, and tuning
// restores its backup onto the interface before it deletes the backup:
// with an empty CNI_NETNS they release their IPAM only, and the rules and
// the backup stay for good. Other plugins keep the empty CNI_NETNS they
// always got for a namespace that is gone (host-device, for one, would move
// whatever it finds there to the host).
func needsScratch(c *conf.Chain) bool {
	for _, p := range c.Plugins {
		switch p.Type {
		case "bridge", "ptp", "tuning":
			return true
		}
	}
	return false
}
