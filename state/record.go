package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/ns"
)

// Record kinds, written into every record so that a reader can tell a
// nicmux record of this format from anything else (and from the format
// before it, which Load still reads: see docs/state.md).
const (
	kindContainer = "nicmuxContainerV2" // the plan
	kindInterface = "nicmuxInterfaceV2" // one interface's result
	kindComplete  = "nicmuxCompleteV1"  // the mark of a complete ADD

	kindContainerV1 = "nicmuxContainerV1"
	kindInterfaceV1 = "nicmuxInterfaceV1"
)

// ErrNotFound is returned when a container has no record.
var ErrNotFound = errors.New("no state recorded")

// CorruptError reports a record that exists but cannot be used.
type CorruptError struct {
	Path string
	Err  error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("state record %s is corrupt: %v", e.Path, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// CNICode is the spec's I/O failure.
func (e *CorruptError) CNICode() uint { return types.ErrIOFailure }

// NewerError reports a record of a format newer than this nicmux reads:
// its kind names a later version of one of this nicmux's kinds.
type NewerError struct {
	Path string
	Kind string
}

func (e *NewerError) Error() string {
	return fmt.Sprintf("state record %s was written by a newer nicmux (kind %q): this nicmux leaves the container alone; "+
		"release it with that nicmux, or drop it with `nicmux forget -force`", e.Path, e.Kind)
}

// CNICode is the spec's I/O failure.
func (e *NewerError) CNICode() uint { return types.ErrIOFailure }

// newerKind reports whether kind names a later version of one of kinds
// ("nicmuxContainerV3" for "nicmuxContainerV2").
func newerKind(kind string, kinds []string) bool {
	base, v, ok := kindVersion(kind)
	if !ok {
		return false
	}
	for _, k := range kinds {
		if kb, kv, ok := kindVersion(k); ok && kb == base && v > kv {
			return true
		}
	}
	return false
}

// kindVersion splits a record kind into its name and version:
// "nicmuxContainerV2" is ("nicmuxContainer", 2).
func kindVersion(kind string) (string, int, bool) {
	i := strings.LastIndex(kind, "V")
	if i <= 0 || !strings.HasPrefix(kind, "nicmux") {
		return "", 0, false
	}
	v, err := strconv.Atoi(kind[i+1:])
	return kind[:i], v, err == nil && v > 0
}

// unsafeError reports a folder or file of the store that nicmux refuses to
// use: a symbolic link, or something another user could change.
type unsafeError struct {
	Path   string
	Reason string
}

func (e *unsafeError) Error() string { return "stateDir: " + e.Path + " " + e.Reason }

// CNICode is the spec's I/O failure.
func (e *unsafeError) CNICode() uint { return types.ErrIOFailure }

// Plan is what ADD chose for one container, made durable by Begin before
// any delegate gets its configuration: everything a later DEL needs to
// release every interface, whatever happens after.
type Plan struct {
	ContainerID string `json:"containerID"`
	// IfName is the runtime's CNI_IFNAME at ADD: the attachment the runtime
	// knows (and names in GC's valid attachments).
	IfName  string     `json:"ifname"`
	NetNS   string     `json:"netns"`
	NetNSID ns.NetNSID `json:"netnsID"`
	// ListName and CNIVersion are those of nicmux's own configuration list.
	ListName   string `json:"listName"`
	CNIVersion string `json:"cniVersion"`
	// AttachmentFile is the attachment file ADD read; Set the set name
	// chosen through CNI_ARGS, if any.
	AttachmentFile string    `json:"attachmentFile"`
	Set            string    `json:"set,omitempty"`
	Created        time.Time `json:"created"`
	// Interfaces are the container's interfaces in attachment order.
	Interfaces []Planned `json:"interfaces"`
}

// Planned is one interface of a plan: its chain exactly as ADD runs it.
type Planned struct {
	IfName     string `json:"ifname"`
	Network    string `json:"network"`
	CNIVersion string `json:"cniVersion"`
	// Config is the chain's configuration list.
	Config         json.RawMessage            `json:"config"`
	CNIArgs        string                     `json:"cniArgs,omitempty"`
	CapabilityArgs map[string]json.RawMessage `json:"capabilityArgs,omitempty"`
}

// Status is what Load found of a container. Each caller switches on it
// once; Record.Err says why for every status but Missing, Empty and Whole.
type Status int

const (
	// Missing: the container has no folder: nothing is recorded.
	Missing Status = iota
	// Empty: a folder holding neither a plan nor a result, which a crash
	// left before Begin recorded the plan: no delegate ran.
	Empty
	// Whole: the plan was read (Record.Plan), with what is known of each
	// interface.
	Whole
	// PlanLost: the plan is missing while result records are left:
	// Interfaces hold what they tell.
	PlanLost
	// Unreadable: the plan cannot be read (Err, a *CorruptError or an I/O
	// error): Interfaces hold what the result records tell.
	Unreadable
	// Unsafe: the container's folder is not one nicmux may use (Err, an
	// *unsafeError: a symbolic link, or another user's): nothing was read.
	Unsafe
	// Failed: nothing could be read (Err): a bad container ID, an I/O
	// error on the folder.
	Failed
	// Newer: a record is of a format newer than this nicmux's (Err, a
	// *NewerError): a newer nicmux attached the container, and this one
	// was rolled back below it. Nothing was read, and nothing may be
	// released: the container is taken to be live.
	Newer
)

func (s Status) String() string {
	names := [...]string{"missing", "empty", "whole", "plan lost", "unreadable", "unsafe", "failed", "newer"}
	if int(s) < len(names) {
		return names[s]
	}
	return "status " + strconv.Itoa(int(s))
}

// Record is a container's state as read back.
type Record struct {
	ContainerID string
	Status      Status
	// Err says why the status is not Whole (nil for Missing and Empty).
	Err error
	// Plan is set exactly when Status is Whole.
	Plan *Plan
	// Complete is set once the ADD returned its merged result.
	Complete bool
	// Interfaces are the plan's interfaces, in order, with what is known
	// of each; without a plan, those the result records describe.
	Interfaces []*Interface
	// Format is the record format: 2, or 1 for a container attached by
	// nicmux 0.1.
	Format int
	// set and netns are what the result records name, when the plan is
	// lost.
	set     string
	netns   string
	netnsID ns.NetNSID
}

// NetNS is the namespace ADD attached, by path and identity: the plan's,
// or when the plan is lost, the one its result records name.
func (r *Record) NetNS() (string, ns.NetNSID) {
	if r.Plan != nil {
		return r.Plan.NetNS, r.Plan.NetNSID
	}
	return r.netns, r.netnsID
}

// Set is the attachment set the container was attached with: the plan's,
// or when the plan is lost, the one its result records name.
func (r *Record) Set() string {
	if r.Plan != nil {
		return r.Plan.Set
	}
	return r.set
}

// Interface is one planned interface and what is known of it.
type Interface struct {
	Planned
	// Result is the chain's result at CNIVersion; nil when unknown: the
	// chain never succeeded, or its record was lost (see ResultErr).
	Result json.RawMessage
	// ResultErr says why a result record exists but cannot be read.
	ResultErr error
	// Released is set once the interface's chain was released.
	Released bool
	// Saved is when the result was recorded; zero when unknown (no result,
	// or a record of nicmux 0.1, which did not say).
	Saved time.Time
}

// IfNames lists the record's interface names in order.
func (r *Record) IfNames() []string {
	out := make([]string, len(r.Interfaces))
	for i, it := range r.Interfaces {
		out[i] = it.IfName
	}
	return out
}

// Unreleased lists the record's interfaces that are not released yet.
func (r *Record) Unreleased() []string {
	var out []string
	for _, it := range r.Interfaces {
		if !it.Released {
			out = append(out, it.IfName)
		}
	}
	return out
}

// Interface returns the record's interface named ifname, or nil.
func (r *Record) Interface(ifname string) *Interface {
	for _, it := range r.Interfaces {
		if it.IfName == ifname {
			return it
		}
	}
	return nil
}

// containerFile is container.json: the plan, with its kind.
type containerFile struct {
	Kind string `json:"kind"`
	Plan
}

// interfaceFile is if-<ifname>.json: one interface's result, with a copy of
// its plan so that it can be released should the plan be lost.
type interfaceFile struct {
	Kind        string `json:"kind"`
	ContainerID string `json:"containerID"`
	Planned
	Result  json.RawMessage `json:"result,omitempty"`
	NetNS   string          `json:"netns,omitempty"`
	NetNSID ns.NetNSID      `json:"netnsID"`
	Set     string          `json:"set,omitempty"`
	Saved   time.Time       `json:"saved,omitzero"`
}

// completeFile is complete.json.
type completeFile struct {
	Kind        string    `json:"kind"`
	ContainerID string    `json:"containerID"`
	Completed   time.Time `json:"completed"`
}

// containerV1 is nicmux 0.1's container.json: the plan's fields, but its
// interfaces by name only (their configurations were in their result
// records), and the ADD's completion.
type containerV1 struct {
	Plan
	Interfaces []string `json:"interfaces"`
	Complete   bool     `json:"complete"`
}

// decode reads a record of the given kinds into v, naming path in errors.
func decode(path string, data []byte, v any, kinds ...string) (kind string, err error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return "", &CorruptError{Path: path, Err: errors.New("the file is empty")}
	}
	var probe struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return "", &CorruptError{Path: path, Err: err}
	}
	known := false
	for _, k := range kinds {
		known = known || probe.Kind == k
	}
	if !known && newerKind(probe.Kind, kinds) {
		return "", &NewerError{Path: path, Kind: probe.Kind}
	}
	if !known {
		return "", &CorruptError{Path: path, Err: fmt.Errorf("kind is %q, want %q", probe.Kind, kinds[0])}
	}
	if v != nil {
		if err := unmarshal(path, data, v); err != nil {
			return "", err
		}
	}
	return probe.Kind, nil
}

// unmarshal reads a record whose kind decode has checked into v.
func unmarshal(path string, data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return &CorruptError{Path: path, Err: err}
	}
	return nil
}

// checkInterfaces refuses planned interfaces a DEL could not release: a bad
// or repeated name, no chain configuration.
func checkInterfaces(ps []Planned) error {
	seen := map[string]bool{}
	for i := range ps {
		p := &ps[i]
		if err := validateIfName(p.IfName); err != nil {
			return err
		}
		if seen[p.IfName] {
			return fmt.Errorf("interface %s is planned twice", p.IfName)
		}
		seen[p.IfName] = true
		if !p.hasConfig() {
			return fmt.Errorf("interface %s has no delegate configuration", p.IfName)
		}
	}
	return nil
}

// checkConfig refuses a planned interface without a chain configuration.
func checkConfig(path string, p *Planned) error {
	if !p.hasConfig() {
		return &CorruptError{Path: path, Err: fmt.Errorf("interface %q has no delegate configuration", p.IfName)}
	}
	return nil
}

// hasConfig reports whether p holds a chain configuration (a JSON object).
func (p *Planned) hasConfig() bool {
	cfg := bytes.TrimSpace(p.Config)
	return len(cfg) > 0 && cfg[0] == '{'
}
