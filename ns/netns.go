// Package ns is what nicmux does with network namespaces: it identifies
// them (so that a namespace recreated at the same path is told apart), looks
// inside them with netlink (CHECK's own check, the links an ADD would
// duplicate), and makes scratch namespaces for releasing interfaces whose
// namespace is gone. Every switch of a thread into another namespace goes
// through onLockedThread.
package ns

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetNSID identifies a network namespace: the device and inode of its nsfs
// file, and its cookie. The kernel reuses a freed namespace's inode number,
// so a namespace recreated at the same path may get the old one back; the
// cookie (SO_NETNS_COOKIE, Linux 5.14 and later) is never reused while the
// system runs. Cookie is zero where the kernel has none.
type NetNSID struct {
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	Cookie uint64 `json:"cookie,omitempty"`
}

// IsZero reports whether id identifies nothing (the namespace was not found).
func (id NetNSID) IsZero() bool { return id == NetNSID{} }

// Same reports whether id and other identify the same, existing namespace.
func (id NetNSID) Same(other NetNSID) bool {
	if id.IsZero() || id.Dev != other.Dev || id.Ino != other.Ino {
		return false
	}
	return id.Cookie == 0 || other.Cookie == 0 || id.Cookie == other.Cookie
}

// ErrNotNetNS is what Identify's error wraps when something is at the path
// but it is not a network namespace: a regular file (an empty file left
// under /run/netns), a directory, a namespace of another type
// (/proc/self/ns/mnt). Whatever ADD attached, it is not there.
var ErrNotNetNS = errors.New("not a network namespace")

// Identify returns the identity of the network namespace at path, or the
// zero identity when there is none (empty path, or nothing there). What is
// there and is not a network namespace is an error wrapping ErrNotNetNS;
// it is refused before it is opened (a device's open may act), by its file
// system, then, once opened, by the namespace's type.
func Identify(path string) (NetNSID, error) {
	if path == "" {
		return NetNSID{}, nil
	}
	var sfs unix.Statfs_t
	err := unix.Statfs(path, &sfs)
	if errors.Is(err, unix.ENOENT) {
		return NetNSID{}, nil
	}
	if err != nil {
		return NetNSID{}, fmt.Errorf("netns %s: %w", path, err)
	}
	if err := nsFS(path, sfs.Type); err != nil {
		return NetNSID{}, err
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if errors.Is(err, unix.ENOENT) {
		return NetNSID{}, nil
	}
	if err != nil {
		return NetNSID{}, fmt.Errorf("netns %s: %w", path, err)
	}
	defer unix.Close(fd)
	return identifyFD(path, fd)
}

// identifyFD identifies the network namespace open at fd (see Identify).
func identifyFD(path string, fd int) (NetNSID, error) {
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return NetNSID{}, fmt.Errorf("netns %s: %w", path, err)
	}
	// Checked again: the path may have been replaced since.
	if err := nsFS(path, sfs.Type); err != nil {
		return NetNSID{}, err
	}
	// NS_GET_NSTYPE (Linux 4.11): /proc/self/ns/mnt is an nsfs file too.
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err == nil && typ != unix.CLONE_NEWNET {
		return NetNSID{}, fmt.Errorf("netns %s: %w: a namespace of another type (%s)", path, ErrNotNetNS, nsType(typ))
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return NetNSID{}, fmt.Errorf("netns %s: %w", path, err)
	}
	id := NetNSID{Dev: st.Dev, Ino: st.Ino}
	// Without a cookie (a kernel before 5.14) the inode is all there is
	// to go by.
	id.Cookie, _ = netnsCookie(netns.NsHandle(fd))
	return id, nil
}

// nsFS refuses a file system that holds no namespace: nsfs, or procfs on
// kernels that showed /proc/<pid>/ns/* there.
func nsFS(path string, magic int64) error {
	if magic == unix.NSFS_MAGIC || magic == unix.PROC_SUPER_MAGIC {
		return nil
	}
	return fmt.Errorf("netns %s: %w: a file of another file system (magic %#x)", path, ErrNotNetNS, magic)
}

// nsType names a namespace type NS_GET_NSTYPE returned.
func nsType(typ int) string {
	names := map[int]string{unix.CLONE_NEWNS: "mount", unix.CLONE_NEWUTS: "uts", unix.CLONE_NEWIPC: "ipc",
		unix.CLONE_NEWUSER: "user", unix.CLONE_NEWPID: "pid", unix.CLONE_NEWCGROUP: "cgroup", unix.CLONE_NEWTIME: "time"}
	if n, ok := names[typ]; ok {
		return n
	}
	return fmt.Sprintf("type %#x", typ)
}

// netnsCookie returns the cookie of the namespace target, read from a
// socket made inside it.
func netnsCookie(target netns.NsHandle) (uint64, error) {
	var fd int
	if err := inNetNS(target, func() (err error) {
		fd, err = unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	return unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
}

// inNetNS runs f on a thread of onLockedThread's moved into the namespace
// target, and moves the thread back.
func inNetNS(target netns.NsHandle, f func() error) error {
	var err error
	onLockedThread(func(orig netns.NsHandle) bool {
		if err = netns.Set(target); err != nil {
			return true
		}
		err = f()
		return netns.Set(orig) == nil
	}, &err)
	return err
}

// onLockedThread runs f on a goroutine locked to a thread of its own, which
// f may move into another network namespace; f gets the thread's own
// namespace and says whether the thread is back in it. A thread that could
// not be moved back must serve nothing else, and must not end either: a
// plugin process forked earlier from that thread would get its parent-death
// signal (Go ends a thread when a goroutine locked to it returns). So it
// stays parked, locked, until nicmux exits, which a verb soon does. If the
// thread's own namespace cannot be opened, *errp says why and f does not
// run.
func onLockedThread(f func(orig netns.NsHandle) (restored bool), errp *error) {
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			*errp = err
			close(done)
			runtime.UnlockOSThread()
			return
		}
		restored := f(orig)
		orig.Close()
		close(done)
		if restored {
			runtime.UnlockOSThread()
			return
		}
		select {} // parked for good: see above
	}()
	<-done
}

