package ns

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Scratch is a network namespace of nicmux's own, made for releasing
// interfaces whose namespace is gone (Nomad recreated it, or the host
// rebooted): it holds, for each interface, a link of that name with the
// addresses ADD recorded, so that the delegates' DEL finds what it needs
// and tears down what it set up on the host. Nothing else is ever in it,
// and it goes when nicmux closes it (or exits): it is held by a descriptor,
// not mounted, so a crash leaves nothing behind.
type Scratch struct {
	fd    int
	path  string
	h     *netlink.Handle
	peers int
}

// NewScratch makes an empty namespace (see onLockedThread for the thread
// that makes it).
func NewScratch() (*Scratch, error) {
	fd := -1
	var h *netlink.Handle
	var err error
	onLockedThread(func(orig netns.NsHandle) bool {
		if err = unix.Unshare(unix.CLONE_NEWNET); err != nil {
			err = fmt.Errorf("unshare: %w", err)
			return true
		}
		if fd, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			// Made here, the handle's socket is in the scratch namespace
			// without a switch back and forth (see Open).
			if h, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
				_ = unix.Close(fd)
				err = fmt.Errorf("netlink: %w", err)
			}
		}
		return netns.Set(orig) == nil
	}, &err)
	if err != nil {
		return nil, fmt.Errorf("making a scratch network namespace: %w", err)
	}
	return &Scratch{fd: fd, h: h, path: fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), fd)}, nil
}

// Add puts a link named ifname in the namespace, with the addresses (and
// MAC) result records for it.
func (s *Scratch) Add(ifname string, result types.Result) error {
	s.peers++
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ifname}, PeerName: fmt.Sprintf("nmxpeer%d", s.peers)}
	if err := s.h.LinkAdd(veth); err != nil {
		return fmt.Errorf("scratch link %s: %w", ifname, err)
	}
	if result == nil {
		return nil
	}
	res, err := types100.NewResultFromResult(result)
	if err != nil {
		return err
	}
	link, err := s.h.LinkByName(ifname)
	if err != nil {
		return err
	}
	own := OwnInterface(res, ifname)
	if own >= 0 && res.Interfaces[own].Mac != "" {
		if mac, err := net.ParseMAC(res.Interfaces[own].Mac); err == nil {
			_ = s.h.LinkSetHardwareAddr(link, mac)
		}
	}
	var errs []error
	for _, ip := range res.IPs {
		if !OnInterface(ip, own) {
			continue
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip.Address.IP, Mask: ip.Address.Mask}, Flags: unix.IFA_F_NODAD}
		if err := s.h.AddrAdd(link, addr); err != nil {
			errs = append(errs, fmt.Errorf("scratch address %s on %s: %w", ip.Address.String(), ifname, err))
		}
	}
	return errors.Join(errs...)
}

// Path is where the delegates find the namespace: CNI_NETNS.
func (s *Scratch) Path() string { return s.path }

// Close lets the namespace go.
func (s *Scratch) Close() {
	if s == nil {
		return
	}
	s.h.Close()
	_ = unix.Close(s.fd)
}
