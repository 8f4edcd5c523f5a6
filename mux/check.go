package mux

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/ns"
	"github.com/nicmux/nicmux/state"
)

// Check verifies every recorded interface independently: its chain's CHECK
// with its own recorded result as prevResult and its own CNI_IFNAME, and
// nicmux's own netlink check that the link is up with the recorded MAC and
// addresses. All failures are reported together, each naming its
// interface. CHECK only reads: it works on a read-only state folder.
//
// It checks what ADD set up, not the current attachment file: a changed
// file is logged as drift and never fails CHECK, because a false failure
// makes Nomad tear down the namespace and kill the allocation.
func (p *Plugin) Check(ctx context.Context, args *skel.CmdArgs) error {
	return p.do(ctx, "CHECK", args, (*verb).check)
}

func (v *verb) check(ctx context.Context) error {
	if err := v.openStore(true); err != nil {
		return err
	}
	id := v.args.ContainerID
	cur := v.currentNetNS()
	if rec := v.store.Load(id); rec.Status == state.Whole && rec.Complete && cur.Same(rec.Plan.NetNSID) {
		atts := fromRecord(rec) // see Del
		v.warmHeads("CHECK", atts, checkGroups(len(atts), v.nc.Parallel), v.args.Netns)
	}
	return v.locked(ctx, id, state.Shared, func() error {
		rec := v.store.Load(id)
		v.vl.mark("loaded")
		switch rec.Status {
		case state.Missing, state.Empty, state.PlanLost:
			return withCode(types.ErrUnknownContainer, fmt.Errorf("container %s has no nicmux state in %s: it was never attached, or was deleted", id, v.nc.StateDir))
		case state.Unreadable, state.Unsafe, state.Failed:
			return rec.Err
		}
		if !rec.Complete {
			return withCode(types.ErrUnknownContainer, fmt.Errorf("container %s: the ADD of %v did not complete", id, rec.IfNames()))
		}
		v.vl.set, v.vl.file = rec.Set(), rec.Plan.AttachmentFile
		if !cur.Same(rec.Plan.NetNSID) {
			return fmt.Errorf("%v: netns %s is not the namespace ADD attached (it was removed or recreated)", rec.IfNames(), v.args.Netns)
		}
		atts := fromRecord(rec)
		v.vl.atts = atts
		v.logDrift(rec, atts)
		runGroups(atts, checkGroups(len(atts), v.nc.Parallel), v.warm("CHECK", v.args.Netns), func(a *attachment) bool {
			a.err = v.checkOne(ctx, a)
			return true
		})
		v.vl.mark("checked")
		return failures(atts)
	})
}

// delegatesCheck reports whether a chain's delegates get CHECK: from
// cniVersion 0.4.0, unless the chain disables it.
func delegatesCheck(chain *conf.Chain) bool {
	return conf.AtLeast(chain.CNIVersion, "0.4.0") && !chain.DisableCheck
}

// checkOne returns every problem found with one interface: its chain's
// CHECK, then nicmux's own netlink check. Both only read, so the netlink
// check (on a handle of its own: chains are checked at the same time) runs
// while the chain's does.
func (v *verb) checkOne(ctx context.Context, a *attachment) error {
	switch {
	case a.chain == nil:
		return fmt.Errorf("its record cannot be used: %w", a.chainErr)
	case a.result == nil && a.lost != nil:
		return fmt.Errorf("its result record was lost (%w): the interface cannot be checked", a.lost)
	case a.result == nil:
		return errors.New("its result record was lost (the host crashed after ADD?): the interface cannot be checked")
	}
	var delegateErr, ownErr error
	together(func() {
		if delegatesCheck(a.chain) {
			delegateErr = v.runner.Check(ctx, a.chain, a.env(v.args.Netns), a.result)
		}
	}, func() {
		h, err := ns.Open(v.args.Netns)
		if err == nil {
			err = h.Verify(a.ifname, a.result)
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
func (v *verb) logDrift(rec *state.Record, atts []*attachment) {
	att, err := v.loadAttachments(rec.Set())
	if err != nil {
		v.log.Warn("drift: the attachment file no longer loads; checking the recorded attachment", "containerID", rec.ContainerID, "file", rec.Plan.AttachmentFile, "error", err)
		return
	}
	now := map[string][]byte{}
	var order []string
	for _, c := range att.Interfaces {
		if b, err := c.ConfList(); err == nil {
			now[c.IfName] = b
		}
		order = append(order, c.IfName)
	}
	if recorded := rec.IfNames(); !slices.Equal(order, recorded) {
		v.log.Warn("drift: the attachment file's interfaces changed since ADD", "containerID", rec.ContainerID, "recorded", recorded, "file", order)
		return
	}
	for _, a := range atts {
		if len(a.planned.Config) > 0 && !bytes.Equal(a.planned.Config, now[a.ifname]) {
			v.log.Warn("drift: the interface's chain changed since ADD", "containerID", rec.ContainerID, "interface", a.ifname)
		}
	}
}
