package ops

import (
	"context"
	"errors"
	"fmt"

	"github.com/nicmux/nicmux/inspect"
	"github.com/nicmux/nicmux/mux"
	"github.com/nicmux/nicmux/state"
)

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
	// Forwarded is set once GC was forwarded to a chain; ForwardedTo are
	// the delegate networks it went to (one chain each); NotForwarded says
	// why it went to none; ForwardErrors are the chains' failures.
	Forwarded     bool     `json:"forwarded"`
	ForwardedTo   []string `json:"forwardedTo"`
	NotForwarded  string   `json:"notForwarded,omitempty"`
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

// Why nicmux gc forwarded GC to no chain.
const (
	notForwardedDryRun   = "a dry run"
	notForwardedDisabled = "disableGC"
	notForwardedVersion  = "no chain of the attachment files is at cniVersion 1.1.0 or later, where GC begins, and none has an IPAM plugin that speaks GC"
)

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
// returns an error when anything failed; the report says what. The report
// is nil when the entry does not parse.
func CollectStale(ctx context.Context, p *mux.Plugin, req Request, dryRun bool) (*GCReport, error) {
	op, err := p.StartOp("nicmux gc", "", req.Entry, req.CNIPath)
	if err != nil {
		return nil, err
	}
	nc := op.NetConf()
	r := &GCReport{List: nc.Name, StateDir: nc.StateDir, DryRun: dryRun,
		Released: []GCOutcome{}, Failed: []GCOutcome{}, Unreadable: []GCOutcome{}, ForwardedTo: []string{}, ForwardErrors: []string{}}
	err = r.collect(ctx, op)
	op.End(err)
	return r, err
}

// collect runs nicmux gc through op and files what it does in r.
func (r *GCReport) collect(ctx context.Context, op *mux.Op) error {
	if _, err := op.Open(r.DryRun); err != nil {
		r.Error = err.Error()
		return err
	}
	s := newStaleness(op, r.List)
	var errs []error
	for _, o := range op.Collect(ctx, s.stale, r.DryRun) {
		errs = append(errs, r.note(o))
	}
	r.Kept, r.Other = s.counts()
	switch {
	case r.DryRun:
		r.NotForwarded = notForwardedDryRun
	case op.NetConf().DisableGC:
		r.NotForwarded = notForwardedDisabled
	default:
		networks, fwd := op.ForwardGC(ctx)
		r.ForwardedTo = append(r.ForwardedTo, networks...)
		r.Forwarded = len(networks) > 0
		if !r.Forwarded {
			r.NotForwarded = notForwardedVersion
		}
		for _, err := range fwd {
			r.ForwardErrors = append(r.ForwardErrors, err.Error())
		}
		errs = append(errs, fwd...)
	}
	if r.NotForwarded != "" {
		op.Log().Info("nicmux gc: GC not forwarded to the chains: " + r.NotForwarded)
	}
	op.Log().Info("nicmux gc", "dryRun", r.DryRun, "released", len(r.Released), "failed", len(r.Failed),
		"unreadable", len(r.Unreadable), "kept", r.Kept)
	return errors.Join(errs...)
}

// note files what the collection did with one container, and returns its
// failure.
func (r *GCReport) note(c mux.Collected) error {
	o := GCOutcome{ContainerID: c.ContainerID, Reason: c.Reason}
	if c.Err != nil {
		o.Error = c.Err.Error()
	}
	switch {
	case c.ContainerID == "":
		r.Error = o.Error
		return c.Err
	case c.Unreadable:
		r.Unreadable = append(r.Unreadable, o)
	case c.Err != nil:
		r.Failed = append(r.Failed, o)
	default:
		if o.Reason == "" {
			o.Reason = emptyFolder
		}
		o.Interfaces = c.Interfaces
		r.Released = append(r.Released, o)
		return nil
	}
	return fmt.Errorf("container %s: %w", c.ContainerID, c.Err)
}

// staleness tells nicmux gc's stale containers: those of its list whose
// namespace is gone or is not the one ADD attached. It counts the others.
type staleness struct {
	op    *mux.Op
	list  string
	kept  map[string]bool // this list's containers, true when not stale
	other map[string]bool // other lists' containers
}

func newStaleness(op *mux.Op, list string) *staleness {
	return &staleness{op: op, list: list, kept: map[string]bool{}, other: map[string]bool{}}
}

// stale says why rec is stale; "" to keep it.
func (s *staleness) stale(rec *state.Record) string {
	if rec.Plan.ListName != s.list {
		s.other[rec.ContainerID] = true
		return ""
	}
	path, recorded := rec.NetNS()
	cur, err := inspect.NetNSNow(path)
	why := ""
	if err != nil {
		s.op.Log().Warn("nicmux gc: cannot identify the container's netns: kept", "containerID", rec.ContainerID, "netns", path, "error", err)
	} else {
		why = inspect.StaleReason(path, recorded, cur)
	}
	s.kept[rec.ContainerID] = why == ""
	return why
}

// counts returns how many of this list's containers were kept, and how
// many of other lists' were seen.
func (s *staleness) counts() (kept, other int) {
	for id, k := range s.kept {
		if k {
			kept++
		}
		delete(s.other, id)
	}
	return kept, len(s.other)
}
