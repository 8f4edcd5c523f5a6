package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nicmux/nicmux/safedir"
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
	sd, created, err := parent.safe().Sub(name, create)
	if err != nil {
		return nil, false, pathErr(err)
	}
	d = &dir{fd: sd.FD, path: sd.Path}
	if err := d.checkOwner(); err != nil {
		d.close()
		return nil, false, err
	}
	return d, created, nil
}

// openRoot opens the state folder itself, which may be reached through
// symbolic links (as /var/lib often is); what is inside it may not.
func openRoot(path string, create bool) (*dir, error) {
	sd, err := safedir.Open(path, create)
	if err != nil {
		return nil, err
	}
	d := &dir{fd: sd.FD, path: sd.Path}
	if err := d.checkOwner(); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

// safe is the folder as package safedir reads and writes it.
func (d *dir) safe() safedir.Dir { return safedir.Dir{FD: d.fd, Path: d.path} }

// pathErr words a failed open of a store folder or record as openErr does.
func pathErr(err error) error {
	if pe := (*os.PathError)(nil); errors.As(err, &pe) && pe.Op == "open" {
		return openErr(pe.Path, pe.Err)
	}
	return err
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
	err := d.safe().CheckOwner("nicmux's user")
	if ue := (*safedir.UnsafeError)(nil); errors.As(err, &ue) {
		return &unsafeError{Path: ue.Path, Reason: ue.Reason}
	}
	return err
}

func (d *dir) close() {
	if d != nil && d.fd >= 0 {
		_ = unix.Close(d.fd)
		d.fd = -1
	}
}

// open opens a file of the folder, never through a symbolic link.
func (d *dir) open(name string, flags int, perm uint32) (*os.File, error) {
	f, err := d.safe().OpenFile(name, flags, perm)
	return f, pathErr(err)
}

// readFile reads a record. A missing file wraps ErrNotFound; one that is not
// a regular file, or too large, is a *CorruptError.
func (d *dir) readFile(name string) ([]byte, error) {
	data, err := d.safe().ReadFile(name, maxRecord)
	if errors.Is(err, safedir.ErrNotRegular) || errors.Is(err, safedir.ErrTooLarge) {
		return nil, &CorruptError{Path: filepath.Join(d.path, name), Err: err}
	}
	return data, pathErr(err)
}

// writeFile puts data at name atomically: a new temporary file beside it,
// written (and fsynced when durable), then renamed over name. Readers see
// the old record or the new one, never a part.
func (d *dir) writeFile(name string, data []byte, durable bool) error {
	return pathErr(d.safe().WriteFile(name, data, durable))
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
func (d *dir) remove(name string) error { return d.safe().Remove(name) }

// removeDir removes the empty folder name.
func (d *dir) removeDir(name string) error {
	if err := unix.Unlinkat(d.fd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: filepath.Join(d.path, name), Err: err}
	}
	return nil
}

// names lists the folder's entries.
func (d *dir) names() ([]fs.DirEntry, error) { return d.safe().Names() }

// sync makes the folder's entries (creations, renames, removals) durable.
func (d *dir) sync() error { return d.safe().Sync() }
