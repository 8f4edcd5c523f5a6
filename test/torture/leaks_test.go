package torture

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/nicmux/nicmux/test/netnsutil"
)

// leak is one thing a trial left behind.
type leak struct {
	class  string // one of leakClasses
	what   string
	cause  string // set when a reference plugin causes it whatever nicmux does
	plugin string
}

func (l leak) String() string {
	s := l.class + ": " + l.what
	if l.cause != "" {
		s += " [caused by plugin " + l.plugin + ": " + l.cause + "]"
	}
	return s
}

// upstream names the leaks the reference plugins (v1.10.0) cause whatever
// their caller does; they are counted apart and fail no trial.
var upstream = []struct {
	plugin, cause string
	match         func(l leak) bool
}{
	{
		plugin: "macvlan",
		cause: "createMacvlan makes the link under a temporary name in the container's netns and renames it " +
			"after; killed in between (or an IPAM failure, whose deferred cleanup reads a shadowed err) " +
			"the temporary link stays, and DEL looks up only CNI_IFNAME",
		match: func(l leak) bool {
			return l.class == "links" && strings.Contains(l.what, "netns ") && regexp.MustCompile(`\bmacvlan\d+\b`).MatchString(l.what)
		},
	},
	{
		plugin: "host-local",
		cause: "Reserve creates the lease file (O_EXCL) and writes its owner after; killed in between " +
			"(here by the simulated reboot) the lease has no owner, and no DEL ever matches it",
		match: func(l leak) bool {
			return l.class == "leases" && strings.HasSuffix(l.what, "held by ")
		},
	},
	{
		plugin: "tuning",
		cause: "createBackup writes its backup with os.WriteFile, not atomically; killed while writing, " +
			"the backup is torn, and cmdDel returns success without removing a backup it cannot parse",
		match: func(l leak) bool {
			return l.class == "tuning" && strings.HasSuffix(l.what, "(torn)")
		},
	},
	{
		plugin: "bridge",
		cause: "setupVeth makes the pair under a temporary name (veth...) and renames the container end " +
			"after; killed in between the pair stays, and DEL looks up only CNI_IFNAME",
		match: func(l leak) bool {
			return l.class == "links" && strings.Contains(l.what, "netns ") && regexp.MustCompile(`\bveth[0-9a-f]+\b`).MatchString(l.what)
		},
	},
}

func attribute(l leak) leak {
	for _, u := range upstream {
		if u.match(l) {
			l.plugin, l.cause = u.plugin, u.cause
			return l
		}
	}
	return l
}

// settle waits up to max for the trial's processes to end (a slowed
// delegate finishing after its verb returned does its damage meanwhile).
func (w *world) settle(max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) && len(w.procs()) > 0 {
		time.Sleep(20 * time.Millisecond)
	}
}

