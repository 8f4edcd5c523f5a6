package nomad

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where Nomad puts allocation namespaces: /var/run/netns/<allocID>.
const netnsDir = "/var/run/netns"

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newUUID returns a random allocation ID in Nomad's UUID form.
func newUUID() string {
	h := randHex(16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// createNetNS makes a new network namespace and bind-mounts it at path, as
// Nomad (and `ip netns add`) do.
func createNetNS(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	f.Close()
	var wg sync.WaitGroup
	var nsErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		nsErr = unshareAndMount(path)
	}()
	wg.Wait()
	if nsErr != nil {
		os.Remove(path)
		return fmt.Errorf("creating netns at %s: %w", path, nsErr)
	}
	return nil
}

// unshareAndMount moves the calling thread into a new network namespace,
// bind-mounts it at path and moves the thread back. The thread must not
// stay in the new namespace: a goroutine that ends locked to the main
// thread leaves it there for good (Go cannot end the main thread), which
// keeps the namespace, and its links, alive after destroyNetNS.
func unshareAndMount(path string) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return err
	}
	self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
	mountErr := unix.Mount(self, path, "none", unix.MS_BIND, "")
	if err := netns.Set(orig); err != nil {
		return errors.Join(mountErr, err) // the thread stays locked and ends with the goroutine
	}
	runtime.UnlockOSThread()
	return mountErr
}

// destroyNetNS unmounts and removes the namespace at path; it and every link
// in it go away. Nomad does this after a failed CHECK, WITHOUT a CNI DEL.
func destroyNetNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// nsDo runs f with a netlink handle inside the namespace at path.
func nsDo(t *testing.T, path string, f func(h *netlink.Handle) error) {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	failIf(t, err, "opening netns "+path)
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	failIf(t, err, "netlink in "+path)
	defer h.Close()
	failIf(t, f(h), "in netns "+path)
}

// nsLinks lists the links in a namespace, without lo, sorted.
func nsLinks(t *testing.T, path string) []string {
	t.Helper()
	var names []string
	nsDo(t, path, func(h *netlink.Handle) error {
		links, err := h.LinkList()
		for _, l := range links {
			if l.Attrs().Name != "lo" {
				names = append(names, l.Attrs().Name)
			}
		}
		return err
	})
	sort.Strings(names)
	return names
}

// nsAddrs lists a link's global addresses in a namespace, as CIDRs.
func nsAddrs(t *testing.T, path, ifname string) []string {
	t.Helper()
	var out []string
	nsDo(t, path, func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifname)
		if err != nil {
			return err
		}
		addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
		for _, a := range addrs {
			if a.IP.IsGlobalUnicast() {
				out = append(out, a.IPNet.String())
			}
		}
		return err
	})
	sort.Strings(out)
	return out
}

// nsMTU returns a link's MTU in a namespace.
func nsMTU(t *testing.T, path, ifname string) int {
	t.Helper()
	mtu := 0
	nsDo(t, path, func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifname)
		if err == nil {
			mtu = l.Attrs().MTU
		}
		return err
	})
	return mtu
}

// deleteLink deletes a link in a namespace (an operator or a crash breaking
// an allocation's secondary interface).
func deleteLink(t *testing.T, path, ifname string) {
	t.Helper()
	nsDo(t, path, func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifname)
		if err != nil {
			return err
		}
		return h.LinkDel(l)
	})
}

// readdress replaces every global address of a link with cidr.
func readdress(t *testing.T, path, ifname, cidr string) {
	t.Helper()
	nsDo(t, path, func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifname)
		if err != nil {
			return err
		}
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
	})
}

// nsSysctl reads a sysctl (a path under /proc/sys) inside a namespace.
func nsSysctl(t *testing.T, path, key string) string {
	t.Helper()
	var val string
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		val, err = readSysctlIn(path, key)
	}()
	<-done
	failIf(t, err, "reading sysctl "+key)
	return val
}

// readSysctlIn enters the namespace on a locked thread, reads the sysctl
// and moves the thread back (see unshareAndMount for why it must).
func readSysctlIn(path, key string) (string, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return "", err
	}
	defer orig.Close()
	target, err := netns.GetFromPath(path)
	if err != nil {
		return "", err
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return "", err
	}
	b, readErr := os.ReadFile(filepath.Join("/proc/sys", key))
	if err := netns.Set(orig); err != nil {
		return "", err // the thread stays locked and ends with the goroutine
	}
	runtime.UnlockOSThread()
	return strings.TrimSpace(string(b)), readErr
}

// makeMaster makes a veth pair in the test host's namespace to serve as a
// macvlan master (not every kernel has dummy links), with the given MTU.
func makeMaster(t *testing.T, mtu int) string {
	t.Helper()
	name := "mv" + randHex(4)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}, PeerName: name + "p"}
	failIf(t, netlink.LinkAdd(veth), "adding veth "+name)
	t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	for _, n := range []string{name, name + "p"} {
		l, err := netlink.LinkByName(n)
		failIf(t, err, "finding "+n)
		failIf(t, netlink.LinkSetUp(l), "bringing up "+n)
	}
	return name
}

// deleteHostLink deletes a link of the test host, ignoring one that is gone.
func deleteHostLink(name string) {
	if l, err := netlink.LinkByName(name); err == nil {
		_ = netlink.LinkDel(l)
	}
}

// hostLinkExists reports whether the test host has a link named name.
func hostLinkExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

// bridgePorts lists the links enslaved to a bridge of the test host.
func bridgePorts(t *testing.T, bridge string) []string {
	t.Helper()
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return nil
	}
	links, err := netlink.LinkList()
	failIf(t, err, "listing host links")
	var out []string
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

// ipOf returns the address part of a CIDR.
func ipOf(cidr string) string {
	ip, _, err := net.ParseCIDR(cidr)
	if err != nil {
		return ""
	}
	return ip.String()
}

// inSubnet reports whether the IP of cidr is in subnet.
func inSubnet(cidr, subnet string) bool {
	ip, _, err := net.ParseCIDR(cidr)
	_, n, err2 := net.ParseCIDR(subnet)
	return err == nil && err2 == nil && n.Contains(ip)
}

// hostIn returns the n-th address of a subnet, with its prefix length.
func hostIn(subnet string, n byte) string {
	_, ipn, err := net.ParseCIDR(subnet)
	if err != nil {
		return ""
	}
	ip := ipn.IP.To4()
	ip[3] += n
	ones, _ := ipn.Mask.Size()
	return fmt.Sprintf("%s/%d", ip, ones)
}

// flushIptables drops every rule and chain of the test host, as a reboot
// does.
func flushIptables(t *testing.T) {
	t.Helper()
	for _, table := range []string{"nat", "filter", "mangle"} {
		for _, op := range []string{"-F", "-X"} {
			out, err := exec.Command("iptables", "-t", table, op).CombinedOutput()
			failIf(t, err, "iptables "+table+" "+op+": "+string(out))
		}
	}
}
