package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"golang.org/x/sys/unix"

	"github.com/nicmux/nicmux/safedir"
)

// maxRecord bounds what is read of one record of the node's: they are a
// few hundred bytes.
const maxRecord = 1 << 20

// records are a node's own records of one pool, in its data folder:
//
//	<dataDir>/<pool>/leases/<containerID>:<ifname>@<ip>[,<ip>]          what the node holds, per owner
//	<dataDir>/<pool>/kept/<containerID>:<ifname>@<ip>[,<ip>]@<until>     what etcd keeps for an owner the node released, until (unix seconds)
//	<dataDir>/<pool>/releases/<containerID>:<ifname>:<claim|any>        a release queued while etcd was away
//	<dataDir>/<pool>/hint                                               the node's blocks, the pool's definition, the memory's etcd lease
//
// etcd is the truth. The lease records are what check compares it with;
// their names, and those of the kept records, are the addresses the
// node's next claim avoids when it guesses a free one; the hint saves
// round trips. All are a cache: written
// whole (a temporary file renamed into place) but not fsynced, and one that
// a crash lost or cut reads as unknown. A queued release is the only memory
// of a DEL that could not reach etcd: it is fsynced, with its folder,
// before DEL succeeds, and the next call on the node completes it. Every
// name is opened through its folder's descriptor without following links.
type records struct {
	dir, leases, kept, releases safedir.Dir
}

// queuedRelease is a release that waits for etcd.
type queuedRelease struct {
	Version     int    `json:"version"`
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
	// Claim limits the release to one claim; empty releases whatever the
	// owner holds.
	Claim  string    `json:"claim,omitempty"`
	Queued time.Time `json:"queued"`
	Why    string    `json:"why"`
	// name is the file it was read from.
	name string
}

// Owner is the owner to release.
func (q *queuedRelease) Owner() OwnerID { return OwnerID{ContainerID: q.ContainerID, IfName: q.IfName} }

func (q *queuedRelease) file() string {
	claim := q.Claim
	if claim == "" {
		claim = "any"
	}
	return q.ContainerID + ":" + q.IfName + ":" + claim
}

// hint is what the node last saw of etcd, to save round trips: its blocks,
// the pool's definition (as stored, so that a claim can compare it), and
// the etcd lease that keeps the addresses of released owners.
type hint struct {
	Version int          `json:"version"`
	Blocks  []string     `json:"blocks,omitempty"`
	Def     string       `json:"def,omitempty"`
	Memory  *memoryLease `json:"memory,omitempty"`
}

// openRecords opens, making them if needed, the node's records of pool,
// and sweeps the temporary files of writers that died mid-write.
func openRecords(dataDir, pool string) (*records, error) {
	root, err := safedir.Open(dataDir, true)
	if err != nil {
		return nil, codeErr(types.ErrIOFailure, fmt.Errorf("dataDir: %w", err))
	}
	defer root.Close()
	r := &records{}
	if r.dir, err = sub(root, pool); err == nil {
		if r.leases, err = sub(r.dir, "leases"); err == nil {
			if r.kept, err = sub(r.dir, "kept"); err == nil {
				r.releases, err = sub(r.dir, "releases")
			}
		}
	}
	if err != nil {
		r.Close()
		return nil, codeErr(types.ErrIOFailure, fmt.Errorf("dataDir: %w", err))
	}
	for _, d := range []safedir.Dir{r.dir, r.leases, r.releases} {
		d.Sweep()
	}
	return r, nil
}

func sub(d safedir.Dir, name string) (safedir.Dir, error) {
	s, _, err := d.Sub(name, true)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return s, fmt.Errorf("%s/%s is not a folder (a symbolic link?)", d.Path, name)
	}
	return s, err
}

// Close closes the records' folders.
func (r *records) Close() {
	for _, d := range []safedir.Dir{r.releases, r.kept, r.leases, r.dir} {
		d.Close()
	}
}

// leaseName is the name of the record of l: its owner and its addresses.
func leaseName(l *Lease) string {
	return ownerFile(l.Owner()) + "@" + ipList(l)
}

func ownerFile(id OwnerID) string { return id.ContainerID + ":" + id.IfName }

