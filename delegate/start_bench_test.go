package delegate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkStart measures what starting a plugin costs: os/exec (startProc
// and feed) against a spawner of nicmux's own (rawStart, below), in the
// same run, alternating one plugin each, on a child that exits at once: a
// static C program (the spawner's cost alone) and the test binary (a Go
// program's start-up besides). proc.go says what it shows.
//
//	go test -run '^$' -bench BenchmarkStart -benchtime=300x -count=5 ./delegate/
func BenchmarkStart(b *testing.B) {
	children := []struct{ name, path string }{{"c", buildExit0(b)}, {"go", filepath.Join(pluginDir, "tp-exit")}}
	env := []string{"CNI_COMMAND=ADD", "CNI_PATH=/opt/cni/bin", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	stdin := []byte(`{"cniVersion":"1.1.0","name":"bench","type":"exit0"}`)
	ctx := context.Background()
	for _, child := range children {
		b.Run(child.name, func(b *testing.B) {
			variants := [2]func() error{
				func() error {
					p, err := startProc(child.path, env)
					if err == nil {
						_, err = p.feed(ctx, stdin)
					}
					return err
				},
				func() error {
					p, err := rawStart(child.path, env)
					if err == nil {
						_, _, err = p.feed(ctx, stdin)
					}
					return err
				},
			}
			var took [2]time.Duration
			for i := range b.N {
				for k := range 2 {
					v := (i + k) % 2 // each goes first every other time
					start := time.Now()
					if err := variants[v](); err != nil {
						b.Fatal(err)
					}
					took[v] += time.Since(start)
				}
			}
			perPlugin := func(d time.Duration) float64 { return d.Seconds() * 1000 / float64(b.N) }
			b.ReportMetric(perPlugin(took[0]), "exec-ms/plugin")
			b.ReportMetric(perPlugin(took[1]), "raw-ms/plugin")
		})
	}
}

// buildExit0 builds a static C program that exits at once.
func buildExit0(b *testing.B) string {
	dir := b.TempDir()
	src, bin := filepath.Join(dir, "exit0.c"), filepath.Join(dir, "exit0")
	if err := os.WriteFile(src, []byte("int main(void) { return 0; }\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("cc", "-static", "-O2", "-o", bin, src).CombinedOutput(); err != nil {
		b.Fatalf("building %s: %v\n%s", src, err, out)
	}
	return bin
}

// What follows is a spawner of nicmux's own, for BenchmarkStart only: the
// child's outputs are in-memory files and it is reaped with wait4. The
// child gets the process group and parent-death signal that startProc
// gives it, so that both do the same work.

// rawProc is a plugin process that waits for its configuration: its
// standard input is a pipe, its standard output and error in-memory files
// (memfd), so no goroutine copies them; it is waited for with wait4.
type rawProc struct {
	path           string
	pid            int
	stdin          int // the pipe's write end; -1 once closed
	stdout, stderr int // memfds
}

// rawStart starts the program at path, waiting on its standard input.
func rawStart(path string, env []string) (*rawProc, error) {
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
		return nil, os.NewSyscallError("pipe2", err)
	}
	p := &rawProc{path: path, stdin: pipe[1], stdout: -1, stderr: -1}
	var err error
	if p.stdout, err = unix.MemfdCreate("nicmux-stdout", unix.MFD_CLOEXEC); err == nil {
		p.stderr, err = unix.MemfdCreate("nicmux-stderr", unix.MFD_CLOEXEC)
	}
	if err != nil {
		_ = unix.Close(pipe[0])
		p.close()
		return nil, os.NewSyscallError("memfd_create", err)
	}
	p.pid, err = syscall.ForkExec(path, []string{path}, &syscall.ProcAttr{
		Env:   env,
		Files: []uintptr{uintptr(pipe[0]), uintptr(p.stdout), uintptr(p.stderr)},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	})
	_ = unix.Close(pipe[0])
	if err != nil {
		p.close()
		return nil, &os.PathError{Op: "fork/exec", Path: path, Err: err}
	}
	return p, nil
}

// feed writes stdin to the process, waits for it to exit and returns what
// it wrote, and an error if it did not exit with status 0. The process is
// killed if ctx is done first.
func (p *rawProc) feed(ctx context.Context, stdin []byte) (stdout, stderr []byte, err error) {
	defer p.close()
	stop := rawKillOnDone(ctx, p.pid)
	// A plugin may exit without reading its input (EPIPE): what counts is
	// how it exits.
	werr := rawWriteAll(p.stdin, stdin)
	_ = unix.Close(p.stdin)
	p.stdin = -1
	// The child is reaped only once the killer is stopped, so that it can
	// never signal a recycled pid.
	_ = rawWaitExit(p.pid) // should it fail, wait4 below still waits, and reports
	canceled := stop()
	status, waitErr := rawWait(p.pid)
	stdout, rerr := rawReadAll(p.stdout)
	stderr, rerr2 := rawReadAll(p.stderr)
	switch {
	case waitErr != nil:
		return stdout, stderr, waitErr
	case canceled != nil && !status.Exited():
		return stdout, stderr, fmt.Errorf("%s: %w", rawExitError(status), canceled)
	case !status.Exited() || status.ExitStatus() != 0:
		return stdout, stderr, errors.New(rawExitError(status))
	case werr != nil && !errors.Is(werr, unix.EPIPE):
		return stdout, stderr, werr
	}
	return stdout, stderr, errors.Join(rerr, rerr2)
}

func (p *rawProc) close() {
	for _, fd := range []*int{&p.stdin, &p.stdout, &p.stderr} {
		if *fd >= 0 {
			_ = unix.Close(*fd)
			*fd = -1
		}
	}
}

// rawKillOnDone kills the child pid when ctx is done before the returned
// stop is called; stop reports ctx's error if it did. A context that can
// never be done costs nothing.
func rawKillOnDone(ctx context.Context, pid int) (stop func() error) {
	if ctx.Done() == nil {
		return func() error { return nil }
	}
	finished := make(chan struct{})
	killed := make(chan error, 1)
	go func() {
		select {
		case <-ctx.Done():
			_ = syscall.Kill(pid, syscall.SIGKILL)
			killed <- ctx.Err()
		case <-finished:
			killed <- nil
		}
	}()
	return func() error {
		close(finished)
		return <-killed
	}
}

// rawWaitExit waits for the child pid to exit, leaving it to be reaped.
func rawWaitExit(pid int) error {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("waitid", err)
		}
		return nil
	}
}

// rawWait reaps the child pid.
func rawWait(pid int) (syscall.WaitStatus, error) {
	var status syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &status, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return status, os.NewSyscallError("wait4", err)
		}
		return status, nil
	}
}

// rawExitError words a child's end as os/exec's ExitError does.
func rawExitError(s syscall.WaitStatus) string {
	switch {
	case s.Exited():
		return fmt.Sprintf("exit status %d", s.ExitStatus())
	case s.Signaled():
		return "signal: " + s.Signal().String()
	}
	return fmt.Sprintf("wait status %#x", uint32(s))
}

func rawWriteAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("write", err)
		}
		b = b[n:]
	}
	return nil
}

func rawReadAll(fd int) ([]byte, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, os.NewSyscallError("fstat", err)
	}
	if st.Size == 0 {
		return nil, nil
	}
	b := make([]byte, st.Size)
	for off := 0; off < len(b); {
		n, err := unix.Pread(fd, b[off:], int64(off))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return b[:off], os.NewSyscallError("pread", err)
		}
		if n == 0 {
			return b[:off], nil
		}
		off += n
	}
	return b, nil
}
