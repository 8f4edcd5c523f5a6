package mux

import (
	"context"
	"errors"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/ns"
	"github.com/nicmux/nicmux/state"
)

// del releases every recorded interface in reverse order (see Plugin.Del).
func (v *invocation) del(ctx context.Context) error {
	id := v.args.ContainerID
	rec, unlock, err := v.locked(ctx, false, state.Exclusive)
	if err != nil {
		return err
	}
	defer unlock()
	switch rec.Status {
	case state.Failed, state.Newer:
		return rec.Err // a newer nicmux's record: what it holds cannot be known
	case state.Unsafe:
		v.log.Error("removing what is not nicmux's state", "containerID", id, "error", rec.Err)
		fallthrough
	case state.Missing, state.Empty:
		if err := v.delWithoutState(ctx); err != nil {
			return err
		}
		return v.store.Remove(id) // a folder a crash left without a plan
	case state.PlanLost, state.Unreadable:
		v.log.Error("the container's record cannot be read: releasing what its other records and the attachment file tell",
			"containerID", id, "error", rec.Err)
	}
	v.out.set = rec.Set()
	if rec.Plan != nil {
		v.out.file = rec.Plan.AttachmentFile
	}
	nics := v.rel.toRelease(rec)
	v.out.nics = nics
	netns := v.args.Netns
	if _, recorded := rec.NetNS(); !recorded.IsZero() && !v.identify(netns).Same(recorded) {
		netns = "" // gone, or recreated: not the namespace ADD attached
	}
	if err := v.rel.teardown(ctx, nics, netns, v.nc.Parallel); err != nil {
		return err
	}
	return v.store.Remove(id)
}

// delWithoutState handles DEL for a container nicmux has no record of: the
// runtime may be repeating a DEL or cleaning up after a failed ADD. To be
// safe the current attachment file's chains are released, which delegates
// treat as a no-op when they hold nothing; if the file cannot be read there
// is nothing left to do: nicmux records its plan before any delegate acts,
// so without state it holds nothing.
func (v *invocation) delWithoutState(ctx context.Context) error {
	set := conf.SetFromArgs(v.args.Args)
	file, err := v.sets.load(set)
	if err != nil {
		v.log.Warn("no state for container and no attachment file to fall back on: nothing to release",
			"containerID", v.args.ContainerID, "error", err)
		return nil
	}
	v.log.Info("no state for container; releasing the attachment file's chains", "containerID", v.args.ContainerID, "file", file.File)
	// Nomad's DEL has no CNI_ARGS; another runtime's may, and a DEL must
	// not fail for arguments an ADD would have refused.
	job, err := conf.ParseJobArgs(v.args.Args)
	var nics []*nic
	if err == nil {
		nics, err = fromFile(v.args.ContainerID, set, file, job, v.nc.RuntimeConfig)
	}
	if err != nil {
		v.log.Warn("the job's arguments do not apply to the attachment file: releasing without them", "containerID", v.args.ContainerID, "error", err)
		if nics, err = fromFile(v.args.ContainerID, set, file, &conf.JobArgs{Delegated: conf.DelegatedArgs(v.args.Args)}, v.nc.RuntimeConfig); err != nil {
			return err
		}
	}
	v.out.nics = nics
	netns := v.args.Netns
	if _, err := v.p.Identify(netns); errors.Is(err, ns.ErrNotNetNS) {
		// Nothing of the container can be in it: its delegates release
		// what they hold on the host only.
		v.log.Warn("CNI_NETNS is not a network namespace: releasing without it", "containerID", v.args.ContainerID, "error", err)
		netns = ""
	}
	return v.rel.teardown(ctx, nics, netns, false)
}