// parseLeaseName reads a lease record's name back: its owner's file part
// and its addresses. IDs never hold ':', addresses never '@'.
func parseLeaseName(name string) (owner string, addrs []netip.Addr, ok bool) {
	i := strings.LastIndexByte(name, '@')
	if i < 0 || !strings.Contains(name[:i], ":") {
		return "", nil, false
	}
	for _, s := range strings.Split(name[i+1:], ",") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return "", nil, false
		}
		addrs = append(addrs, a)
	}
	return name[:i], addrs, true
}

// recordNames lists the lease records' names, those of id only when id
// is set.
func (r *records) recordNames(id *OwnerID) ([]string, error) {
	ents, err := r.leases.Names()
	if err != nil {
		return nil, codeErr(types.ErrIOFailure, fmt.Errorf("dataDir: %w", err))
	}
	var out []string
	for _, e := range ents {
		owner, _, ok := parseLeaseName(e.Name())
		if ok && (id == nil || owner == ownerFile(*id)) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Hold records that the node holds l, whose value in etcd is raw, and
// drops any other record of its owner.
func (r *records) Hold(l *Lease, raw []byte) error {
	old, err := r.recordNames(&OwnerID{ContainerID: l.ContainerID, IfName: l.IfName})
	if err != nil {
		return err
	}
	// Stale records first: a crash between the two leaves no record of the
	// owner (unknown), never two.
	name := leaseName(l)
	for _, o := range old {
		if o != name {
			_ = r.leases.Remove(o)
		}
	}
	for _, k := range r.keptOf(l.Owner()) {
		_ = r.kept.Remove(k)
	}
	if err := r.leases.WriteFile(name, raw, false); err != nil {
		return codeErr(types.ErrIOFailure, fmt.Errorf("dataDir: %w", err))
	}
	return nil
}

// recorded is a lease record: the lease, and its value in etcd when the
// node recorded it.
type recorded struct {
	Lease *Lease
	raw   []byte
}

// Held returns what the node records for id: nil when it records nothing,
// or when its record cannot be read (a crash cut it: the lease is unknown
// here, and etcd tells).
func (r *records) Held(id OwnerID) *recorded {
	names, err := r.recordNames(&id)
	if err != nil || len(names) != 1 {
		return nil
	}
	b, err := r.leases.ReadFile(names[0], maxRecord)
	if err != nil {
		return nil
	}
	l, err := decodeLease(names[0], b)
	if err != nil || l.Owner() != id {
		return nil
	}
	return &recorded{Lease: l, raw: b}
}

// Drop removes the node's records of id's lease. They are a cache: not
// fsynced.
func (r *records) Drop(id OwnerID) error {
	names, err := r.recordNames(&id)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := r.leases.Remove(n); err != nil {
			return codeErr(types.ErrIOFailure, fmt.Errorf("dataDir: %w", err))
		}
	}
	return nil
}

// All lists the node's lease records; those that cannot be read are in bad.
func (r *records) All() (held []*Lease, bad []error, err error) {
	names, err := r.recordNames(nil)
	for _, name := range names {
		b, err := r.leases.ReadFile(name, maxRecord)
		if err == nil {
			var l *Lease
			if l, err = decodeLease(r.leases.Path+"/"+name, b); err == nil {
				held = append(held, l)
				continue
			}
		}
		bad = append(bad, err)
	}
	return held, bad, err
}

// Used lists the addresses the node's lease records name, and those its
// kept records name until their time; kept records past it go.
func (r *records) Used(now time.Time) map[netip.Addr]bool {
	names, _ := r.recordNames(nil)
	used := map[netip.Addr]bool{}
	for _, name := range names {
		_, addrs, _ := parseLeaseName(name)
		for _, a := range addrs {
			used[a] = true
		}
	}
	ents, _ := r.kept.Names()
	for _, e := range ents {
		_, addrs, until, ok := parseKeptName(e.Name())
		switch {
		case !ok:
		case until.Before(now):
			_ = r.kept.Remove(e.Name())
		default:
			for _, a := range addrs {
				used[a] = true
			}
		}
	}
	return used
}

// Keep moves the node's record of id's lease to kept/, until until: etcd
// keeps its addresses for id meanwhile, and the node's guesses avoid them.
func (r *records) Keep(id OwnerID, until time.Time) error {
	names, err := r.recordNames(&id)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := r.leases.Rename(n, r.kept, n+"@"+strconv.FormatInt(until.Unix(), 10)); err != nil {
			return codeErr(types.ErrIOFailure, fmt.Errorf("dataDir: %w", err))
		}
	}
	return nil
}

