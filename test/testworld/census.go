package testworld

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nicmux/nicmux/test/netnsutil"
	"github.com/vishvananda/netlink"
)

// The classes of what a test can leave behind, in LeakClasses' order.
const (
	LeakLinks    = "links"
	LeakPorts    = "ports"
	LeakLeases   = "leases"
	LeakState    = "state"
	LeakIptables = "iptables"
	LeakTuning   = "tuning"
	LeakProcs    = "procs"
)

// LeakClasses are the leak classes in the order Census looks at them.
func LeakClasses() []string {
	return []string{LeakLinks, LeakPorts, LeakLeases, LeakState, LeakIptables, LeakTuning, LeakProcs}
}

// Leak is one thing a test left behind.
type Leak struct {
	// Class is one of LeakClasses.
	Class string
	// What names it and where it is: "netns X link eth1", "svc lease
	// 10.77.0.2 held by c1/eth0", "tuning backup F (torn)".
	What string
}

func (l Leak) String() string { return l.Class + ": " + l.What }

// Census says where to look for what a test left behind; a place left
// empty is not looked at. What it cannot read counts as left: a class it
// cannot read is no clean one.
type Census struct {
	// Netns are container namespaces: every link in one is left (but lo);
	// a namespace that is gone holds none.
	Netns []string
	// Bridge is a bridge of the caller's namespace: its ports are left.
	Bridge string
	// HostLinks, when set, are the links of the caller's namespace that
	// stay (those there before the test, its macvlan master): every other
	// one but Bridge is left too.
	HostLinks map[string]bool
	// IPAMDir is host-local's data folder, Networks the networks in it:
	// their leases are left.
	IPAMDir  string
	Networks []string
	// StateDir is nicmux's state folder: what StateLeft lists is left,
	// but what Keep (when set) says stays.
	StateDir string
	Keep     func(rel string) bool
	// Owner, when set, narrows leases and state to a container's: the
	// leases it holds, the state files whose path names it.
	Owner string
	// Tables are iptables tables (of the caller's namespace): a line of
	// theirs is left when Rule says so.
	Tables []string
	Rule   func(line string) bool
	// TuningDir is the tuning plugin's dataDir: its backups are left.
	TuningDir string
	// Procs says which live processes are left.
	Procs func(Proc) bool
}

// Leaks counts what the census finds, class by class.
func (c Census) Leaks() []Leak {
	var out []Leak
	add := func(class, format string, args ...any) {
		out = append(out, Leak{Class: class, What: fmt.Sprintf(format, args...)})
	}
	if c.HostLinks != nil {
		c.hostLinks(add)
	} else if c.Bridge != "" {
		ports, err := netnsutil.BridgePorts(c.Bridge)
		if err != nil {
			add(LeakPorts, "%v", err)
		}
		for _, p := range ports {
			add(LeakPorts, "bridge %s port %s", c.Bridge, p)
		}
	}
	c.links(add)
	c.leases(add)
	c.state(add)
	c.iptables(add)
	c.tuning(add)
	c.procs(add)
	return out
}

type addFunc func(class, format string, args ...any)

// hostLinks counts the links of the caller's namespace but HostLinks and
// Bridge: Bridge's ports as ports, the others as links.
func (c Census) hostLinks(add addFunc) {
	links, err := netlink.LinkList()
	if err != nil {
		add(LeakLinks, "cannot list the host's links: %v", err)
		return
	}
	br, _ := netlink.LinkByName(c.Bridge)
	for _, l := range links {
		n := l.Attrs().Name
		switch {
		case c.HostLinks[n] || n == c.Bridge:
		case br != nil && l.Attrs().MasterIndex == br.Attrs().Index:
			add(LeakPorts, "bridge %s port %s", c.Bridge, n)
		default:
			add(LeakLinks, "host link %s (%s)", n, l.Type())
		}
	}
}

func (c Census) links(add addFunc) {
	for _, p := range c.Netns {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		links, err := netnsutil.Links(p)
		if err != nil {
			add(LeakLinks, "netns %s: cannot list its links: %v", filepath.Base(p), err)
		}
		for _, n := range links {
			add(LeakLinks, "netns %s link %s", filepath.Base(p), n)
		}
	}
}

func (c Census) leases(add addFunc) {
	for _, network := range c.Networks {
		leases, err := leasesIn(filepath.Join(c.IPAMDir, network))
		if err != nil {
			add(LeakLeases, "%s: cannot read the leases: %v", network, err)
		}
		if c.Owner != "" {
			leases = HeldBy(leases, c.Owner)
		}
		for ip, owner := range leases {
			add(LeakLeases, "%s lease %s held by %s", network, ip, owner)
		}
	}
}

func (c Census) state(add addFunc) {
	if c.StateDir == "" {
		return
	}
	files, err := StateLeft(c.StateDir)
	if err != nil {
		add(LeakState, "cannot read the state folder: %v", err)
	}
	for _, f := range files {
		if (c.Owner == "" || strings.Contains(f, c.Owner)) && (c.Keep == nil || !c.Keep(f)) {
			add(LeakState, "%s", f)
		}
	}
}

func (c Census) iptables(add addFunc) {
	for _, table := range c.Tables {
		lines, err := iptablesLines(table)
		if err != nil {
			add(LeakIptables, "%s: %v", table, err)
		}
		for _, l := range lines {
			if c.Rule(l) {
				add(LeakIptables, "%s: %s", table, l)
			}
		}
	}
}

func (c Census) tuning(add addFunc) {
	if c.TuningDir == "" {
		return
	}
	names, err := TuningBackups(c.TuningDir)
	if err != nil {
		add(LeakTuning, "cannot read %s: %v", c.TuningDir, err)
	}
	for _, n := range names {
		what := n
		if b, err := os.ReadFile(filepath.Join(c.TuningDir, n)); err == nil && !json.Valid(b) {
			what += " (torn)"
		}
		add(LeakTuning, "tuning backup %s", what)
	}
}

func (c Census) procs(add addFunc) {
	if c.Procs == nil {
		return
	}
	ps, err := Procs(c.Procs)
	if err != nil {
		add(LeakProcs, "cannot list the processes: %v", err)
	}
	for _, p := range ps {
		add(LeakProcs, "pid %d alive: %s", p.PID, p.Cmd)
	}
}

// TuningBackups lists the backup files the tuning plugin keeps in its
// dataDir: none when the folder is not there.
func TuningBackups(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

// WantNoLeaks fails the test with every leak the census finds.
func WantNoLeaks(t testing.TB, c Census) {
	t.Helper()
	for _, l := range c.Leaks() {
		t.Errorf("left behind: %s", l)
	}
}
