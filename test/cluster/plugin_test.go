package cluster

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func wantErr(t *testing.T, err error, code uint, parts ...string) {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("want a CNI error with code %d containing %q, got %v", code, parts, err)
	}
	if e.Code != code {
		t.Errorf("code %d, want %d: %v", e.Code, code, e)
	}
	for _, p := range parts {
		if !strings.Contains(e.Error(), p) {
			t.Errorf("error %q does not mention %q", e, p)
		}
	}
}

func TestAddCheckDelAndRepeats(t *testing.T) {
	w := NewWorld(t, 1)
	n := w.Node("n1")
	r, err := n.Exec(Call{Verb: "ADD", ID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.IPs[0].Address.String(); !strings.HasPrefix(got, "10.20.0.") || !strings.HasSuffix(got, "/24") || r.IPs[0].Gateway.String() != "10.20.0.1" {
		t.Fatalf("result %v", r)
	}
	// Nomad repeats a failed ADD with no DEL between: the same address.
	if again := n.Add("c1"); again != r.IPs[0].Address.IP.String() {
		t.Errorf("repeated ADD: %s, want %s", again, r.IPs[0].Address.IP)
	}
	if l := w.Leases()["c1/eth1"]; l.Node != "n1" || len(l.Addresses) != 1 || l.Addresses[0].IP != r.IPs[0].Address.IP.String() {
		t.Errorf("etcd records %+v", l)
	}
	prev, _ := json.Marshal(r)
	if _, err := n.Exec(Call{Verb: "CHECK", ID: "c1", Conf: `, "prevResult": ` + string(prev)}); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	n.Del("c1")
	n.Del("c1")
	if got := w.Leases(); len(got) != 0 {
		t.Errorf("after DEL: %v", got)
	}
	_, err = n.Exec(Call{Verb: "CHECK", ID: "c1", Conf: `, "prevResult": ` + string(prev)})
	wantErr(t, err, 3, "records no lease for c1/eth1")
}

func TestRequestedAddressAndItsHolder(t *testing.T) {
	w := NewWorld(t, 1)
	n1, n2 := w.Node("n1"), w.Node("n2")
	r, err := n1.Exec(Call{Verb: "ADD", ID: "c1", Args: "IgnoreUnknown=true;IP=10.20.0.50"})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.IPs[0].Address.IP.String(); got != "10.20.0.50" {
		t.Fatalf("got %s, want the requested 10.20.0.50", got)
	}
	_, err = n2.Exec(Call{Verb: "ADD", ID: "c2", Conf: `, "runtimeConfig": {"ips": ["10.20.0.50/24"]}`})
	wantErr(t, err, 7, "10.20.0.50", "held by container c1 (eth1) on node n1")
	if _, ok := w.Leases()["c2/eth1"]; ok {
		t.Error("the refused ADD left a lease")
	}
	r, err = n2.Exec(Call{Verb: "ADD", ID: "c2", Conf: `, "runtimeConfig": {"ips": ["10.20.0.51/24"]}`})
	if err != nil || r.IPs[0].Address.IP.String() != "10.20.0.51" {
		t.Fatalf("ADD of a free requested address: %v, %v", r, err)
	}
}

func TestExhaustionThenReuseFromAnotherNode(t *testing.T) {
	w := NewWorld(t, 1)
	// 10.21.0.1 to .14, in blocks of four.
	w.Ranges = `[[{"subnet": "10.21.0.0/28"}]]`
	w.Extra = `, "blockPrefixLength": {"ipv4": 30}`
	n1, n2 := w.Node("n1"), w.Node("n2")
	var first string
	for i := range 14 {
		a := n1.Add(id(i))
		if i == 5 {
			first = a
		}
	}
	before := len(w.Etcd.Dump(ctxT(t), t, w.Prefix+"/"))
	_, err := n2.Exec(Call{Verb: "ADD", ID: "late"})
	wantErr(t, err, 110, "pool storage is full", "hands out 14 addresses")
	if after := len(w.Etcd.Dump(ctxT(t), t, w.Prefix+"/")); after != before {
		t.Errorf("the refused ADD left %d keys", after-before)
	}
	n1.Del(id(5))
	if got := n2.Add("late"); got != first {
		t.Errorf("node n2 got %s, want the freed %s", got, first)
	}
	if got := len(w.Addresses()); got != 14 {
		t.Errorf("%d addresses leased, want 14", got)
	}
}

func TestGCReleasesWhatIsNotValid(t *testing.T) {
	w := NewWorld(t, 1)
	n1, n2 := w.Node("n1"), w.Node("n2")
	n1.Add("c1")
	n1.Add("c2")
	n2.Add("c3")
	valid := `, "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth1"}]`
	if _, err := n1.Exec(Call{Verb: "GC", Conf: valid}); err != nil {
		t.Fatal(err)
	}
	w.owned("c2", "eth1", false)
	got := w.Leases()
	if _, ok := got["c2/eth1"]; ok || len(got) != 2 {
		t.Errorf("after GC on n1: %v, want c1 (valid) and c3 (node n2's)", got)
	}
}
