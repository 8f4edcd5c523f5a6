package state

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLockTimeout is returned when a lock could not be taken in time; the
// runtime should try again later.
var ErrLockTimeout = errors.New("timed out waiting for a lock")

// Mode is how a lock is held.
type Mode int

const (
	// Shared holders run together: CHECK, which only reads.
	Shared Mode = iota
	// Exclusive holders run alone: ADD, DEL, and GC's release of a
	// container.
	Exclusive
)

func (m Mode) flock() int {
	if m == Exclusive {
		return unix.LOCK_EX
	}
	return unix.LOCK_SH
}

// Lock is a held container lock.
type Lock struct {
	f      *os.File // nil: a read-only store without the lock file
	mode   Mode
	name   string
	locks  *dir
	waited time.Duration
	once   sync.Once
}

// Acquire takes a container's lock, waiting until ctx is done. Each
// container has its own lock file (locks/<id>.lock), separate from the
// records it guards, which are replaced by rename. A Shared lock on a
// read-only store whose lock file cannot be made holds nothing: its holder
// only reads.
//
// A lock file may be removed by its exclusive holder (Discard), so a
// waiter that gets the lock checks that the file it locked is still the one
// at the path, and starts over if not.
func (s *Store) Acquire(ctx context.Context, id string, mode Mode) (*Lock, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	name := id + ".lock"
	start := time.Now()
	for {
		if s.locks == nil {
			if mode == Shared && s.readOnly {
				return &Lock{name: name, mode: mode}, nil
			}
			return nil, &dirError{Path: s.root.path, Err: errors.New("no locks folder")}
		}
		// O_APPEND: Note writes at the end without asking where it is.
		f, err := s.locks.open(name, unix.O_RDWR|unix.O_CREAT|unix.O_APPEND, 0o600)
		if err != nil && mode == Shared && (errors.Is(err, unix.EROFS) || errors.Is(err, unix.EACCES) || errors.Is(err, ErrNotFound)) {
			if f, err = s.locks.open(name, unix.O_RDONLY, 0); errors.Is(err, ErrNotFound) {
				return &Lock{name: name, mode: mode}, nil
			}
		}
		if err != nil {
			return nil, &dirError{Path: s.root.path, Err: fmt.Errorf("opening lock: %w", err)}
		}
		if err := flockWait(ctx, f, mode.flock()); err != nil {
			f.Close()
			if errors.Is(err, ErrLockTimeout) {
				return nil, fmt.Errorf("%w: container %s is held by another verb (lock file %s)", ErrLockTimeout, id, f.Name())
			}
			return nil, &dirError{Path: s.root.path, Err: fmt.Errorf("locking %s: %w", f.Name(), err)}
		}
		same, err := s.locks.sameFile(f, name)
		if err != nil {
			f.Close()
			return nil, &dirError{Path: s.root.path, Err: fmt.Errorf("checking lock %s: %w", f.Name(), err)}
		}
		if !same {
			// The holder before us removed the file: lock the new one.
			f.Close()
			continue
		}
		return &Lock{f: f, mode: mode, name: name, locks: s.locks, waited: time.Since(start)}, nil
	}
}

// tryAcquire takes a container's lock exclusively if nobody holds it, and
// returns nil, nil if somebody does.
func tryAcquire(s *Store, id string) (*Lock, error) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l, err := s.Acquire(ctx, id, Exclusive)
	if errors.Is(err, ErrLockTimeout) {
		return nil, nil
	}
	return l, err
}

// Waited is how long Acquire waited for the lock.
func (l *Lock) Waited() time.Duration { return l.waited }

// Release releases the lock. It is safe to call more than once.
func (l *Lock) Release() {
	l.once.Do(func() {
		if l.f != nil {
			_ = l.f.Close() // closing the descriptor releases the flock
		}
	})
}

// Discard releases the lock and, held exclusively, removes its file: once
// the container's state is gone. A shared lock is only released: the file
// at the path is its holder's only while no exclusive holder removed it,
// and the one there then may be a newer holder's, which a removal would
// let a third verb run beside. It is safe to call more than once, and
// after Release it does nothing.
func (l *Lock) Discard() {
	l.once.Do(func() {
		if l.f != nil {
			// Only the exclusive holder removes the file: waiters then
			// notice it is gone and lock a new one.
			if l.mode == Exclusive {
				_ = l.locks.remove(l.name)
			}
			_ = l.f.Close()
		}
	})
}

// Notes returns what holders noted in the lock file and did not clear:
// what a holder that was killed left, for its successor to clean up.
func (l *Lock) Notes() (string, error) {
	if l.f == nil {
		return "", nil
	}
	b, err := io.ReadAll(io.NewSectionReader(l.f, 0, maxRecord))
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", l.f.Name(), err)
	}
	return string(b), nil
}

