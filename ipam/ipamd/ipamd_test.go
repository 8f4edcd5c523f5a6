package ipamd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFrameRoundTrip(t *testing.T) {
	req := &Request{Env: map[string]string{"CNI_COMMAND": "ADD"}, Stdin: []byte(`{"name":"n"}`), Wait: time.Second}
	var b bytes.Buffer
	if err := WriteFrame(&b, req); err != nil {
		t.Fatal(err)
	}
	var got Request
	if err := ReadFrame(&b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Env["CNI_COMMAND"] != "ADD" || string(got.Stdin) != `{"name":"n"}` || got.Wait != time.Second {
		t.Errorf("got %+v", got)
	}
}

// A frame cut anywhere reads as ErrShort: the plugin then runs the call
// itself.
func TestFrameCutReadsShort(t *testing.T) {
	var b bytes.Buffer
	if err := WriteFrame(&b, &Response{Code: 1, Stdout: []byte("out")}); err != nil {
		t.Fatal(err)
	}
	whole := b.Bytes()
	for n := 0; n < len(whole); n++ {
		var r Response
		if err := ReadFrame(bytes.NewReader(whole[:n]), &r); !errors.Is(err, ErrShort) {
			t.Errorf("cut at %d of %d: %v, want ErrShort", n, len(whole), err)
		}
	}
}

func TestFrameTooBig(t *testing.T) {
	var r Response
	err := ReadFrame(bytes.NewReader([]byte{0xff, 0xff, 0xff, 0xff}), &r)
	if err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("got %v", err)
	}
}

func TestRoute(t *testing.T) {
	for _, c := range []struct {
		args []string
		cmd  string
		want Route
	}{
		{nil, "", Local},
		{nil, "VERSION", Local},
		{nil, "ADD", Call},
		{[]string{"show"}, "DEL", Call},
		{nil, "GC", Call},
		{[]string{"show", "-json"}, "", Command},
		{[]string{"serve"}, "", Command},
	} {
		if got := RouteOf(c.args, c.cmd); got != c.want {
			t.Errorf("RouteOf(%q, %q) = %d, want %d", c.args, c.cmd, got, c.want)
		}
	}
}

func TestSocket(t *testing.T) {
	if s := Socket([]byte(`{"ipam": {"type": "nicmux-ipam", "socket": "/run/x/s.sock"}}`)); s != "/run/x/s.sock" {
		t.Errorf("got %s", s)
	}
	for _, in := range []string{`{"ipam": {"type": "nicmux-ipam"}}`, `not json`, `{"ipam": []}`} {
		if s := Socket([]byte(in)); s != DefaultSocket {
			t.Errorf("%s: got %s", in, s)
		}
	}
}

func TestCNIEnv(t *testing.T) {
	env := CNIEnv([]string{"CNI_COMMAND=ADD", "CNI_ARGS=IP=10.0.0.2", "PATH=/bin", "NOEQUALS"})
	if len(env) != 2 || env["CNI_ARGS"] != "IP=10.0.0.2" {
		t.Errorf("got %v", env)
	}
}

// The kernel's view of the peer: this test runs as some user, and sees it.
func TestPeerUID(t *testing.T) {
	a, b := socketPair(t)
	defer a.Close()
	defer b.Close()
	uid, err := PeerUID(a)
	if err != nil {
		t.Fatal(err)
	}
	if uid != uint32(os.Geteuid()) {
		t.Errorf("peer uid %d, want %d", uid, os.Geteuid())
	}
	if err := allowed(0); err != nil {
		t.Errorf("root refused: %v", err)
	}
	if err := allowed(1000); !errors.Is(err, ErrPeer) || !strings.Contains(err.Error(), "uid 1000") {
		t.Errorf("uid 1000: %v", err)
	}
}

func socketPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

func TestSocketDir(t *testing.T) {
	root := t.TempDir()
	if err := SocketDir(filepath.Join(root, "new", "d.sock")); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(root, "new")); st.Mode().Perm() != 0o700 {
		t.Errorf("made %v, want 0700", st.Mode())
	}
	open := filepath.Join(root, "open")
	_ = os.Mkdir(open, 0o755)
	_ = os.Chmod(open, 0o755)
	if err := SocketDir(filepath.Join(open, "d.sock")); err == nil || !strings.Contains(err.Error(), "lets others in") {
		t.Errorf("0755 folder: %v", err)
	}
	_ = os.Symlink(filepath.Join(root, "new"), filepath.Join(root, "link"))
	if err := SocketDir(filepath.Join(root, "link", "d.sock")); err == nil || !strings.Contains(err.Error(), "not a folder") {
		t.Errorf("link: %v", err)
	}
	if err := SocketDir("rel/d.sock"); err == nil {
		t.Error("relative path accepted")
	}
}

