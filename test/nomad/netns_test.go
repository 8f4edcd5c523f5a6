package nomad

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/nicmux/nicmux/test/netnsutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
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

// createNetNS makes a new network namespace at path, as Nomad (and `ip
// netns add`) do; destroyNetNS removes it, and every link in it goes too.
// Nomad destroys an allocation's namespace after a failed CHECK, WITHOUT a
// CNI DEL.
func createNetNS(path string) error  { return netnsutil.CreateAt(path) }
func destroyNetNS(path string) error { return netnsutil.DestroyAt(path) }

// nsDo runs f with a netlink handle inside the namespace at path.
func nsDo(t *testing.T, path string, f func(h *netlink.Handle) error) {
	t.Helper()
	failIf(t, netnsutil.Do(path, f), "netlink")
}

// nsLinks lists the links in a namespace, without lo, sorted.
func nsLinks(t *testing.T, path string) []string {
	t.Helper()
	names, err := netnsutil.Links(path)
	failIf(t, err, "listing links")
	return names
}

// nsAddrs lists a link's global addresses in a namespace, as CIDRs.
func nsAddrs(t *testing.T, path, ifname string) []string {
	t.Helper()
	addrs, err := netnsutil.Addrs(path, ifname)
	failIf(t, err, "listing addresses")
	return addrs
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
	ports, err := netnsutil.BridgePorts(bridge)
	failIf(t, err, "listing bridge ports")
	return ports
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
