// Package state is nicmux's on-disk store. For each container it keeps the
// plan ADD made (every interface's exact delegate configuration and
// arguments, and the namespace's identity), each interface's result, and
// whether the ADD completed, so that CHECK and DEL work from what ADD did,
// not from a configuration that may have changed since.
//
// Layout under the state folder (docs/state.md has the formats):
//
//	containers/<containerID>/container.json      the plan
//	containers/<containerID>/if-<ifname>.json    an interface's result
//	containers/<containerID>/complete.json       the mark of a complete ADD
//	containers/<containerID>/released-<ifname>   the mark of a released interface
//	locks/<containerID>.lock                     the container's lock
//	gc.lock                                      GC's barrier (see Barrier)
//
// Durability: the plan is durable before Begin returns, which is before any
// delegate gets its configuration: container.json is fsynced before it is
// renamed into place, then its folder, and a new folder's entry in
// containers/. Results and marks are written atomically (a temporary file
// renamed into place) but not fsynced: a crash that loses the page cache
// also destroys every network namespace, and DEL and a later ADD release
// from the plan. A lost or torn result is read as "unknown", never as an
// error that pins the container. Removals are not fsynced either: a
// removal lost in a crash only makes a later DEL release again, which the
// delegates treat as a no-op.
//
// Safety: nothing below the state folder is reached through a symbolic
// link (every name is opened relative to its folder with O_NOFOLLOW), and
// the folders must belong to nicmux's user and be writable by nobody else.
// Container IDs and interface names are validated before they become names.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/utils"
	"golang.org/x/sys/unix"
)

// MaxIDLength is the longest container ID nicmux accepts: the ID becomes a
// file name with ".lock" appended, and file names have at most 255 bytes.
const MaxIDLength = 250

// File names inside a container's folder.
const (
	planFile     = "container.json"
	completeName = "complete.json"
)

func resultFile(ifname string) string   { return "if-" + ifname + ".json" }
func releasedFile(ifname string) string { return "released-" + ifname }

// ValidateID checks a container ID before it becomes part of a path.
func ValidateID(containerID string) error {
	if e := utils.ValidateContainerID(containerID); e != nil {
		return fmt.Errorf("container ID %q: %w", containerID, e)
	}
	if len(containerID) > MaxIDLength {
		return fmt.Errorf("container ID %.20q...: %w", containerID,
			types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("longer than %d characters", MaxIDLength), ""))
	}
	return nil
}

// validateIfName checks an interface name before it becomes part of a path.
func validateIfName(ifname string) error {
	if e := utils.ValidateInterfaceName(ifname); e != nil {
		return fmt.Errorf("interface name %q: %w", ifname, e)
	}
	return nil
}

// Store is an open state folder. Close it when done.
type Store struct {
	root       *dir
	containers *dir // nil when read-only and absent
	locks      *dir // nil when read-only and absent
	readOnly   bool
}

// Open opens the state folder at path, creating it and its folders if need
// be, for a verb that writes. The folder and its folders must belong to
// nicmux's user and be writable by nobody else.
func Open(path string) (*Store, error) {
	root, err := openRoot(path, true)
	if err != nil {
		return nil, stateDirErr(path, err)
	}
	s := &Store{root: root}
	var created bool
	if s.containers, created, err = openDir(root, "containers", true); err == nil {
		var c2 bool
		s.locks, c2, err = openDir(root, "locks", true)
		created = created || c2
	}
	if err == nil && created {
		// Once per store: the new folders' entries.
		err = root.sync()
	}
	if err != nil {
		s.Close()
		return nil, stateDirErr(path, err)
	}
	return s, nil
}

// OpenReadOnly opens the state folder at path for a verb that only reads
// (CHECK, and the operator's show): it creates nothing and works on a
// read-only file system.
func OpenReadOnly(path string) (*Store, error) {
	root, err := openRoot(path, false)
	if errors.Is(err, unix.ENOENT) {
		// Nothing was ever recorded: a store that holds nothing.
		return &Store{root: &dir{fd: -1, path: path}, readOnly: true}, nil
	}
	if err != nil {
		return nil, stateDirErr(path, err)
	}
	s := &Store{root: root, readOnly: true}
	for name, d := range map[string]**dir{"containers": &s.containers, "locks": &s.locks} {
		if *d, _, err = openDir(root, name, false); err != nil && !errors.Is(err, ErrNotFound) {
			s.Close()
			return nil, stateDirErr(path, err)
		}
	}
	return s, nil
}

