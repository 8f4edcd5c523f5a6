package conf

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A configuration file is read as one version of it: operators are told to
// replace files atomically (docs/configuration.md), but one written in
// place (two writes, `cat >`, an editor that renames the old file away and
// writes a new one) must never be read half-written, which would attach a
// subset of its interfaces without a word.
const (
	// settleWindow: a file changed less than this long ago is taken to be
	// still being written, and read again once it is older. A writer
	// that keeps the file open is seen however long it pauses (see
	// openForWriting); one that closes it between writes and pauses
	// longer than this is not told apart from two edits.
	settleWindow = 100 * time.Millisecond
	// settleLimit bounds the wait for a file to settle; past it the read
	// fails, saying why.
	settleLimit = 2 * time.Second
	// emptyLimit bounds the wait for an empty file to fill: an empty file
	// is never a valid one, and one truncated to be written again can
	// look settled (the kernel stamps and counts the truncating open as
	// it makes it).
	emptyLimit = 5 * settleWindow
)

// readSettled reads the configuration file at path, which open opens (and
// checks, as its caller requires), as readCapped does, once one version
// of it can be read: no process has it open for writing, the file's status
// before and after the read agree (size, modification and change times),
// the path still names the file read, and that version is older than
// settleWindow, and is not empty. Otherwise it reads again, for up to
// settleLimit; a missing file, for up to settleWindow (an editor's
// rename-then-write); an empty one, for up to emptyLimit.
func readSettled(path string, open func() (*os.File, error)) ([]byte, os.FileInfo, error) {
	start := time.Now()
	for {
		data, fi, wait, err := readVersion(path, open)
		if wait == 0 {
			return data, fi, err
		}
		elapsed := time.Since(start)
		switch {
		case errors.Is(err, fs.ErrNotExist) && elapsed >= settleWindow:
			return nil, nil, err
		case fi != nil && elapsed >= emptyLimit:
			return data, fi, nil // empty: the parser says so
		case elapsed >= settleLimit && err != nil:
			return nil, nil, err
		case elapsed >= settleLimit:
			return nil, nil, fmt.Errorf("it is being written: it changed while it was read, or less than %v before, for %v; "+
				"replace it atomically (write a temporary file in its folder, then rename it into place)", settleWindow, settleLimit)
		}
		time.Sleep(wait)
	}
}

// readVersion reads the file once. wait is zero when data is one settled
// version of the file, or err is final; otherwise it is how long to wait
// before reading again (fi is set then only for a settled empty file).
func readVersion(path string, open func() (*os.File, error)) (data []byte, fi os.FileInfo, wait time.Duration, err error) {
	const soon = settleWindow / 10
	f, err := open()
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, soon, err
	}
	if err != nil {
		return nil, nil, 0, err
	}
	defer f.Close()
	if openForWriting(f) {
		return nil, nil, soon, nil
	}
	if data, fi, err = readCapped(f); err != nil {
		return nil, nil, 0, err
	}
	after, aerr := f.Stat()
	now, nerr := os.Stat(path)
	if aerr != nil || nerr != nil || !sameVersion(fi, after) || !os.SameFile(fi, now) {
		return nil, nil, soon, errors.Join(aerr, nerr)
	}
	// A time in the future beyond the window is a clock set back: there
	// is nothing to wait for.
	if age := time.Since(fi.ModTime()); age < settleWindow && age > -settleWindow {
		return nil, nil, settleWindow - age, nil
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return data, fi, soon, nil
	}
	return data, fi, 0, nil
}

// openForWriting reports whether a process has the file open for writing
// (a writer between its writes, however long it stalls): the kernel then
// refuses a read lease (EAGAIN). The lease, when granted, is given back at
// once. Where no lease can be taken (a file system without them, a file
// of another user without CAP_LEASE) it reports false, and the settle
// window alone applies.
func openForWriting(f *os.File) bool {
	fd := int(f.Fd())
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_RDLCK); err != nil {
		return errors.Is(err, unix.EAGAIN)
	}
	_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK)
	return false
}

// sameVersion reports whether two status reads of one file show the same
// contents: size, modification and change times agree.
func sameVersion(a, b os.FileInfo) bool {
	sa, aok := a.Sys().(*syscall.Stat_t)
	sb, bok := b.Sys().(*syscall.Stat_t)
	return a.Size() == b.Size() && a.ModTime().Equal(b.ModTime()) && aok && bok && sa.Ctim == sb.Ctim
}