// keptOf lists the kept records of id.
func (r *records) keptOf(id OwnerID) []string {
	ents, _ := r.kept.Names()
	var out []string
	for _, e := range ents {
		owner, _, _, ok := parseKeptName(e.Name())
		if ok && owner == ownerFile(id) {
			out = append(out, e.Name())
		}
	}
	return out
}

// parseKeptName reads a kept record's name back.
func parseKeptName(name string) (owner string, addrs []netip.Addr, until time.Time, ok bool) {
	i := strings.LastIndexByte(name, '@')
	if i < 0 {
		return "", nil, until, false
	}
	sec, err := strconv.ParseInt(name[i+1:], 10, 64)
	if err != nil {
		return "", nil, until, false
	}
	owner, addrs, ok = parseLeaseName(name[:i])
	return owner, addrs, time.Unix(sec, 0), ok
}

// Queue records a release for the next call to complete, durably.
func (r *records) Queue(q queuedRelease) error {
	q.Version = recordVersion
	b, _ := json.Marshal(&q)
	err := r.releases.WriteFile(q.file(), b, true)
	if err == nil {
		err = r.releases.Sync()
	}
	if err != nil {
		return codeErr(types.ErrIOFailure, fmt.Errorf("dataDir: %w", err))
	}
	return nil
}

// Queued lists the queued releases. A record that cannot be read is
// listed from its name, releasing whatever the owner holds: it must not
// pin the address for ever.
func (r *records) Queued() ([]queuedRelease, error) {
	ents, err := r.releases.Names()
	if err != nil {
		return nil, codeErr(types.ErrIOFailure, fmt.Errorf("dataDir: %w", err))
	}
	var out []queuedRelease
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		var q queuedRelease
		b, err := r.releases.ReadFile(name, maxRecord)
		if err != nil || json.Unmarshal(b, &q) != nil || q.file() != name {
			parts := strings.SplitN(name, ":", 3)
			if len(parts) != 3 {
				continue
			}
			q = queuedRelease{ContainerID: parts[0], IfName: parts[1], Why: "unreadable record " + r.releases.Path + "/" + name}
		}
		q.name = name
		out = append(out, q)
	}
	return out, nil
}

// Done removes a queued release, durably (a release of "any" claim that
// ran again after a crash could undo a later claim), and the node's record
// of the lease it released.
func (r *records) Done(q queuedRelease) error {
	name := q.name
	if name == "" {
		name = q.file()
	}
	err := r.releases.Remove(name)
	if err == nil {
		err = r.releases.Sync()
	}
	if err != nil {
		return codeErr(types.ErrIOFailure, fmt.Errorf("dataDir: %w", err))
	}
	if h := r.Held(q.Owner()); h != nil && (q.Claim == "" || q.Claim == h.Lease.Claim) {
		return r.Drop(q.Owner())
	}
	return nil
}

// Hint returns what the node last recorded of etcd; empty when nothing
// can be read.
func (r *records) Hint() *hint {
	h := &hint{}
	b, err := r.dir.ReadFile("hint", maxRecord)
	if err != nil || json.Unmarshal(b, h) != nil || h.Version != recordVersion {
		return &hint{}
	}
	return h
}

// SetHint records h, when it differs from old.
func (r *records) SetHint(old, h *hint) error {
	h.Version = recordVersion
	slices.Sort(h.Blocks)
	if old != nil && old.Def == h.Def && slices.Equal(old.Blocks, h.Blocks) && old.Memory.same(h.Memory) {
		return nil
	}
	b, _ := json.Marshal(h)
	if err := r.dir.WriteFile("hint", b, false); err != nil {
		return codeErr(types.ErrIOFailure, fmt.Errorf("dataDir: %w", err))
	}
	return nil
}