// stateDirErr names the state folder in an error about it, unless it
// already does.
func stateDirErr(path string, err error) error {
	var unsafe *unsafeError
	var dirErr *dirError
	if errors.As(err, &unsafe) || errors.As(err, &dirErr) {
		return err
	}
	return &dirError{Path: path, Err: err}
}

// dirError reports a state folder that cannot be used: missing, read-only,
// full.
type dirError struct {
	Path string
	Err  error
}

func (e *dirError) Error() string { return "stateDir " + e.Path + ": " + e.Err.Error() }
func (e *dirError) Unwrap() error { return e.Err }

// CNICode is the spec's I/O failure.
func (e *dirError) CNICode() uint { return types.ErrIOFailure }

// writable refuses a write to a store opened read-only.
func (s *Store) writable() error {
	if s.readOnly {
		return &dirError{Path: s.root.path, Err: errors.New("opened read-only")}
	}
	return nil
}

// Close closes the store's folders.
func (s *Store) Close() {
	if s == nil {
		return
	}
	s.root.close()
	s.containers.close()
	s.locks.close()
}

// Load reads a container's record; its Status says what was found (see
// Status). Without a readable plan, Interfaces hold what the result records
// describe, so that a DEL can release what is still known.
func (s *Store) Load(id string) *Record {
	rec := &Record{ContainerID: id, Format: 2}
	fail := func(status Status, err error) *Record {
		rec.Status, rec.Err = status, err
		return rec
	}
	if err := ValidateID(id); err != nil {
		return fail(Failed, err)
	}
	if s.containers == nil {
		return rec // Missing: a read-only store that never held a container
	}
	d, _, err := openDir(s.containers, id, false)
	if err != nil {
		if st := openFailure(err); st != Missing {
			return fail(st, err)
		}
		return rec
	}
	defer d.close()
	entries, err := d.names()
	if err != nil {
		return fail(Failed, err)
	}
	present := map[string]bool{}
	for _, e := range entries {
		present[e.Name()] = true
	}
	rec.Complete = present[completeName]
	data, err := d.readFile(planFile)
	if err == nil {
		err = rec.decodePlan(d.path+"/"+planFile, data)
	}
	switch salvaged := err != nil && salvage(d, entries, rec); {
	case err == nil:
		rec.Status = Whole
		rec.loadResults(d, present)
	case errors.Is(err, ErrNotFound) && !salvaged:
		rec.Status = Empty
	case errors.Is(err, ErrNotFound):
		rec.Status, rec.Err = PlanLost, err
	default:
		rec.Status, rec.Err = Unreadable, err
	}
	if newer := rec.newer(err); newer != nil {
		return &Record{ContainerID: id, Status: Newer, Err: newer, Format: rec.Format}
	}
	return rec
}

// newer returns the first of err (the plan's) and the result records'
// errors that is a *NewerError, or nil.
func (rec *Record) newer(err error) error {
	var newer *NewerError
	if errors.As(err, &newer) {
		return newer
	}
	for _, it := range rec.Interfaces {
		if errors.As(it.ResultErr, &newer) {
			return newer
		}
	}
	return nil
}

// openFailure says what a failure to open a container's folder means: no
// folder (Missing), one nicmux may not use (Unsafe), or another failure.
func openFailure(err error) Status {
	var unsafe *unsafeError
	switch {
	case errors.Is(err, ErrNotFound):
		return Missing
	case errors.As(err, &unsafe):
		return Unsafe
	}
	return Failed
}

// loadResults fills in what is known of each interface of a whole plan:
// its result, or that it was released.
func (rec *Record) loadResults(d *dir, present map[string]bool) {
	if rec.Format == 1 {
		loadV1(d, rec, present)
		return
	}
	for _, it := range rec.Interfaces {
		if present[releasedFile(it.IfName)] {
			it.Released = true
			continue
		}
		if !present[resultFile(it.IfName)] {
			continue // never saved, or lost: unknown
		}
		f, err := readResult(d, rec.ContainerID, it.IfName)
		if err != nil {
			it.ResultErr = err
			continue
		}
		it.Result, it.Saved = f.Result, f.Saved
	}
}

