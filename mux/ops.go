package mux

// The operator's commands nicmux gc and forget: the release of the
// containers whose namespace is gone, and the last resort for a record
// nothing can release. They run as verbs (the prologue, the log, the
// container locks, the one teardown), so that they are safe beside a
// running runtime and show up in the log. nicmux show only reads (package
// inspect).

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/nicmux/nicmux/inspect"
	"github.com/nicmux/nicmux/ns"
	"github.com/nicmux/nicmux/state"
)

// OpsRequest is what an operator's command runs with: nicmux's entry as
// the runtime hands it over (the conflist's name and cniVersion in it) and
// where the plugin binaries are.
type OpsRequest struct {
	Config  []byte
	CNIPath []string
}

func (r OpsRequest) args(id string) *skel.CmdArgs {
	return &skel.CmdArgs{ContainerID: id, StdinData: r.Config, Path: strings.Join(r.CNIPath, ":")}
}

// GCReport is what nicmux gc did, or would do in a dry run.
type GCReport struct {
	List     string `json:"list"`
	StateDir string `json:"stateDir"`
	DryRun   bool   `json:"dryRun"`
	// Released are the containers released (in a dry run: that would be),
	// each with why.
	Released []GCOutcome `json:"released"`
	// Failed are the containers whose release failed; they are kept for a
	// later DEL or gc.
	Failed []GCOutcome `json:"failed"`
	// Unreadable are the containers whose record cannot be read: never
	// released by gc.
	Unreadable []GCOutcome `json:"unreadable"`
	// Kept counts this conflist's containers that are not stale; Other
	// those of other conflists sharing the state folder.
	Kept  int `json:"kept"`
	Other int `json:"otherLists"`
	// Forwarded is set once GC was forwarded to the chains; ForwardErrors
	// are the chains' failures.
	Forwarded     bool     `json:"forwarded"`
	ForwardErrors []string `json:"forwardErrors"`
	// Error is a failure of gc as a whole (the state folder cannot be
	// opened or listed, the lock files cannot be swept).
	Error string `json:"error,omitempty"`
}

// GCOutcome is what gc did with one container.
type GCOutcome struct {
	ContainerID string   `json:"containerID"`
	Reason      string   `json:"reason,omitempty"`
	Interfaces  []string `json:"interfaces,omitempty"`
	Error       string   `json:"error,omitempty"`
}

// emptyFolder is why a folder without a plan is removed.
const emptyFolder = "a folder without a plan (a crash before ADD recorded one): no delegate ran"

// CollectStale is nicmux gc: it releases, exactly as DEL would (the same
// teardown, under each container's lock, so it is safe beside a running
// runtime), every container of this conflist whose namespace is gone or is
// not the one ADD attached, then forwards GC to the chains with the
// attachments still recorded, as the GC verb does and under the same
// barrier (unless the entry says disableGC). A record that cannot be read
// is reported, never released. With dryRun it only reads, and says what it
// would release. It logs through the entry's log file as a verb, and
// returns an error when anything failed; the report says what.
func (p *Plugin) CollectStale(ctx context.Context, req OpsRequest, dryRun bool) (*GCReport, error) {
	r := &GCReport{DryRun: dryRun, Released: []GCOutcome{}, Failed: []GCOutcome{}, Unreadable: []GCOutcome{}, ForwardErrors: []string{}}
	err := p.do(ctx, "nicmux gc", req.args(""), func(v *verb, ctx context.Context) error {
		r.List, r.StateDir = v.nc.Name, v.nc.StateDir
		if err := v.openStore(dryRun); err != nil {
			r.Error = err.Error()
			return err
		}
		kept := map[string]bool{}
		other := map[string]bool{}
		stale := func(rec *state.Record) string {
			if rec.Plan.ListName != v.nc.Name {
				other[rec.ContainerID] = true
				return ""
			}
			path, recorded := rec.NetNS()
			cur, err := ns.Identify(path)
			why := ""
			if err != nil {
				v.log.Warn("nicmux gc: cannot identify the container's netns: kept", "containerID", rec.ContainerID, "netns", path, "error", err)
			} else {
				why = inspect.StaleReason(path, recorded, cur)
			}
			kept[rec.ContainerID] = why == ""
			return why
		}
		var errs []error
		if dryRun {
			v.survey(r, stale)
			for _, o := range r.Unreadable {
				errs = append(errs, fmt.Errorf("container %s: %s", o.ContainerID, o.Error))
			}
			if r.Error != "" {
				errs = append(errs, errors.New(r.Error))
			}
		} else {
			for _, c := range v.collect(ctx, stale) {
				errs = append(errs, c.error())
				r.note(c)
			}
		}
		for id, k := range kept {
			if k {
				r.Kept++
			}
			delete(other, id)
		}
		r.Other = len(other)
		switch {
		case dryRun:
		case v.nc.DisableGC:
			v.log.Info("nicmux gc: GC not forwarded to the chains: disableGC")
		default:
			fwd := v.forward(ctx, nil)
			r.Forwarded = true
			for _, err := range fwd {
				r.ForwardErrors = append(r.ForwardErrors, err.Error())
			}
			errs = append(errs, fwd...)
		}
		v.log.Info("nicmux gc", "dryRun", dryRun, "released", len(r.Released), "failed", len(r.Failed),
			"unreadable", len(r.Unreadable), "kept", r.Kept)
		return errors.Join(errs...)
	})
	if err != nil && r.StateDir == "" {
		return nil, err // the entry did not parse
	}
	return r, err
}

