package cluster

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/nicmux/nicmux/test/netnsutil"
)

// A DEL while etcd is stopped queues the release and succeeds; the
// address stays taken until the node's next call completes it.
func TestDelWhileEtcdIsStopped(t *testing.T) {
	w := NewWorld(t, 1)
	n := w.Node("n1")
	n.Add("c1")
	etcd := w.Etcd.Members[0]
	if err := etcd.Pause(); err != nil {
		t.Fatal(err)
	}
	n.Del("c1")
	if q := n.Queued(); len(q) != 1 || !strings.HasPrefix(q[0], "c1:eth1:") {
		t.Fatalf("queued releases %v", q)
	}
	if err := etcd.Resume(); err != nil {
		t.Fatal(err)
	}
	// The DEL's own transaction may sit in etcd's socket when it stops and
	// be applied once it resumes, after the client gave up: the release then
	// happened in etcd, and the queued one has nothing left to do. Otherwise
	// the address stays taken until the node's next call.
	if _, ok := w.Leases()["c1/eth1"]; ok {
		w.owned("c1", "eth1", true)
	} else {
		t.Log("etcd applied the DEL's transaction after it resumed")
	}
	if _, err := n.Exec(Call{Verb: "STATUS"}); err != nil {
		t.Fatal(err)
	}
	w.owned("c1", "eth1", false)
	if _, ok := w.Leases()["c1/eth1"]; ok || len(n.Queued()) != 0 {
		t.Errorf("after STATUS: lease there %v, queue %v", ok, n.Queued())
	}
}

// An ADD while etcd is stopped fails, naming etcd and its endpoints; the
// chain rolls back (through nicmux: macvlan alone leaks its link when its
// IPAM fails), and nothing stays once etcd is back.
func TestAddWhileEtcdIsStopped(t *testing.T) {
	w := NewWorld(t, 1)
	n := w.Node("n1")
	n.Add("before")
	l := n.nicmuxList(t)
	netns := newNS(t)
	etcd := w.Etcd.Members[0]
	if err := etcd.Pause(); err != nil {
		t.Fatal(err)
	}
	_, err := n.cni.AddNetworkList(context.Background(), l, &libcni.RuntimeConf{ContainerID: "during", NetNS: netns, IfName: "eth0"})
	var e *types.Error
	if !errors.As(err, &e) || e.Code != 11 || !strings.Contains(e.Msg, "eth1") || !strings.Contains(e.Msg, "nicmux-ipam: etcd at "+etcd.ClientURL+": no answer within 2s") {
		t.Fatalf("ADD with etcd stopped: %v", err)
	}
	if links, _ := netnsutil.Links(netns); len(links) != 0 {
		t.Errorf("the failed ADD left %v in the namespace", links)
	}
	if err := etcd.Resume(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Exec(Call{Verb: "STATUS"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := w.Leases()["during/eth1"]; ok || len(n.Queued()) != 0 {
		t.Errorf("after etcd came back: lease %v, queue %v", ok, n.Queued())
	}
}

// STATUS fails with 50 when no endpoint answers.
func TestStatusWithoutEtcd(t *testing.T) {
	w := NewWorld(t, 1)
	n := w.Node("n1")
	if err := w.Etcd.Members[0].Kill(); err != nil {
		t.Fatal(err)
	}
	_, err := n.Exec(Call{Verb: "STATUS"})
	wantErr(t, err, 50, "not ready: etcd at "+w.Etcd.Members[0].ClientURL)
	if err := w.Etcd.Members[0].Restart(); err != nil {
		t.Fatal(err)
	}
	if err := w.Etcd.WaitServing(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// The leader of three is killed while three nodes run 50 ADDs at once,
// once a few have returned, so that the rest are in flight: an ADD may
// fail (Nomad retries it), none gets an address twice.
func TestLeaderKilledDuringConcurrentAdds(t *testing.T) {
	const adds = 50
	w := NewWorld(t, 3)
	w.Timeout = "5s"
	nodes := []*Node{w.Node("n1"), w.Node("n2"), w.Node("n3")}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader, err := w.Etcd.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []int
	returned := make(chan struct{}, adds)
	var after int // ADDs that returned after the kill
	var killed bool
	for i := range adds {
		wg.Go(func() {
			_, err := nodes[i%3].Exec(Call{Verb: "ADD", ID: id(i)})
			mu.Lock()
			defer mu.Unlock()
			if killed {
				after++
			}
			if err != nil {
				t.Logf("ADD %s: %v", id(i), err)
				failed = append(failed, i)
			}
			returned <- struct{}{}
		})
	}
	for range 5 {
		<-returned
	}
	mu.Lock()
	err = leader.Kill()
	killed = true
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if after == 0 {
		t.Errorf("every ADD returned before the leader died")
	}
	t.Logf("the leader died with %d ADDs in flight", after)
	t.Logf("%d of %d ADDs failed while the leader died", len(failed), adds)
	for _, i := range failed {
		nodes[i%3].Add(id(i))
	}
	if got := w.Addresses(); len(got) != adds {
		t.Errorf("%d addresses leased, want %d", len(got), adds)
	}
}