// decodePlan reads container.json in either format.
func (rec *Record) decodePlan(path string, data []byte) error {
	kind, err := decode(path, data, nil, kindContainer, kindContainerV1)
	if err != nil {
		return err
	}
	if kind == kindContainerV1 {
		var v1 containerV1
		if err := unmarshal(path, data, &v1); err != nil {
			return err
		}
		if v1.ContainerID != rec.ContainerID {
			return &CorruptError{Path: path, Err: fmt.Errorf("records container %q", v1.ContainerID)}
		}
		plan := &v1.Plan
		for _, ifname := range v1.Interfaces {
			if err := validateIfName(ifname); err != nil {
				return &CorruptError{Path: path, Err: err}
			}
			plan.Interfaces = append(plan.Interfaces, Planned{IfName: ifname})
		}
		// Only a plan read whole is the record's: with an error, Load
		// returns a record without plan.
		rec.Format, rec.Complete, rec.Plan = 1, v1.Complete, plan
		return nil
	}
	var cf containerFile
	if err := unmarshal(path, data, &cf); err != nil {
		return err
	}
	if cf.ContainerID != rec.ContainerID {
		return &CorruptError{Path: path, Err: fmt.Errorf("records container %q", cf.ContainerID)}
	}
	if err := checkInterfaces(cf.Interfaces); err != nil {
		return &CorruptError{Path: path, Err: err}
	}
	plan := cf.Plan
	rec.Plan = &plan
	for _, p := range plan.Interfaces {
		rec.Interfaces = append(rec.Interfaces, &Interface{Planned: p})
	}
	return nil
}

// loadV1 fills a nicmux 0.1 record's interfaces from their records, which
// held the configuration with the result; 0.1 removed an interface's record
// once it was released.
func loadV1(d *dir, rec *Record, present map[string]bool) {
	for _, p := range rec.Plan.Interfaces {
		it := &Interface{Planned: p}
		rec.Interfaces = append(rec.Interfaces, it)
		if !present[resultFile(p.IfName)] {
			it.Released = true
			continue
		}
		f, err := readResult(d, rec.ContainerID, p.IfName)
		if err != nil {
			// 0.1 kept the configuration only here: without it the
			// interface can only be released from the attachment file.
			it.ResultErr = err
			continue
		}
		it.Planned = f.Planned
		it.Result, it.Saved = f.Result, f.Saved
	}
}

// salvage fills rec, whose plan is missing or unreadable, from the result
// records in the folder. It reports whether there was any.
func salvage(d *dir, entries []fs.DirEntry, rec *Record) bool {
	any := false
	for _, e := range entries {
		name := e.Name()
		ifname, ok := strings.CutPrefix(name, "if-")
		if !ok {
			continue
		}
		ifname, ok = strings.CutSuffix(ifname, ".json")
		if !ok || validateIfName(ifname) != nil {
			continue
		}
		any = true
		it := &Interface{Planned: Planned{IfName: ifname}}
		if f, err := readResult(d, rec.ContainerID, ifname); err != nil {
			it.ResultErr = err
		} else {
			it.Planned, it.Result, it.Saved = f.Planned, f.Result, f.Saved
			rec.set, rec.netns, rec.netnsID = f.Set, f.NetNS, f.NetNSID
		}
		rec.Interfaces = append(rec.Interfaces, it)
	}
	return any
}

// readResult reads and checks one interface's result record.
func readResult(d *dir, id, ifname string) (*interfaceFile, error) {
	name := resultFile(ifname)
	path := d.path + "/" + name
	data, err := d.readFile(name)
	if err != nil {
		return nil, err
	}
	f := &interfaceFile{}
	if _, err := decode(path, data, f, kindInterface, kindInterfaceV1); err != nil {
		return nil, err
	}
	if f.ContainerID != id || f.IfName != ifname {
		return nil, &CorruptError{Path: path, Err: fmt.Errorf("records %q/%q", f.ContainerID, f.IfName)}
	}
	if err := checkConfig(path, &f.Planned); err != nil {
		return nil, err
	}
	return f, nil
}

// Txn is an ADD in progress: its plan is durable; results and the
// completion mark follow.
type Txn struct {
	d    *dir
	plan *Plan
}

// Begin records a container's plan, durably, before any delegate acts: a
// crash or kill at any later point leaves a DEL everything it needs. The
// container must have no record (Remove a stale one first); files left in
// its folder by a crash before an earlier plan was complete are removed.
func (s *Store) Begin(p *Plan) (*Txn, error) {
	if err := s.writable(); err != nil {
		return nil, err
	}
	if err := ValidateID(p.ContainerID); err != nil {
		return nil, err
	}
	// What Load would refuse is refused here: a plan made durable must be
	// usable by every later DEL.
	if err := checkInterfaces(p.Interfaces); err != nil {
		return nil, fmt.Errorf("plan of container %s: %w", p.ContainerID, err)
	}
	data, err := marshal(containerFile{Kind: kindContainer, Plan: *p})
	if err != nil {
		return nil, err
	}
	d, created, err := openDir(s.containers, p.ContainerID, true)
	if err != nil {
		return nil, stateDirErr(s.root.path, err)
	}
	fail := func(err error) (*Txn, error) {
		d.close()
		return nil, stateDirErr(s.root.path, err) // read-only, full: the spec's I/O failure
	}
	if !created {
		if err := clear(d); err != nil {
			return fail(err)
		}
	}
	// The file, its entry in the folder, and a new folder's entry in
	// containers/: only then is the plan sure to be found after a crash.
	err = d.writeFile(planFile, data, true)
	if err == nil {
		err = d.sync()
	}
	if err == nil && created {
		err = s.containers.sync()
	}
	if err != nil {
		return fail(err)
	}
	return &Txn{d: d, plan: p}, nil
}

