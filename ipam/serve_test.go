package ipam

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/nicmux/nicmux/ipam/ipamd"
)

// startDaemon serves on a socket of the test's with dial; stop ends it
// as SIGTERM does and waits for serve to return.
func startDaemon(t *testing.T, dial Dialer) (socket string, stop func()) {
	t.Helper()
	socket = filepath.Join(t.TempDir(), "run", "ipamd.sock")
	ln, err := listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		newDaemon(dial, log.New(io.Discard, "", 0)).serve(ctx, ln)
		close(done)
	}()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return socket, stop
}

func (n *node) request(verb string, id OwnerID) *ipamd.Request {
	env := map[string]string{"CNI_COMMAND": verb, "CNI_CONTAINERID": id.ContainerID, "CNI_IFNAME": id.IfName,
		"CNI_NETNS": "/var/run/netns/none", "CNI_PATH": "/opt/cni/bin"}
	return &ipamd.Request{Env: env, Stdin: n.conf(""), Wait: 5 * time.Second}
}

// Concurrent calls through the daemon: one store dialled for all, distinct
// addresses, a repeated ADD gets its owner's address, DEL twice succeeds.
func TestDaemonCalls(t *testing.T) {
	m := newMemStore()
	n := newNode(t, m, "n1")
	var dials atomic.Int32
	socket, _ := startDaemon(t, func(EtcdConfig) (Store, error) { dials.Add(1); return m, nil })
	const calls = 20
	got := make([]string, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			got[i] = daemonAdd(t, socket, n, OwnerID{ContainerID: fmt.Sprintf("c%d", i), IfName: "eth1"})
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, a := range got {
		if a == "" || seen[a] {
			t.Errorf("address %q twice or none: %v", a, got)
		}
		seen[a] = true
	}
	if d := dials.Load(); d != 1 {
		t.Errorf("%d dials, want 1", d)
	}
	if a := daemonAdd(t, socket, n, OwnerID{ContainerID: "c3", IfName: "eth1"}); a != got[3] {
		t.Errorf("repeated ADD got %s, want %s", a, got[3])
	}
	for range 2 {
		resp, err := ipamd.Forward(socket, n.request("DEL", OwnerID{ContainerID: "c3", IfName: "eth1"}))
		if err != nil || resp.Code != 0 {
			t.Fatalf("DEL: %v %+v", err, resp)
		}
	}
	if slicesHas(n.files("leases"), "c3:eth1@"+got[3]) {
		t.Errorf("c3's record left after DEL: %v", n.files("leases"))
	}
}

func slicesHas(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func daemonAdd(t *testing.T, socket string, n *node, id OwnerID) string {
	resp, err := ipamd.Forward(socket, n.request("ADD", id))
	if err != nil || resp.Code != 0 {
		t.Errorf("ADD %s: %v %+v", id, err, resp)
		return ""
	}
	var r types100.Result
	if err := json.Unmarshal(resp.Stdout, &r); err != nil || len(r.IPs) == 0 {
		t.Errorf("ADD %s: result %s: %v", id, resp.Stdout, err)
		return ""
	}
	return r.IPs[0].Address.IP.String()
}

// gated blocks the first transaction until released.
type gated struct {
	Store
	once            sync.Once
	entered, opened chan struct{}
}

func (g *gated) Txn(ctx context.Context, t Txn) (bool, [][]KV, error) {
	g.once.Do(func() { close(g.entered); <-g.opened })
	return g.Store.Txn(ctx, t)
}

// SIGTERM: the daemon stops accepting, and the call under way finishes
// and is answered.
func TestDaemonFinishesCallsOnStop(t *testing.T) {
	m := newMemStore()
	n := newNode(t, m, "n1")
	g := &gated{Store: m, entered: make(chan struct{}), opened: make(chan struct{})}
	socket, stop := startDaemon(t, func(EtcdConfig) (Store, error) { return g, nil })
	addr := make(chan string)
	go func() { addr <- daemonAdd(t, socket, n, OwnerID{ContainerID: "c1", IfName: "eth1"}) }()
	<-g.entered
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := net.Dial("unix", socket); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the daemon still accepts after stop")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-stopped:
		t.Fatal("the daemon ended before its call")
	default:
	}
	close(g.opened)
	if a := <-addr; a == "" {
		t.Error("the call under way got no address")
	}
	<-stopped
}

// A second daemon on the socket is refused; a dead one's socket is
// replaced; the socket is 0600.
func TestListen(t *testing.T) {
	socket, stop := startDaemon(t, func(EtcdConfig) (Store, error) { return newMemStore(), nil })
	if st, err := os.Stat(socket); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("socket: %v %v", st.Mode(), err)
	}
	if _, err := listen(socket); err == nil || !strings.Contains(err.Error(), "another nicmux-ipamd") {
		t.Errorf("second daemon: %v", err)
	}
	stop()
	// A daemon killed leaves its socket behind.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	ln2, err := listen(socket)
	if err != nil {
		t.Fatalf("after a dead daemon: %v", err)
	}
	ln2.Close()
}

