// Package netnsutil makes and removes network namespaces for nicmux's tests
// and benchmarks, the way `ip netns add` does, and runs a test process in a
// private network namespace so that every "host" link it makes dies with it.
package netnsutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// PrivateEnv is set in the environment of a process re-run by
// ReexecInPrivateNetns, to the network namespace it was re-run from (as
// /proc/self/ns/net names it): the re-run goes on only from another one, so
// the variable set by hand makes no mount private on the real host.
const PrivateEnv = "NICMUX_IN_PRIVATE_NETNS"

// ReexecInPrivateNetns runs this program again, with the same arguments, in
// a new network namespace with lo up, and returns its exit code; it returns
// -1 when the process already is that re-run one, to go on.
func ReexecInPrivateNetns() int { return reexec(false) }

// ReexecInPrivateNetnsAndMounts is ReexecInPrivateNetns with a private mount
// namespace too (every mount made private first), so that the tmpfs and
// read-only bind mounts a test makes, and the namespaces it bind-mounts,
// are seen by no other process and vanish with the run.
func ReexecInPrivateNetnsAndMounts() int { return reexec(true) }

func reexec(mounts bool) int {
	if from, ok := os.LookupEnv(PrivateEnv); ok {
		if err := leftNetns(from); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if mounts {
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				fmt.Fprintln(os.Stderr, "making mounts private:", err)
				return 1
			}
		}
		if err := linkUp("lo"); err != nil {
			fmt.Fprintln(os.Stderr, "bringing lo up:", err)
			return 1
		}
		return -1
	}
	here, err := os.Readlink(selfNetns)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reading this process's netns:", err)
		return 1
	}
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Env = append(os.Environ(), PrivateEnv+"="+here)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	flags := uintptr(syscall.CLONE_NEWNET)
	if mounts {
		flags |= syscall.CLONE_NEWNS
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags}
	err = cmd.Run()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return exitErr.ExitCode()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "re-running in a private netns:", err)
		return 1
	}
	return 0
}

// selfNetns names the caller's network namespace.
const selfNetns = "/proc/self/ns/net"

// leftNetns returns an error unless the process runs in another network
// namespace than from, which PrivateEnv holds.
func leftNetns(from string) error {
	here, err := os.Readlink(selfNetns)
	if err != nil {
		return fmt.Errorf("reading this process's netns: %w", err)
	}
	if !strings.HasPrefix(from, "net:[") || here == from {
		return fmt.Errorf("%s=%q, but this process was not re-run in a private netns by ReexecInPrivateNetns: unset it", PrivateEnv, from)
	}
	return nil
}

// CreateAt makes a new network namespace and bind-mounts it at path.
func CreateAt(path string) error {
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
// bind-mounts it at path and moves the thread back. The thread must not stay
// there: a goroutine that ends locked to the main thread leaves that thread
// in the namespace for good (Go cannot end the main thread), which keeps the
// namespace and its links alive after DestroyAt.
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
		// The thread stays locked and ends with the goroutine.
		return errors.Join(mountErr, err)
	}
	runtime.UnlockOSThread()
	return mountErr
}

// DestroyAt unmounts and removes the namespace at path; the namespace and
// its links go away once nothing holds it.
func DestroyAt(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// AddVethMaster makes a veth pair named name and name+"p" in the current
// namespace, both up, to serve as a macvlan master (not every kernel has
// dummy links). The returned func deletes it.
func AddVethMaster(name string) (func(), error) { return AddVethMasterMTU(name, 0) }

// AddVethMasterMTU is AddVethMaster with both ends at mtu (0: the kernel's
// default).
func AddVethMasterMTU(name string, mtu int) (func(), error) {
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}, PeerName: name + "p"}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("adding veth %s: %w", name, err)
	}
	del := func() { _ = netlink.LinkDel(veth) }
	for _, n := range []string{name, name + "p"} {
		if err := linkUp(n); err != nil {
			del()
			return nil, err
		}
	}
	return del, nil
}

func linkUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(l)
}

// Do runs f with a netlink handle inside the namespace at path.
func Do(path string, f func(h *netlink.Handle) error) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("opening netns %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", path, err)
	}
	defer h.Close()
	if err := f(h); err != nil {
		return fmt.Errorf("in netns %s: %w", path, err)
	}
	return nil
}

// Links lists the links in the namespace at path, without lo, sorted.
func Links(path string) ([]string, error) {
	var names []string
	err := Do(path, func(h *netlink.Handle) error {
		links, err := h.LinkList()
		for _, l := range links {
			if l.Attrs().Name != "lo" {
				names = append(names, l.Attrs().Name)
			}
		}
		return err
	})
	sort.Strings(names)
	return names, err
}

// Addrs lists the global addresses of a link in the namespace at path, as
// sorted CIDRs.
func Addrs(path, ifname string) ([]string, error) {
	var out []string
	err := Do(path, func(h *netlink.Handle) error {
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
	return out, err
}

// BridgePorts lists the links enslaved to bridge in the caller's namespace;
// none when there is no such bridge.
func BridgePorts(bridge string) ([]string, error) {
	br, err := netlink.LinkByName(bridge)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bridge %s: %w", bridge, err)
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	var out []string
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			out = append(out, l.Attrs().Name)
		}
	}
	return out, nil
}
