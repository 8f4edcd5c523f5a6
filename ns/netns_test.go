package ns

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	types100 "github.com/containernetworking/cni/pkg/types/100"
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
	own, err := Identify("/proc/self/ns/net")
	if err != nil || !IsOwn(own) || IsOwn(NetNSID{}) {
		t.Errorf("IsOwn: own %+v (%v) -> %v", own, err, IsOwn(own))
	}
	if other := (NetNSID{Dev: own.Dev, Ino: own.Ino + 1}); IsOwn(other) {
		t.Errorf("IsOwn(%+v) with own %+v", other, own)
	}
}

// What is at a CNI_NETNS path and is not a network namespace is refused,
// naming the path and what it is; a FIFO does not block the refusal.
func TestIdentifyNotNetNS(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "empty")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, what := range map[string]string{
		file:                "another file system",
		dir:                 "another file system",
		fifo:                "another file system",
		"/proc/self/ns/mnt": "another type (mount)",
		"/proc/self/ns/uts": "another type (uts)",
	} {
		id, err := Identify(path)
		if !errors.Is(err, ErrNotNetNS) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), what) || !id.IsZero() {
			t.Errorf("Identify(%s) = %+v, %v; want ErrNotNetNS naming it and %q", path, id, err, what)
		}
	}
}

// A scratch namespace holds the link and addresses a result records for
// it, and a handle from Open looks inside it.
func TestScratchOpen(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("makes a network namespace: needs root (make test runs it so)")
	}
	s, err := NewScratch()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	zero := 0
	res := &types100.Result{
		CNIVersion: "1.0.0",
		Interfaces: []*types100.Interface{{Name: "eth1", Sandbox: "/run/netns/x", Mac: "02:00:00:00:00:07"}},
		IPs:        []*types100.IPConfig{{Interface: &zero, Address: net.IPNet{IP: net.IPv4(10, 0, 0, 2).To4(), Mask: net.CIDRMask(24, 32)}}},
	}
	if err := s.Add("eth1", res); err != nil {
		t.Fatal(err)
	}
	if id, err := Identify(s.Path()); err != nil || id.IsZero() || IsOwn(id) {
		t.Errorf("Identify(scratch) = %+v, %v; want another namespace than nicmux's", id, err)
	}
	h, err := Open(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if !h.linkExists("eth1") || h.linkExists("eth2") {
		t.Errorf("linkExists: eth1 %v, eth2 %v; want eth1 only", h.linkExists("eth1"), h.linkExists("eth2"))
	}
	if got := LiveLinks(s.Path(), []string{"eth1", "eth2"}); len(got) != 1 || got[0] != "eth1" {
		t.Errorf("LiveLinks = %v, want [eth1]", got)
	}
	// Scratch links stay down: that is all Verify finds amiss, until an
	// address is recorded that the link does not have.
	if err := h.Verify("eth1", res); err == nil || err.Error() != "link is down" {
		t.Errorf("Verify = %v, want only the link down", err)
	}
	res.IPs[0].Address.IP = net.IPv4(10, 0, 0, 3).To4()
	if err := h.Verify("eth1", res); err == nil || err.Error() != "link is down, address 10.0.0.3/24 is missing" {
		t.Errorf("Verify = %v, want the link down and 10.0.0.3/24 missing", err)
	}
}

func TestNetNSID(t *testing.T) {
	a := NetNSID{Dev: 4, Ino: 4026532281, Cookie: 8193}
	tests := []struct {
		name string
		id   NetNSID
		zero bool
		same bool // a.Same(id)
	}{
		{"zero", NetNSID{}, true, false},
		{"dev only", NetNSID{Dev: 4}, false, false},
		{"ino only", NetNSID{Ino: 4026532281}, false, false},
		{"identical", a, false, true},
		{"no cookie", NetNSID{Dev: 4, Ino: 4026532281}, false, true},
		{"other cookie: inode reused", NetNSID{Dev: 4, Ino: 4026532281, Cookie: 9000}, false, false},
		{"other inode", NetNSID{Dev: 4, Ino: 4026532282, Cookie: 8193}, false, false},
		{"other device", NetNSID{Dev: 5, Ino: 4026532281, Cookie: 8193}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.id.IsZero(); got != tc.zero {
				t.Errorf("IsZero() = %v, want %v", got, tc.zero)
			}
			if got := a.Same(tc.id); got != tc.same {
				t.Errorf("Same() = %v, want %v", got, tc.same)
			}
			if got := tc.id.Same(a); got != tc.same {
				t.Errorf("Same() the other way = %v, want %v", got, tc.same)
			}
		})
	}
	if (NetNSID{}).Same(NetNSID{}) {
		t.Error("a namespace that was not found is the same as another")
	}
}
