package metrics

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nicmux/nicmux/safedir"
)

// maxFile bounds what is read of a file of the folder: the counters of a
// node are some kilobytes.
const maxFile = 4 << 20

// folder is the folder of a node's counters, inside the plugin's state
// folder. Everything in it is opened relative to it without following a
// symbolic link, and it must belong to the plugin's user and be writable
// by nobody else, as the state folder itself.
type folder struct{ safedir.Dir }

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
	d := &folder{safedir.Dir{FD: fd, Path: path}}
	if err := d.CheckOwner("the plugin's user"); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
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
	f, err := d.OpenFile(name, flags, 0o600)
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
