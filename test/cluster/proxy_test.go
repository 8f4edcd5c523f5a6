package cluster

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// etcdProxy stands between the nodes and one etcd member, so that a trial
// can kill the plugin at the moment one of its messages to etcd arrives:
// before that message reaches etcd, or just after. A message is what one
// read of the plugin's connection returns (a gRPC write: the preface, a
// request's frames, a ping).
type etcdProxy struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	messages int    // messages seen since arm
	at       int    // the message that fires (0: none)
	deliver  bool   // it reaches etcd before the kill
	fire     func() // the kill
	fired    bool
	// cut: the connection whose message fired the kill is closed, not
	// left silent. A node's daemon keeps its connection across calls: the
	// plugin's death does not end it, and what the kill models for the
	// daemon's connection is its loss.
	cut bool
}

// newEtcdProxy proxies the etcd member at clientURL until the test ends.
func newEtcdProxy(t *testing.T, clientURL string) *etcdProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &etcdProxy{ln: ln, target: strings.TrimPrefix(clientURL, "http://")}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.pipe(c) })
		}
	})
	return p
}

// URL is the proxy's endpoint.
func (p *etcdProxy) URL() string { return "http://" + p.ln.Addr().String() }

// arm makes the at-th message from now fire kill, after reaching etcd if
// deliver; at 0 only counts the messages.
func (p *etcdProxy) arm(at int, deliver bool, kill func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.messages, p.at, p.deliver, p.fire, p.fired = 0, at, deliver, kill, false
}

// disarm ends the arming and returns how many messages came, and whether
// the kill fired.
func (p *etcdProxy) disarm() (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, fired := p.messages, p.fired
	p.at, p.fire, p.fired = 0, nil, false
	return n, fired
}

// seen counts a message and says whether it is the one that fires.
func (p *etcdProxy) seen() (fire bool, deliver bool, kill func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.messages++
	if p.at == 0 || p.messages != p.at {
		return false, true, nil
	}
	p.fired = true
	return true, p.deliver, p.fire
}

// pipe forwards one connection. The connection whose message fired the
// kill forwards nothing more: the plugin died before writing it (or, with
// cut, the connection is closed).
func (p *etcdProxy) pipe(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	go func() {
		_, _ = io.Copy(c, up)
		c.Close()
	}()
	buf := make([]byte, 64<<10)
	dead := false
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if dead {
			continue
		}
		fire, deliver, kill := p.seen()
		if deliver {
			if _, err := up.Write(buf[:n]); err != nil {
				return
			}
		}
		if fire {
			dead = true
			if kill != nil {
				kill()
			}
			if p.cut {
				return
			}
		}
	}
}
