package cluster

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nicmux/nicmux/test/testworld"
)

func ipamdBin() string { return filepath.Join(testworld.BinDir(), "nicmux-ipamd") }

// socketPath is a socket path for a node's daemon in a folder of the test
// (0700): under /tmp, as a unix socket's path is short (108 bytes).
func socketPath(t *testing.T) string {
	dir, err := os.MkdirTemp("", "ipamd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "ipamd.sock")
}

// daemon is a node's running nicmux-ipamd.
type daemon struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	exited chan struct{} // closed when it ended, with err
	err    error
}

// Serve starts the node's nicmux-ipamd on its socket and waits until it
// answers; the test's end stops it with SIGTERM.
func (n *Node) Serve() {
	t := n.w.t
	t.Helper()
	d := &daemon{exited: make(chan struct{})}
	d.cmd = exec.Command(ipamdBin(), "serve", "-socket", n.Socket)
	d.cmd.Stderr = &d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.exited)
	}()
	n.daemon = d
	t.Cleanup(func() { n.stop(d) })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if c, err := net.Dial("unix", n.Socket); err == nil {
			c.Close()
			return
		}
		select {
		case <-d.exited:
			t.Fatalf("node %s: nicmux-ipamd serve ended: %v\n%s", n.Name, d.err, d.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s: nicmux-ipamd does not answer on %s:\n%s", n.Name, n.Socket, d.stderr.String())
		}
	}
}

// stop ends d with SIGTERM, which it must obey.
func (n *Node) stop(d *daemon) {
	select {
	case <-d.exited:
		return // killed
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		if d.err != nil {
			n.w.t.Errorf("node %s: nicmux-ipamd after SIGTERM: %v\n%s", n.Name, d.err, d.stderr.String())
		}
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		n.w.t.Errorf("node %s: nicmux-ipamd still runs 30s after SIGTERM", n.Name)
	}
}

// KillDaemon kills the node's daemon with SIGKILL, if it runs, and waits
// for it.
func (n *Node) KillDaemon() {
	d := n.daemon
	_ = d.cmd.Process.Kill()
	<-d.exited
}

// The daemon killed with SIGKILL while 25 ADDs run through it: every ADD
// succeeds (those it did not answer run nicmux-ipamd directly), each owner
// holds one address, no address twice; a repeated ADD through a new daemon
// gives each owner its address; every DEL leaves nothing.
func TestDaemonKilledDuringAdds(t *testing.T) {
	w := NewWorld(t, 1)
	n := w.Node("n1")
	if n.daemon == nil {
		n.Serve()
	}
	const adds = 25
	got := make([]string, adds)
	errs := make([]error, adds)
	var wg sync.WaitGroup
	for i := range adds {
		wg.Go(func() {
			r, err := n.Exec(Call{Verb: "ADD", ID: id(i)})
			errs[i] = err
			if err == nil {
				got[i] = r.IPs[0].Address.IP.String()
			}
		})
		if i == adds/3 {
			n.KillDaemon()
		}
	}
	wg.Wait()
	seen := map[string]string{}
	for i, a := range got {
		if errs[i] != nil {
			t.Errorf("ADD %s: %v", id(i), errs[i])
			continue
		}
		if other, dup := seen[a]; dup {
			t.Errorf("%s went to %s and to %s", a, other, id(i))
		}
		seen[a] = id(i)
	}
	n.Serve()
	for i, a := range got {
		if again := n.Add(id(i)); again != a {
			t.Errorf("ADD %s again through the new daemon: %s, first %s", id(i), again, a)
		}
	}
	for i := range adds {
		n.Del(id(i))
	}
	n.wantNothingHeld()
}

// wantNothingHeld checks that etcd holds no lease of the world and the
// node no record.
func (n *Node) wantNothingHeld() {
	t := n.w.t
	t.Helper()
	if l := n.w.Leases(); len(l) != 0 {
		t.Errorf("leases left: %v", l)
	}
	if files, _ := os.ReadDir(filepath.Join(n.DataDir, n.w.Pool, "leases")); len(files) != 0 {
		t.Errorf("node %s: records left: %v", n.Name, files)
	}
}

// Without a daemon every call runs nicmux-ipamd directly, with the same
// results, and the node's records serve both: an owner that got its
// address directly gets the same through a daemon started later, and a
// DEL through the daemon releases it.
func TestWithoutDaemonThenWithOne(t *testing.T) {
	w := NewWorld(t, 1)
	w.Daemons = false
	n := w.Node("n1")
	a := n.Add("c1")
	if b := n.Add("c1"); b != a {
		t.Errorf("repeated ADD without a daemon: %s, first %s", b, a)
	}
	if _, err := os.Stat(n.Socket); err == nil {
		t.Fatalf("a socket at %s without a daemon", n.Socket)
	}
	n.Serve()
	if b := n.Add("c1"); b != a {
		t.Errorf("ADD through the daemon: %s, directly %s", b, a)
	}
	other := n.Add("c2")
	if other == a {
		t.Errorf("c2 got c1's %s", a)
	}
	n.Del("c1")
	n.Del("c1")
	n.Del("c2")
	n.wantNothingHeld()
}

// What the daemon answers equals what a direct run prints, errors
// included (the node's name aside).
func TestDaemonAnswersAsDirect(t *testing.T) {
	w := NewWorld(t, 1)
	w.Daemons = false
	direct := w.Node("direct")
	served := w.Node("served")
	served.Serve()
	for _, c := range []Call{
		{Verb: "ADD", ID: "bad/id"},
		{Verb: "ADD", ID: "c1", Conf: `, "cniVersion": "9.9.9"`},
		{Verb: "ADD", ID: "c1", Args: "IP=10.99.0.1"},
		{Verb: "CHECK", ID: "none"},
		{Verb: "VERSION", ID: "c1"},
	} {
		cmd1, out1 := direct.Command(c)
		err1 := cmd1.Run()
		cmd2, out2 := served.Command(c)
		err2 := cmd2.Run()
		s1 := bytes.ReplaceAll(out1.Stdout.Bytes(), []byte(direct.Name), []byte("NODE"))
		s2 := bytes.ReplaceAll(out2.Stdout.Bytes(), []byte(served.Name), []byte("NODE"))
		if fmt.Sprint(err1) != fmt.Sprint(err2) || !bytes.Equal(s1, s2) {
			t.Errorf("%s %s: directly %v %s\nthrough the daemon %v %s", c.Verb, c.ID, err1, s1, err2, s2)
		}
	}
}
