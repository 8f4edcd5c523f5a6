package ipamd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// DefaultWait is how long the plugin waits for the daemon's answer. The
// daemon bounds a call's etcd work by the configuration's timeout (5s by
// default) and ends it before the plugin stops waiting.
const DefaultWait = 30 * time.Second

// CNIVersions are the CNI versions nicmux-ipam speaks, whichever binary
// answers.
func CNIVersions() []string { return []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} }

// CurrentCNIVersion is the version of the CNI library nicmux-ipamd is
// built with, which VERSION's answer names (skel's).
const CurrentCNIVersion = "1.1.0"

// Route is what the plugin does with an invocation.
type Route int

const (
	// Local: the bare run (the version line Nomad's fingerprint reads) and
	// VERSION, answered by the plugin itself.
	Local Route = iota
	// Call: a CNI verb, for the daemon, or run by nicmux-ipamd directly
	// when the daemon does not answer.
	Call
	// Command: a command (show, check, ...), run by nicmux-ipamd.
	Command
)

// RouteOf says what to do with a run with args (the program name left out)
// and CNI_COMMAND cmd, as nicmux-ipamd itself tells a verb from a command.
func RouteOf(args []string, cmd string) Route {
	switch {
	case cmd == "VERSION", cmd == "" && len(args) == 0:
		return Local
	case cmd != "":
		return Call
	}
	return Command
}

// Socket is the socket the network configuration's ipam object names, or
// DefaultSocket. A configuration that cannot be read names none: the daemon
// reports what is wrong with it.
func Socket(stdin []byte) string {
	var nc struct {
		IPAM struct {
			Socket string `json:"socket"`
		} `json:"ipam"`
	}
	if json.Unmarshal(stdin, &nc) == nil && nc.IPAM.Socket != "" {
		return nc.IPAM.Socket
	}
	return DefaultSocket
}

// Forward sends req to the daemon at socket and returns its response. Any
// error means the daemon did not answer the call whole: no socket, a
// refused connection, a connection cut before the whole response, or no
// response within req.Wait. The daemon may then have done part of the
// call, or all of it: the caller runs the call itself, which is safe
// because every verb may be repeated (an ADD gives its owner the addresses
// the owner holds, a DEL of what is released succeeds, CHECK, GC and STATUS
// only compare or release).
func Forward(socket string, req *Request) (*Response, error) {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.Dial("unix", socket)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := checkDaemon(c.(*net.UnixConn)); err != nil {
		return nil, err
	}
	if err := c.SetDeadline(time.Now().Add(req.Wait)); err != nil {
		return nil, err
	}
	if err := WriteFrame(c, req); err != nil {
		return nil, err
	}
	var resp Response
	if err := ReadFrame(c, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Plugin is one run of nicmux-ipam.
type Plugin struct {
	Args    []string // the program name left out
	Environ []string
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	// Daemon is nicmux-ipamd's binary, which runs the calls the daemon does
	// not answer, and the commands.
	Daemon string
	// About is the bare run's first line (release.About).
	About string
	// Wait bounds the wait for the daemon's answer.
	Wait time.Duration
}

// Run runs the invocation and returns its exit code.
func (p *Plugin) Run() int {
	cmd := CNIEnv(p.Environ)["CNI_COMMAND"]
	switch RouteOf(p.Args, cmd) {
	case Local:
		return p.local(cmd)
	case Command:
		// Replaced by nicmux-ipamd: a command's signals and terminal are
		// its own.
		argv := append([]string{p.Daemon}, p.Args...)
		return p.fail(syscall.Exec(p.Daemon, argv, p.Environ))
	}
	stdin, err := io.ReadAll(p.Stdin)
	if err != nil {
		return p.fail(fmt.Errorf("reading stdin: %w", err))
	}
	req := &Request{Env: CNIEnv(p.Environ), Stdin: stdin, Wait: p.Wait}
	resp, err := Forward(Socket(stdin), req)
	if err != nil {
		// No daemon, or no whole answer: the call runs here.
		return p.exec(bytes.NewReader(stdin))
	}
	_, _ = p.Stdout.Write(resp.Stdout)
	_, _ = p.Stderr.Write(resp.Stderr)
	return resp.Code
}

// local answers the bare run and VERSION as skel does, without linking
// it: skel's packages' initialisation would lengthen every start.
func (p *Plugin) local(cmd string) int {
	if cmd == "VERSION" {
		v := struct {
			CNIVersion        string   `json:"cniVersion"`
			SupportedVersions []string `json:"supportedVersions,omitempty"`
		}{CurrentCNIVersion, CNIVersions()}
		if err := json.NewEncoder(p.Stdout).Encode(v); err != nil {
			return p.fail(err)
		}
		return 0
	}
	fmt.Fprintf(p.Stderr, "%s\nCNI protocol versions supported: %s\n", p.About, strings.Join(CNIVersions(), ", "))
	return 0
}

// exec runs nicmux-ipamd with the same arguments, environment and stdin,
// and returns its exit code. It dies with this process: a runtime that
// kills the plugin (a timeout) then runs DEL, which must not race a call
// still running.
func (p *Plugin) exec(stdin io.Reader) int {
	runtime.LockOSThread() // Pdeathsig follows the thread that started it
	defer runtime.UnlockOSThread()
	c := exec.Command(p.Daemon, p.Args...)
	c.Env, c.Stdin, c.Stdout, c.Stderr = p.Environ, stdin, p.Stdout, p.Stderr
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err := c.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.Exited() {
		return exit.ExitCode()
	}
	if err != nil {
		return p.fail(err)
	}
	return 0
}

// fail prints the CNI error of a run that could not run nicmux-ipamd (code
// 999, the spec's "internal"): in plugin mode the runtime reads it on
// stdout; a command's user reads it too.
func (p *Plugin) fail(err error) int {
	e := struct {
		CNIVersion string `json:"cniVersion"`
		Code       int    `json:"code"`
		Msg        string `json:"msg"`
	}{"1.0.0", 999, "nicmux-ipam: " + err.Error()}
	b, _ := json.MarshalIndent(e, "", "    ")
	_, _ = p.Stdout.Write(b)
	return 1
}

// DaemonBeside is nicmux-ipamd's path: beside this binary, as they are
// installed together.
func DaemonBeside() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(exe), "nicmux-ipamd"), nil
}
