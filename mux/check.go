package mux

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/delegate"
	"github.com/nicmux/nicmux/state"
)

// Check verifies every recorded interface independently: its chain's CHECK
// with its own stored result as prevResult and its own CNI_IFNAME, and
// nicmux's own netlink check that the link is up with the recorded MAC and
// addresses. All failures are reported together, each naming its interface.
//
// It checks what ADD set up, not the current attachment file: a changed
// file is logged as drift and never fails CHECK, because a false failure
// makes Nomad tear down the namespace and kill the allocation.
func (p *Plugin) Check(ctx context.Context, args *skel.CmdArgs) error {
	return p.do("CHECK", args, func(inv *invocation) error {
		// The namespace is identified while the lock is taken and the
		// records read.
		current := identifyAsync(args.Netns)
		return p.locked(ctx, inv, func() (bool, error) {
			return false, p.check(ctx, inv, current)
		})
	})
}

func (p *Plugin) check(ctx context.Context, inv *invocation, current func() (state.NetNSID, error)) error {
	args := inv.args
	c, err := inv.store.LoadContainer(args.ContainerID)
	if errors.Is(err, state.ErrNotFound) {
		return withCode(types.ErrUnknownContainer, fmt.Errorf("container %s has no nicmux state in %s: it was never attached, or was deleted", args.ContainerID, inv.nc.StateDir))
	}
	if err != nil {
		return err
	}
	if !c.Complete {
		return withCode(types.ErrUnknownContainer, fmt.Errorf("container %s: the ADD of %v did not complete", args.ContainerID, c.Interfaces))
	}
	nsID, err := current()
	if err != nil {
		return withCode(types.ErrInvalidEnvironmentVariables, fmt.Errorf("CNI_NETNS: %w", err))
	}
	if !nsID.Same(c.NetNSID) {
		return fmt.Errorf("%v: netns %s is not the namespace ADD attached (it was removed or recreated)", c.Interfaces, args.Netns)
	}
	// Each record is read once, for the drift log and for the checks.
	n := len(c.Interfaces)
	recs := make([]*state.Interface, n)
	stored := make([]*storedIf, n)
	problems := make([][]error, n)
	for i, ifname := range c.Interfaces {
		rec, err := inv.store.LoadInterface(c.ContainerID, ifname)
		if err == nil {
			recs[i] = rec
			stored[i], err = checkable(rec)
		}
		if err != nil {
			problems[i] = []error{err}
		}
	}
	// The delegates start before the drift log, which parses the
	// attachment file: their start-up overlaps it.
	groups := make([][]int, n)
	for i := range groups {
		groups[i] = []int{i}
	}
	if !inv.parallel() {
		groups = [][]int{make([]int, n)}
		for i := range groups[0] {
			groups[0][i] = i
		}
	}
	calls := startCalls(groups, n, func(i int) *delegate.Call {
		s := stored[i]
		if s == nil || !delegatesCheck(s.chain) {
			return nil
		}
		return inv.runner.Start(ctx, "CHECK", s.chain, storedEnv(inv, s.rec, args.Netns))
	})
	defer calls.abort()
	p.logDrift(inv, c, recs)

	runGroups(groups, func(i int) bool {
		if stored[i] == nil {
			return true
		}
		start := time.Now()
		problems[i] = p.checkOne(inv, stored[i], calls.take(i))
		inv.vl.step(c.Interfaces[i], start)
		return true
	})
	var errs []error
	for i, ifname := range c.Interfaces {
		for _, err := range problems[i] {
			errs = append(errs, fmt.Errorf("%s: %w", ifname, err))
		}
	}
	return errors.Join(errs...)
}

// checkable rebuilds an interface's chain and result for CHECK.
func checkable(rec *state.Interface) (*storedIf, error) {
	chain, prev, err := storedChain(rec)
	if err != nil {
		return nil, err
	}
	if prev == nil {
		return nil, errors.New("no result recorded: the interface was never fully attached")
	}
	return &storedIf{rec: rec, chain: chain, prev: prev}, nil
}

// delegatesCheck reports whether a chain's delegates get CHECK: from
// cniVersion 0.4.0, unless the chain disables it.
func delegatesCheck(chain *conf.Chain) bool {
	return conf.AtLeast(chain.CNIVersion, "0.4.0") && !chain.DisableCheck
}

// checkOne returns every problem found with one interface: its chain's
// CHECK (call, nil when its delegates get none), then nicmux's own netlink
// check. Both only read, so the netlink check (on a handle of its own:
// chains are checked at the same time) runs while the chain's does.
func (p *Plugin) checkOne(inv *invocation, s *storedIf, call *delegate.Call) []error {
	own := later(func() (struct{}, error) {
		h, err := openNS(inv.args.Netns)
		if err != nil {
			return struct{}{}, fmt.Errorf("plugin nicmux (netlink check): %w", err)
		}
		defer h.Close()
		if err := h.verify(s.rec.IfName, s.prev); err != nil {
			return struct{}{}, fmt.Errorf("plugin nicmux (netlink check): %w", err)
		}
		return struct{}{}, nil
	})
	var errs []error
	if delegatesCheck(s.chain) {
		if _, err := call.Run(s.prev); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := own(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// logDrift compares the attachment file as it is now with what ADD used and
// logs any difference. Drift is expected after an operator edits the file;
// it applies to new containers only.
func (p *Plugin) logDrift(inv *invocation, c *state.Container, recs []*state.Interface) {
	att, err := inv.loadAttachments(c.Set)
	if err != nil {
		inv.log.Warn("drift: the attachment file no longer loads; checking the recorded attachment", "containerID", c.ContainerID, "file", c.AttachmentFile, "error", err)
		return
	}
	now := map[string][]byte{}
	var order []string
	for _, chain := range att.Interfaces {
		b, err := chain.ConfList()
		if err == nil {
			now[chain.IfName] = b
		}
		order = append(order, chain.IfName)
	}
	if fmt.Sprint(order) != fmt.Sprint(c.Interfaces) {
		inv.log.Warn("drift: the attachment file's interfaces changed since ADD", "containerID", c.ContainerID, "recorded", c.Interfaces, "file", order)
		return
	}
	for _, rec := range recs {
		if rec != nil && !bytes.Equal(rec.Config, now[rec.IfName]) { // a missing record fails the check itself
			inv.log.Warn("drift: the interface's chain changed since ADD", "containerID", c.ContainerID, "interface", rec.IfName)
		}
	}
}
