package mux

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/ns"
	"github.com/nicmux/nicmux/state"
)

// Add attaches every interface of the attachment file and prints the merged
// result. On any failure it releases what it attached and leaves no state
// behind (Nomad retries a failed ADD with no DEL in between).
func (p *Plugin) Add(ctx context.Context, args *skel.CmdArgs) error {
	return p.do(ctx, "ADD", args, (*verb).add)
}

func (v *verb) add(ctx context.Context) error {
	set := conf.SetFromArgs(v.args.Args)
	file, err := v.loadAttachments(set)
	if err != nil {
		return err
	}
	v.vl.file, v.vl.set = file.File, set
	v.vl.mark("loaded")
	// The job's arguments are checked against the set before anything
	// starts: a refused or bad ADD attaches nothing and records nothing.
	job, err := conf.ParseJobArgs(v.args.Args)
	if err != nil {
		return err
	}
	if err := file.Permit(job); err != nil {
		return err
	}
	atts, err := v.fromFile(file, set, job)
	if err != nil {
		return err
	}
	// The first plugins start now, and wait for their input while the
	// namespace is checked, the lock taken and the plan recorded.
	groups := schedule(chains(atts), v.nc.Parallel)
	v.warmHeads("ADD", atts, groups, v.args.Netns)
	target, err := targetNetNS(v.args.Netns)
	if err != nil {
		return err
	}
	v.vl.mark("netns")
	if err := v.openStore(false); err != nil {
		return err
	}
	return v.locked(ctx, v.args.ContainerID, state.Exclusive, func() error {
		if err := v.replaceStale(ctx, target); err != nil {
			return err
		}
		v.vl.mark("stale")
		txn, err := v.begin(ctx, v.plan(atts, file.File, set, target))
		if err != nil {
			return err
		}
		defer txn.Close()
		v.vl.mark("planned")
		v.vl.atts = atts
		runGroups(atts, groups, v.warm("ADD", v.args.Netns), func(a *attachment) bool {
			a.result, a.ran, a.err = v.runner.Add(ctx, a.chain, a.env(v.args.Netns))
			if a.err == nil {
				// Recorded at once: a rollback that fails, or a crash
				// before the ADD completes, leaves it to the DEL that
				// finishes the job.
				a.err = saveResult(txn, a)
			}
			return a.err == nil
		})
		v.vl.mark("chains")
		if err := failures(atts); err != nil {
			return v.rollback(ctx, atts, err)
		}
		primary := ""
		if c := file.Primary(); c != nil {
			primary = c.IfName
		}
		merged, err := Merge(results(atts), ifnames(atts), v.args.Netns, v.nc.CNIVersion, primary)
		if err == nil {
			err = txn.Complete()
		}
		if err != nil {
			return v.rollback(ctx, atts, err)
		}
		v.vl.mark("completed")
		warnAddressOrder(v.log, merged, ifnames(atts), primary)
		err = merged.PrintTo(v.p.stdout())
		v.vl.mark("printed")
		return err
	})
}

// begin records the plan. It holds GC's barrier while it does (see
// state.Store.Barrier): a GC that runs beside this ADD either lists its
// plan or is done before its delegates start.
func (v *verb) begin(ctx context.Context, plan *state.Plan) (*state.Txn, error) {
	ctx, cancel := v.lockCtx(ctx)
	defer cancel()
	release, err := v.store.Barrier(ctx, state.Shared)
	if err != nil {
		return nil, err
	}
	defer release()
	v.vl.mark("barrier")
	return v.store.Begin(plan)
}

func saveResult(txn *state.Txn, a *attachment) error {
	b, err := json.Marshal(a.result)
	if err != nil {
		return fmt.Errorf("encoding result: %w", err)
	}
	return txn.SaveResult(a.ifname, b)
}

func results(atts []*attachment) []types.Result {
	out := make([]types.Result, len(atts))
	for i, a := range atts {
		out[i] = a.result
	}
	return out
}

