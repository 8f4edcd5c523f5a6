package mux

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/types/create"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/delegate"
	"github.com/nicmux/nicmux/state"
)

// nic is one network interface of one container, as a verb handles it:
// each verb is a short read over a []*nic.
type nic struct {
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
	// release it): it is dropped with its record, and what the record says
	// may be left is logged.
	abandoned error
	took      time.Duration // how long its chain ran
}

// env is what the nic's chain gets from the runtime: the arguments
// recorded at ADD, and netns.
func (n *nic) env(netns string) delegate.Env {
	return delegate.Env{ContainerID: n.id, NetNS: netns, IfName: n.ifname,
		CNIArgs: n.planned.CNIArgs, CapabilityArgs: n.planned.CapabilityArgs}
}

// fromFile makes the nics of container id for the chains of the
// attachment file of set, each with the runtime's capability arguments and
// the job's for its interface (see conf.AttachmentFile.Bind), which the
// plan records for CHECK and DEL.
func fromFile(id, set string, file *conf.AttachmentFile, job *conf.JobArgs, runtime map[string]json.RawMessage) ([]*nic, error) {
	caps, err := file.Bind(job, runtime)
	if err != nil {
		return nil, err
	}
	nics := make([]*nic, 0, len(file.Interfaces))
	for _, c := range file.Interfaces {
		cfg, err := c.ConfList()
		if err != nil {
			return nil, fmt.Errorf("%s: encoding the chain: %w", c.IfName, err)
		}
		nics = append(nics, &nic{id: id, set: set, ifname: c.IfName, chain: c,
			planned: state.Planned{IfName: c.IfName, Network: c.Network, CNIVersion: c.CNIVersion, Config: cfg,
				CNIArgs: job.Delegated, CapabilityArgs: caps[c.IfName]}})
	}
	return nics, nil
}

// fromRecord makes the nics of a container's record, their chains and
// results rebuilt from what ADD recorded.
func fromRecord(rec *state.Record) []*nic {
	nics := make([]*nic, 0, len(rec.Interfaces))
	for _, it := range rec.Interfaces {
		n := &nic{id: rec.ContainerID, set: rec.Set(), ifname: it.IfName, planned: it.Planned, released: it.Released, lost: it.ResultErr}
		if len(it.Config) > 0 {
			n.chain, n.chainErr = conf.ChainFromConfList(it.IfName, it.Config)
			if n.chainErr != nil {
				n.chainErr = fmt.Errorf("the recorded configuration: %w", n.chainErr)
			}
		} else {
			n.chainErr = errors.New("no recorded configuration")
			if it.ResultErr != nil {
				n.chainErr = it.ResultErr
			}
		}
		if n.chain != nil && len(it.Result) > 0 {
			n.result, n.lost = decodeStored(it, n.chain.CNIVersion)
		}
		nics = append(nics, n)
	}
	return nics
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

// chains lists the nics' chains, for schedule.
func chains(nics []*nic) []*conf.Chain {
	out := make([]*conf.Chain, len(nics))
	for i, n := range nics {
		out[i] = n.chain
	}
	return out
}

// results lists the nics' results.
func results(nics []*nic) []types.Result {
	out := make([]types.Result, len(nics))
	for i, n := range nics {
		out[i] = n.result
	}
	return out
}

// ifnames lists the nics' interface names.
func ifnames(nics []*nic) []string {
	out := make([]string, len(nics))
	for i, n := range nics {
		out[i] = n.ifname
	}
	return out
}

// failures joins the nics' errors, each naming its interface, in the
// order given.
func failures(nics []*nic) error {
	var errs []error
	for _, n := range nics {
		if n.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.ifname, n.err))
		}
	}
	return errors.Join(errs...)
}
