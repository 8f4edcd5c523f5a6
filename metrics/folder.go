package metrics

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// maxFile bounds what is read of a file of the folder: the counters of a
// node are some kilobytes.
const maxFile = 4 << 20

// folder is the folder of a node's counters, inside the plugin's state
// folder. Everything in it is opened relative to it without following a
// symbolic link, and it must belong to the plugin's user and be writable
// by nobody else, as the state folder itself.
type folder struct {
	fd   int
	path string
}

// openFolder opens the folder at path, making it (and its parents) first
// when create is set and it is not there.
func openFolder(path string, create bool) (*folder, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) && create {
		if err = os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
			if err = unix.Mkdir(path, 0o700); errors.Is(err, unix.EEXIST) {
				err = nil
			}
		}
		if err == nil {
			fd, err = unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	d := &folder{fd: fd, path: path}
	if err := d.checkOwner(); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

// checkOwner refuses a folder another user could change.
func (d *folder) checkOwner() error {
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		return &os.PathError{Op: "stat", Path: d.path, Err: err}
	}
	if euid := os.Geteuid(); int(st.Uid) != euid {
		return fmt.Errorf("%s is owned by uid %d, not by the plugin's user (uid %d)", d.path, st.Uid, euid)
	}
	if st.Mode&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %04o): make it 0700", d.path, st.Mode&0o7777)
	}
	return nil
}

func (d *folder) close() {
	if d != nil && d.fd >= 0 {
		_ = unix.Close(d.fd)
		d.fd = -1
	}
}

func (d *folder) open(name string, flags int, perm uint32) (*os.File, error) {
	fd, err := unix.Openat(d.fd, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: filepath.Join(d.path, name), Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(d.path, name)), nil
}

// read reads a file of the folder; a missing one wraps os.ErrNotExist.
func (d *folder) read(name string) ([]byte, error) {
	// O_NONBLOCK: a named pipe planted here must not hang the read.
	f, err := d.open(name, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAll(f)
}

// readAll reads f from its start: a regular file of at most maxFile bytes.
func readAll(f *os.File) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", f.Name())
	}
	var buf bytes.Buffer
	buf.Grow(int(min(fi.Size(), maxFile)) + bytes.MinRead)
	if _, err := buf.ReadFrom(io.LimitReader(io.NewSectionReader(f, 0, maxFile+1), maxFile+1)); err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	if buf.Len() > maxFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", f.Name(), maxFile)
	}
	return buf.Bytes(), nil
}

// write replaces name with data: a temporary file of a name of the
// process's own, renamed over it. Not fsynced: a crash may tear the file,
// which its reader detects.
func (d *folder) write(name string, data []byte) error {
	tmp := "." + name + ".tmp-" + strconv.Itoa(os.Getpid())
	f, err := d.open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
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

// rewrite puts data in place of f's content, which f's lock guards: no
// new file, so no new inode for the file system to journal at every fold.
// Not fsynced, and not atomic: a crash may tear it, which its reader
// detects by its checksum.
func rewrite(f *os.File, data []byte) error {
	_, err := f.WriteAt(data, 0)
	if err == nil {
		err = f.Truncate(int64(len(data)))
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	return nil
}

// remove unlinks name; a missing one is no error.
func (d *folder) remove(name string) error {
	if err := unix.Unlinkat(d.fd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: filepath.Join(d.path, name), Err: err}
	}
	return nil
}

// errBusy is a lock another process holds.
var errBusy = errors.New("held by another process")

// lock takes the lock file name exclusively, waiting at most wait (zero:
// not at all, errBusy when it is held). A holder that dies lets go of it.
func (d *folder) lock(name string, wait time.Duration) (unlock func(), err error) {
	f, err := d.lockFile(name, unix.O_RDWR|unix.O_CREAT, unix.LOCK_EX, wait)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}

// lockFile opens name with flags and locks it (how: unix.LOCK_EX or
// LOCK_SH), waiting at most wait; closing the file lets go. The wait is
// the kernel's queue: a process that polled would miss its turns while 64
// others take theirs.
func (d *folder) lockFile(name string, flags, how int, wait time.Duration) (*os.File, error) {
	f, err := d.open(name, flags, 0o600)
	if err != nil {
		return nil, err
	}
	err = unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) && wait > 0 {
		err = flockWait(f, how, wait)
	}
	switch {
	case err == nil:
		return f, nil
	case errors.Is(err, unix.EWOULDBLOCK), errors.Is(err, errBusy):
		return nil, fmt.Errorf("%s: %w", f.Name(), errBusy)
	}
	f.Close()
	return nil, &os.PathError{Op: "flock", Path: f.Name(), Err: err}
}

// flockWait waits for the lock on f, at most wait. A wait that times out
// leaves its goroutine blocked in the kernel; should it get the lock, it
// lets go at once.
func flockWait(f *os.File, how int, wait time.Duration) error {
	got := make(chan error, 1)
	go func() {
		var err error
		for err = unix.Flock(int(f.Fd()), how); errors.Is(err, unix.EINTR); {
			err = unix.Flock(int(f.Fd()), how)
		}
		got <- err
	}()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case err := <-got:
		return err
	case <-timer.C:
		go func() {
			<-got
			f.Close()
		}()
		return errBusy
	}
}
