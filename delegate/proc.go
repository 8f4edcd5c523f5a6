package delegate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"golang.org/x/sys/unix"
)

// Output caps: what is kept of a plugin's standard output (its result or
// its error) and standard error. The rest is read and dropped, so a plugin
// that writes without end costs CPU until its timeout, never memory.
const (
	maxStdout = 1 << 20
	maxStderr = 64 << 10
	// maxQuoted is what of a failing plugin's output goes into an error
	// message (and from there into the runtime's log).
	maxQuoted = 4 << 10
)

// outputGrace bounds the wait for a plugin's output once it has exited: a
// grandchild that inherited its standard output (an iptables it ran, say)
// and keeps it open must not hold up the verb.
const outputGrace = 100 * time.Millisecond

// findInPath returns the path of the first regular file named plugin in
// paths.
func findInPath(plugin string, paths []string) (string, error) {
	if plugin == "" || strings.ContainsRune(plugin, os.PathSeparator) || plugin == "." || plugin == ".." {
		return "", fmt.Errorf("invalid plugin name %q", plugin)
	}
	for _, dir := range paths {
		full := filepath.Join(dir, plugin)
		if fi, err := os.Stat(full); err == nil && fi.Mode().IsRegular() {
			return full, nil
		}
	}
	return "", fmt.Errorf("failed to find plugin %q in path %v", plugin, paths)
}

// proc is one plugin process, started and waiting for its configuration on
// standard input, which feed hands it.
//
// Every plugin runs in a process group of its own, so that a timeout kills
// what it started too (an IPAM plugin, an iptables), and with a
// parent-death signal, so that it dies with nicmux: a runtime that gives up
// on nicmux kills it, and a plugin that went on would finish its ADD after
// the runtime's DEL. (The parent-death signal is sent when the thread that
// forked the plugin ends, golang/go#27505; Go never ends a thread except
// one left locked by a goroutine that returns, which nicmux never does: a
// thread it cannot move back into its own network namespace stays parked,
// see package ns, onLockedThread.)
//
// os/exec starts it: BenchmarkStart compares it with a spawner of nicmux's
// own (memfd outputs, wait4), which is no faster.
type proc struct {
	cmd    *exec.Cmd
	stdin  *os.File // the pipe's write end; nil once closed
	stdout *capped
	stderr *capped
}

// startProc starts the plugin at path with env, waiting on its input.
func startProc(path string, env []string) (*proc, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p := &proc{stdin: w, stdout: &capped{max: maxStdout}, stderr: &capped{max: maxStderr}}
	for attempt := 0; ; attempt++ {
		// A Cmd is started once, even if its Start failed.
		p.cmd = &exec.Cmd{
			Path:        path,
			Args:        []string{path},
			Env:         env,
			Stdin:       r,
			Stdout:      p.stdout,
			Stderr:      p.stderr,
			WaitDelay:   outputGrace,
			SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
		}
		err = p.cmd.Start()
		// A plugin binary being replaced is briefly "text file busy".
		if !errors.Is(err, syscall.ETXTBSY) || attempt == 5 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = r.Close()
	if err != nil {
		_ = w.Close()
		return nil, err
	}
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// feed hands the plugin its input and waits for it to exit, killing its
// process group if ctx ends first. It returns the plugin's output, and an
// error if it did not exit with status 0.
func (p *proc) feed(ctx context.Context, stdin []byte) ([]byte, error) {
	pid := p.pid()
	// The group is killed only while its leader is unreaped, so that a
	// signal can never reach a process that got the pid afterwards.
	var mu sync.Mutex
	reaped, killed := false, false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !reaped {
			killed = true
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	})
	if dl, ok := ctx.Deadline(); ok {
		_ = p.stdin.SetWriteDeadline(dl)
	}
	// A plugin may exit without reading its input (EPIPE): what counts is
	// how it exits.
	_, werr := p.stdin.Write(stdin)
	_ = p.stdin.Close()
	p.stdin = nil
	waitExited(pid)
	stop()
	mu.Lock()
	reaped = true
	mu.Unlock()
	err := p.cmd.Wait()
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil // the plugin exited; a grandchild holds its output
	}
	out := p.stdout.bytes()
	switch {
	case killed:
		return out, &killedError{cause: context.Cause(ctx)}
	case err != nil:
		return out, err
	case werr != nil && !errors.Is(werr, syscall.EPIPE):
		return out, fmt.Errorf("writing the plugin's input: %w", werr)
	}
	return out, nil
}