// The owners' lock: a second call of an owner waits for the first.
func TestOwnersLock(t *testing.T) {
	o := &owners{held: map[string]*ownerLock{}}
	unlock := o.lock("c1/eth1")
	other := o.lock("c2/eth1")
	got := make(chan struct{})
	go func() { o.lock("c1/eth1")(); close(got) }()
	select {
	case <-got:
		t.Fatal("a second call of c1/eth1 did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	unlock()
	<-got
	other()
	if len(o.held) != 0 {
		t.Errorf("locks left: %v", o.held)
	}
}

// dispatch answers as skel does, for every check skel makes before and
// after a verb.
func TestDispatchAsSkel(t *testing.T) {
	conf := func(v string) string { return `{"cniVersion": "` + v + `", "name": "net", "type": "x"}` }
	all := map[string]string{"CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/none", "CNI_IFNAME": "eth1", "CNI_PATH": "/opt/cni/bin"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range all {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, c := range []struct {
		name  string
		env   map[string]string
		stdin string
	}{
		{"no command", with(), conf("1.0.0")},
		{"ADD without ifname", with("CNI_COMMAND", "ADD", "CNI_IFNAME", ""), conf("1.0.0")},
		{"bad container ID", with("CNI_COMMAND", "ADD", "CNI_CONTAINERID", "a/b"), conf("1.0.0")},
		{"bad ifname", with("CNI_COMMAND", "DEL", "CNI_IFNAME", "a/b"), conf("1.0.0")},
		{"unknown command", with("CNI_COMMAND", "FOO"), conf("1.0.0")},
		{"bad JSON", with("CNI_COMMAND", "ADD"), `{`},
		{"no name", with("CNI_COMMAND", "ADD"), `{"cniVersion": "1.0.0"}`},
		{"bad name", with("CNI_COMMAND", "ADD"), `{"cniVersion": "1.0.0", "name": "a/b"}`},
		{"unsupported version", with("CNI_COMMAND", "ADD"), conf("9.9.9")},
		{"ADD", with("CNI_COMMAND", "ADD"), conf("1.0.0")},
		{"ADD fails", with("CNI_COMMAND", "ADD", "CNI_ARGS", "FAIL=1"), conf("1.0.0")},
		{"DEL", with("CNI_COMMAND", "DEL", "CNI_NETNS", ""), conf("1.0.0")},
		{"CHECK at 0.3.1", with("CNI_COMMAND", "CHECK"), conf("0.3.1")},
		{"CHECK", with("CNI_COMMAND", "CHECK"), conf("1.0.0")},
		{"GC at 1.0.0", with("CNI_COMMAND", "GC"), conf("1.0.0")},
		{"GC", with("CNI_COMMAND", "GC"), conf("1.1.0")},
		{"STATUS at 0.4.0", with("CNI_COMMAND", "STATUS"), conf("0.4.0")},
		{"STATUS", with("CNI_COMMAND", "STATUS"), conf("1.1.0")},
		{"VERSION", with("CNI_COMMAND", "VERSION"), `ignored`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var calls []string
			f := func(verb string) func(*skel.CmdArgs) error {
				return func(a *skel.CmdArgs) error {
					calls = append(calls, fmt.Sprintf("%s %+v", verb, *a))
					if strings.Contains(a.Args, "FAIL") {
						return errors.New("failed")
					}
					return nil
				}
			}
			funcs := skel.CNIFuncs{Add: f("ADD"), Del: f("DEL"), Check: f("CHECK"), GC: f("GC"), Status: f("STATUS")}
			wantOut, wantErr := viaSkel(t, c.env, c.stdin, funcs)
			wantCalls := calls
			calls = nil
			var out bytes.Buffer
			gotErr := dispatch(func(k string) string { return c.env[k] }, []byte(c.stdin), &out, funcs)
			if !reflect.DeepEqual(gotErr, wantErr) || out.String() != wantOut || !reflect.DeepEqual(calls, wantCalls) {
				t.Errorf("dispatch: %v %q %q\nskel:     %v %q %q", gotErr, out.String(), calls, wantErr, wantOut, wantCalls)
			}
		})
	}
}

// viaSkel runs skel on env and stdin, as a plugin process does.
func viaSkel(t *testing.T, env map[string]string, stdin string, funcs skel.CNIFuncs) (string, *types.Error) {
	out, _, e := viaSkelWith(t, env, stdin, funcs, "")
	return out, e
}

// viaSkelAbout is a run of skel with no verbs and about: its stdout and
// stderr.
func viaSkelAbout(t *testing.T, env map[string]string, stdin, about string) (string, string, *types.Error) {
	return viaSkelWith(t, env, stdin, skel.CNIFuncs{}, about)
}

func viaSkelWith(t *testing.T, env map[string]string, stdin string, funcs skel.CNIFuncs, about string) (string, string, *types.Error) {
	for _, k := range []string{"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH", "CNI_NETNS_OVERRIDE"} {
		t.Setenv(k, env[k])
		if env[k] == "" {
			os.Unsetenv(k)
		}
	}
	in := filepath.Join(t.TempDir(), "stdin")
	if err := os.WriteFile(in, []byte(stdin), 0o600); err != nil {
		t.Fatal(err)
	}
	inF, _ := os.Open(in)
	defer inF.Close()
	outF, _ := os.Create(filepath.Join(t.TempDir(), "stdout"))
	defer outF.Close()
	errF, _ := os.Create(filepath.Join(t.TempDir(), "stderr"))
	defer errF.Close()
	oldIn, oldOut, oldErr := os.Stdin, os.Stdout, os.Stderr
	os.Stdin, os.Stdout, os.Stderr = inF, outF, errF
	e := skel.PluginMainFuncsWithError(funcs, supported(), about)
	os.Stdin, os.Stdout, os.Stderr = oldIn, oldOut, oldErr
	out, _ := os.ReadFile(outF.Name())
	errOut, _ := os.ReadFile(errF.Name())
	return string(out), string(errOut), e
}

// A store that did not answer is dropped: the next call dials afresh, as a
// direct run would, rather than wait on a connection that may be dead.
func TestDaemonRedialsAfterNoAnswer(t *testing.T) {
	m := newMemStore()
	n := newNode(t, m, "n1")
	var dials atomic.Int32
	socket, _ := startDaemon(t, func(EtcdConfig) (Store, error) { dials.Add(1); return m, nil })
	daemonAdd(t, socket, n, OwnerID{ContainerID: "c1", IfName: "eth1"})
	m.setDown(true)
	resp, err := ipamd.Forward(socket, n.request("ADD", OwnerID{ContainerID: "c2", IfName: "eth1"}))
	if err != nil || resp.Code != 1 || !strings.Contains(string(resp.Stdout), `"code": 11`) {
		t.Fatalf("ADD with the store down: %v %+v", err, resp)
	}
	m.setDown(false)
	daemonAdd(t, socket, n, OwnerID{ContainerID: "c2", IfName: "eth1"})
	daemonAdd(t, socket, n, OwnerID{ContainerID: "c3", IfName: "eth1"})
	if d := dials.Load(); d != 2 {
		t.Errorf("%d dials, want 2: one before the failure, one after", d)
	}
}

// nicmux-ipam answers the bare run and VERSION itself, without skel: its
// answers must be skel's, byte for byte.
func TestThinLocalAnswersAsSkel(t *testing.T) {
	if ipamd.CurrentCNIVersion != version.Current() {
		t.Errorf("ipamd.CurrentCNIVersion %s, the CNI library's %s", ipamd.CurrentCNIVersion, version.Current())
	}
	for _, cmd := range []string{"", "VERSION"} {
		var out, errOut bytes.Buffer
		p := &ipamd.Plugin{Environ: []string{"CNI_COMMAND=" + cmd}, Stdout: &out, Stderr: &errOut, About: "CNI nicmux-ipam plugin v1"}
		if code := p.Run(); code != 0 {
			t.Errorf("%q: exit %d", cmd, code)
		}
		wantOut, wantErr, e := viaSkelAbout(t, map[string]string{"CNI_COMMAND": cmd}, "", "CNI nicmux-ipam plugin v1")
		if e != nil || out.String() != wantOut || errOut.String() != wantErr {
			t.Errorf("%q: nicmux-ipam printed %q and %q; skel %q and %q (%v)", cmd, out.String(), errOut.String(), wantOut, wantErr, e)
		}
	}
}
