package cluster

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	gocni "github.com/containerd/go-cni"

	"github.com/nicmux/nicmux/test/netnsutil"
)

// smallPool gives eth1's pool ten addresses, so that the allocations of a
// test take most of them.
func smallPool(ifname string, plugins []any) []any {
	if ifname == "eth1" {
		ipam := plugins[0].(map[string]any)["ipam"].(map[string]any)
		ipam["ranges"] = []any{[]any{map[string]any{"subnet": "10.50.0.0/16", "rangeStart": "10.50.0.10", "rangeEnd": "10.50.0.19", "gateway": "10.50.0.1"}}}
	}
	return plugins
}

// failOnce makes eth1's last plugin (sbr) fail its next ADD once the test
// writes the file arm.
func failOnce(arm string) chainEdit {
	return func(ifname string, plugins []any) []any {
		if ifname != "eth1" {
			return plugins
		}
		last := plugins[len(plugins)-1].(map[string]any)
		last["exec"], last["type"] = last["type"], "torture"
		last["torture"] = map[string]any{"verbs": []string{"ADD"}, "armFile": arm, "once": true, "action": "fail", "code": 11}
		return plugins
	}
}

// Released is the address etcd keeps for owner id/ifname since its
// release, "" when it keeps none.
func (w *World) Released(id, ifname string) string {
	w.t.Helper()
	key := w.Prefix + "/pools/" + w.Pool + "/released/" + id + "/" + ifname
	v, ok := w.Etcd.Dump(ctxT(w.t), w.t, key)[key]
	if !ok {
		return ""
	}
	var l Lease
	if err := json.Unmarshal([]byte(v), &l); err != nil || len(l.Addresses) != 1 {
		w.t.Fatalf("%s: %s (%v)", key, v, err)
	}
	return l.Addresses[0].IP
}

// Nomad retries a setup that failed past eth1's claim (nicmux rolled eth1
// back, releasing its lease): the retry gets the same address. Other
// allocations set up meanwhile never get it, in a pool they nearly fill.
func TestStickyAddressOnNomadsRetry(t *testing.T) {
	w := NewWorld(t, 1)
	arm := filepath.Join(t.TempDir(), "arm")
	f := w.Node("client-1").InstallFleet(t, smallPool, failOnce(arm))
	a := f.NewAlloc(t)
	if err := os.WriteFile(arm, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SetupOnce(); err == nil || !strings.Contains(err.Error(), "eth1") {
		t.Fatalf("the armed setup: %v, want eth1's sbr to fail", err)
	}
	kept := w.Released(a.ID, "eth1")
	if kept == "" || len(w.Leases()) != 0 {
		t.Fatalf("after the rolled back setup: etcd keeps %q for the allocation, leases %v", kept, w.Leases())
	}
	all := setUpOthers(t, f, 8, kept)
	wantAgain(t, a, kept, "Nomad's retry")
	removeAllOf(t, w, f, append(all, placed{a: a, ip: kept}))
}

// wantAgain sets a up once more: eth1 must get ip.
func wantAgain(t *testing.T, a *Alloc, ip, what string) {
	t.Helper()
	res, err := a.SetupOnce()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if got, _ := eth1IP(res); got != ip {
		t.Fatalf("%s got %s, want the allocation's %s", what, got, ip)
	}
}

// removeAllOf checks the pool's invariants, then removes every allocation
// placed on f: nothing may be left.
func removeAllOf(t *testing.T, w *World, f *Fleet, all []placed) {
	t.Helper()
	w.CheckInvariants()
	removeAll(t, all)
	wantNothingLeft(t, w, []*Fleet{f}, all)
}

// setUpOthers sets up n allocations of f, none of which may get kept.
func setUpOthers(t *testing.T, f *Fleet, n int, kept string) []placed {
	t.Helper()
	var out []placed
	for range n {
		o := f.NewAlloc(t)
		ip, _ := o.MustSetup(t)
		if ip == kept {
			t.Fatalf("allocation %s got %s, kept for another", o.ID, ip)
		}
		out = append(out, placed{a: o, ip: ip})
	}
	return out
}

// A CHECK fails (eth1 is gone): Nomad destroys the namespace without DEL
// and sets it up again with the same ID; nicmux releases what the old one
// held first (eth1's lease among it), then sets up: eth1 gets its address
// back, in a pool other allocations nearly fill.
func TestStickyAddressOnRebuild(t *testing.T) {
	w := NewWorld(t, 1)
	f := w.Node("client-1").InstallFleet(t, smallPool)
	a := f.NewAlloc(t)
	ip, _ := a.MustSetup(t)
	all := setUpOthers(t, f, 6, "")
	if err := exec.Command("nsenter", "--net="+a.NetNS, "ip", "link", "del", "eth1").Run(); err != nil {
		t.Fatal(err)
	}
	if err := a.Check(); err == nil {
		t.Fatal("CHECK passed with eth1 gone")
	}
	if err := netnsutil.DestroyAt(a.NetNS); err != nil {
		t.Fatal(err)
	}
	if err := netnsutil.CreateAt(a.NetNS); err != nil {
		t.Fatal(err)
	}
	wantAgain(t, a, ip, "the setup of the rebuilt namespace")
	removeAllOf(t, w, f, append(all, placed{a: a, ip: ip}))
}

// MustSetup is Nomad's network setup of a, which must succeed: eth1's
// IPv4 address, and the result.
func (a *Alloc) MustSetup(t *testing.T) (string, *gocni.Result) {
	t.Helper()
	res, errs := a.Setup()
	if len(errs) > 0 {
		t.Fatalf("setup of %s: %v", a.ID, errs)
	}
	ip, err := eth1IP(res)
	if err != nil {
		t.Fatal(err)
	}
	return ip, res
}

// Check is the CHECK a Nomad client runs on restore.
func (a *Alloc) Check() error {
	c, err := a.f.client()
	if err != nil {
		return err
	}
	return c.Check(context.Background(), a.ID, a.NetNS, gocni.WithCapabilityPortMap(a.ports), gocni.WithLabels(a.labels()))
}