// abort kills a process that was never fed, and reaps it.
func (p *proc) abort() {
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	if p.stdin != nil {
		_ = p.stdin.Close()
	}
	_ = p.cmd.Wait()
}

// waitExited waits for the child pid to exit, leaving it to be reaped.
func waitExited(pid int) {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return // on any other error, Wait below still waits, and reports
		}
	}
}

// killedError is a plugin killed because its time was up or the verb was
// canceled.
type killedError struct{ cause error }

func (e *killedError) Error() string {
	return fmt.Sprintf("killed, with its process group: %v", e.cause)
}

func (e *killedError) Unwrap() error { return e.cause }

// causedError is the CNI error of a plugin killed for a cause (its
// timeout, a cancel); it unwraps to both, so that callers can tell a
// *timeoutError from a cancel.
type causedError struct {
	cni   *types.Error
	cause error
}

func (e *causedError) Error() string   { return e.cni.Error() }
func (e *causedError) Unwrap() []error { return []error{e.cni, e.cause} }

// timeoutError is the cause of a plugin killed at its deadline.
type timeoutError struct {
	Timeout time.Duration
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("timed out after %v (delegateTimeout)", e.Timeout)
}

func (e *timeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// Killed reports whether a plugin call failed with err because its
// process group was killed, and whether that was at its timeout (the
// Runner's Timeout, delegateTimeout) rather than at the end of the verb's
// own context.
func Killed(err error) (killed, timeout bool) {
	var caused *causedError
	if !errors.As(err, &caused) {
		return false, false
	}
	var te *timeoutError
	return true, errors.As(caused.cause, &te)
}

// capped keeps the first max bytes written to it and counts the rest. It
// needs no lock: os/exec's one copying goroutine writes to it, and Wait
// returns only once that goroutine is done.
type capped struct {
	max   int
	buf   []byte
	total int64
}

func (c *capped) Write(p []byte) (int, error) {
	c.total += int64(len(p))
	if room := c.max - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (c *capped) bytes() []byte { return c.buf }

// cut reports whether output was dropped, and how much there was.
func (c *capped) cut() (bool, int64) {
	return c.total > int64(len(c.buf)), c.total
}

// pluginError turns a failed plugin run into the error nicmux reports: the
// plugin's own CNI error when it printed one (its code kept), else an
// internal error (999) that says how it ended. What is quoted is capped.
func (p *proc) pluginError(out []byte, err error) error {
	var killed *killedError
	if errors.As(err, &killed) {
		return &causedError{cni: types.NewError(types.ErrInternal, killed.Error(), ""), cause: killed.cause}
	}
	how := err.Error()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			how = "killed by signal " + ws.Signal().String()
		}
	}
	e := &types.Error{}
	if len(out) > 0 && json.Unmarshal(out, e) == nil && e.Code != 0 {
		e.Msg = quote(e.Msg)
		e.Details = quote(e.Details)
		return e
	}
	stdoutCut, stdoutTotal := p.stdout.cut()
	_, stderrTotal := p.stderr.cut()
	stderr := p.stderr.bytes()
	switch {
	case len(out) == 0 && len(stderr) == 0:
		return types.NewError(types.ErrInternal, fmt.Sprintf("plugin failed (%s) with no error message", how), "")
	case len(out) == 0:
		return types.NewError(types.ErrInternal, fmt.Sprintf("plugin failed (%s); its stderr: %s", how, quoteCut(stderr, stderrTotal)), "")
	}
	what := "output that is not a CNI error"
	if e.Code == 0 && json.Valid(out) {
		what = "a CNI error without a code"
	}
	if stdoutCut {
		what = "output cut at " + strconv.Itoa(maxStdout) + " bytes"
	}
	return types.NewError(types.ErrInternal, fmt.Sprintf("plugin failed (%s) with %s: %s", how, what, quoteCut(out, stdoutTotal)), "")
}

// quote caps a message quoted from a plugin.
func quote(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	return quoteCut([]byte(s), int64(len(s)))
}

// quoteCut quotes the start of b, which was total bytes long, saying what
// was cut.
func quoteCut(b []byte, total int64) string {
	s := strings.TrimSpace(string(b))
	if len(s) <= maxQuoted && total <= int64(len(b)) {
		return strconv.Quote(s)
	}
	if len(s) > maxQuoted {
		s = s[:maxQuoted]
	}
	return fmt.Sprintf("%s... (cut: %d bytes in all)", strconv.Quote(s), total)
}
