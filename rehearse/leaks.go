package rehearse

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Leak is one thing a rehearsal's container still holds after its
// teardown.
type Leak struct {
	Kind string `json:"kind"` // link, lease, iptables, state
	What string `json:"what"`
	// undo removes it; nil when it goes with the rehearsal's netns.
	undo func(ctx context.Context) error
}

func (l Leak) String() string { return l.Kind + ": " + l.What }

// hostLinks are the host's links by index, taken when a rehearsal starts.
type hostLinks map[int]string

func snapshotHost() (hostLinks, error) {
	links, err := linkList(nil)
	if err != nil {
		return nil, fmt.Errorf("listing the host's links: %w", err)
	}
	out := hostLinks{}
	for _, l := range links {
		out[l.Attrs().Index] = l.Attrs().Name
	}
	return out, nil
}

// newSince returns the host links that were not there in before.
func newSince(before hostLinks) ([]netlink.Link, error) {
	links, err := linkList(nil)
	if err != nil {
		return nil, fmt.Errorf("listing the host's links: %w", err)
	}
	var out []netlink.Link
	for _, l := range links {
		if name, ok := before[l.Attrs().Index]; !ok || name != l.Attrs().Name {
			out = append(out, l)
		}
	}
	return out, nil
}

// leakFinder looks for what container id left, in the places its
// configuration names.
type leakFinder struct {
	id       string
	netnsDir string // where the rehearsal's netns is mounted, "" once gone
	before   hostLinks
	places   places
	// forget releases a nicmux record that DEL left: nil without nicmux.
	forget func(ctx context.Context) error
}

// find lists every leak it sees.
func (f *leakFinder) find(ctx context.Context) []Leak {
	var out []Leak
	out = append(out, f.links()...)
	out = append(out, f.leases()...)
	for _, r := range rulesNaming(ctx, f.id) {
		out = append(out, Leak{Kind: "iptables", What: r.String(), undo: r.remove})
	}
	out = append(out, f.state()...)
	return out
}

// links are the links left in the rehearsal's netns, the host sides of
// veths into it, and host links that appeared since the rehearsal began
// and are neither veths into another namespace (other containers') nor
// bridges (madeBridges).
func (f *leakFinder) links() []Leak {
	var out []Leak
	nsid := -1
	if f.netnsDir != "" {
		names, id := linksIn(f.netnsDir)
		for _, n := range names {
			out = append(out, Leak{Kind: "link", What: n + " in the rehearsal's netns " + f.netnsDir})
		}
		nsid = id
	}
	fresh, err := newSince(f.before)
	if err != nil {
		return append(out, Leak{Kind: "link", What: err.Error()})
	}
	for _, l := range fresh {
		a := l.Attrs()
		switch {
		case l.Type() == "veth" && nsid >= 0 && a.NetNsID == nsid:
			out = append(out, Leak{Kind: "link", What: fmt.Sprintf("veth %s on the host%s, its peer in the rehearsal's netns", a.Name, masterOf(a))})
		case l.Type() == "veth", l.Type() == "bridge":
		default:
			out = append(out, Leak{Kind: "link", What: fmt.Sprintf("%s %s appeared on the host during the rehearsal", l.Type(), a.Name)})
		}
	}
	return out
}

func masterOf(a *netlink.LinkAttrs) string {
	if a.MasterIndex == 0 {
		return ""
	}
	if m, err := netlink.LinkByIndex(a.MasterIndex); err == nil {
		return " (port of " + m.Attrs().Name + ")"
	}
	return ""
}

// linksIn lists the links of the netns at path but lo, and the netns's
// id as the host knows it (-1 if none).
func linksIn(path string) ([]string, int) {
	h, err := netns.GetFromPath(path)
	if err != nil {
		return nil, -1
	}
	defer h.Close()
	nsid, err := netlink.GetNetNsIdByFd(int(h))
	if err != nil {
		nsid = -1
	}
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, nsid
	}
	defer nh.Close()
	links, _ := linkList(nh)
	var names []string
	for _, l := range links {
		if l.Attrs().Name != "lo" {
			names = append(names, l.Attrs().Name)
		}
	}
	return names, nsid
}

