package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"golang.org/x/sys/unix"
)

// records are a node's own records of one pool, in its data folder:
//
//	<dataDir>/<pool>/leases/<containerID>:<ifname>            what the node holds, per owner
//	<dataDir>/<pool>/releases/<containerID>:<ifname>:<claim>  a release queued while etcd was away
//	<dataDir>/<pool>/blocks                                   the node's blocks, as last seen
//	<dataDir>/<pool>/tmp/                                     files being written
//
// etcd is the truth; the leases are what check compares it with, and the
// blocks a hint that saves a round trip. A queued release is the only
// memory of a DEL that could not reach etcd: it is durable before DEL
// succeeds, and the next call on the node completes it. Every file is
// written whole (a temporary file in tmp/, fsync, rename, folder fsync)
// and opened without following symbolic links. A writer holds its
// temporary file's lock until the file is renamed into place, so that
// every call sweeps the files of writers killed mid-write and no other.
type records struct {
	dir string
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

// openRecords opens, making it if needed, the node's records of pool.
func openRecords(dataDir, pool string) (*records, error) {
	r := &records{dir: filepath.Join(dataDir, pool)}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, codeErr(types.ErrIOFailure, fmt.Errorf("dataDir: %w", err))
	}
	for _, d := range []string{r.dir, r.path("leases"), r.path("releases"), r.path("tmp")} {
		if err := mkdirNoLink(d); err != nil {
			return nil, codeErr(types.ErrIOFailure, fmt.Errorf("dataDir: %w", err))
		}
	}
	r.sweep()
	return r, nil
}

// sweep removes the temporary files of writers that died mid-write: the
// files whose lock nobody holds. A file renamed into place meanwhile is
// not at its temporary name any more, and stays.
func (r *records) sweep() {
	ents, err := os.ReadDir(r.path("tmp"))
	if err != nil {
		return
	}
	for _, e := range ents {
		name := r.path("tmp", e.Name())
		if !e.Type().IsRegular() {
			_ = os.Remove(name)
			continue
		}
		f, err := os.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			_ = os.Remove(name)
		}
		f.Close()
	}
}

// createTemp makes a temporary file for base in tmp/, locked until it is
// closed.
func (r *records) createTemp(base string) (*os.File, error) {
	f, err := os.CreateTemp(r.path("tmp"), base+".*")
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

// mkdirNoLink makes dir if needed and refuses one that is not a folder.
func mkdirNoLink(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a folder (a symbolic link?)", dir)
	}
	return nil
}

func (r *records) path(parts ...string) string {
	return filepath.Join(append([]string{r.dir}, parts...)...)
}

func ownerFile(id OwnerID) string { return id.ContainerID + ":" + id.IfName }

// Hold records that the node holds l.
func (r *records) Hold(l *Lease) error {
	return r.write(r.path("leases", ownerFile(l.Owner())), l)
}

// Held returns the lease the node records for id, or nil.
func (r *records) Held(id OwnerID) (*Lease, error) {
	name := r.path("leases", ownerFile(id))
	b, err := readNoLink(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, codeErr(types.ErrIOFailure, err)
	}
	l, err := decodeLease(name, b)
	if err != nil {
		return nil, codeErr(types.ErrIOFailure, err)
	}
	return l, nil
}

// Drop removes the node's record of id's lease.
func (r *records) Drop(id OwnerID) error { return r.remove(r.path("leases", ownerFile(id))) }

// All lists the node's lease records; those that cannot be read are in bad.
func (r *records) All() (held []*Lease, bad []error, err error) {
	err = r.each("leases", func(name string, b []byte) {
		l, err := decodeLease(name, b)
		if err != nil {
			bad = append(bad, err)
			return
		}
		held = append(held, l)
	})
	return held, bad, err
}

// Queue records a release for the next call to complete.
func (r *records) Queue(q queuedRelease) error {
	q.Version = recordVersion
	return r.write(r.path("releases", q.file()), &q)
}

