package testworld

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/nicmux/nicmux/test/netnsutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NetnsDir is where `ip netns` and runtimes (Nomad among them) keep
// named network namespaces.
const NetnsDir = "/run/netns"

// NewNetns makes a fresh container namespace in NetnsDir, named prefix
// and random hex, and removes it when the test ends.
func NewNetns(t testing.TB, prefix string) string {
	t.Helper()
	path := filepath.Join(NetnsDir, prefix+RandHex(6))
	if err := netnsutil.CreateAt(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netnsutil.DestroyAt(path) })
	return path
}

// InNetns runs f on a thread in the namespace at path, in a goroutine of
// its own (f must not end the test: it returns its error), and ends the
// test on f's error. The thread goes back to the caller's namespace after
// f, or, if it cannot, ends with the goroutine: a thread left in the
// namespace would keep it, and its links, alive.
func InNetns(t testing.TB, path string, f func() error) {
	t.Helper()
	if err := inNetns(path, f); err != nil {
		t.Fatalf("in netns %s: %v", path, err)
	}
}

func inNetns(path string, f func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- onThreadIn(path, f) }()
	return <-errc
}

func onThreadIn(path string, f func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("opening netns %s: %w", path, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return fmt.Errorf("entering netns %s: %w", path, err)
	}
	fErr := f()
	if err := netns.Set(orig); err != nil {
		return errors.Join(fErr, err) // the thread stays locked and ends with the goroutine
	}
	runtime.UnlockOSThread()
	return fErr
}

// Do runs f with a netlink handle in the namespace at path and ends the
// test on its error.
func Do(t testing.TB, path string, f func(h *netlink.Handle) error) {
	t.Helper()
	if err := netnsutil.Do(path, f); err != nil {
		t.Fatal(err)
	}
}

// Link returns the link named ifname in the namespace at path.
func Link(t testing.TB, path, ifname string) netlink.Link {
	t.Helper()
	var l netlink.Link
	Do(t, path, func(h *netlink.Handle) (err error) {
		l, err = h.LinkByName(ifname)
		return err
	})
	return l
}

// MAC returns the MAC address of a link in the namespace at path.
func MAC(t testing.TB, path, ifname string) string {
	t.Helper()
	return Link(t, path, ifname).Attrs().HardwareAddr.String()
}

// Links lists the links in the namespace at path, without lo, sorted.
func Links(t testing.TB, path string) []string {
	t.Helper()
	names, err := netnsutil.Links(path)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// Addrs lists the global addresses of a link in the namespace at path, as
// sorted CIDRs.
func Addrs(t testing.TB, path, ifname string) []string {
	t.Helper()
	addrs, err := netnsutil.Addrs(path, ifname)
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

// BridgePorts lists the links enslaved to a bridge of the caller's
// namespace; none when there is no such bridge.
func BridgePorts(t testing.TB, bridge string) []string {
	t.Helper()
	ports, err := netnsutil.BridgePorts(bridge)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// ReplaceAddrs replaces every IPv4 address of link l with cidr, through h
// (&netlink.Handle{} for the caller's namespace).
func ReplaceAddrs(h *netlink.Handle, l netlink.Link, cidr string) error {
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if err := h.AddrDel(l, &a); err != nil {
			return err
		}
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		return err
	}
	return h.AddrAdd(l, addr)
}

// Sysctl reads a sysctl (key is its path under /proc/sys) in the
// namespace at path.
func Sysctl(t testing.TB, path, key string) string {
	t.Helper()
	var val string
	InNetns(t, path, func() error {
		b, err := os.ReadFile(filepath.Join("/proc/sys", key))
		val = strings.TrimSpace(string(b))
		return err
	})
	return val
}

// MakeMaster makes a veth pair in the caller's namespace, named "mv" and
// random hex, to serve as a macvlan master (not every kernel has dummy
// links), with mtu (0: the kernel's default); the test's end deletes it.
func MakeMaster(t testing.TB, mtu int) string {
	t.Helper()
	name := "mv" + RandHex(4)
	del, err := netnsutil.AddVethMasterMTU(name, mtu)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(del)
	return name
}

// DeleteHostLink deletes a link of the caller's namespace, if it is there.
func DeleteHostLink(name string) {
	if l, err := netlink.LinkByName(name); err == nil {
		_ = netlink.LinkDel(l)
	}
}
