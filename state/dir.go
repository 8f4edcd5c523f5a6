package state

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

	"golang.org/x/sys/unix"
)

// maxRecord bounds what is read of one record: nicmux's records are a few
// kilobytes, and a file that is larger was not written by nicmux.
const maxRecord = 16 << 20

// dir is an open folder of the store. Every name below the state folder is
// opened relative to its parent's descriptor with O_NOFOLLOW, so a symbolic
// link planted anywhere inside the store is refused, never followed.
type dir struct {
	fd   int
	path string // for messages only
}

// openDir opens the folder name inside parent, creating it first when
// create is set. created reports whether this call made it. The folder
// must belong to nicmux's user and be writable by nobody else.
func openDir(parent *dir, name string, create bool) (d *dir, created bool, err error) {
	path := filepath.Join(parent.path, name)
	if create {
		switch err := unix.Mkdirat(parent.fd, name, 0o700); {
		case err == nil:
			created = true
		case errors.Is(err, unix.EEXIST):
		default:
			return nil, false, &os.PathError{Op: "mkdir", Path: path, Err: err}
		}
	}
	fd, err := unix.Openat(parent.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false, openErr(path, err)
	}
	d = &dir{fd: fd, path: path}
	if err := d.checkOwner(); err != nil {
		d.close()
		return nil, false, err
	}
	return d, created, nil
}

// openRoot opens the state folder itself, which may be reached through
// symbolic links (as /var/lib often is); what is inside it may not.
func openRoot(path string, create bool) (*dir, error) {
	if create {
		if err := os.MkdirAll(path, 0o700); err != nil {
			return nil, err
		}
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	d := &dir{fd: fd, path: path}
	if err := d.checkOwner(); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

// openErr words a failed open of a store folder or record.
func openErr(path string, err error) error {
	switch {
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%s: %w", path, ErrNotFound)
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
		return &unsafeError{Path: path, Reason: "is a symbolic link or not a folder: nicmux never makes one and does not follow it"}
	}
	return &os.PathError{Op: "open", Path: path, Err: err}
}

// checkOwner refuses a folder that another user could change: every record
// in it decides what a later DEL runs.
func (d *dir) checkOwner() error {
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		return &os.PathError{Op: "stat", Path: d.path, Err: err}
	}
	if euid := os.Geteuid(); int(st.Uid) != euid {
		return &unsafeError{Path: d.path, Reason: fmt.Sprintf("is owned by uid %d, not by nicmux's user (uid %d): chown it to uid %d", st.Uid, euid, euid)}
	}
	if st.Mode&0o022 != 0 {
		return &unsafeError{Path: d.path, Reason: fmt.Sprintf("is writable by group or others (mode %04o): make it 0700", st.Mode&0o7777)}
	}
	return nil
}

func (d *dir) close() {
	if d != nil && d.fd >= 0 {
		_ = unix.Close(d.fd)
		d.fd = -1
	}
}

// open opens a file of the folder, never through a symbolic link.
func (d *dir) open(name string, flags int, perm uint32) (*os.File, error) {
	fd, err := unix.Openat(d.fd, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return nil, openErr(filepath.Join(d.path, name), err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(d.path, name)), nil
}

// readFile reads a record. A missing file wraps ErrNotFound; one that is not
// a regular file, or too large, is a *CorruptError.
func (d *dir) readFile(name string) ([]byte, error) {
	// O_NONBLOCK: opening a named pipe planted here would otherwise wait
	// for a writer before the type check below. It changes nothing for a
	// regular file.
	f, err := d.open(name, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &CorruptError{Path: f.Name(), Err: errors.New("not a regular file")}
	}
	// Sized from the fstat, as os.ReadFile does: one read and the EOF.
	var buf bytes.Buffer
	buf.Grow(int(min(fi.Size(), maxRecord)) + bytes.MinRead)
	if _, err := buf.ReadFrom(io.LimitReader(f, maxRecord+1)); err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	if buf.Len() > maxRecord {
		return nil, &CorruptError{Path: f.Name(), Err: fmt.Errorf("larger than %d bytes", maxRecord)}
	}
	return buf.Bytes(), nil
}

// writeFile puts data at name atomically: a new temporary file beside it,
// written (and fsynced when durable), then renamed over name. Readers see
// the old record or the new one, never a part.
func (d *dir) writeFile(name string, data []byte, durable bool) error {
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	tmp := "." + name + ".tmp-" + hex.EncodeToString(suffix[:])
	f, err := d.open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if rerr := unix.Renameat(d.fd, tmp, d.fd, name); rerr != nil {
			err = &os.LinkError{Op: "rename", Old: tmp, New: filepath.Join(d.path, name), Err: rerr}
		}
	}
	if err != nil {
		_ = unix.Unlinkat(d.fd, tmp, 0)
		return fmt.Errorf("writing %s: %w", filepath.Join(d.path, name), err)
	}
	return nil
}

// create makes an empty file if there is none: a mark whose presence is
// all it says.
func (d *dir) create(name string) error {
	f, err := d.open(name, unix.O_WRONLY|unix.O_CREAT, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// remove unlinks name; a missing name is no error. A symbolic link is
// removed itself, its target left alone.
func (d *dir) remove(name string) error {
	if err := unix.Unlinkat(d.fd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: filepath.Join(d.path, name), Err: err}
	}
	return nil
}

// removeDir removes the empty folder name.
func (d *dir) removeDir(name string) error {
	if err := unix.Unlinkat(d.fd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: filepath.Join(d.path, name), Err: err}
	}
	return nil
}

// names lists the folder's entries.
func (d *dir) names() ([]fs.DirEntry, error) {
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: d.path, Err: err}
	}
	f := os.NewFile(uintptr(fd), d.path)
	defer f.Close()
	entries, err := f.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", d.path, err)
	}
	return entries, nil
}

// sync makes the folder's entries (creations, renames, removals) durable.
func (d *dir) sync() error {
	if err := unix.Fsync(d.fd); err != nil {
		return &os.PathError{Op: "fsync", Path: d.path, Err: err}
	}
	return nil
}