// Handle is a netlink handle inside one network namespace.
type Handle struct {
	path string
	h    *netlink.Handle
}

// Open opens a netlink handle in the namespace at path.
func Open(path string) (*Handle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("opening netns %s: %w", path, err)
	}
	defer ns.Close()
	// Not netlink.NewHandleAt: it switches the caller's own thread, once
	// for each netlink family (three, where nicmux asks rtnetlink only),
	// and unlocks the thread whether or not it could move it back.
	var h *netlink.Handle
	if err := inNetNS(ns, func() (err error) {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	}); err != nil {
		return nil, fmt.Errorf("netlink in netns %s: %w", path, err)
	}
	return &Handle{path: path, h: h}, nil
}

// Close closes the handle.
func (n *Handle) Close() { n.h.Close() }

// linkExists reports whether a link named ifname is in the namespace.
func (n *Handle) linkExists(ifname string) bool {
	_, err := n.h.LinkByName(ifname)
	return err == nil
}

// Verify checks, with netlink, that the interface a chain's result describes
// is in the namespace as recorded: the link exists and is up, and has the
// recorded MAC and every recorded address. It reports every mismatch.
func (n *Handle) Verify(ifname string, result types.Result) error {
	link, err := n.h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("link %s not found in netns %s: %w", ifname, n.path, err)
	}
	var problems []string
	attrs := link.Attrs()
	if attrs.Flags&net.FlagUp == 0 {
		problems = append(problems, "link is down")
	}
	if result == nil {
		return joinProblems(problems)
	}
	res, err := types100.NewResultFromResult(result)
	if err != nil {
		return fmt.Errorf("reading the recorded result: %w", err)
	}
	own := OwnInterface(res, ifname)
	if own >= 0 && res.Interfaces[own].Mac != "" {
		want, err := net.ParseMAC(res.Interfaces[own].Mac)
		if err == nil && !strings.EqualFold(want.String(), attrs.HardwareAddr.String()) {
			problems = append(problems, fmt.Sprintf("MAC is %s, recorded %s", attrs.HardwareAddr, want))
		}
	}
	addrs, err := n.addrList(link)
	if err != nil {
		return fmt.Errorf("listing addresses of %s: %w", ifname, err)
	}
	for _, ip := range res.IPs {
		if !OnInterface(ip, own) {
			continue
		}
		if !hasAddr(addrs, ip.Address) {
			problems = append(problems, fmt.Sprintf("address %s is missing", ip.Address.String()))
		}
	}
	return joinProblems(problems)
}

func joinProblems(problems []string) error {
	if len(problems) == 0 {
		return nil
	}
	return errors.New(strings.Join(problems, ", "))
}

// OwnInterface returns the index, in a chain's result, of the interface the
// chain made inside the container: the one named ifname with a sandbox.
func OwnInterface(res *types100.Result, ifname string) int {
	for i, iface := range res.Interfaces {
		if iface.Name == ifname && iface.Sandbox != "" {
			return i
		}
	}
	for i, iface := range res.Interfaces {
		if iface.Name == ifname {
			return i
		}
	}
	return -1
}

// OnInterface reports whether a result's IP is on the container interface at
// index own. An IP without an index is taken to be on it.
func OnInterface(ip *types100.IPConfig, own int) bool {
	if ip.Interface == nil {
		return true
	}
	return *ip.Interface == own
}

func hasAddr(addrs []netlink.Addr, want net.IPNet) bool {
	for _, a := range addrs {
		if a.IPNet == nil {
			continue
		}
		wantOnes, wantBits := want.Mask.Size()
		ones, bits := a.IPNet.Mask.Size()
		if a.IPNet.IP.Equal(want.IP) && ones == wantOnes && bits == wantBits {
			return true
		}
	}
	return false
}

// IsOwn reports whether id is nicmux's own network namespace (the host's,
// for a CNI plugin). Device and inode tell it: reading the cookie would
// cost a thread switch for nothing.
func IsOwn(id NetNSID) bool {
	var st unix.Stat_t
	if unix.Stat("/proc/self/ns/net", &st) != nil {
		return false
	}
	return id.Dev == uint64(st.Dev) && id.Ino == st.Ino
}

// LiveLinks returns which of ifnames exist in the namespace at path.
func LiveLinks(path string, ifnames []string) []string {
	h, err := Open(path)
	if err != nil {
		return nil
	}
	defer h.Close()
	var live []string
	for _, ifname := range ifnames {
		if h.linkExists(ifname) {
			live = append(live, ifname)
		}
	}
	return live
}

// addrList lists link's addresses, again when the kernel interrupted the
// dump because addresses changed meanwhile (another container's, on a
// busy host): CHECK must not fail on a partial list.
func (n *Handle) addrList(link netlink.Link) ([]netlink.Addr, error) {
	for tries := 1; ; tries++ {
		addrs, err := n.h.AddrList(link, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) || tries == 10 {
			return addrs, err
		}
	}
}
