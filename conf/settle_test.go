package conf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	settleFirst = "interfaces:\n  - ifname: eth0\n    plugins: [{type: bridge}]\n"
	settleRest  = "  - ifname: eth1\n    plugins: [{type: macvlan}]\n"
)

// An attachment file written in place while it is read, in the ways the
// issue's writers did, is read as the whole file once it settles: never a
// subset of its interfaces, never "the file is empty", never "no such file".
func TestLoadWhileWritten(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(path string) error // before the read starts
		end   func(path string) error // 10 ms after it started
	}{
		{"two writes split at an entry boundary",
			func(path string) error { return os.WriteFile(path, []byte(settleFirst), 0o644) },
			func(path string) error { return appendFile(path, settleRest) }},
		{"cat >: truncated, then written",
			func(path string) error { return os.WriteFile(path, nil, 0o644) },
			func(path string) error { return appendFile(path, settleFirst+settleRest) }},
		{"an editor's rename, then write",
			func(path string) error { return os.Rename(path, path+"~") },
			func(path string) error {
				if err := os.WriteFile(path, []byte(settleFirst), 0o644); err != nil {
					return err
				}
				return appendFile(path, settleRest)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "multi.yaml")
			if err := writeSettled(path, []byte("interfaces:\n  - plugins: [{type: ptp}]\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := tc.start(path); err != nil {
				t.Fatal(err)
			}
			type loaded struct {
				a   *AttachmentFile
				err error
			}
			done := make(chan loaded, 1)
			go func() {
				a, err := LoadAttachmentFile(path, testDefaults)
				done <- loaded{a, err}
			}()
			time.Sleep(10 * time.Millisecond)
			if err := tc.end(path); err != nil {
				t.Fatal(err)
			}
			got := <-done
			if got.err != nil {
				t.Fatalf("read while written: %v", got.err)
			}
			if n := len(got.a.Interfaces); n != 2 {
				t.Fatalf("read %d interfaces of 2 while the file was written", n)
			}
		})
	}
}

// A file that never settles fails the read, saying so and what to do.
func TestLoadNeverSettles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "multi.yaml")
	stop := make(chan struct{})
	defer close(stop)
	written := make(chan struct{})
	go func() {
		for i := 0; ; i++ {
			_ = os.WriteFile(path, []byte(settleFirst+strings.Repeat("# a comment\n", i%7)), 0o644)
			if i == 0 {
				close(written)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	<-written
	_, err := LoadAttachmentFile(path, testDefaults)
	if err == nil || !strings.Contains(err.Error(), "being written") || !strings.Contains(err.Error(), "atomically") || !strings.Contains(err.Error(), path) {
		t.Fatalf("read of a file rewritten every 20 ms: %v, want an error naming it, saying it is being written and how to replace it", err)
	}
}

func appendFile(path, data string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(data)
	return err
}

// BenchmarkReadAttachmentFile is what reading a file that does not change
// costs: one read (read=once, readCapped, the baseline) against a read
// checked for a settled version (read=settled, readSettled: two more
// status reads).
func BenchmarkReadAttachmentFile(b *testing.B) {
	path := filepath.Join(b.TempDir(), "multi.yaml")
	if err := writeSettled(path, []byte(strings.Repeat(settleFirst+settleRest, 8)), 0o644); err != nil {
		b.Fatal(err)
	}
	open := func() (*os.File, error) { return openFile(path) }
	b.Run("read=once", func(b *testing.B) {
		for b.Loop() {
			f, err := open()
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := readCapped(f); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
	b.Run("read=settled", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := readSettled(path, open); err != nil {
				b.Fatal(err)
			}
		}
	})
}
