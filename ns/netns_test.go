package ns

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/nicmux/nicmux/state"
)

func TestOwnInterface(t *testing.T) {
	zero, one := 0, 1
	res := &types100.Result{
		Interfaces: []*types100.Interface{{Name: "eth1"}, {Name: "eth1", Sandbox: "/run/netns/x"}, {Name: "veth0"}},
		IPs: []*types100.IPConfig{
			{Interface: &one, Address: net.IPNet{IP: net.IPv4(10, 0, 0, 2), Mask: net.CIDRMask(24, 32)}},
			{Interface: &zero, Address: net.IPNet{IP: net.IPv4(10, 0, 0, 3), Mask: net.CIDRMask(24, 32)}},
			{Address: net.IPNet{IP: net.IPv4(10, 0, 0, 4), Mask: net.CIDRMask(24, 32)}},
		},
	}
	// The sandboxed one wins over a host-side interface of the same name.
	if got := OwnInterface(res, "eth1"); got != 1 {
		t.Errorf("OwnInterface(eth1) = %d, want 1", got)
	}
	if got := OwnInterface(res, "veth0"); got != 2 {
		t.Errorf("OwnInterface(veth0) = %d, want 2 (no sandbox: the name alone)", got)
	}
	if got := OwnInterface(res, "eth9"); got != -1 {
		t.Errorf("OwnInterface(eth9) = %d, want -1", got)
	}
	for i, want := range []bool{true, false, true} {
		if got := OnInterface(res.IPs[i], 1); got != want {
			t.Errorf("OnInterface(IP %d, 1) = %v, want %v (an IP without an index is the chain's own)", i, got, want)
		}
	}
}

func TestIdentify(t *testing.T) {
	for _, path := range []string{"", filepath.Join(t.TempDir(), "gone")} {
		id, err := Identify(path)
		if err != nil || !id.IsZero() {
			t.Errorf("Identify(%q) = %v, %v; want the zero identity", path, id, err)
		}
	}
	// A plain file stands in for a namespace in unit tests: its inode is
	// its identity, it has no cookie.
	f := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	id, err := Identify(f)
	if err != nil || id.IsZero() || id.Cookie != 0 {
		t.Errorf("Identify(file) = %+v, %v", id, err)
	}
	own, err := Identify("/proc/self/ns/net")
	if err != nil || !IsOwn(own) || IsOwn(id) || IsOwn(state.NetNSID{}) {
		t.Errorf("IsOwn: own %+v (%v) -> %v; a file -> %v", own, err, IsOwn(own), IsOwn(id))
	}
}
