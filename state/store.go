// Package state is nicmux's on-disk store: for each container, one record of
// what ADD chose (container.json) and one record per interface
// (if-<ifname>.json) holding the exact delegate configuration, arguments and
// result, so that CHECK and DEL work from what ADD did, not from a
// configuration that may have changed since.
//
// Layout under the state folder:
//
//	containers/<containerID>/container.json
//	containers/<containerID>/if-<ifname>.json
//	locks/<containerID>.lock
//
// Every write is atomic and durable (temporary file, fsync, rename, fsync of
// the folder); folders are 0700 and files 0600. An empty or malformed record
// is reported as a *CorruptError, never read as "no state".
package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/utils"
)

// Record kinds, written into every record so a reader can tell a nicmux
// record of this format from anything else.
const (
	KindContainer = "nicmuxContainerV1"
	KindInterface = "nicmuxInterfaceV1"
)

// ErrNotFound is returned when a container or interface has no record.
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

// NetNSID identifies a network namespace: the device and inode of its nsfs
// file, and its cookie. The kernel reuses a freed namespace's inode number,
// so a namespace recreated at the same path may get the old one back; the
// cookie (SO_NETNS_COOKIE, Linux 5.14 and later) is never reused while the
// system runs. Cookie is zero where the kernel has none.
type NetNSID struct {
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	Cookie uint64 `json:"cookie,omitempty"`
}

// IsZero reports whether id identifies nothing (the namespace was not found).
func (id NetNSID) IsZero() bool { return id == NetNSID{} }

// Same reports whether id and other identify the same, existing namespace.
func (id NetNSID) Same(other NetNSID) bool {
	if id.IsZero() || id.Dev != other.Dev || id.Ino != other.Ino {
		return false
	}
	return id.Cookie == 0 || other.Cookie == 0 || id.Cookie == other.Cookie
}

// Container is what ADD chose for one container.
type Container struct {
	Kind        string `json:"kind"`
	ContainerID string `json:"containerID"`
	// IfName is the runtime's CNI_IFNAME at ADD: the attachment the runtime
	// knows (and names in GC's valid attachments).
	IfName  string  `json:"ifname"`
	NetNS   string  `json:"netns"`
	NetNSID NetNSID `json:"netnsID"`
	// ListName and CNIVersion are those of nicmux's own configuration list.
	ListName   string `json:"listName"`
	CNIVersion string `json:"cniVersion"`
	// AttachmentFile is the attachment file ADD read; Set the set name
	// chosen through CNI_ARGS, if any.
	AttachmentFile string `json:"attachmentFile"`
	Set            string `json:"set,omitempty"`
	// Interfaces lists the interface names in attachment order.
	Interfaces []string `json:"interfaces"`
	// Complete is set once every interface was added and the merged result
	// returned; a record left incomplete marks an ADD that failed or crashed.
	Complete bool      `json:"complete"`
	Created  time.Time `json:"created"`
}

// Interface is one interface's record.
type Interface struct {
	Kind        string `json:"kind"`
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
	Network     string `json:"network"`
	CNIVersion  string `json:"cniVersion"`
	// Config is the chain's configuration list, exactly as used at ADD.
	Config json.RawMessage `json:"config"`
	// Result is the chain's result at CNIVersion; empty until the chain's
	// ADD succeeded.
	Result         json.RawMessage            `json:"result,omitempty"`
	NetNS          string                     `json:"netns"`
	NetNSID        NetNSID                    `json:"netnsID"`
	CNIArgs        string                     `json:"cniArgs,omitempty"`
	CapabilityArgs map[string]json.RawMessage `json:"capabilityArgs,omitempty"`
}

// Store is the state folder. The zero value is not usable: set Dir.
type Store struct {
	Dir string
}

// ValidateID checks a container ID before it becomes part of a path.
func ValidateID(containerID string) error {
	if e := utils.ValidateContainerID(containerID); e != nil {
		return fmt.Errorf("container ID %q: %w", containerID, e)
	}
	return nil
}

