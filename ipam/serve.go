package ipam

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nicmux/nicmux/ipam/ipamd"
)

const serveHelp = `Runs the node's daemon: it listens on a unix socket (in a folder only root
may enter; the socket 0600), keeps one etcd client per etcd configuration
the calls name, and answers each CNI call that nicmux-ipam hands it with
the verbs nicmux-ipamd runs directly. Only root's processes may call it.
SIGTERM or SIGINT: it stops accepting calls, finishes those under way and
exits.

Without the daemon nicmux-ipam runs nicmux-ipamd for each call: the same
answers, slower. Run it from a systemd unit (nicmux-ipamd.service), not as
a Nomad job: Nomad needs the plugin to set up a job's network.

Exit status: 0 after SIGTERM, 1 the socket cannot be listened on, 2 usage
error.`

// runServe is nicmux-ipamd serve.
func runServe(e *env, args []string) int {
	f := newFlags("serve", serveHelp)
	socket := f.String("socket", ipamd.DefaultSocket, "the unix socket `PATH` to listen on (an ipam configuration's socket names another)")
	if code, ok := f.parse(e, args); !ok {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ln, err := listen(*socket)
	if err != nil {
		fmt.Fprintf(e.stderr, "nicmux-ipamd serve: %v\n", err)
		return exitFail
	}
	d := newDaemon(e.dial, log.New(e.stderr, "nicmux-ipamd: ", 0))
	d.log.Printf("listening on %s", *socket)
	d.serve(ctx, ln)
	d.log.Printf("stopped")
	return exitOK
}

// listen listens on socket, after making its folder, and after removing a
// socket no daemon answers on (one that died).
func listen(socket string) (*net.UnixListener, error) {
	if err := ipamd.SocketDir(socket); err != nil {
		return nil, err
	}
	if st, err := os.Lstat(socket); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s: exists and is not a socket", socket)
		}
		if c, err := net.DialTimeout("unix", socket, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another nicmux-ipamd answers there", socket)
		}
		if err := os.Remove(socket); err != nil {
			return nil, err
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(socket, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// daemon answers calls, each in its own goroutine: a call's state is its
// own (a plugin value, its records opened anew), as in a process of its
// own. What calls share is here: the stores and the owners' locks.
type daemon struct {
	stores *stores
	owners *owners
	log    *log.Logger
	calls  sync.WaitGroup
}

func newDaemon(dial Dialer, l *log.Logger) *daemon {
	return &daemon{stores: &stores{dial: dial, open: map[string]Store{}}, owners: &owners{held: map[string]*ownerLock{}}, log: l}
}

// serve accepts calls until ctx ends, then waits for those under way and
// closes the stores.
func (d *daemon) serve(ctx context.Context, ln *net.UnixListener) {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				break
			}
			d.log.Printf("accept: %v", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		d.calls.Add(1)
		go func() {
			defer d.calls.Done()
			d.handle(c)
		}()
	}
	d.calls.Wait()
	d.stores.Close()
}

// handle answers one connection's call. A caller that is not root, or a
// request that does not arrive whole, gets no answer: nicmux-ipam then
// runs the call itself.
func (d *daemon) handle(c *net.UnixConn) {
	defer c.Close()
	if err := ipamd.CheckPeer(c); err != nil {
		d.log.Printf("refused a call: %v", err)
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var req ipamd.Request
	if err := ipamd.ReadFrame(c, &req); err != nil {
		d.log.Printf("reading a call: %v", err)
		return
	}
	wait := req.Wait
	if wait <= 0 || wait > ipamd.DefaultWait {
		wait = ipamd.DefaultWait
	}
	// The call ends well before the caller stops waiting, and as soon as
	// the caller goes away (a runtime that killed it): the caller, or the
	// runtime's DEL, then runs on a call that no longer touches etcd.
	ctx, cancel := context.WithTimeout(context.Background(), wait*9/10)
	defer cancel()
	_ = c.SetReadDeadline(time.Time{})
	go func() {
		var b [1]byte
		_, _ = c.Read(b[:])
		cancel()
	}()
	resp := d.call(ctx, &req)
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := ipamd.WriteFrame(c, resp); err != nil {
		d.log.Printf("answering %s %s/%s: %v", req.Getenv("CNI_COMMAND"), req.Getenv("CNI_CONTAINERID"), req.Getenv("CNI_IFNAME"), err)
	}
}

// call runs the request's verb as nicmux-ipamd would: its output and exit
// code. Calls of one owner run one at a time, so that a DEL never runs
// beside the ADD it undoes (one whose caller was killed).
func (d *daemon) call(ctx context.Context, req *ipamd.Request) *ipamd.Response {
	if id := req.Getenv("CNI_CONTAINERID"); id != "" {
		defer d.owners.lock(id + "/" + req.Getenv("CNI_IFNAME"))()
	}
	var out bytes.Buffer
	p := &plugin{Dial: d.stores.get, Hostname: os.Hostname, Stdout: &out, Parent: ctx}
	if e := dispatch(req.Getenv, req.Stdin, &out, p.Funcs()); e != nil {
		printError(&out, e)
		return &ipamd.Response{Code: exitFail, Stdout: out.Bytes()}
	}
	return &ipamd.Response{Code: exitOK, Stdout: out.Bytes()}
}

// stores are the daemon's etcd clients, one per etcd configuration, kept
// connected across calls.
type stores struct {
	dial Dialer
	mu   sync.Mutex
	open map[string]Store
}

// get returns the store of c, dialling it the first time. TLS files changed
// on disk (a renewed certificate) make a new one; the one before stays
// open, for the calls that use it, until the daemon ends.
func (s *stores) get(c EtcdConfig) (Store, error) {
	key := storeKey(c)
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.open[key]
	if !ok {
		var err error
		if st, err = s.dial(c); err != nil {
			return nil, err
		}
		s.open[key] = st
	}
	return &kept{unanswered{Store: st, onUnanswered: func() { s.drop(key, st, c.Timeout) }}}, nil
}

// drop forgets st, the store of key, so that the next call dials afresh,
// as a direct run does: a request it did not answer in time may have
// died on a connection that will not answer again (a peer gone without
// a reset). The calls under way end within their timeout; st is closed
// after.
func (s *stores) drop(key string, st Store, timeout time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[key] != st {
		return
	}
	delete(s.open, key)
	time.AfterFunc(2*timeout+time.Second, func() { _ = st.Close() })
}

// Close closes every store.
func (s *stores) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, st := range s.open {
		_ = st.Close()
		delete(s.open, k)
	}
}

// storeKey names what a store's client is made of: endpoints, prefix, and
// the TLS files with their sizes and times.
func storeKey(c EtcdConfig) string {
	parts := []string{strings.Join(c.Endpoints, ","), c.Prefix}
	for _, f := range []string{c.CAFile, c.CertFile, c.KeyFile} {
		stamp := ""
		if st, err := os.Stat(f); f != "" && err == nil {
			stamp = strconv.FormatInt(st.Size(), 10) + "@" + strconv.FormatInt(st.ModTime().UnixNano(), 10)
		}
		parts = append(parts, f, stamp)
	}
	return strings.Join(parts, "\x00")
}

// kept is a store the daemon keeps for the calls to come: a call does not
// close it, and one that gets no answer from it drops it.
type kept struct{ unanswered }

func (*kept) Close() error { return nil }

// owners are the locks of the owners whose calls run.
type owners struct {
	mu   sync.Mutex
	held map[string]*ownerLock
}

type ownerLock struct {
	sync.Mutex
	users int
}

// lock waits for owner's lock and returns its unlock.
func (o *owners) lock(owner string) func() {
	o.mu.Lock()
	l := o.held[owner]
	if l == nil {
		l = &ownerLock{}
		o.held[owner] = l
	}
	l.users++
	o.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		o.mu.Lock()
		if l.users--; l.users == 0 {
			delete(o.held, owner)
		}
		o.mu.Unlock()
	}
}