// Note appends a line to the lock file. Only an exclusive holder may note.
func (l *Lock) Note(line string) error {
	if l.f == nil {
		return nil
	}
	_, err := l.f.WriteString(strings.TrimSuffix(line, "\n") + "\n")
	return err
}

// ClearNotes empties the lock file.
func (l *Lock) ClearNotes() error {
	if l.f == nil {
		return nil
	}
	return l.f.Truncate(0)
}

// sameFile reports whether f is still the file at name.
func (d *dir) sameFile(f *os.File, name string) (bool, error) {
	var a, b unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &a); err != nil {
		return false, err
	}
	if err := unix.Fstatat(d.fd, name, &b, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, err
	}
	return a.Dev == b.Dev && a.Ino == b.Ino, nil
}

// flockWait takes a flock, polling until ctx is done: a blocking flock
// could not be given up at a deadline.
func flockWait(ctx context.Context, f *os.File, how int) error {
	delay := 200 * time.Microsecond
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return err
		}
		select {
		case <-ctx.Done():
			return ErrLockTimeout
		case <-time.After(delay):
		}
		if delay < 20*time.Millisecond {
			delay *= 2
		}
	}
}

// Barrier keeps a GC's view of the store consistent with the ADDs running
// beside it. GC forwards the attachments it knows to the delegates, which
// release whatever else they hold (host-local frees every lease not listed):
// an ADD whose plan is not in GC's list must not run its delegates while
// GC's run. So an ADD holds the barrier Shared while it records its plan,
// and GC holds it Exclusive from the moment it lists the plans until its
// delegates are done: an ADD's plan is either in GC's list or written after
// GC is done. An ADD does not hold the barrier while its delegates run, so
// a GC never waits for them, and CHECK and DEL never take it.
//
// A GC waiting for the barrier goes first: it takes a queue (a flock on the
// state folder itself), which an ADD passes through (Shared, for an
// instant) on its way to gc.lock, so a steady stream of ADDs cannot starve
// it.
func (s *Store) Barrier(ctx context.Context, mode Mode) (release func(), err error) {
	if s.readOnly {
		return nil, &dirError{Path: s.root.path, Err: errors.New("opened read-only")}
	}
	open := func(name string) (*os.File, error) {
		f, err := s.root.open(name, unix.O_RDWR|unix.O_CREAT, 0o600)
		if err != nil {
			return nil, &dirError{Path: s.root.path, Err: fmt.Errorf("opening lock: %w", err)}
		}
		return f, nil
	}
	// The queue is the state folder itself, which every verb has open.
	qfd, err := unix.Openat(s.root.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &dirError{Path: s.root.path, Err: err}
	}
	queue := os.NewFile(uintptr(qfd), s.root.path)
	lock, err := open("gc.lock")
	if err != nil {
		queue.Close()
		return nil, err
	}
	fail := func(who string, err error) (func(), error) {
		queue.Close()
		lock.Close()
		if errors.Is(err, ErrLockTimeout) {
			return nil, fmt.Errorf("%w: %s (lock file %s)", ErrLockTimeout, who, lock.Name())
		}
		return nil, &dirError{Path: s.root.path, Err: fmt.Errorf("locking %s: %w", lock.Name(), err)}
	}
	waitingFor := "a running GC"
	if mode == Exclusive {
		waitingFor = "ADDs recording their plans"
	}
	if err := flockWait(ctx, queue, mode.flock()); err != nil {
		return fail("waiting for "+waitingFor, err)
	}
	if err := flockWait(ctx, lock, mode.flock()); err != nil {
		return fail("waiting for "+waitingFor, err)
	}
	if mode == Shared {
		queue.Close()
		return func() { lock.Close() }, nil
	}
	return func() { lock.Close(); queue.Close() }, nil
}

// SweepLocks removes the lock files of containers that have no state and
// that nobody holds.
func (s *Store) SweepLocks() error {
	if s.locks == nil {
		return nil
	}
	entries, err := s.locks.names()
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".lock")
		if !ok || ValidateID(id) != nil {
			continue
		}
		if err := s.DropLock(id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// DropLock removes container id's lock file if the container has no state
// and nobody holds the lock, which it takes exclusively to do so: only an
// exclusive holder removes a lock file (see Lock.Discard).
func (s *Store) DropLock(id string) error {
	if s.locks == nil {
		return nil
	}
	if st := s.Load(id).Status; st != Missing && st != Empty {
		return nil // state, if only result records to salvage
	}
	l, err := tryAcquire(s, id)
	if err != nil || l == nil {
		return err // nil, nil: held: its holder removes it, or a later sweep does
	}
	if st := s.Load(id).Status; st == Missing || st == Empty {
		l.Discard()
	} else {
		l.Release()
	}
	return nil
}
