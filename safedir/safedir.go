// Package safedir reads and writes the files of a folder through the
// folder's descriptor. Every name inside it is opened with O_NOFOLLOW, so
// a symbolic link planted there is refused, never followed; a file is
// replaced whole, through a temporary file beside it renamed over it, so a
// reader sees the old content or the new, never a part.
//
// It imports nothing of nicmux: nicmux's state and nicmux-ipam's records
// both stand on it.
package safedir

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNotRegular is what reading a name that is not a regular file (a
// folder, a named pipe, a device) wraps.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is what reading a file larger than the reader's limit wraps.
var ErrTooLarge = errors.New("larger than a record can be")

// Dir is an open folder: its descriptor, and its path for messages.
type Dir struct {
	FD   int
	Path string
}

// Open opens the folder at path, making it (and its parents, mode 0700)
// first when create is set. The path itself may pass through symbolic
// links (as /var/lib often does); what is inside it may not.
func Open(path string, create bool) (Dir, error) {
	if create {
		if err := os.MkdirAll(path, 0o700); err != nil {
			return Dir{}, err
		}
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Dir{}, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return Dir{FD: fd, Path: path}, nil
}

// Sub opens the folder name inside d, making it (mode 0700) first when
// create is set; created reports whether this call made it. A symbolic
// link or a file at name is refused: the error wraps unix.ELOOP or
// unix.ENOTDIR.
func (d Dir) Sub(name string, create bool) (sub Dir, created bool, err error) {
	path := filepath.Join(d.Path, name)
	if create {
		switch err := unix.Mkdirat(d.FD, name, 0o700); {
		case err == nil:
			created = true
		case errors.Is(err, unix.EEXIST):
		default:
			return Dir{}, false, &os.PathError{Op: "mkdir", Path: path, Err: err}
		}
	}
	fd, err := unix.Openat(d.FD, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return Dir{}, false, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return Dir{FD: fd, Path: path}, created, nil
}

// UnsafeError is a folder that another user than the process's could
// change, and why: Error is Path, a space, then Reason.
type UnsafeError struct {
	Path   string
	Reason string
}

func (e *UnsafeError) Error() string { return e.Path + " " + e.Reason }

// CheckOwner refuses, with an *UnsafeError, a folder that belongs to
// another user than the process's, or that group or others may write:
// what is in it decides what the process does. user names the process's
// user in the message, e.g. "nicmux's user".
func (d Dir) CheckOwner(user string) error {
	var st unix.Stat_t
	if err := unix.Fstat(d.FD, &st); err != nil {
		return &os.PathError{Op: "stat", Path: d.Path, Err: err}
	}
	if euid := os.Geteuid(); int(st.Uid) != euid {
		return &UnsafeError{Path: d.Path, Reason: fmt.Sprintf("is owned by uid %d, not by %s (uid %d): chown it to uid %d", st.Uid, user, euid, euid)}
	}
	if st.Mode&0o022 != 0 {
		return &UnsafeError{Path: d.Path, Reason: fmt.Sprintf("is writable by group or others (mode %04o): make it 0700", st.Mode&0o7777)}
	}
	return nil
}

// Close closes the folder's descriptor.
func (d Dir) Close() {
	if d.FD > 0 {
		_ = unix.Close(d.FD)
	}
}

// OpenFile opens the file name of the folder, never through a symbolic
// link.
func (d Dir) OpenFile(name string, flags int, perm uint32) (*os.File, error) {
	path := filepath.Join(d.Path, name)
	fd, err := unix.Openat(d.FD, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// ReadFile reads the file name, at most limit bytes. A name that is not a
// regular file wraps ErrNotRegular, a larger file ErrTooLarge; a missing
// one wraps fs.ErrNotExist.
func (d Dir) ReadFile(name string, limit int64) ([]byte, error) {
	// O_NONBLOCK: opening a named pipe planted here would otherwise wait
	// for a writer before the type check below. It changes nothing for a
	// regular file.
	f, err := d.OpenFile(name, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadAll(f, limit)
}

// ReadAll reads the open file f from its start, at most limit bytes: a
// file that is not regular wraps ErrNotRegular, a larger one ErrTooLarge.
func ReadAll(f *os.File, limit int64) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w", f.Name(), ErrNotRegular)
	}
	// Sized from the fstat, as os.ReadFile does: one read and the EOF.
	var buf bytes.Buffer
	buf.Grow(int(min(fi.Size(), limit)) + bytes.MinRead)
	if _, err := buf.ReadFrom(io.NewSectionReader(f, 0, limit+1)); err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	if int64(buf.Len()) > limit {
		return nil, fmt.Errorf("%s: %w (%d bytes)", f.Name(), ErrTooLarge, limit)
	}
	return buf.Bytes(), nil
}

// tempMark is in the name of every temporary file WriteFile makes, after
// a leading ".": what Sweep looks for.
const tempMark = ".tmp-"

// WriteFile puts data at name whole: a new temporary file beside it,
// written (and fsynced when durable), then renamed over name. The writer
// holds the temporary file's lock (flock) until the rename, so that Sweep
// removes the temporary files of writers that died, never a live one's.
// The folder's entry is made durable by Sync, when the caller needs it.
func (d Dir) WriteFile(name string, data []byte, durable bool) error {
	err := errSwept
	for range maxSwept {
		if err = d.writeOnce(name, data, durable); !errors.Is(err, errSwept) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Join(d.Path, name), err)
	}
	return nil
}

// errSwept says that a sweep removed a temporary file between its
// creation and its lock; once locked, no sweep can. maxSwept bounds the
// writes one WriteFile tries: each has a window of microseconds.
var errSwept = errors.New("a sweep removed the temporary file before its lock")

const maxSwept = 8

func (d Dir) writeOnce(name string, data []byte, durable bool) error {
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	tmp := "." + name + tempMark + hex.EncodeToString(suffix[:])
	f, err := d.OpenFile(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	// Closed after the rename: the lock goes with the descriptor.
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
	var st unix.Stat_t
	if err == nil {
		err = unix.Fstat(int(f.Fd()), &st)
	}
	if err == nil && st.Nlink == 0 {
		return errSwept
	}
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil && durable {
		err = f.Sync()
	}
	if err == nil {
		if rerr := unix.Renameat(d.FD, tmp, d.FD, name); rerr != nil {
			err = &os.LinkError{Op: "rename", Old: tmp, New: filepath.Join(d.Path, name), Err: rerr}
		}
	}
	if err != nil {
		_ = unix.Unlinkat(d.FD, tmp, 0)
	}
	return err
}

// Sweep removes the temporary files of writers that died mid-write: those
// whose lock nobody holds. A file renamed into place meanwhile is not at
// its temporary name any more, and stays.
func (d Dir) Sweep() {
	ents, err := d.Names()
	if err != nil {
		return
	}
	for _, e := range ents {
		if IsTemp(e.Name()) {
			d.sweepOne(e.Name())
		}
	}
}

// IsTemp reports whether name is a temporary file of WriteFile's.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, tempMark)
}

func (d Dir) sweepOne(name string) {
	f, err := d.OpenFile(name, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			_ = d.Remove(name) // a link planted under a temporary name
		}
		return
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		_ = d.Remove(name)
	}
}

// Remove unlinks name; a missing name is no error. A symbolic link is
// removed itself, its target left alone.
func (d Dir) Remove(name string) error {
	if err := unix.Unlinkat(d.FD, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: filepath.Join(d.Path, name), Err: err}
	}
	return nil
}

// Rename moves name to newName in the folder to, which may be d: never
// through a symbolic link (a link is moved itself).
func (d Dir) Rename(name string, to Dir, newName string) error {
	if err := unix.Renameat(d.FD, name, to.FD, newName); err != nil {
		return &os.LinkError{Op: "rename", Old: filepath.Join(d.Path, name), New: filepath.Join(to.Path, newName), Err: err}
	}
	return nil
}

// Names lists the folder's entries.
func (d Dir) Names() ([]fs.DirEntry, error) {
	fd, err := unix.Openat(d.FD, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: d.Path, Err: err}
	}
	f := os.NewFile(uintptr(fd), d.Path)
	defer f.Close()
	entries, err := f.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", d.Path, err)
	}
	return entries, nil
}

// Sync makes the folder's entries (creations, renames, removals) durable.
func (d Dir) Sync() error {
	if err := unix.Fsync(d.FD); err != nil {
		return &os.PathError{Op: "fsync", Path: d.Path, Err: err}
	}
	return nil
}