// ValidateIfName checks an interface name before it becomes part of a path.
func ValidateIfName(ifname string) error {
	if e := utils.ValidateInterfaceName(ifname); e != nil {
		return fmt.Errorf("interface name %q: %w", ifname, e)
	}
	return nil
}

func (s *Store) containersDir() string { return filepath.Join(s.Dir, "containers") }
func (s *Store) locksDir() string      { return filepath.Join(s.Dir, "locks") }
func (s *Store) lockPath(id string) string {
	return filepath.Join(s.locksDir(), id+".lock")
}

// ContainerDir is the folder holding a container's records.
func (s *Store) ContainerDir(id string) string { return filepath.Join(s.containersDir(), id) }

func (s *Store) containerPath(id string) string {
	return filepath.Join(s.ContainerDir(id), "container.json")
}

// InterfacePath is the path of one interface's record.
func (s *Store) InterfacePath(id, ifname string) string {
	return filepath.Join(s.ContainerDir(id), "if-"+ifname+".json")
}

// LoadContainer reads a container's record. It returns an error wrapping
// ErrNotFound when there is none.
func (s *Store) LoadContainer(id string) (*Container, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	c := &Container{}
	if err := readRecord(s.containerPath(id), KindContainer, c); err != nil {
		return nil, err
	}
	if c.ContainerID != id {
		return nil, &CorruptError{Path: s.containerPath(id), Err: fmt.Errorf("records container %q", c.ContainerID)}
	}
	return c, nil
}

// LoadInterface reads one interface's record. It returns an error wrapping
// ErrNotFound when there is none.
func (s *Store) LoadInterface(id, ifname string) (*Interface, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	if err := ValidateIfName(ifname); err != nil {
		return nil, err
	}
	r := &Interface{}
	path := s.InterfacePath(id, ifname)
	if err := readRecord(path, KindInterface, r); err != nil {
		return nil, err
	}
	if r.ContainerID != id || r.IfName != ifname {
		return nil, &CorruptError{Path: path, Err: fmt.Errorf("records %q/%q", r.ContainerID, r.IfName)}
	}
	// A record saved without a configuration holds "config":null, which
	// decodes to the 4 bytes "null", not to an empty RawMessage.
	if cfg := bytes.TrimSpace(r.Config); len(cfg) == 0 || cfg[0] != '{' {
		return nil, &CorruptError{Path: path, Err: errors.New("no delegate configuration")}
	}
	return r, nil
}

// SaveContainer writes a container's record, creating its folder if need
// be. The record is fsynced before it is renamed into place; the caller
// makes the rename durable with Sync (and a new folder's own entry with
// SyncContainers) once a batch of records is written.
func (s *Store) SaveContainer(c *Container) error {
	if err := ValidateID(c.ContainerID); err != nil {
		return err
	}
	c.Kind = KindContainer
	if err := s.ensureDir(c.ContainerID); err != nil {
		return err
	}
	return writeRecord(s.containerPath(c.ContainerID), c)
}

// SaveInterface writes one interface's record, as SaveContainer does.
func (s *Store) SaveInterface(r *Interface) error {
	if err := ValidateID(r.ContainerID); err != nil {
		return err
	}
	if err := ValidateIfName(r.IfName); err != nil {
		return err
	}
	r.Kind = KindInterface
	if err := s.ensureDir(r.ContainerID); err != nil {
		return err
	}
	return writeRecord(s.InterfacePath(r.ContainerID, r.IfName), r)
}

// MakeContainerDir creates a container's folder (and the store's folders
// on first use). The new folder's entry is durable once SyncContainers
// returns, which may run at the same time as the first records' writes.
func (s *Store) MakeContainerDir(id string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	return s.ensureDir(id)
}

// Sync makes the renames and removals of a container's records durable.
func (s *Store) Sync(id string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	return syncDir(s.ContainerDir(id))
}

// SyncContainers makes the creation or removal of container folders
// durable.
func (s *Store) SyncContainers() error {
	return syncDir(s.containersDir())
}

