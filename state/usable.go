package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Usable checks what a verb that writes (ADD, DEL) needs of the state
// folder at path, as Open and the first record check it, without creating
// or changing anything: that the folder, or the nearest folder above it
// that exists, takes new entries (not a read-only mount, not another
// user's); that it and its containers and locks folders belong to
// nicmux's user (the caller's) and are writable by nobody else; that no
// file stands where a folder must be. Its errors read as Open's.
func Usable(path string) error {
	root, err := openRoot(path, false)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return creatable(path)
	}
	if err != nil {
		return stateDirErr(path, err)
	}
	defer root.close()
	for _, name := range []string{"containers", "locks"} {
		d, _, err := openDir(root, name, false)
		if errors.Is(err, ErrNotFound) {
			continue // the first verb makes it
		}
		if err != nil {
			return stateDirErr(path, err)
		}
		d.close()
	}
	if err := unix.Access(path, unix.W_OK|unix.X_OK); err != nil {
		return &dirError{Path: path, Err: fmt.Errorf("takes no new file: %w", err)}
	}
	return nil
}

// creatable checks that Open can make the folder at path, which cannot be
// opened as a folder: nothing stands there, and the nearest folder above
// it that exists takes new entries.
func creatable(path string) error {
	for dir := path; ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		switch {
		case errors.Is(err, unix.ENOENT) && dir != filepath.Dir(dir):
			continue
		case errors.Is(err, unix.ENOTDIR):
			continue // a file further up: found there
		case err != nil:
			return &dirError{Path: path, Err: err}
		case !fi.IsDir():
			return &dirError{Path: path, Err: fmt.Errorf("%s is a file, not a folder", dir)}
		}
		if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
			return &dirError{Path: path, Err: fmt.Errorf("does not exist, and cannot be made in %s: %w", dir, err)}
		}
		return nil
	}
}
