package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// LockStore takes the store-wide lock that keeps GC apart from the other
// verbs: ADD, CHECK and DEL take it shared (they never wait for each other),
// GC takes it exclusive, so that the attachments GC sees, releases and hands
// to the delegates as valid cannot change under it. Take it before any
// container lock. The returned func releases it.
func (s *Store) LockStore(ctx context.Context, exclusive bool) (func(), error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state folder: %w", err)
	}
	path := filepath.Join(s.Dir, "gc.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	delay := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return func() { _ = f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("%w (lock file %s, held by a running GC)", ErrLockTimeout, path)
		case <-time.After(delay):
		}
		if delay < 50*time.Millisecond {
			delay *= 2
		}
	}
}

// SweepLocks removes the lock files of containers that have no state. Call
// it only while holding the store lock exclusively, when no verb can hold or
// wait for a container lock.
func (s *Store) SweepLocks() error {
	entries, err := os.ReadDir(s.locksDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing locks: %w", err)
	}
	var errs []error
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".lock")
		if !ok || ValidateID(id) != nil {
			continue
		}
		if _, err := os.Stat(s.ContainerDir(id)); errors.Is(err, os.ErrNotExist) {
			if err := os.Remove(filepath.Join(s.locksDir(), e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
