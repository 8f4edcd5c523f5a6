package cluster

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/nicmux/nicmux/test/netnsutil"
	"github.com/nicmux/nicmux/test/testworld"
)

// Switch returns the bridge that plays the shared L2's switch: every
// node's NIC (Node.NIC) is plugged into it.
func (w *World) Switch() string {
	w.t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sw == "" {
		name := "sw" + testworld.RandHex(4)
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
		if err := netlink.LinkAdd(br); err != nil {
			w.t.Fatalf("adding the switch %s: %v", name, err)
		}
		w.t.Cleanup(func() { _ = netlink.LinkDel(br) })
		if err := netlink.LinkSetUp(br); err != nil {
			w.t.Fatal(err)
		}
		w.sw = name
	}
	return w.sw
}

// NIC returns the node's network card on the shared L2: a veth end whose
// peer is plugged into the world's switch. Its macvlans reach every other
// node's through the switch.
func (n *Node) NIC() string {
	n.w.t.Helper()
	if n.nic != "" {
		return n.nic
	}
	sw := n.w.Switch()
	name := "nic" + testworld.RandHex(4)
	del, err := netnsutil.AddVethMaster(name)
	if err != nil {
		n.w.t.Fatal(err)
	}
	n.w.t.Cleanup(del)
	peer, err := netlink.LinkByName(name + "p")
	if err == nil {
		var br netlink.Link
		if br, err = netlink.LinkByName(sw); err == nil {
			err = netlink.LinkSetMaster(peer, br)
		}
	}
	if err != nil {
		n.w.t.Fatalf("plugging %s into the switch: %v", name, err)
	}
	n.nic = name
	return name
}

// Station is a namespace of the test's own on the shared L2 (a peer that
// is not a container: a storage client, a router): a macvlan on a node's
// NIC, holding addrs.
func (n *Node) Station(t *testing.T, addrs ...string) string {
	t.Helper()
	path := newNS(t)
	nic, err := netlink.LinkByName(n.NIC())
	if err != nil {
		t.Fatal(err)
	}
	mv := &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: "st" + testworld.RandHex(4), ParentIndex: nic.Attrs().Index}, Mode: netlink.MACVLAN_MODE_BRIDGE}
	if err := netlink.LinkAdd(mv); err != nil {
		t.Fatalf("station macvlan: %v", err)
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := netlink.LinkSetNsFd(mv, int(h)); err != nil {
		t.Fatal(err)
	}
	err = netnsutil.Do(path, func(nh *netlink.Handle) error {
		l, err := nh.LinkByName(mv.Name)
		if err != nil {
			return err
		}
		if err := nh.LinkSetName(l, "eth0"); err != nil {
			return err
		}
		for _, a := range addrs {
			addr, err := netlink.ParseAddr(a)
			if err != nil {
				return err
			}
			if err := nh.AddrAdd(l, addr); err != nil {
				return fmt.Errorf("adding %s: %w", a, err)
			}
		}
		lo, err := nh.LinkByName("lo")
		if err == nil {
			err = nh.LinkSetUp(lo)
		}
		if err != nil {
			return err
		}
		return nh.LinkSetUp(l)
	})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// inNetns runs f on a thread inside the namespace at path. A socket f
// opens stays in that namespace whichever thread uses it later.
func inNetns(path string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			// The thread stays locked, and ends with the goroutine.
			errc <- errors.Join(ferr, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// udpPort is the port the echo responders listen on.
const udpPort = 7007

// Echo answers every UDP datagram sent to ip:udpPort in the namespace at
// path with the same bytes, until the test ends.
func Echo(t *testing.T, path string, ip string) {
	t.Helper()
	var c net.PacketConn
	err := inNetns(path, func() (err error) {
		c, err = net.ListenPacket("udp4", net.JoinHostPort(ip, fmt.Sprint(udpPort)))
		return err
	})
	if err != nil {
		t.Fatalf("echo on %s in %s: %v", ip, path, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { c.Close(); wg.Wait() })
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteTo(buf[:n], from)
		}
	})
}

// Prober sends datagrams from one address of a namespace and waits for
// their echo.
type Prober struct {
	c net.PacketConn
}

// NewProber opens a prober on src (an address of the namespace at path).
func NewProber(t *testing.T, path, src string) *Prober {
	t.Helper()
	var c net.PacketConn
	err := inNetns(path, func() (err error) {
		c, err = net.ListenPacket("udp4", net.JoinHostPort(src, "0"))
		return err
	})
	if err != nil {
		t.Fatalf("prober on %s in %s: %v", src, path, err)
	}
	t.Cleanup(func() { c.Close() })
	return &Prober{c: c}
}

// Ask sends a datagram to ip's echo responder and reports whether the
// echo came back from ip within a few tries (the first may wait for ARP).
func (p *Prober) Ask(ip string) error {
	to := &net.UDPAddr{IP: net.ParseIP(ip), Port: udpPort}
	msg := []byte("nicmux-cluster " + ip + " " + testworld.RandHex(4))
	buf := make([]byte, 1500)
	var last error
	for range 3 {
		if _, err := p.c.WriteTo(msg, to); err != nil {
			return fmt.Errorf("sending to %s: %w", ip, err)
		}
		_ = p.c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, from, err := p.c.ReadFrom(buf)
			if err != nil {
				last = err
				break
			}
			if u, ok := from.(*net.UDPAddr); ok && u.IP.Equal(to.IP) && string(buf[:n]) == string(msg) {
				return nil
			}
		}
	}
	return fmt.Errorf("no echo from %s:%d: %w", ip, udpPort, last)
}

// AskAll asks every address and returns those that did not answer.
func (p *Prober) AskAll(ips []string) []string {
	var silent []string
	for _, ip := range ips {
		if p.Ask(ip) != nil {
			silent = append(silent, ip)
		}
	}
	return silent
}

// txPackets is the number of packets a link of the namespace at path sent.
func txPackets(t *testing.T, path, ifname string) uint64 {
	t.Helper()
	var n uint64
	err := netnsutil.Do(path, func(h *netlink.Handle) error {
		l, err := h.LinkByName(ifname)
		if err != nil {
			return err
		}
		n = l.Attrs().Statistics.TxPackets
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// routeFrom is the route the namespace at path takes to dst for a packet
// from src: "dev IFNAME via GW".
func routeFrom(t *testing.T, path, dst, src string) string {
	t.Helper()
	var out string
	err := netnsutil.Do(path, func(h *netlink.Handle) error {
		rs, err := h.RouteGetWithOptions(net.ParseIP(dst), &netlink.RouteGetOptions{SrcAddr: net.ParseIP(src)})
		if err != nil {
			return err
		}
		if len(rs) == 0 {
			return fmt.Errorf("no route to %s from %s", dst, src)
		}
		l, err := h.LinkByIndex(rs[0].LinkIndex)
		if err != nil {
			return err
		}
		out = "dev " + l.Attrs().Name
		if rs[0].Gw != nil {
			out += " via " + rs[0].Gw.String()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ip route get %s from %s in %s: %v", dst, src, path, err)
	}
	return out
}

// ipOf is the address of a CIDR.
func ipOf(cidr string) string {
	if p, err := netip.ParsePrefix(cidr); err == nil {
		return p.Addr().String()
	}
	return strings.Split(cidr, "/")[0]
}