// rollback releases what a failed ADD attached: every chain as far as it
// ran, with the result it reached, last first. It removes the container's
// state once all are released, and otherwise keeps the plan of those it
// could not release, for a later DEL or ADD to finish the job.
func (v *verb) rollback(ctx context.Context, atts []*attachment, cause error) error {
	var ran []*attachment
	for _, a := range atts {
		if a.ran != nil { // one that never ran holds nothing
			a.chain = a.ran
			ran = append(ran, a)
		}
	}
	err := v.teardown(ctx, ran, v.args.Netns, false) // a failure path: one at a time, in order
	v.vl.rollback = err
	if err == nil {
		if err := v.store.Remove(v.args.ContainerID); err != nil {
			return errors.Join(cause, fmt.Errorf("rollback: %w", err))
		}
		return cause
	}
	for _, a := range atts {
		if a.ran == nil {
			_ = v.store.MarkReleased(a.id, a.ifname)
		}
	}
	v.log.Error("rollback left state behind for a later DEL or ADD", "containerID", v.args.ContainerID, "error", err)
	return errors.Join(cause, fmt.Errorf("rollback: %w", err))
}

// replaceStale deals with an ADD for a container that already has state. If
// the recorded interfaces are live in the same namespace, the ADD is refused
// and nothing changes. Otherwise the state is stale (the namespace was
// recreated, as Nomad does after a failed CHECK or a reboot, or the earlier
// ADD never completed): the old delegates are released with what was
// recorded, so the new ADD starts clean.
func (v *verb) replaceStale(ctx context.Context, target ns.NetNSID) error {
	id := v.args.ContainerID
	rec := v.store.Load(id)
	switch rec.Status {
	case state.Missing, state.Empty:
		return nil // Begin clears a folder a crash left without a plan
	case state.Unsafe, state.Failed:
		return rec.Err
	}
	rerr := rec.Err
	_, recorded := rec.NetNS()
	same := recorded.Same(target)
	if same && rec.Complete {
		if live := ns.LiveLinks(v.args.Netns, rec.IfNames()); len(live) > 0 {
			err := fmt.Errorf("container %s is already attached: %s live in netns %s; DEL it first",
				id, strings.Join(live, ", "), v.args.Netns)
			if rerr != nil {
				err = fmt.Errorf("%w (%v)", err, rerr)
			}
			return withCode(ErrAlreadyAttached, err)
		}
	}
	reason := "the earlier ADD did not complete"
	switch {
	case rerr != nil:
		reason = "its record cannot be read (" + rerr.Error() + ")"
	case !same:
		reason = "the network namespace was recreated"
	case rec.Complete:
		reason = "none of the recorded interfaces is left in the namespace"
	}
	v.log.Warn("releasing stale attachment before ADD", "containerID", id, "reason", reason, "interfaces", rec.IfNames())
	atts := v.toRelease(rec)
	netns := ""
	if same {
		netns = v.args.Netns // an incomplete ADD in this very namespace
	}
	if err := v.teardown(ctx, atts, netns, v.nc.Parallel); err != nil {
		return fmt.Errorf("releasing the stale attachment of container %s (%s): %w (a chain that cannot be released "+
			"is retried with the attachment file's chain for it: fix it there, or see `nicmux forget`)", id, reason, err)
	}
	return v.store.Remove(id)
}

// targetNetNS checks ADD's CNI_NETNS before anything acts on it: a
// namespace must be there, and must not be nicmux's own (the host's).
func targetNetNS(path string) (ns.NetNSID, error) {
	bad := func(err error) (ns.NetNSID, error) {
		return ns.NetNSID{}, withCode(types.ErrInvalidEnvironmentVariables, fmt.Errorf("CNI_NETNS: %w", err))
	}
	id, err := ns.Identify(path)
	if err != nil {
		return bad(err)
	}
	if id.IsZero() {
		return bad(fmt.Errorf("no network namespace at %q", path))
	}
	if ns.IsOwn(id) {
		return bad(fmt.Errorf("%q is nicmux's own network namespace (the host's), not a container's", path))
	}
	return id, nil
}
