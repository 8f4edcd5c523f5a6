package mux

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/ns"
	"github.com/nicmux/nicmux/state"
)

// adding is one ADD: the attachment file of the set the job names, and a
// nic per interface of it.
type adding struct {
	*invocation
	file *conf.AttachmentFile
	set  string
	nics []*nic
	// target is the namespace at CNI_NETNS when the ADD started, held
	// open: a rollback can release in it whatever is at the path then.
	target *heldNetNS
}

// add attaches every interface of the attachment file and prints the merged
// result (see Plugin.Add).
func (v *invocation) add(ctx context.Context) error {
	a := &adding{invocation: v, set: conf.SetFromArgs(v.args.Args)}
	if err := a.read(); err != nil {
		return err
	}
	target, err := targetNetNS(v.p.Identify, v.args.Netns)
	if err != nil {
		return err
	}
	defer target.close()
	a.target = target
	if err := v.openStore(false); err != nil {
		return err
	}
	unlock, err := v.lock(ctx, v.args.ContainerID, state.Exclusive)
	if err != nil {
		return err
	}
	defer unlock()
	if err := v.releaseStale(ctx, target.id); err != nil {
		return err
	}
	txn, err := a.begin(ctx, target.id)
	if err != nil {
		return err
	}
	defer txn.Close()
	v.out.nics = a.nics
	runGroups(a.nics, schedule(chains(a.nics), v.nc.Parallel), func(n *nic) bool {
		n.result, n.ran, n.err = v.runner.Add(ctx, n.chain, n.env(v.args.Netns))
		if n.err == nil {
			// Recorded at once: a rollback that fails, or a crash
			// before the ADD completes, leaves it to the DEL that
			// finishes the job.
			n.err = saveResult(txn, n)
		}
		return n.err == nil
	})
	if err := failures(a.nics); err != nil {
		return a.rollback(ctx, err)
	}
	if err := a.sameNetNS(); err != nil {
		return a.rollback(ctx, err)
	}
	return a.complete(ctx, txn)
}

// read reads the attachment file of the set and the job's arguments, and
// makes the nics. The arguments are checked against the set before
// anything starts: a refused or bad ADD attaches nothing and records
// nothing.
func (a *adding) read() error {
	file, err := a.sets.load(a.set)
	if err != nil {
		return err
	}
	a.file = file
	a.out.file, a.out.set = file.File, a.set
	job, err := conf.ParseJobArgs(a.args.Args)
	if err != nil {
		return err
	}
	if err := file.Permit(job); err != nil {
		return err
	}
	a.nics, err = fromFile(a.args.ContainerID, a.set, file, job, a.nc.RuntimeConfig)
	return err
}

// begin records the plan. It holds GC's barrier while it does (see
// state.Store.Barrier): a GC that runs beside this ADD either lists its
// plan or is done before its delegates start.
func (a *adding) begin(ctx context.Context, target ns.NetNSID) (*state.Txn, error) {
	plan := &state.Plan{ContainerID: a.args.ContainerID, IfName: a.args.IfName, NetNS: a.args.Netns, NetNSID: target,
		ListName: a.nc.Name, CNIVersion: a.nc.CNIVersion, AttachmentFile: a.file.File, Set: a.set, Created: a.p.Now().UTC()}
	for _, n := range a.nics {
		plan.Interfaces = append(plan.Interfaces, n.planned)
	}
	ctx, cancel := context.WithTimeout(ctx, a.p.LockTimeout)
	defer cancel()
	release, err := a.store.Barrier(ctx, state.Shared)
	if err != nil {
		return nil, err
	}
	defer release()
	return a.store.Begin(plan)
}

// complete merges the chains' results, marks the ADD complete and prints
// the merged result; on failure it rolls back.
func (a *adding) complete(ctx context.Context, txn *state.Txn) error {
	primary := ""
	if c := a.file.Primary(); c != nil {
		primary = c.IfName
	}
	merged, err := merge(results(a.nics), ifnames(a.nics), a.args.Netns, a.nc.CNIVersion, primary)
	if err == nil {
		err = txn.Complete()
	}
	if err != nil {
		return a.rollback(ctx, err)
	}
	warnAddressOrder(a.log, merged, ifnames(a.nics), primary)
	return merged.PrintTo(a.p.Stdout)
}

func saveResult(txn *state.Txn, n *nic) error {
	b, err := json.Marshal(n.result)
	if err != nil {
		return fmt.Errorf("encoding result: %w", err)
	}
	return txn.SaveResult(n.ifname, b)
}

// rollback releases what a failed ADD attached: every chain as far as it
// ran, with the result it reached, last first. It removes the container's
// state once all are released, and otherwise keeps the plan of those it
// could not release, for a later DEL or ADD to finish the job. It releases
// copies of the nics, so that the verb's outcome says what ADD did with
// each interface (the one that failed: failed), and the rollback's
// outcome what the release did.
func (a *adding) rollback(ctx context.Context, cause error) error {
	var ran []*nic
	for _, n := range a.nics {
		if n.ran != nil { // one that never ran holds nothing
			r := *n
			r.chain, r.err, r.took = n.ran, nil, 0
			ran = append(ran, &r)
		}
	}
	err := a.releaseRan(ctx, ran)
	a.out.rollback = err
	if err == nil {
		if err := a.store.Remove(a.args.ContainerID); err != nil {
			return errors.Join(cause, fmt.Errorf("rollback: %w", err))
		}
		return cause
	}
	for _, n := range a.nics {
		if n.ran == nil {
			_ = a.store.MarkReleased(n.id, n.ifname)
		}
	}
	a.log.Error("rollback left state behind for a later DEL or ADD", "containerID", a.args.ContainerID, "error", err)
	return errors.Join(cause, fmt.Errorf("rollback: %w", err))
}

