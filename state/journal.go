package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// The plan journal makes a plan durable without creating a file.
//
// A new file's fsync commits the file system's journal, and with it every
// other change waiting in it: on a busy node, the results, leases and log
// lines of the verbs before. Measured on this project's CI machine (ext4,
// 2026-11-30), Begin's three fsyncs (the plan, its folder, containers/)
// took 1.1-3.0 ms inside a real ADD, against 0.13-0.15 ms for an fdatasync
// of a block rewritten in place in a file whose blocks already exist, which
// commits nothing but its data.
//
// So the plan is written twice: as container.json, atomically but not
// fsynced (what every reader reads), and into a slot of plans.slots, a file
// of fixed size allocated once, rewritten in place and fdatasynced (what
// makes it durable). A crash that loses the page cache loses at worst the
// first copy; the first verb after the next boot that opens the store for
// writing puts back every plan whose slot outlived its container.json
// (recoverOnce). A slot belongs to a container for as long as the
// container's folder exists; Remove frees it.
//
// Slots are locked with open file description locks on their byte range,
// so that ADDs of different containers in different processes claim
// different slots. A plan larger than a slot, or a journal that cannot be
// used (a full disk when it is made), falls back to fsyncing container.json
// and its folders.

const (
	journalFile = "plans.slots"
	journalTmp  = ".plans.slots.tmp"
	bootFile    = "plans.boot"
	slotSize    = 16 << 10
	slotCount   = 512
	slotHeader  = 512
	slotMagic   = "NMXPLAN1"
	slotProbes  = 16
)

// journal is the open plans.slots.
type journal struct {
	f *os.File
}

// openJournal opens plans.slots in the state folder, making it (every
// block written, so that rewriting one changes no metadata) if it is not
// there. It does not recover: Open did (recoverIfJournal), and a journal
// made since holds only plans of this boot.
func (s *Store) openJournal() (*journal, error) {
	f, err := s.root.open(journalFile, unix.O_RDWR, 0)
	if errors.Is(err, ErrNotFound) {
		f, err = s.makeJournal()
	}
	if err != nil {
		return nil, err
	}
	return &journal{f: f}, nil
}

// recoverIfJournal puts back, once per boot, the plans a crash lost, if
// there is a journal: the first verb after a crash may be a DEL. Open
// calls it, so every store that can Begin has recovered.
func (s *Store) recoverIfJournal() error {
	s.sweepJournalTmp()
	f, err := s.root.open(journalFile, unix.O_RDWR, 0)
	if errors.Is(err, ErrNotFound) || errors.Is(err, unix.EROFS) {
		return nil // nothing to recover, or nothing that can be written
	}
	if err != nil {
		return err
	}
	j := &journal{f: f}
	defer j.close()
	if err := s.recoverOnce(j); err != nil && !errors.Is(err, unix.EROFS) {
		return err
	}
	return nil
}

// sweepJournalTmp removes the temporary file of a journal whose making was
// cut short (nicmux killed), unless another verb is making one now.
func (s *Store) sweepJournalTmp() {
	var st unix.Stat_t
	if unix.Fstatat(s.root.fd, journalTmp, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return
	}
	lock, err := s.root.open(bootFile, unix.O_RDWR|unix.O_CREAT, 0o600)
	if err != nil {
		return
	}
	defer lock.Close()
	if unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		_ = s.root.remove(journalTmp)
	}
}

// makeJournal makes plans.slots under a temporary name and renames it into
// place, so that a journal is either whole or absent; the exclusive lock on
// plans.boot makes sure only one is ever made, so that no plan is written
// into a file another one replaces.
func (s *Store) makeJournal() (*os.File, error) {
	lock, err := s.root.open(bootFile, unix.O_RDWR|unix.O_CREAT, 0o600)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return nil, err
	}
	if f, err := s.root.open(journalFile, unix.O_RDWR, 0); !errors.Is(err, ErrNotFound) {
		return f, err // made meanwhile
	}
	tmp := journalTmp
	f, err := s.root.open(tmp, unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*os.File, error) {
		f.Close()
		_ = s.root.remove(tmp)
		return nil, fmt.Errorf("making the plan journal: %w", err)
	}
	if _, err := f.Write(make([]byte, slotSize*slotCount)); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := unix.Renameat(s.root.fd, tmp, s.root.fd, journalFile); err != nil {
		return fail(err)
	}
	if err := s.root.sync(); err != nil {
		return fail(err)
	}
	// A new journal holds no plan: nothing to recover this boot.
	if err := lock.Truncate(0); err != nil {
		return fail(err)
	}
	if _, err := lock.WriteAt([]byte(currentBoot()+"\n"), 0); err != nil {
		return fail(err)
	}
	return f, nil
}

