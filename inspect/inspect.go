// Package inspect says what nicmux's state says of each container, without
// writing anything (it works on a read-only state folder): its namespace,
// and each interface's chain, addresses and state. nicmux show prints it;
// nicmux forget reports a record with it.
package inspect

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/types/create"

	"github.com/nicmux/nicmux/ns"
	"github.com/nicmux/nicmux/state"
)

// A container's status, as the operator's commands word it.
const (
	// StatusLive: ADD completed and its namespace is still there.
	StatusLive = "live"
	// StatusIncomplete: ADD did not complete (it is running, or it failed
	// and its rollback could not release everything) and its namespace is
	// still there.
	StatusIncomplete = "incomplete"
	// StatusPartlyReleased: a DEL released some interfaces and failed on
	// the others; the namespace is still there.
	StatusPartlyReleased = "partly released"
	// StatusStale: the namespace ADD attached is gone, or another one is at
	// its path: nicmux gc releases it.
	StatusStale = "stale"
	// StatusUnreadable: the container's record cannot be read; what its
	// other records tell is shown, and nothing releases it but a DEL or
	// nicmux forget.
	StatusUnreadable = "unreadable"
	// StatusEmpty: a folder without a plan, left by a crash before ADD
	// recorded one: no delegate ran. DEL and nicmux gc remove it.
	StatusEmpty = "empty"
)

// An interface's state.
const (
	IfAttached = "attached" // held by a live container
	IfPending  = "pending"  // held, waiting to be released
	IfReleased = "released" // its chain was released
)

// Container is what nicmux's state says of one container.
type Container struct {
	ContainerID string `json:"containerID"`
	Status      string `json:"status"`
	// Error says why the record cannot be read (StatusUnreadable).
	Error string `json:"error,omitempty"`
	// List is the name of the conflist that attached it.
	List           string `json:"list,omitempty"`
	Set            string `json:"set,omitempty"`
	AttachmentFile string `json:"attachmentFile,omitempty"`
	// IfName is the runtime's CNI_IFNAME at ADD.
	IfName   string      `json:"ifname,omitempty"`
	NetNS    NetNSStatus `json:"netns"`
	Complete bool        `json:"complete"`
	// Format is the record's format: 2, or 1 for nicmux 0.1's.
	Format  int       `json:"format,omitempty"`
	Created time.Time `json:"created,omitzero"`
	// StaleReason says why nicmux gc would release it.
	StaleReason string      `json:"staleReason,omitempty"`
	Interfaces  []Interface `json:"interfaces"`
}

// NetNSStatus is what is at the path of the namespace ADD attached.
type NetNSStatus struct {
	Path string `json:"path"`
	// Exists: a network namespace is at Path.
	Exists bool `json:"exists"`
	// Attached: it is the very namespace ADD attached (same inode and
	// cookie), not one made again at the same path.
	Attached bool `json:"attached"`
	// Error says why it could not be told.
	Error string `json:"error,omitempty"`
}

// Holding is what a record says one of a container's interfaces holds:
// its delegate network and chain, and the MAC and addresses its result
// gives it.
type Holding struct {
	IfName    string        `json:"ifname"`
	Network   string        `json:"network,omitempty"`
	Chain     []ChainPlugin `json:"chain"`
	MAC       string        `json:"mac,omitempty"`
	Addresses []string      `json:"addresses"`
	// ResultKnown is false when the chain's result is not recorded: it
	// never succeeded, or its record was lost.
	ResultKnown bool `json:"resultKnown"`
}

// Interface is what the state says of one of a container's interfaces.
type Interface struct {
	Holding
	CNIVersion string `json:"cniVersion,omitempty"`
	State      string `json:"state"`
	// ResultError says why a result record cannot be read.
	ResultError string `json:"resultError,omitempty"`
	// Saved is when the result was recorded.
	Saved time.Time `json:"saved,omitzero"`
	// The chain exactly as ADD ran it, with its arguments: only for one
	// container shown in detail.
	Config         json.RawMessage            `json:"config,omitempty"`
	CNIArgs        string                     `json:"cniArgs,omitempty"`
	CapabilityArgs map[string]json.RawMessage `json:"capabilityArgs,omitempty"`
}

// ChainPlugin is one plugin of a chain, and its IPAM plugin.
type ChainPlugin struct {
	Type string `json:"type"`
	IPAM string `json:"ipam,omitempty"`
}

// Inventory is what a state folder holds.
type Inventory struct {
	StateDir   string       `json:"stateDir"`
	Containers []*Container `json:"containers"`
}

// Inspect reads the state folder without writing anything (it works on a
// read-only one): every container, by ID, or only the one id names, shown then in
// detail (each chain's configuration and arguments). Records that cannot
// be read are listed with their error. Asked for a container it has no
// state of, it returns an error wrapping state.ErrNotFound.
func Inspect(stateDir, id string) (*Inventory, error) {
	store, err := state.OpenReadOnly(stateDir)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	inv := &Inventory{StateDir: stateDir, Containers: []*Container{}}
	ids := []string{id}
	if id == "" {
		if ids, err = store.Containers(); err != nil {
			return nil, err
		}
		slices.Sort(ids)
	} else if err := state.ValidateID(id); err != nil {
		return nil, err
	}
	for _, cid := range ids {
		rec := store.Load(cid)
		if rec.Status == state.Missing {
			if id != "" {
				return nil, fmt.Errorf("container %s: %w in %s", id, state.ErrNotFound, stateDir)
			}
			continue // removed while listing
		}
		inv.Containers = append(inv.Containers, Describe(rec, id != ""))
	}
	return inv, nil
}