// UnlinkInterface deletes one interface's record, at once for every later
// reader; it is durable once the caller's Sync or RemoveContainer returns.
// A missing record is no error.
func (s *Store) UnlinkInterface(id, ifname string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	if err := ValidateIfName(ifname); err != nil {
		return err
	}
	if err := os.Remove(s.InterfacePath(id, ifname)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing state record: %w", err)
	}
	return nil
}

// RemoveContainer deletes all of a container's records and its folder; a
// missing folder is no error. The container record goes last, so that a crash
// part way leaves a container that is still known and can be removed again.
func (s *Store) RemoveContainer(id string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	dir := s.ContainerDir(id)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading state folder: %w", err)
	}
	for _, e := range entries {
		if e.Name() == "container.json" {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing state record: %w", err)
		}
	}
	if err := os.Remove(filepath.Join(dir, "container.json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing state record: %w", err)
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing state folder: %w", err)
	}
	return syncDir(s.containersDir())
}

// Containers lists the IDs of all containers with state, for GC. Folder names
// that are not valid container IDs are skipped.
func (s *Store) Containers() ([]string, error) {
	entries, err := os.ReadDir(s.containersDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing state: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && ValidateID(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// ensureDir creates a container's folder. Its entry in containers/ is
// synced by the caller (SyncContainers); when the store's own folders are
// created, which happens once, their entries are synced here.
func (s *Store) ensureDir(id string) error {
	dir := s.ContainerDir(id)
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	_, statErr := os.Stat(s.containersDir())
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating state folder: %w", err)
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		return errors.Join(syncDir(filepath.Dir(s.Dir)), syncDir(s.Dir))
	}
	return nil
}

// record is a Container or an Interface.
type record interface{ kind() string }

func readRecord(path, kind string, v record) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", path, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("reading state record: %w", err)
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return &CorruptError{Path: path, Err: errors.New("the file is empty")}
	}
	if err := json.Unmarshal(data, v); err != nil {
		return &CorruptError{Path: path, Err: err}
	}
	if got := v.kind(); got != kind {
		return &CorruptError{Path: path, Err: fmt.Errorf("kind is %q, want %q", got, kind)}
	}
	return nil
}

func (c *Container) kind() string { return c.Kind }
func (r *Interface) kind() string { return r.Kind }

func writeRecord(path string, v any) error {
	tmp, err := stage(path, v)
	if err != nil {
		return err
	}
	return commit(tmp, path)
}

// stage writes v's record to a new temporary file beside path, fsynced,
// and returns its name.
func stage(path string, v any) (string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encoding state record %s: %w", path, err)
	}
	// CreateTemp makes the file 0600.
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return "", fmt.Errorf("writing state record: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("writing state record %s: %w", path, err)
	}
	return f.Name(), nil
}

// commit renames a staged record into place; the caller syncs the folder.
func commit(tmp, path string) error {
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing state record %s: %w", path, err)
	}
	return nil
}

// Pending is a container record written and fsynced beside its place, to
// be renamed into place later: ADD writes the record that marks it
// complete while its delegates run, and puts it in place once they have
// succeeded.
type Pending struct {
	tmp, path string
}

// PrepareContainer writes c's record to a temporary file in its folder,
// fsynced; Commit or Discard must follow. Until then the folder holds an
// extra file, which RemoveContainer removes with the rest.
func (s *Store) PrepareContainer(c *Container) (*Pending, error) {
	if err := ValidateID(c.ContainerID); err != nil {
		return nil, err
	}
	c.Kind = KindContainer
	path := s.containerPath(c.ContainerID)
	tmp, err := stage(path, c)
	if err != nil {
		return nil, err
	}
	return &Pending{tmp: tmp, path: path}, nil
}

// Commit renames the record into place; the caller syncs the folder.
func (p *Pending) Commit() error { return commit(p.tmp, p.path) }

// Discard removes the record. It is a no-op on a nil Pending.
func (p *Pending) Discard() error {
	if p == nil {
		return nil
	}
	if err := os.Remove(p.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing staged state record: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("syncing state folder: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing state folder %s: %w", dir, err)
	}
	return nil
}
