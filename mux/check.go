package mux

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/delegate"
	"github.com/nicmux/nicmux/ns"
	"github.com/nicmux/nicmux/state"
)

// check verifies every recorded interface independently (see
// Plugin.Check).
func (v *invocation) check(ctx context.Context) error {
	rec, unlock, err := v.locked(ctx, true, state.Shared)
	if err != nil {
		return err
	}
	defer unlock()
	id := rec.ContainerID
	switch rec.Status {
	case state.Missing, state.Empty, state.PlanLost:
		return withCode(types.ErrUnknownContainer, fmt.Errorf("container %s has no nicmux state in %s: it was never attached, or was deleted", id, v.nc.StateDir))
	case state.Unreadable, state.Unsafe, state.Failed:
		return rec.Err
	case state.Newer:
		// Attached by a newer nicmux, which this one was rolled back
		// below: taken to be live. A failure would make Nomad rebuild
		// the namespace, and the ADD after it is refused.
		v.log.Warn("CHECK passed unchecked: a newer nicmux attached the container", "containerID", id, "error", rec.Err)
		return nil
	}
	if !rec.Complete {
		return withCode(types.ErrUnknownContainer, fmt.Errorf("container %s: the ADD of %v did not complete", id, rec.IfNames()))
	}
	v.out.set, v.out.file = rec.Set(), rec.Plan.AttachmentFile
	if !v.identify(v.args.Netns).Same(rec.Plan.NetNSID) {
		return fmt.Errorf("%v: netns %s is not the namespace ADD attached (it was removed or recreated)", rec.IfNames(), v.args.Netns)
	}
	nics := fromRecord(rec)
	v.out.nics = nics
	logDrift(v.log, v.sets, rec, nics)
	runGroups(nics, checkGroups(len(nics), v.nc.Parallel), func(n *nic) bool {
		n.err = verify(ctx, v.runner, n, v.args.Netns)
		return true
	})
	return failures(nics)
}

// delegatesCheck reports whether a chain's delegates get CHECK: from
// cniVersion 0.4.0, unless the chain disables it.
func delegatesCheck(chain *conf.Chain) bool {
	return conf.AtLeast(chain.CNIVersion, "0.4.0") && !chain.DisableCheck
}

// verify returns every problem found with one interface: its chain's
// CHECK, then nicmux's own netlink check. Both only read, so the netlink
// check (on a handle of its own: chains are checked at the same time) runs
// while the chain's does.
func verify(ctx context.Context, runner *delegate.Runner, n *nic, netns string) error {
	switch {
	case n.chain == nil:
		return fmt.Errorf("its record cannot be used: %w", n.chainErr)
	case n.result == nil && n.lost != nil:
		return fmt.Errorf("its result record was lost (%w): the interface cannot be checked", n.lost)
	case n.result == nil:
		return errors.New("its result record was lost (the host crashed after ADD?): the interface cannot be checked")
	}
	var delegateErr, ownErr error
	together(func() {
		if delegatesCheck(n.chain) {
			delegateErr = runner.Check(ctx, n.chain, n.env(netns), n.result)
		}
	}, func() {
		h, err := ns.Open(netns)
		if err == nil {
			err = h.Verify(n.ifname, n.result)
			h.Close()
		}
		if err != nil {
			ownErr = fmt.Errorf("plugin nicmux (netlink check): %w", err)
		}
	})
	return errors.Join(delegateErr, ownErr)
}

// logDrift compares the attachment file as it is now with what ADD used and
// logs any difference. Drift is expected after an operator edits the file;
// it applies to new containers only.
func logDrift(log *slog.Logger, sets *sets, rec *state.Record, nics []*nic) {
	file, err := sets.load(rec.Set())
	if err != nil {
		log.Warn("drift: the attachment file no longer loads; checking the recorded attachment", "containerID", rec.ContainerID, "file", rec.Plan.AttachmentFile, "error", err)
		return
	}
	now := map[string][]byte{}
	var order []string
	for _, c := range file.Interfaces {
		if b, err := c.ConfList(); err == nil {
			now[c.IfName] = b
		}
		order = append(order, c.IfName)
	}
	if recorded := rec.IfNames(); !slices.Equal(order, recorded) {
		log.Warn("drift: the attachment file's interfaces changed since ADD", "containerID", rec.ContainerID, "recorded", recorded, "file", order)
		return
	}
	for _, n := range nics {
		if len(n.planned.Config) > 0 && !bytes.Equal(n.planned.Config, now[n.ifname]) {
			log.Warn("drift: the interface's chain changed since ADD", "containerID", rec.ContainerID, "interface", n.ifname)
		}
	}
}