// clear removes the files of a folder that has no plan.
func clear(d *dir) error {
	entries, err := d.names()
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := d.remove(e.Name()); err != nil {
			return err
		}
	}
	return nil
}

// SaveResult records one interface's result. It is atomic, not durable: a
// result lost in a crash reads as unknown.
func (t *Txn) SaveResult(ifname string, result json.RawMessage) error {
	var planned *Planned
	for i := range t.plan.Interfaces {
		if t.plan.Interfaces[i].IfName == ifname {
			planned = &t.plan.Interfaces[i]
		}
	}
	if planned == nil {
		return fmt.Errorf("saving the result of %s: not in the plan", ifname)
	}
	data, err := marshal(interfaceFile{Kind: kindInterface, ContainerID: t.plan.ContainerID, Planned: *planned,
		Result: result, NetNS: t.plan.NetNS, NetNSID: t.plan.NetNSID, Set: t.plan.Set, Saved: time.Now().UTC()})
	if err != nil {
		return err
	}
	return t.d.writeFile(resultFile(ifname), data, false)
}

// Complete marks the ADD complete. Like results, the mark is atomic, not
// durable.
func (t *Txn) Complete() error {
	data, err := marshal(completeFile{Kind: kindComplete, ContainerID: t.plan.ContainerID, Completed: time.Now().UTC()})
	if err != nil {
		return err
	}
	return t.d.writeFile(completeName, data, false)
}

// Close ends the transaction; the records stay.
func (t *Txn) Close() { t.d.close() }

// MarkReleased marks one interface of a container released, so that a DEL
// repeated after a partial failure skips it, and drops its result.
func (s *Store) MarkReleased(id, ifname string) error {
	if err := s.writable(); err != nil {
		return err
	}
	if err := ValidateID(id); err != nil {
		return err
	}
	if err := validateIfName(ifname); err != nil {
		return err
	}
	d, _, err := openDir(s.containers, id, false)
	if err != nil {
		return err
	}
	defer d.close()
	if err := d.create(releasedFile(ifname)); err != nil {
		return err
	}
	return d.remove(resultFile(ifname))
}

// Remove deletes a container's records and folder; a missing folder is no
// error, and a symbolic link planted in its place is removed itself. The
// plan goes last, so a removal cut short leaves a container that is still
// known.
func (s *Store) Remove(id string) error {
	if err := s.writable(); err != nil {
		return err
	}
	if err := ValidateID(id); err != nil {
		return err
	}
	d, _, err := openDir(s.containers, id, false)
	if err != nil {
		switch openFailure(err) {
		case Missing:
			return nil
		case Unsafe:
			return s.containers.remove(id)
		}
		return err
	}
	defer d.close()
	entries, err := d.names()
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() != planFile {
			if err := d.remove(e.Name()); err != nil {
				return err
			}
		}
	}
	if err := d.remove(planFile); err != nil {
		return err
	}
	return s.containers.removeDir(id)
}

// Containers lists the IDs of all containers with state. Names that are not
// valid container IDs are skipped.
func (s *Store) Containers() ([]string, error) {
	if s.containers == nil {
		return nil, nil
	}
	entries, err := s.containers.names()
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if ValidateID(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

func marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding state record: %w", err)
	}
	return b, nil
}

// Has reports whether container id has a folder in the store.
func (s *Store) Has(id string) bool {
	if s.containers == nil || ValidateID(id) != nil {
		return false
	}
	var st unix.Stat_t
	return unix.Fstatat(s.containers.fd, id, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
}

// CheckWritable checks that the state folder takes a new file.
func (s *Store) CheckWritable() error {
	if err := s.writable(); err != nil {
		return err
	}
	name := ".status-check"
	if err := s.root.writeFile(name, nil, false); err != nil {
		return &dirError{Path: s.root.path, Err: err}
	}
	return s.root.remove(name)
}