// note files what collect did with one container.
func (r *GCReport) note(c collected) {
	o := GCOutcome{ContainerID: c.id, Reason: c.reason}
	if c.err != nil {
		o.Error = c.err.Error()
	}
	switch {
	case c.id == "":
		r.Error = o.Error
	case c.unreadable:
		r.Unreadable = append(r.Unreadable, o)
	case c.err != nil:
		r.Failed = append(r.Failed, o)
	default:
		if o.Reason == "" {
			o.Reason = emptyFolder
		}
		o.Interfaces = c.ifnames
		r.Released = append(r.Released, o)
	}
}

// survey is a dry run of collect: it reads every record, takes no lock and
// changes nothing.
func (v *verb) survey(r *GCReport, stale func(*state.Record) string) {
	ids, err := v.store.Containers()
	if err != nil {
		r.Error = err.Error()
		return
	}
	for _, id := range ids {
		rec := v.store.Load(id)
		switch rec.Status {
		case state.Missing:
		case state.Empty:
			r.Released = append(r.Released, GCOutcome{ContainerID: id, Reason: emptyFolder})
		case state.PlanLost, state.Unreadable, state.Unsafe, state.Failed:
			r.Unreadable = append(r.Unreadable, GCOutcome{ContainerID: id, Error: rec.Err.Error()})
		default:
			if why := stale(rec); why != "" {
				r.Released = append(r.Released, GCOutcome{ContainerID: id, Reason: why, Interfaces: unreleased(rec)})
			}
		}
	}
}

// unreleased lists a record's interfaces that are not released yet.
func unreleased(rec *state.Record) []string {
	var out []string
	for _, it := range rec.Interfaces {
		if !it.Released {
			out = append(out, it.IfName)
		}
	}
	return out
}

// ForgetReport is what nicmux forget found and did.
type ForgetReport struct {
	ContainerID string `json:"containerID"`
	StateDir    string `json:"stateDir"`
	// Record is what the record said before anything was released.
	Record *inspect.Container `json:"record,omitempty"`
	// Released are the interfaces released now; Left what may be left of
	// those nothing released.
	Released []string           `json:"released"`
	Left     []inspect.Leftover `json:"left"`
	// Dropped: the record is gone. Without force, a record whose
	// interfaces could not all be released is kept.
	Dropped bool `json:"dropped"`
	Force   bool `json:"force"`
}

// ErrLive is why nicmux forget refuses a container whose interfaces are up
// in the namespace ADD attached: that is the runtime's to delete.
var ErrLive = errors.New("the container is live")

