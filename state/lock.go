package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLockTimeout is returned when a container's lock could not be taken in
// time; the runtime should try again later.
var ErrLockTimeout = errors.New("timed out waiting for the container's lock")

// Lock takes the exclusive lock of one container, waiting until ctx is done.
// Each container has its own lock file, so different containers never wait
// for each other. The returned unlock releases it; unlock(true) also removes
// the lock file, for use once the container's state is gone.
//
// The lock file is separate from the records it guards (they are replaced by
// rename, which would orphan a lock held on them). Because a lock file may be
// removed by its holder, a waiter that gets the lock checks that the file it
// locked is still the one at the path, and starts over if not.
func (s *Store) Lock(ctx context.Context, containerID string) (unlock func(remove bool), err error) {
	if err := ValidateID(containerID); err != nil {
		return nil, err
	}
	dir := s.locksDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating lock folder: %w", err)
	}
	path := s.lockPath(containerID)
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("opening lock %s: %w", path, err)
		}
		if err := flockWait(ctx, f); err != nil {
			f.Close()
			if errors.Is(err, ErrLockTimeout) {
				return nil, fmt.Errorf("%w (lock file %s)", ErrLockTimeout, path)
			}
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		same, err := sameFile(f, path)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("checking lock %s: %w", path, err)
		}
		if !same {
			// The holder before us removed the file: lock the new one.
			f.Close()
			continue
		}
		var once sync.Once
		return func(remove bool) {
			// Only the holder may remove the file: a second call, after
			// another process took the lock, must not.
			once.Do(func() {
				if remove {
					_ = os.Remove(path)
				}
				_ = f.Close() // closing the descriptor releases the flock
			})
		}, nil
	}
}

func flockWait(ctx context.Context, f *os.File) error {
	delay := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
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
		if delay < 50*time.Millisecond {
			delay *= 2
		}
	}
}

func sameFile(f *os.File, path string) (bool, error) {
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	pi, err := os.Stat(path)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(fi, pi), nil
}
