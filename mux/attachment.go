package mux

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/types/create"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/delegate"
	"github.com/nicmux/nicmux/ns"
	"github.com/nicmux/nicmux/state"
)

// attachment is one interface of one container, as a verb handles it:
// each verb is a short read over a []*attachment.
type attachment struct {
	id     string // the container's ID
	set    string // the attachment set it was attached from
	ifname string
	// chain is what the verb runs: the attachment file's chain for ADD,
	// the recorded one otherwise; nil when no recorded chain can be used
	// (a release then falls back to the attachment file's).
	chain    *conf.Chain
	chainErr error // why chain is nil
	// planned is the interface's plan: its chain's configuration and
	// arguments, as recorded (ADD: as it records them).
	planned state.Planned
	// result is ADD's result, or the recorded one; nil when unknown.
	result types.Result
	// lost says why a recorded result is unknown, when a record says so.
	lost error
	// ran is, after ADD, the part of chain that may hold resources; nil
	// if none of it ran.
	ran *conf.Chain
	// released is set once the interface's chain has been released.
	released bool
	err      error
	// abandoned says why a teardown gave up on the interface (nothing can
	// release it): no longer kept, but what its record says may be left,
	// which nicmux forget prints.
	abandoned error
	took      time.Duration // how long its chain ran
}

// env is what the attachment's chain gets from the runtime: the arguments
// recorded at ADD, and netns.
func (a *attachment) env(netns string) delegate.Env {
	return delegate.Env{ContainerID: a.id, NetNS: netns, IfName: a.ifname,
		CNIArgs: a.planned.CNIArgs, CapabilityArgs: a.planned.CapabilityArgs}
}

// fromFile makes ADD's attachments: the attachment file's chains, each
// with the runtime's arguments and the job's for its interface (see
// conf.Attachments.Bind), which the plan records for CHECK and DEL.
func (v *verb) fromFile(att *conf.Attachments, set string, job *conf.JobArgs) ([]*attachment, error) {
	caps, err := att.Bind(job, v.nc.RuntimeConfig)
	if err != nil {
		return nil, err
	}
	atts := make([]*attachment, 0, len(att.Interfaces))
	for _, c := range att.Interfaces {
		cfg, err := c.ConfList()
		if err != nil {
			return nil, fmt.Errorf("%s: encoding the chain: %w", c.IfName, err)
		}
		atts = append(atts, &attachment{id: v.args.ContainerID, set: set, ifname: c.IfName, chain: c,
			planned: state.Planned{IfName: c.IfName, Network: c.Network, CNIVersion: c.CNIVersion, Config: cfg,
				CNIArgs: job.Delegated, CapabilityArgs: caps[c.IfName]}})
	}
	return atts, nil
}

// plan is what Begin records for ADD's attachments.
func (v *verb) plan(atts []*attachment, file, set string, netnsID ns.NetNSID) *state.Plan {
	p := &state.Plan{ContainerID: v.args.ContainerID, IfName: v.args.IfName, NetNS: v.args.Netns, NetNSID: netnsID,
		ListName: v.nc.Name, CNIVersion: v.nc.CNIVersion, AttachmentFile: file, Set: set, Created: v.p.now().UTC()}
	for _, a := range atts {
		p.Interfaces = append(p.Interfaces, a.planned)
	}
	return p
}

// fromRecord makes the attachments of a container's record, its chains and
// results rebuilt from what ADD recorded.
func fromRecord(rec *state.Record) []*attachment {
	atts := make([]*attachment, 0, len(rec.Interfaces))
	for _, it := range rec.Interfaces {
		a := &attachment{id: rec.ContainerID, set: rec.Set(), ifname: it.IfName, planned: it.Planned, released: it.Released, lost: it.ResultErr}
		if len(it.Config) > 0 {
			a.chain, a.chainErr = conf.ChainFromConfList(it.IfName, it.Config)
			if a.chainErr != nil {
				a.chainErr = fmt.Errorf("the recorded configuration: %w", a.chainErr)
			}
		} else {
			a.chainErr = errors.New("no recorded configuration")
			if it.ResultErr != nil {
				a.chainErr = it.ResultErr
			}
		}
		if a.chain != nil && len(it.Result) > 0 {
			a.result, a.lost = decodeStored(it, a.chain.CNIVersion)
		}
		atts = append(atts, a)
	}
	return atts
}

// decodeStored decodes a recorded result at the chain's version.
func decodeStored(it *state.Interface, version string) (types.Result, error) {
	if r := strings.TrimSpace(string(it.Result)); r == "" || r == "null" {
		return nil, nil
	}
	res, err := create.Create(it.CNIVersion, it.Result)
	if err == nil {
		res, err = res.GetAsVersion(version)
	}
	if err != nil {
		return nil, fmt.Errorf("the recorded result: %w", err)
	}
	return res, nil
}

// toRelease makes the attachments a release of rec works on: those of the
// record (fromRecord) and, when its plan is lost, one for every chain of
// the attachment file that its result records do not describe: without
// the plan, the file is the best guess of what ADD attached.
func (v *verb) toRelease(rec *state.Record) []*attachment {
	atts := fromRecord(rec)
	if rec.Plan != nil {
		return atts
	}
	known := map[string]bool{}
	for _, a := range atts {
		known[a.ifname] = true
	}
	set := rec.Set()
	for _, c := range v.current(set) {
		if known[c.IfName] {
			continue
		}
		atts = append(atts, &attachment{id: rec.ContainerID, set: set, ifname: c.IfName, chain: c,
			planned: state.Planned{IfName: c.IfName, Network: c.Network, CNIVersion: c.CNIVersion}})
	}
	return atts
}

// chains lists the attachments' chains, for schedule.
func chains(atts []*attachment) []*conf.Chain {
	out := make([]*conf.Chain, len(atts))
	for i, a := range atts {
		out[i] = a.chain
	}
	return out
}

// ifnames lists the attachments' interface names.
func ifnames(atts []*attachment) []string {
	out := make([]string, len(atts))
	for i, a := range atts {
		out[i] = a.ifname
	}
	return out
}

// failures joins the attachments' errors, each naming its interface, in
// the order given.
func failures(atts []*attachment) error {
	var errs []error
	for _, a := range atts {
		if a.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.ifname, a.err))
		}
	}
	return errors.Join(errs...)
}