// Describe words a container's record, as Load returned it. With detail,
// each interface carries its chain's configuration and arguments.
func Describe(rec *state.Record, detail bool) *Container {
	c := &Container{ContainerID: rec.ContainerID, Interfaces: []Interface{}}
	switch rec.Status {
	case state.Missing, state.Empty:
		c.Status = StatusEmpty
		return c
	case state.Unsafe, state.Failed, state.Newer:
		c.Status, c.Error = StatusUnreadable, rec.Err.Error()
		return c
	}
	if p := rec.Plan; p != nil {
		c.List, c.AttachmentFile, c.IfName, c.Created = p.ListName, p.AttachmentFile, p.IfName, p.Created
	}
	c.Set, c.Complete, c.Format = rec.Set(), rec.Complete, rec.Format
	path, recorded := rec.NetNS()
	c.NetNS = NetNSStatus{Path: path}
	cur, err := NetNSNow(path)
	if err != nil {
		c.NetNS.Error = err.Error()
	} else {
		c.NetNS.Exists = !cur.IsZero()
		c.NetNS.Attached = c.NetNS.Exists && cur.Same(recorded)
		c.StaleReason = StaleReason(path, recorded, cur)
	}
	released := false
	for _, it := range rec.Interfaces {
		released = released || it.Released
	}
	switch {
	case rec.Err != nil:
		c.Status, c.Error = StatusUnreadable, rec.Err.Error()
	case c.StaleReason != "":
		c.Status = StatusStale
	case !rec.Complete:
		c.Status = StatusIncomplete
	case released:
		c.Status = StatusPartlyReleased
	default:
		c.Status = StatusLive
	}
	for _, it := range rec.Interfaces {
		c.Interfaces = append(c.Interfaces, describeInterface(it, c.Status == StatusLive, detail))
	}
	return c
}

// NetNSNow identifies what is at a recorded namespace's path now (see
// ns.Identify). Something there that is not a network namespace (an empty
// file left under /run/netns) is none: the namespace ADD attached is gone.
func NetNSNow(path string) (ns.NetNSID, error) {
	cur, err := ns.Identify(path)
	if errors.Is(err, ns.ErrNotNetNS) {
		return ns.NetNSID{}, nil
	}
	return cur, err
}

// StaleReason says why a container whose namespace was recorded at path
// with identity recorded, and is cur now, is stale; "" when it is not. A
// namespace at the path whose identity was not recorded counts as the one
// ADD attached: nothing tells otherwise.
func StaleReason(path string, recorded, cur ns.NetNSID) string {
	switch {
	case cur.IsZero():
		return fmt.Sprintf("its netns %s is gone", path)
	case !recorded.IsZero() && !cur.Same(recorded):
		return fmt.Sprintf("netns %s is another namespace than the one ADD attached (it was made again)", path)
	}
	return ""
}

func describeInterface(it *state.Interface, live, detail bool) Interface {
	out := Interface{Holding: Holding{IfName: it.IfName, Network: it.Network, Chain: chainOf(it.Config), Addresses: []string{}},
		CNIVersion: it.CNIVersion, Saved: it.Saved}
	switch {
	case it.Released:
		out.State = IfReleased
	case live:
		out.State = IfAttached
	default:
		out.State = IfPending
	}
	if it.ResultErr != nil {
		out.ResultError = it.ResultErr.Error()
	}
	if r := strings.TrimSpace(string(it.Result)); r != "" && r != "null" {
		mac, addrs, err := resultAddresses(it)
		if err != nil {
			out.ResultError = err.Error()
		} else {
			out.ResultKnown, out.MAC, out.Addresses = true, mac, addrs
		}
	}
	if detail {
		out.Config, out.CNIArgs, out.CapabilityArgs = it.Config, it.CNIArgs, it.CapabilityArgs
	}
	return out
}

// resultAddresses reads the MAC and the addresses of the interface a
// chain's recorded result describes.
func resultAddresses(it *state.Interface) (mac string, addrs []string, err error) {
	r, err := create.Create(it.CNIVersion, it.Result)
	if err != nil {
		return "", nil, fmt.Errorf("the recorded result: %w", err)
	}
	res, err := types100.NewResultFromResult(r)
	if err != nil {
		return "", nil, fmt.Errorf("the recorded result: %w", err)
	}
	mac, addrs = ownAddresses(res, it.IfName)
	return mac, addrs, nil
}

// ownAddresses are the MAC and the addresses of interface ifname in a
// chain's result.
func ownAddresses(res *types100.Result, ifname string) (mac string, addrs []string) {
	own := ns.OwnInterface(res, ifname)
	if own >= 0 {
		mac = res.Interfaces[own].Mac
	}
	addrs = []string{}
	for _, ip := range res.IPs {
		if ns.OnInterface(ip, own) {
			addrs = append(addrs, ip.Address.String())
		}
	}
	return mac, addrs
}

// pluginConf is what the operator's commands read of a chain's plugin.
type pluginConf struct {
	Type string `json:"type"`
	IPAM struct {
		Type    string `json:"type"`
		DataDir string `json:"dataDir"`
	} `json:"ipam"`
}

// chainConf reads a recorded chain's plugins; nil when it cannot.
func chainConf(config json.RawMessage) []pluginConf {
	var list struct {
		Plugins []pluginConf `json:"plugins"`
	}
	if len(config) == 0 || json.Unmarshal(config, &list) != nil {
		return nil
	}
	return list.Plugins
}

// chainOf reads a recorded chain's plugins and their IPAM plugins; empty
// when the configuration cannot be read.
func chainOf(config json.RawMessage) []ChainPlugin {
	return chainPlugins(chainConf(config))
}

func chainPlugins(plugins []pluginConf) []ChainPlugin {
	out := []ChainPlugin{}
	for _, p := range plugins {
		out = append(out, ChainPlugin{Type: p.Type, IPAM: p.IPAM.Type})
	}
	return out
}