// peers are the indexes of the host's veths whose peer is in the
// rehearsal's netns: they go when the netns does.
func (f *leakFinder) peers() []int {
	if f.netnsDir == "" {
		return nil
	}
	_, nsid := linksIn(f.netnsDir)
	links, _ := linkList(nil)
	var out []int
	for _, l := range links {
		if l.Type() == "veth" && nsid >= 0 && l.Attrs().NetNsID == nsid {
			out = append(out, l.Attrs().Index)
		}
	}
	return out
}

// waitGone waits up to timeout for the links to be gone.
func waitGone(indexes []int, timeout time.Duration) {
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		left := 0
		for _, i := range indexes {
			if _, err := netlink.LinkByIndex(i); err == nil {
				left++
			}
		}
		if left == 0 {
			return
		}
	}
}

// bridges are the names of the bridges the configuration names that
// appeared since the rehearsal began.
func (f *leakFinder) bridges() []string {
	var out []string
	for _, l := range f.newBridges() {
		out = append(out, l.Attrs().Name)
	}
	return out
}

// newBridges are the bridges the configuration names that appeared since
// the rehearsal began: the bridge plugin made them for it. A bridge of
// another name that appeared meanwhile is someone else's.
func (f *leakFinder) newBridges() []netlink.Link {
	fresh, _ := newSince(f.before)
	var out []netlink.Link
	for _, l := range fresh {
		if l.Type() == "bridge" && slices.Contains(f.places.Bridges, l.Attrs().Name) {
			out = append(out, l)
		}
	}
	return out
}

// madeBridges are the bridges the rehearsal made that have no port: the
// bridge plugin makes its bridge and never removes it, so the rehearsal
// does.
func (f *leakFinder) madeBridges() []netlink.Link {
	all, _ := linkList(nil)
	var out []netlink.Link
	for _, l := range f.newBridges() {
		ports := 0
		for _, p := range all {
			if p.Attrs().MasterIndex == l.Attrs().Index {
				ports++
			}
		}
		if ports == 0 {
			out = append(out, l)
		}
	}
	return out
}

// leases are host-local's lease files that name the container: host-local
// keeps <dataDir>/<network>/<ip> holding the container ID on its first
// line.
func (f *leakFinder) leases() []Leak {
	var out []Leak
	for _, dir := range f.places.DataDirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
		for _, file := range files {
			if firstLine(file) != f.id {
				continue
			}
			out = append(out, Leak{Kind: "lease", What: file, undo: func(context.Context) error { return os.Remove(file) }})
		}
	}
	return out
}

func firstLine(file string) string {
	fh, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	if !sc.Scan() {
		return ""
	}
	return strings.TrimSpace(sc.Text())
}

// state is nicmux's record of the container, which a DEL that went
// through removes.
func (f *leakFinder) state() []Leak {
	var out []Leak
	for _, dir := range f.places.StateDirs {
		rec := filepath.Join(dir, "containers", f.id)
		if _, err := os.Lstat(rec); err == nil {
			out = append(out, Leak{Kind: "state", What: "nicmux record " + rec, undo: f.forget})
		}
	}
	return out
}

// nicmuxForget returns how to drop nicmux's record of id with the nicmux
// binary of the CNI path: `nicmux forget -force`, which releases what it
// can first.
func nicmuxForget(cniPath []string, conflist, id string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		for _, dir := range cniPath {
			bin := filepath.Join(dir, "nicmux")
			if _, err := os.Stat(bin); err != nil {
				continue
			}
			out, err := exec.CommandContext(ctx, bin, "forget", "-force", "-conflist", conflist, id).CombinedOutput()
			if err != nil {
				return fmt.Errorf("nicmux forget -force: %w: %s", err, strings.TrimSpace(string(out)))
			}
			return nil
		}
		return fmt.Errorf("no nicmux binary in the CNI path to forget the record with")
	}
}

// linkList lists the links of h (nil: the current namespace), again when
// the kernel interrupted the dump because the table changed meanwhile: a
// partial list would count links as leaked or miss them.
func linkList(h *netlink.Handle) ([]netlink.Link, error) {
	if h == nil {
		h = &netlink.Handle{}
	}
	for tries := 1; ; tries++ {
		links, err := h.LinkList()
		if !errors.Is(err, netlink.ErrDumpInterrupted) || tries == dumpTries {
			return links, err
		}
	}
}

// dumpTries bounds the retries of a netlink dump the kernel interrupted.
const dumpTries = 10