// leaks counts everything the trial left behind, by class.
func (w *world) leaks() []leak {
	var out []leak
	add := func(class, format string, args ...any) {
		out = append(out, attribute(leak{class: class, what: fmt.Sprintf(format, args...)}))
	}
	// links: the host's (the suite's private netns) and every container
	// netns still there.
	// What cannot be counted counts as left: a leak class the accounting
	// cannot read is no clean one.
	br, _ := netlink.LinkByName(w.Bridge)
	if links, err := netlink.LinkList(); err != nil {
		add("links", "cannot list the host's links: %v", err)
	} else {
		for _, l := range links {
			n := l.Attrs().Name
			if w.baseLink[n] || n == w.Bridge || n == w.Master || n == w.Master+"p" {
				continue
			}
			if br != nil && l.Attrs().MasterIndex == br.Attrs().Index {
				add("ports", "bridge %s port %s", w.Bridge, n)
			} else {
				add("links", "host link %s (%s)", n, l.Type())
			}
		}
	}
	w.mu.Lock()
	var nets []string
	for p := range w.nets {
		nets = append(nets, p)
	}
	w.mu.Unlock()
	sort.Strings(nets)
	for _, p := range nets {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		links, err := netnsutil.Links(p)
		if err != nil {
			add("links", "netns %s: cannot list its links: %v", filepath.Base(p), err)
		}
		for _, n := range links {
			add("links", "netns %s link %s", filepath.Base(p), n)
		}
	}
	// leases
	for _, network := range []string{"svc", "storage"} {
		for ip, owner := range w.leases(network) {
			add("leases", "%s lease %s held by %s", network, ip, owner)
		}
	}
	// state
	for _, f := range stateLeaks(w.StateDir) {
		add("state", "%s", f)
	}
	// iptables: rules naming a container of the trial, and per-container
	// chains (the shared ones stay by design).
	for _, table := range []string{"nat", "filter"} {
		lines, err := iptablesLines(table)
		if err != nil {
			add("iptables", "%s: %v", table, err)
		}
		for _, line := range lines {
			if perContainerChain.MatchString(line) {
				add("iptables", "%s: %s", table, line)
				continue
			}
			for _, c := range w.ctrs {
				if strings.Contains(line, c.id) {
					add("iptables", "%s: %s", table, line)
					break
				}
			}
		}
	}
	// tuning backups
	entries, err := os.ReadDir(w.TuningDir)
	if err != nil && !os.IsNotExist(err) {
		add("tuning", "cannot read %s: %v", w.TuningDir, err)
	}
	for _, e := range entries {
		what := e.Name()
		if b, err := os.ReadFile(filepath.Join(w.TuningDir, e.Name())); err == nil && !json.Valid(b) {
			what += " (torn)"
		}
		add("tuning", "tuning backup %s", what)
	}
	// processes
	for _, p := range w.procs() {
		add("procs", "pid %d alive: %s", p.pid, p.cmd)
	}
	return out
}

// perContainerChain matches the declaration of an iptables chain made for
// one container: bridge's ipMasq chain (CNI-<hash>) and portmap's
// CNI-DN-/CNI-SN- chains.
var perContainerChain = regexp.MustCompile(`^:CNI-(DN-|SN-)?[0-9a-f]{20,}\b`)

func iptablesLines(table string) ([]string, error) {
	out, err := exec.Command("iptables-save", "-t", table).Output()
	if err != nil {
		return nil, fmt.Errorf("iptables-save -t %s: %w", table, err)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

// flushIptables empties the nat and filter tables of the suite's private
// netns (a reboot, and the end of every trial: trials run one at a time).
func flushIptables() {
	for _, table := range []string{"nat", "filter"} {
		_ = exec.Command("iptables", "-t", table, "-F").Run()
		_ = exec.Command("iptables", "-t", table, "-X").Run()
	}
}

type proc struct {
	pid int
	cmd string
}

// procs lists the live processes started for the trial: they carry its
// marker in their environment.
func (w *world) procs() []proc {
	want := []byte(trialEnv + "=" + w.id + "\x00")
	self := os.Getpid()
	var out []proc
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil || !bytes.Contains(env, want) {
			continue
		}
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if i := bytes.LastIndexByte(st, ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
			continue // a zombie: dead, its parent not yet told
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, proc{pid: pid, cmd: strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))})
	}
	return out
}

// cleanup removes whatever the trial left, so that the next one starts
// clean: its processes, links, namespaces, iptables rules, mounts, folder.
func (w *world) cleanup() {
	for round := 0; round < 5; round++ {
		ps := w.procs()
		if len(ps) == 0 {
			break
		}
		for _, p := range ps {
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.mu.Lock()
	nets := w.nets
	w.mu.Unlock()
	for p := range nets {
		_ = netnsutil.DestroyAt(p)
	}
	if links, err := netlink.LinkList(); err == nil {
		for _, l := range links {
			if !w.baseLink[l.Attrs().Name] {
				_ = netlink.LinkDel(l)
			}
		}
	}
	flushIptables()
	for i := len(w.mounts) - 1; i >= 0; i-- {
		for syscall.Unmount(w.mounts[i], syscall.MNT_DETACH) == nil {
		}
	}
	_ = os.RemoveAll(w.dir)
}
