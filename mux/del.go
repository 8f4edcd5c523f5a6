package mux

import (
	"context"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/ns"
	"github.com/nicmux/nicmux/state"
)

// Del releases every recorded interface in reverse order, each with the
// configuration, arguments and result recorded at ADD. It goes on past a
// failing interface and returns all failures; the state is removed once
// every interface is released, so a repeated DEL finishes the job. What
// cannot be read is released from what is left (the result records, the
// attachment file); without any state it releases the attachment file's
// chains, which delegates treat as a no-op when they hold nothing.
func (p *Plugin) Del(ctx context.Context, args *skel.CmdArgs) error {
	return p.do(ctx, "DEL", args, (*verb).del)
}

func (v *verb) del(ctx context.Context) error {
	if err := v.openStore(false); err != nil {
		return err
	}
	id := v.args.ContainerID
	cur := v.currentNetNS()
	// The plan never changes once written: its chains' first plugins can
	// start while the lock is taken.
	if rec := v.store.Load(id); rec.Status == state.Whole && cur.Same(rec.Plan.NetNSID) {
		atts := fromRecord(rec)
		v.warmHeads("DEL", atts, releaseGroups(atts, v.nc.Parallel), v.args.Netns)
	}
	return v.locked(ctx, id, state.Exclusive, func() error {
		rec := v.store.Load(id)
		v.vl.mark("loaded")
		switch rec.Status {
		case state.Unsafe:
			v.log.Error("removing what is not nicmux's state", "containerID", id, "error", rec.Err)
			fallthrough
		case state.Missing, state.Empty:
			if err := v.delWithoutState(ctx); err != nil {
				return err
			}
			return v.store.Remove(id) // a folder a crash left without a plan
		case state.Failed:
			return rec.Err
		case state.PlanLost, state.Unreadable:
			v.log.Error("the container's record cannot be read: releasing what its other records and the attachment file tell",
				"containerID", id, "error", rec.Err)
		}
		v.vl.set = rec.Set()
		if rec.Plan != nil {
			v.vl.file = rec.Plan.AttachmentFile
		}
		atts := v.toRelease(rec)
		v.vl.atts = atts
		netns := v.args.Netns
		if _, recorded := rec.NetNS(); !recorded.IsZero() && !cur.Same(recorded) {
			netns = "" // gone, or recreated: not the namespace ADD attached
		}
		err := v.teardown(ctx, atts, netns, v.nc.Parallel)
		v.vl.mark("released")
		if err != nil {
			return err
		}
		err = v.store.Remove(id)
		v.vl.mark("removed")
		return err
	})
}

// currentNetNS identifies the namespace at CNI_NETNS now. One that cannot
// be identified is logged and taken for none.
func (v *verb) currentNetNS() ns.NetNSID {
	cur, err := ns.Identify(v.args.Netns)
	if err != nil {
		v.log.Warn("cannot identify netns; taking it for gone", "netns", v.args.Netns, "error", err)
		return ns.NetNSID{}
	}
	return cur
}

// delWithoutState handles DEL for a container nicmux has no record of: the
// runtime may be repeating a DEL or cleaning up after a failed ADD. To be
// safe the current attachment file's chains are released, which delegates
// treat as a no-op when they hold nothing; if the file cannot be read there
// is nothing left to do: nicmux records its plan before any delegate acts,
// so without state it holds nothing.
func (v *verb) delWithoutState(ctx context.Context) error {
	set := conf.SetFromArgs(v.args.Args)
	att, err := v.loadAttachments(set)
	if err != nil {
		v.log.Warn("no state for container and no attachment file to fall back on: nothing to release",
			"containerID", v.args.ContainerID, "error", err)
		return nil
	}
	v.log.Info("no state for container; releasing the attachment file's chains", "containerID", v.args.ContainerID, "file", att.File)
	// Nomad's DEL has no CNI_ARGS; another runtime's may, and a DEL must
	// not fail for arguments an ADD would have refused.
	job, err := conf.ParseJobArgs(v.args.Args)
	var atts []*attachment
	if err == nil {
		atts, err = v.fromFile(att, set, job)
	}
	if err != nil {
		v.log.Warn("the job's arguments do not apply to the attachment file: releasing without them", "containerID", v.args.ContainerID, "error", err)
		if atts, err = v.fromFile(att, set, &conf.JobArgs{Delegated: v.args.Args}); err != nil {
			return err
		}
	}
	v.vl.atts = atts
	return v.teardown(ctx, atts, v.args.Netns, false)
}
