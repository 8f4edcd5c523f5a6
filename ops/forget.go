package ops

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nicmux/nicmux/inspect"
	"github.com/nicmux/nicmux/mux"
	"github.com/nicmux/nicmux/ns"
	"github.com/nicmux/nicmux/state"
)

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
// started on, with links up in the namespace ADD attached. The report is
// nil when the ID is not valid or the entry does not parse.
func Forget(ctx context.Context, p *mux.Plugin, req Request, id string, force bool) (*ForgetReport, error) {
	if err := state.ValidateID(id); err != nil {
		return nil, err
	}
	op, err := p.StartOp("nicmux forget", id, req.Entry, req.CNIPath)
	if err != nil {
		return nil, err
	}
	r := &ForgetReport{ContainerID: id, StateDir: op.NetConf().StateDir, Force: force, Released: []string{}, Left: []inspect.Leftover{}}
	err = r.forget(ctx, op)
	op.End(err)
	return r, err
}

// forget runs nicmux forget through op, holding the container's lock.
func (r *ForgetReport) forget(ctx context.Context, op *mux.Op) error {
	store, err := op.Open(false)
	if err != nil {
		return err
	}
	unlock, err := op.Lock(ctx, r.ContainerID)
	if err != nil {
		return err
	}
	defer unlock()
	rec := store.Load(r.ContainerID)
	switch rec.Status {
	case state.Unsafe, state.Failed:
		return rec.Err
	case state.Newer:
		if !r.Force {
			return fmt.Errorf("%w (nicmux forget -force releases the attachment file's chains for it and drops it)", rec.Err)
		}
	case state.Missing:
		return fmt.Errorf("container %s: %w in %s", r.ContainerID, state.ErrNotFound, r.StateDir)
	case state.Empty:
		r.Record = inspect.Describe(rec, true)
		r.Dropped = true
		return store.Remove(r.ContainerID)
	}
	r.Record = inspect.Describe(rec, true)
	netns := ""
	if r.Record.NetNS.Attached {
		netns, _ = rec.NetNS()
	}
	if err := refuseLive(rec, netns); err != nil {
		return err
	}
	op.Log().Info("nicmux forget: releasing", "containerID", r.ContainerID, "status", r.Record.Status, "interfaces", rec.Unreleased())
	released, terr := op.Release(ctx, rec, netns)
	r.file(released, netns)
	if terr != nil && !r.Force {
		return fmt.Errorf("the record is kept: %w", terr)
	}
	if err := store.Remove(r.ContainerID); err != nil {
		return err
	}
	r.Dropped = true
	if terr != nil {
		op.Log().Error("nicmux forget -force: dropped a record whose interfaces could not all be released", "containerID", r.ContainerID,
			"mayBeLeft", leftIfNames(r.Left), "error", terr)
	}
	return nil
}

// refuseLive refuses a complete ADD in its own namespace (netns, "" when
// gone), that no DEL has started on, with its links up: a running
// allocation (its record readable or not), not a stuck record.
func refuseLive(rec *state.Record, netns string) error {
	if !rec.Complete || netns == "" || len(rec.Unreleased()) != len(rec.Interfaces) {
		return nil
	}
	if live := ns.LiveLinks(netns, rec.IfNames()); len(live) > 0 {
		return fmt.Errorf("%w: %s up in netns %s, the namespace ADD attached: stop the allocation (or DEL it) instead, or remove the namespace first if it is a leftover",
			ErrLive, strings.Join(live, ", "), netns)
	}
	return nil
}

// file files what the release did with each interface: netns is the
// namespace ADD attached, if it is still there.
func (r *ForgetReport) file(released []mux.InterfaceRelease, netns string) {
	for _, x := range released {
		switch {
		case x.Err != nil:
			r.Left = append(r.Left, inspect.LeftoverOf(r.ContainerID, x.Planned, x.Result, netns, x.Err, false))
		case x.Abandoned != nil:
			r.Left = append(r.Left, inspect.LeftoverOf(r.ContainerID, x.Planned, x.Result, netns, x.Abandoned, true))
		case x.Now:
			r.Released = append(r.Released, x.Planned.IfName)
		}
	}
}

func leftIfNames(left []inspect.Leftover) []string {
	var out []string
	for _, l := range left {
		out = append(out, l.IfName)
	}
	return out
}
