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