func (j *journal) close() {
	if j != nil {
		j.f.Close()
	}
}

// lockSlot locks slot i's byte range, without waiting; false if another
// process holds it.
func (j *journal) lockSlot(i int, how int16) (bool, error) {
	lk := unix.Flock_t{Type: how, Whence: io.SeekStart, Start: int64(i) * slotSize, Len: slotSize}
	err := unix.FcntlFlock(j.f.Fd(), unix.F_OFD_SETLK, &lk)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
		return false, nil
	}
	return err == nil, err
}

func (j *journal) unlockSlot(i int) { _, _ = j.lockSlot(i, unix.F_UNLCK) }

// slot is one slot's header.
type slot struct {
	id     string
	length int
	crc    uint32
}

func (j *journal) readSlot(i int) (slot, error) {
	var h [slotHeader]byte
	if _, err := j.f.ReadAt(h[:], int64(i)*slotSize); err != nil {
		return slot{}, err
	}
	if string(h[:8]) != slotMagic {
		return slot{}, nil // never used, or freed
	}
	n := int(binary.LittleEndian.Uint16(h[16:18]))
	if n > MaxIDLength {
		return slot{}, nil
	}
	return slot{id: string(h[18 : 18+n]), length: int(binary.LittleEndian.Uint32(h[8:12])),
		crc: binary.LittleEndian.Uint32(h[12:16])}, nil
}

// write puts id's plan into slot i and waits for the disk.
func (j *journal) write(i int, id string, plan []byte) error {
	buf := make([]byte, slotHeader+len(plan))
	copy(buf, slotMagic)
	binary.LittleEndian.PutUint32(buf[8:12], uint32(len(plan)))
	binary.LittleEndian.PutUint32(buf[12:16], checksum(plan))
	binary.LittleEndian.PutUint16(buf[16:18], uint16(len(id)))
	copy(buf[18:], id)
	copy(buf[slotHeader:], plan)
	if _, err := j.f.WriteAt(buf, int64(i)*slotSize); err != nil {
		return err
	}
	return unix.Fdatasync(int(j.f.Fd()))
}

// free marks slot i free; not waiting for the disk: a freed slot that
// comes back after a crash only makes recover put back a plan that a DEL
// had removed, which a DEL or GC releases again.
func (j *journal) free(i int) {
	_, _ = j.f.WriteAt(make([]byte, 8), int64(i)*slotSize)
}

// payload reads slot i's plan, or nil if it is torn.
func (j *journal) payload(i int, sl slot) []byte {
	if sl.length <= 0 || sl.length > slotSize-slotHeader {
		return nil
	}
	b := make([]byte, sl.length)
	if _, err := j.f.ReadAt(b, int64(i)*slotSize+slotHeader); err != nil {
		return nil
	}
	if checksum(b) != sl.crc {
		return nil
	}
	return b
}

// checksum is a plan's CRC-32C; MakeTable returns the standard library's
// own table for it, made once.
func checksum(plan []byte) uint32 {
	return crc32.Checksum(plan, crc32.MakeTable(crc32.Castagnoli))
}

// home is the slot id's probing starts at.
func home(id string) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % slotCount)
}