// Forget is nicmux forget, for a record nothing else releases: it
// releases, under the container's lock and through the one teardown, what
// can be released (a chain that fails with its recorded configuration is
// retried with the attachment file's, as in DEL), then removes the record.
// If something could not be released, the record is kept, and the error
// says so, unless force: then it is dropped all the same, and the report
// lists what may be left, for the operator to clean up by hand. It refuses
// a live container (ErrLive): one whose ADD completed, that no DEL
// started on, with links up in the namespace ADD attached.
func (p *Plugin) Forget(ctx context.Context, req OpsRequest, id string, force bool) (*ForgetReport, error) {
	r := &ForgetReport{ContainerID: id, Force: force, Released: []string{}, Left: []inspect.Leftover{}}
	if err := state.ValidateID(id); err != nil {
		return nil, err
	}
	err := p.do(ctx, "nicmux forget", req.args(id), func(v *verb, ctx context.Context) error {
		r.StateDir = v.nc.StateDir
		if err := v.openStore(false); err != nil {
			return err
		}
		return v.locked(ctx, id, state.Exclusive, func() error { return v.forget(ctx, r) })
	})
	if err != nil && r.StateDir == "" {
		return nil, err
	}
	return r, err
}

func (v *verb) forget(ctx context.Context, r *ForgetReport) error {
	id := r.ContainerID
	rec := v.store.Load(id)
	switch rec.Status {
	case state.Unsafe, state.Failed:
		return rec.Err
	case state.Missing:
		return fmt.Errorf("container %s: %w in %s", id, state.ErrNotFound, v.nc.StateDir)
	case state.Empty:
		r.Record = inspect.Describe(rec, true)
		r.Dropped = true
		return v.store.Remove(id)
	}
	r.Record = inspect.Describe(rec, true)
	path, _ := rec.NetNS()
	netns := ""
	if r.Record.NetNS.Attached {
		netns = path
	}
	// A complete ADD in its own namespace, that no DEL has started on, with
	// its links up: a running allocation (its record readable or not), not
	// a stuck record.
	if rec.Complete && netns != "" && len(unreleased(rec)) == len(rec.Interfaces) {
		if live := ns.LiveLinks(netns, rec.IfNames()); len(live) > 0 {
			return fmt.Errorf("%w: %s up in netns %s, the namespace ADD attached: stop the allocation (or DEL it) instead, or remove the namespace first if it is a leftover",
				ErrLive, strings.Join(live, ", "), path)
		}
	}
	v.vl.set = rec.Set()
	atts := v.toRelease(rec)
	v.vl.atts = atts
	before := map[*attachment]bool{}
	for _, a := range atts {
		before[a] = a.released
	}
	v.log.Info("nicmux forget: releasing", "containerID", id, "status", r.Record.Status, "interfaces", unreleased(rec))
	terr := v.teardown(ctx, atts, netns, v.nc.Parallel)
	for _, a := range atts {
		switch {
		case a.err != nil:
			r.Left = append(r.Left, leftover(a, netns, a.err, false))
		case a.abandoned != nil:
			r.Left = append(r.Left, leftover(a, netns, a.abandoned, true))
		case a.released && !before[a]:
			r.Released = append(r.Released, a.ifname)
		}
	}
	if terr != nil && !r.Force {
		return fmt.Errorf("the record is kept: %w", terr)
	}
	if err := v.store.Remove(id); err != nil {
		return err
	}
	r.Dropped = true
	if terr != nil {
		v.log.Error("nicmux forget -force: dropped a record whose interfaces could not all be released", "containerID", id,
			"mayBeLeft", leftIfNames(r.Left), "error", terr)
	}
	return nil
}

func leftIfNames(left []inspect.Leftover) []string {
	var out []string
	for _, l := range left {
		out = append(out, l.IfName)
	}
	return out
}

// leftover says what an interface nothing released may have left: netns
// is the namespace ADD attached, if it is still there.
func leftover(a *attachment, netns string, err error, abandoned bool) inspect.Leftover {
	planned := a.planned
	planned.IfName = a.ifname
	return inspect.LeftoverOf(a.id, planned, a.result, netns, err, abandoned)
}