// Queued lists the queued releases. A record that cannot be read is
// listed from its name, releasing whatever the owner holds: it must not
// pin the address for ever.
func (r *records) Queued() ([]queuedRelease, error) {
	var out []queuedRelease
	err := r.each("releases", func(name string, b []byte) {
		var q queuedRelease
		if json.Unmarshal(b, &q) != nil || q.file() != filepath.Base(name) {
			parts := strings.SplitN(filepath.Base(name), ":", 3)
			if len(parts) != 3 {
				return
			}
			q = queuedRelease{ContainerID: parts[0], IfName: parts[1], Why: "unreadable record " + name}
		}
		q.name = name
		out = append(out, q)
	})
	return out, err
}

// Done removes a queued release, and the node's record of the lease it
// released.
func (r *records) Done(q queuedRelease) error {
	name := q.name
	if name == "" {
		name = r.path("releases", q.file())
	}
	if err := r.remove(name); err != nil {
		return err
	}
	if l, err := r.Held(q.Owner()); err == nil && l != nil && (q.Claim == "" || q.Claim == l.Claim) {
		return r.Drop(q.Owner())
	}
	return nil
}

// Blocks returns the node's blocks as last recorded; nil when none are.
func (r *records) Blocks() []string {
	b, err := readNoLink(r.path("blocks"))
	if err != nil {
		return nil
	}
	var rec struct {
		Blocks []string `json:"blocks"`
	}
	if json.Unmarshal(b, &rec) != nil {
		return nil
	}
	return rec.Blocks
}

// SetBlocks records the node's blocks, when they differ from the record.
func (r *records) SetBlocks(ids []string) error {
	ids = slices.Clone(ids)
	sort.Strings(ids)
	if slices.Equal(ids, r.Blocks()) {
		return nil
	}
	return r.write(r.path("blocks"), map[string]any{"version": recordVersion, "blocks": ids})
}

// each calls f with every file of a folder of the records.
func (r *records) each(folder string, f func(name string, b []byte)) error {
	ents, err := os.ReadDir(r.path(folder))
	if err != nil {
		return codeErr(types.ErrIOFailure, fmt.Errorf("dataDir: %w", err))
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		name := r.path(folder, e.Name())
		b, err := readNoLink(name)
		if err != nil {
			b = nil
		}
		f(name, b)
	}
	return nil
}

// readNoLink reads a file, refusing a symbolic link.
func readNoLink(name string) ([]byte, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	return io.ReadAll(f)
}

// write writes v as JSON at name whole: a locked temporary file, fsynced,
// renamed over name, and the folder fsynced.
func (r *records) write(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	err = r.writeOnce(name, b)
	if errors.Is(err, fs.ErrNotExist) {
		// Another call's sweep took the temporary file between its
		// creation and its lock: once more.
		err = r.writeOnce(name, b)
	}
	if err != nil {
		return codeErr(types.ErrIOFailure, fmt.Errorf("dataDir: writing %s: %w", name, err))
	}
	return syncDir(filepath.Dir(name))
}

// writeOnce writes b through a temporary file renamed over name before it
// is closed: while it lives, it is locked.
func (r *records) writeOnce(name string, b []byte) error {
	tmp, err := r.createTemp(filepath.Base(name))
	if err != nil {
		return err
	}
	defer tmp.Close()
	if _, err = tmp.Write(b); err == nil {
		err = tmp.Sync()
	}
	if err == nil {
		err = os.Rename(tmp.Name(), name)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// remove removes name, if there, and fsyncs its folder.
func (r *records) remove(name string) error {
	err := os.Remove(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return codeErr(types.ErrIOFailure, fmt.Errorf("dataDir: %w", err))
	}
	return syncDir(filepath.Dir(name))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return codeErr(types.ErrIOFailure, fmt.Errorf("dataDir: %w", err))
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return codeErr(types.ErrIOFailure, fmt.Errorf("dataDir: syncing %s: %w", dir, err))
	}
	return nil
}