// record makes id's plan durable in a slot of its own, and reports which;
// -1 and no error when no slot can take it (the caller then fsyncs the
// plan's file). The container's folder and container.json must exist
// already: a slot whose container has a folder is taken.
func (s *Store) record(id string, plan []byte) (int, error) {
	if len(plan) > slotSize-slotHeader {
		return -1, nil
	}
	j, err := s.openJournal()
	if err != nil {
		return -1, nil // not a failure: the plan is fsynced instead
	}
	defer j.close()
	start := home(id)
	for k := 0; k < slotProbes; k++ {
		i := (start + k) % slotCount
		ok, err := j.lockSlot(i, unix.F_WRLCK)
		if err != nil {
			return -1, err
		}
		if !ok {
			continue // another ADD is writing there
		}
		sl, err := j.readSlot(i)
		if err != nil {
			j.unlockSlot(i)
			return -1, nil // a journal that cannot be read: the plan is fsynced instead
		}
		if sl.id != "" && sl.id != id && s.Has(sl.id) {
			j.unlockSlot(i)
			continue // another container's
		}
		err = j.write(i, id, plan)
		j.unlockSlot(i)
		if err != nil {
			return -1, fmt.Errorf("writing the plan journal %s: %w", j.f.Name(), err)
		}
		return i, nil
	}
	return -1, nil
}

// freeSlots frees the slots that hold id's plan; Remove calls it before it
// removes the container's folder.
func (s *Store) freeSlots(id string) {
	f, err := s.root.open(journalFile, unix.O_RDWR, 0)
	if err != nil {
		return
	}
	j := &journal{f: f}
	defer j.close()
	start := home(id)
	for k := 0; k < slotProbes; k++ {
		i := (start + k) % slotCount
		// Read unlocked first: no other ADD takes a slot whose container
		// still has its folder, so a slot that does not name id now will
		// not while Remove runs. Only one that does is locked and freed.
		if sl, err := j.readSlot(i); err != nil || sl.id != id {
			continue
		}
		if ok, _ := j.lockSlot(i, unix.F_WRLCK); !ok {
			continue
		}
		if sl, err := j.readSlot(i); err == nil && sl.id == id {
			j.free(i)
		}
		j.unlockSlot(i)
	}
}

// recoverOnce puts back, once per boot, every plan whose slot outlived its
// container.json (a crash lost the page cache before the file reached the
// disk). It runs under an exclusive lock on plans.boot; verbs that find
// the boot recorded there go on at once.
func (s *Store) recoverOnce(j *journal) error {
	boot := currentBoot()
	if b, err := s.root.readFile(bootFile); err == nil && strings.TrimSpace(string(b)) == boot {
		return nil
	}
	f, err := s.root.open(bootFile, unix.O_RDWR|unix.O_CREAT, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	if b, err := io.ReadAll(f); err == nil && strings.TrimSpace(string(b)) == boot {
		return nil // another verb recovered meanwhile
	}
	for i := 0; i < slotCount; i++ {
		sl, err := j.readSlot(i)
		if err != nil || sl.id == "" || ValidateID(sl.id) != nil {
			continue
		}
		if s.Load(sl.id).Status == Whole {
			continue // its container.json is there
		}
		plan := j.payload(i, sl)
		if plan == nil {
			continue // torn: the crash came before Begin returned
		}
		if err := s.restore(sl.id, plan); err != nil {
			var unsafe *UnsafeError
			if errors.As(err, &unsafe) {
				// Every verb on that container refuses its folder and
				// names it (DEL removes a link); failing here would
				// refuse every verb on every container.
				continue
			}
			return fmt.Errorf("putting back the plan of container %s: %w", sl.id, err)
		}
	}
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err = f.WriteAt([]byte(boot+"\n"), 0)
	return err
}

// restore writes a container's plan back, durably.
func (s *Store) restore(id string, plan []byte) error {
	var cf containerFile
	if _, err := decode(journalFile, plan, &cf, KindContainer); err != nil || cf.ContainerID != id {
		return nil // not a plan of this format: leave it
	}
	d, created, err := openDir(s.containers, id, true)
	if err != nil {
		return err
	}
	defer d.close()
	if err := d.writeFile(planFile, plan, true); err != nil {
		return err
	}
	if err := d.sync(); err != nil {
		return err
	}
	if created {
		return s.containers.sync()
	}
	return nil
}

// currentBoot identifies the running boot.
func currentBoot() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "unknown"
	}
	return string(bytes.TrimSpace(b))
}