// releaseRan releases what the chains of a failed ADD attached: in
// CNI_NETNS while it still holds the namespace the ADD started with, else in
// that namespace, held open, after a sweep of the one now at the path, if
// any: the chains that ran after the namespace was replaced attached there
// (nicmux's own namespace is never touched).
func (a *adding) releaseRan(ctx context.Context, ran []*nic) error {
	now := a.identify(a.args.Netns)
	if now.Same(a.target.id) {
		return a.rel.teardown(ctx, ran, a.args.Netns, false) // a failure path: one at a time, in order
	}
	var stray error
	if !now.IsZero() && !ns.IsOwn(now) {
		stray = a.sweep(ctx, ran, a.args.Netns)
	}
	err := a.rel.teardown(ctx, ran, a.target.path(), false)
	if stray != nil {
		err = errors.Join(err, fmt.Errorf("in the namespace now at %s: %w", a.args.Netns, stray))
	}
	return err
}

// sweep runs the DEL of each chain that ran, last first, in netns: a
// second namespace the ADD's chains may have attached in. A chain that
// attached nothing there releases nothing but what its other DEL
// releases too, which delegates treat as a no-op.
func (a *adding) sweep(ctx context.Context, ran []*nic, netns string) error {
	var errs []error
	for i := len(ran) - 1; i >= 0; i-- {
		n := ran[i]
		if err := a.runner.Del(ctx, n.chain, n.env(netns), n.result); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.ifname, err))
		}
	}
	return errors.Join(errs...)
}

// sameNetNS fails an ADD whose CNI_NETNS no longer holds the namespace it
// started with: its chains may have attached in either. Gone, it is code 4
// (CNI_NETNS names no namespace); replaced, code 11: the runtime may try
// again, and attach the namespace now there.
func (a *adding) sameNetNS() error {
	now := a.identify(a.args.Netns)
	switch {
	case now.Same(a.target.id):
		return nil
	case now.IsZero():
		return withCode(types.ErrInvalidEnvironmentVariables,
			fmt.Errorf("CNI_NETNS: the network namespace at %s was removed while ADD ran", a.args.Netns))
	}
	return withCode(types.ErrTryAgainLater, fmt.Errorf("CNI_NETNS: %s holds another network namespace than the one ADD started with "+
		"(it was replaced while ADD ran): what the chains attached is released in both; try again", a.args.Netns))
}

// releaseStale deals with an ADD for a container that already has state.
// If the recorded interfaces are live in the same namespace, the ADD is
// refused and nothing changes. Otherwise the state is stale (the namespace
// was recreated, as Nomad does after a failed CHECK or a reboot, or the
// earlier ADD never completed): the old delegates are released with what
// was recorded, so the new ADD starts clean. They are released in the
// namespace the record names while its path still holds it (the container
// is attached in another namespace, which is still there): its links go
// with its leases, and no two namespaces stay attached under one ID.
func (v *invocation) releaseStale(ctx context.Context, target ns.NetNSID) error {
	id := v.args.ContainerID
	rec := v.store.Load(id)
	v.out.fig.found(v.out.verb, v.out.id, rec)
	switch rec.Status {
	case state.Missing, state.Empty:
		return nil // Begin clears a folder a crash left without a plan
	case state.Unsafe, state.Failed, state.Newer:
		return rec.Err // a newer nicmux's container is live: nothing is released
	}
	_, recorded := rec.NetNS()
	same := recorded.Same(target)
	if same && rec.Complete {
		if live := ns.LiveLinks(v.args.Netns, rec.IfNames()); len(live) > 0 {
			err := fmt.Errorf("container %s is already attached: %s live in netns %s; DEL it first",
				id, strings.Join(live, ", "), v.args.Netns)
			if rec.Err != nil {
				err = fmt.Errorf("%w (%v)", err, rec.Err)
			}
			return withCode(errAlreadyAttached, err)
		}
	}
	netns, elsewhere := "", recordedNetNS(v.p.Identify, rec)
	defer elsewhere.close()
	v.out.fig.stale(rec, same)
	switch {
	case same:
		netns = v.args.Netns // an incomplete ADD in this very namespace
	case elsewhere != nil:
		netns = elsewhere.path()
	}
	reason := staleReason(rec, same, elsewhere != nil)
	v.log.Warn("releasing stale attachment before ADD", "containerID", id, "reason", reason, "interfaces", rec.IfNames())
	if err := v.rel.teardown(ctx, v.rel.toRelease(rec), netns, v.nc.Parallel); err != nil {
		return fmt.Errorf("releasing the stale attachment of container %s (%s): %w (a chain that cannot be released "+
			"is retried with the attachment file's chain for it: fix it there, or see `nicmux forget`)", id, reason, err)
	}
	return v.store.Remove(id)
}

// staleReason says why state found before an ADD is stale; same tells
// whether the namespace is the one it records, elsewhere whether the one
// it records is still there.
func staleReason(rec *state.Record, same, elsewhere bool) string {
	switch {
	case rec.Err != nil:
		return "its record cannot be read (" + rec.Err.Error() + ")"
	case elsewhere:
		path, _ := rec.NetNS()
		return "the container is attached in another network namespace, " + path + ", still there: released there"
	case !same:
		return "the network namespace was recreated"
	case rec.Complete:
		return "none of the recorded interfaces is left in the namespace"
	}
	return "the earlier ADD did not complete"
}