// daemon serves one connection at a time with answer, on a socket of its
// own.
func daemon(t *testing.T, answer func(net.Conn)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "d.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			answer(c)
			c.Close()
		}
	}()
	return path
}

func readReq(c net.Conn) { var r Request; _ = ReadFrame(c, &r) }

// The plugin runs the call itself whenever the daemon does not answer it
// whole, and only then.
func TestFallback(t *testing.T) {
	answered := func(c net.Conn) {
		readReq(c)
		_ = WriteFrame(c, &Response{Code: 3, Stdout: []byte("from the daemon"), Stderr: []byte("daemon's stderr")})
	}
	for _, c := range []struct {
		name     string
		socket   string
		fallback bool
	}{
		{"no socket", filepath.Join(t.TempDir(), "none.sock"), true},
		{"closed at once", daemon(t, func(net.Conn) {}), true},
		{"closed after the request", daemon(t, readReq), true},
		{"cut mid-response", daemon(t, func(c net.Conn) { readReq(c); _, _ = c.Write([]byte{0, 0, 0, 50, '{'}) }), true},
		{"no answer in time", daemon(t, func(c net.Conn) { readReq(c); time.Sleep(time.Second) }), true},
		{"answered", daemon(t, answered), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, out, errOut := plugin(t, c.socket)
			code := p.Run()
			if c.fallback {
				if code != 4 || out.String() != "ran: ADD "+confWith(c.socket) || errOut.String() != "stderr of the direct run\n" {
					t.Errorf("fallback: code %d, stdout %q, stderr %q", code, out, errOut)
				}
				return
			}
			if code != 3 || out.String() != "from the daemon" || errOut.String() != "daemon's stderr" {
				t.Errorf("answer: code %d, stdout %q, stderr %q", code, out, errOut)
			}
		})
	}
}

func confWith(socket string) string {
	return `{"name": "n", "ipam": {"type": "nicmux-ipam", "socket": "` + socket + `"}}`
}

// plugin is a run of the plugin for ADD whose nicmux-ipamd is a script
// that prints what it got and exits with 4.
func plugin(t *testing.T, socket string) (*Plugin, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	script := filepath.Join(t.TempDir(), "nicmux-ipamd")
	body := "#!/bin/sh\nprintf 'ran: %s ' \"$CNI_COMMAND\"; cat; echo 'stderr of the direct run' >&2; exit 4\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	return &Plugin{Environ: []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=c1"}, Stdin: strings.NewReader(confWith(socket)),
		Stdout: &out, Stderr: &errOut, Daemon: script, About: "about", Wait: 300 * time.Millisecond}, &out, &errOut
}

func TestMissingDaemon(t *testing.T) {
	p, out, _ := plugin(t, "/nonexistent.sock")
	p.Daemon = filepath.Join(t.TempDir(), "nicmux-ipamd")
	if code := p.Run(); code != 1 || !strings.Contains(out.String(), `"code": 999`) || !strings.Contains(out.String(), "nicmux-ipamd") {
		t.Errorf("no nicmux-ipamd: code %d, %s", code, out)
	}
}

// A listener of another user is not trusted: the plugin runs the call
// itself. Its daemon is this test binary run as nobody (needs root).
func TestForeignListenerIsNotTrusted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runs a listener as another user: needs root (make test runs it so)")
	}
	dir, err := os.MkdirTemp("", "ipamd-foreign-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sockDir := filepath.Join(dir, "run")
	if err := os.Mkdir(sockDir, 0o777); err != nil || os.Chmod(sockDir, 0o777) != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "ipamd.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(sockDir, "d.sock")
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "NICMUX_IPAMD_TEST_LISTEN="+socket)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("the listener did not start: %q, %v", line, err)
	}
	p, stdout, stderr := plugin(t, socket)
	if code := p.Run(); code != 4 || stdout.String() != "ran: ADD "+confWith(socket) || stderr.String() != "stderr of the direct run\n" {
		t.Errorf("a listener of uid 65534 was trusted: code %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestMain runs the tests, or, with NICMUX_IPAMD_TEST_LISTEN, is the
// listener TestForeignListenerIsNotTrusted starts as another user.
func TestMain(m *testing.M) {
	if socket := os.Getenv("NICMUX_IPAMD_TEST_LISTEN"); socket != "" {
		os.Exit(listenForeign(socket))
	}
	os.Exit(m.Run())
}

// listenForeign answers every call on socket with code 3.
func listenForeign(socket string) int {
	ln, err := net.Listen("unix", socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer ln.Close()
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			return 0
		}
		readReq(c)
		_ = WriteFrame(c, &Response{Code: 3, Stdout: []byte("from another user")})
		c.Close()
	}
}
