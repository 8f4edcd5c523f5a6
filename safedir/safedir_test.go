package safedir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

func open(t *testing.T) Dir {
	t.Helper()
	d, err := Open(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// Writers and sweepers at once (each call of nicmux-ipam sweeps the
// folders it writes in): every write lands, and no temporary file is left.
func TestWritesSurviveConcurrentSweeps(t *testing.T) {
	d := open(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					d.Sweep()
				}
			}
		})
	}
	var writers sync.WaitGroup
	errs := make(chan error, 8*200)
	for w := range 8 {
		writers.Go(func() {
			for i := range 200 {
				if err := d.WriteFile(fmt.Sprintf("f%d-%d", w, i%5), []byte("x"), false); err != nil {
					errs <- err
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	d.Sweep()
	ents, _ := d.Names()
	if len(ents) != 40 {
		t.Errorf("%d files, want the 40 written", len(ents))
	}
}

// A symbolic link inside the folder is refused, never followed; a planted
// pipe is not read.
func TestNoLinkFollowed(t *testing.T) {
	d := open(t)
	target := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(d.Path, "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadFile("link", 100); !errors.Is(err, unix.ELOOP) {
		t.Errorf("read through a link: %v", err)
	}
	if _, _, err := d.Sub("link", true); !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENOTDIR) {
		t.Errorf("folder through a link: %v", err)
	}
	if err := unix.Mkfifo(filepath.Join(d.Path, "pipe"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadFile("pipe", 100); !errors.Is(err, ErrNotRegular) {
		t.Errorf("read of a pipe: %v", err)
	}
	if err := d.WriteFile("big", make([]byte, 101), false); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadFile("big", 100); !errors.Is(err, ErrTooLarge) {
		t.Errorf("read of a large file: %v", err)
	}
}

// A folder another user could change is refused, with why; the process's
// own 0700 folder is not.
func TestCheckOwner(t *testing.T) {
	root := t.TempDir()
	type ownerCase struct {
		name       string
		mode       uint32
		uid        int
		wantReason string
	}
	cases := []ownerCase{
		{"own", 0o700, os.Geteuid(), ""},
		{"writable by group", 0o770, os.Geteuid(), "is writable by group or others (mode 0770): make it 0700"},
		{"writable by others", 0o702, os.Geteuid(), "is writable by group or others (mode 0702): make it 0700"},
	}
	if os.Geteuid() == 0 {
		cases = append(cases, ownerCase{"another user's", 0o700, 4321, "is owned by uid 4321, not by the test's user (uid 0): chown it to uid 0"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(root, c.name)
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, os.FileMode(c.mode)); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(path, c.uid, -1); err != nil {
				t.Fatal(err)
			}
			d, err := Open(path, false)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			err = d.CheckOwner("the test's user")
			var ue *UnsafeError
			switch {
			case c.wantReason == "" && err != nil:
				t.Errorf("CheckOwner: %v", err)
			case c.wantReason != "" && (!errors.As(err, &ue) || ue.Path != path || ue.Reason != c.wantReason):
				t.Errorf("CheckOwner = %v, want an *UnsafeError of %s: %s", err, path, c.wantReason)
			}
		})
	}
}
