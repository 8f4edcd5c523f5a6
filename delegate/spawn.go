package delegate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// proc is a plugin process that waits for its configuration: its standard
// input is a pipe nicmux writes once it knows what to send, so it can be
// started ahead, while nicmux still works out that input (its runtime
// starts meanwhile) and can be killed, having done nothing, if the input is
// never sent.
//
// It is what os/exec does for one short-lived child, without what that
// costs a process that runs a handful of children and exits: the standard
// output and error are in-memory files (memfd) rather than pipes, so no
// goroutine copies them and a grandchild that keeps one open cannot hold up
// the wait; and the child is waited for with wait4, so the first child does
// not pay for os's probe of pidfd support (a throw-away clone).
type proc struct {
	path           string
	pid            int
	stdin          int // the pipe's write end; -1 once closed
	stdout, stderr int // memfds
}

// start starts the program at path, waiting on its standard input.
func start(path string, env []string) (*proc, error) {
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
		return nil, os.NewSyscallError("pipe2", err)
	}
	p := &proc{path: path, stdin: pipe[1], stdout: -1, stderr: -1}
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
func (p *proc) feed(ctx context.Context, stdin []byte) (stdout, stderr []byte, err error) {
	defer p.close()
	stop := killOnDone(ctx, p.pid)
	// A plugin may exit without reading its input (EPIPE): what counts is
	// how it exits.
	werr := writeAll(p.stdin, stdin)
	_ = unix.Close(p.stdin)
	p.stdin = -1
	// The child is reaped only once the killer is stopped, so that it can
	// never signal a recycled pid.
	_ = waitExit(p.pid) // should it fail, wait4 below still waits, and reports
	canceled := stop()
	status, waitErr := wait(p.pid)
	stdout, rerr := readAll(p.stdout)
	stderr, rerr2 := readAll(p.stderr)
	switch {
	case waitErr != nil:
		return stdout, stderr, waitErr
	case canceled != nil && !status.Exited():
		return stdout, stderr, fmt.Errorf("%s: %w", exitError(status), canceled)
	case !status.Exited() || status.ExitStatus() != 0:
		return stdout, stderr, errors.New(exitError(status))
	case werr != nil && !errors.Is(werr, unix.EPIPE):
		return stdout, stderr, werr
	}
	return stdout, stderr, errors.Join(rerr, rerr2)
}

// abort kills a process that was never fed, and reaps it.
func (p *proc) abort() {
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
	_, _ = wait(p.pid)
	p.close()
}

func (p *proc) close() {
	for _, fd := range []*int{&p.stdin, &p.stdout, &p.stderr} {
		if *fd >= 0 {
			_ = unix.Close(*fd)
			*fd = -1
		}
	}
}

// killOnDone kills the child pid when ctx is done before the returned stop
// is called; stop reports ctx's error if it did. A context that can never
// be done costs nothing.
func killOnDone(ctx context.Context, pid int) (stop func() error) {
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

// waitExit waits for the child pid to exit, leaving it to be reaped.
func waitExit(pid int) error {
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

// wait reaps the child pid.
func wait(pid int) (syscall.WaitStatus, error) {
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

// exitError words a child's end as os/exec's ExitError does.
func exitError(s syscall.WaitStatus) string {
	switch {
	case s.Exited():
		return fmt.Sprintf("exit status %d", s.ExitStatus())
	case s.Signaled():
		return "signal: " + s.Signal().String()
	}
	return fmt.Sprintf("wait status %#x", uint32(s))
}

func writeAll(fd int, b []byte) error {
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

func readAll(fd int) ([]byte, error) {
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
