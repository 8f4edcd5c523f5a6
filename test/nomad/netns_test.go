package nomad

import (
	"fmt"
	"net"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/nicmux/nicmux/test/testworld"
)

// netnsDir is where Nomad puts allocation namespaces: /var/run/netns/<allocID>.
const netnsDir = "/var/run/netns"

// newUUID returns a random allocation ID in Nomad's UUID form.
func newUUID() string {
	h := testworld.RandHex(16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// deleteLink deletes a link in a namespace (an operator or a crash breaking
// an allocation's secondary interface).
func deleteLink(t *testing.T, path, ifname string) {
	t.Helper()
	testworld.Do(t, path, func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifname)
		if err != nil {
			return err
		}
		return h.LinkDel(l)
	})
}

// readdress replaces every IPv4 address of a link with cidr.
func readdress(t *testing.T, path, ifname, cidr string) {
	t.Helper()
	testworld.Do(t, path, func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifname)
		if err != nil {
			return err
		}
		return testworld.ReplaceAddrs(h, l, cidr)
	})
}

// hostLinkExists reports whether the test host has a link named name.
func hostLinkExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
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
