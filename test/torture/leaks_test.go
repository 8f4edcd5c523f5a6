package torture

import (
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/nicmux/nicmux/test/netnsutil"
	"github.com/nicmux/nicmux/test/testworld"
)

// leak is one thing a trial left behind, and what caused it when a
// reference plugin did.
type leak struct {
	testworld.Leak
	cause  string // set when a reference plugin causes it whatever nicmux does
	plugin string
}

func (l leak) String() string {
	s := l.Leak.String()
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
			return l.Class == testworld.LeakLinks && strings.Contains(l.What, "netns ") && regexp.MustCompile(`\bmacvlan\d+\b`).MatchString(l.What)
		},
	},
	{
		plugin: "host-local",
		cause: "Reserve creates the lease file (O_EXCL) and writes its owner after; killed in between " +
			"(here by the simulated reboot) the lease has no owner, and no DEL ever matches it",
		match: func(l leak) bool {
			return l.Class == testworld.LeakLeases && strings.HasSuffix(l.What, "held by ")
		},
	},
	{
		plugin: "tuning",
		cause: "createBackup writes its backup with os.WriteFile, not atomically; killed while writing, " +
			"the backup is torn, and cmdDel returns success without removing a backup it cannot parse",
		match: func(l leak) bool {
			return l.Class == testworld.LeakTuning && strings.HasSuffix(l.What, "(torn)")
		},
	},
	{
		plugin: "bridge",
		cause: "setupVeth makes the pair under a temporary name (veth...) and renames the container end " +
			"after; killed in between the pair stays, and DEL looks up only CNI_IFNAME",
		match: func(l leak) bool {
			return l.Class == testworld.LeakLinks && strings.Contains(l.What, "netns ") && regexp.MustCompile(`\bveth[0-9a-f]+\b`).MatchString(l.What)
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

// leaks counts everything the trial left behind, by class: links of the
// host but those it had and the world's master, the bridge's ports, links
// in every netns of the trial still there, leases, state, iptables rules
// naming a container of the trial and per-container chains (the shared
// ones stay by design), tuning backups and processes.
func (w *world) leaks() []leak {
	keep := map[string]bool{w.Master: true, w.Master + "p": true}
	for n := range w.baseLink {
		keep[n] = true
	}
	w.mu.Lock()
	nets := slices.Sorted(maps.Keys(w.nets))
	w.mu.Unlock()
	census := testworld.Census{
		HostLinks: keep,
		Bridge:    w.Bridge,
		Netns:     nets,
		IPAMDir:   w.IPAMDir,
		Networks:  []string{"svc", "storage"},
		StateDir:  w.StateDir,
		Tables:    []string{"nat", "filter"},
		Rule:      w.ownRule,
		TuningDir: w.TuningDir,
		Procs:     w.marked,
	}
	var out []leak
	for _, l := range census.Leaks() {
		out = append(out, attribute(leak{Leak: l}))
	}
	return out
}

// perContainerChain matches the declaration of an iptables chain made for
// one container: bridge's ipMasq chain (CNI-<hash>) and portmap's
// CNI-DN-/CNI-SN- chains.
var perContainerChain = regexp.MustCompile(`^:CNI-(DN-|SN-)?[0-9a-f]{20,}\b`)

// ownRule reports whether an iptables line is the trial's: a
// per-container chain or a rule naming one of its containers.
func (w *world) ownRule(line string) bool {
	return perContainerChain.MatchString(line) || slices.ContainsFunc(w.ctrs, func(c *ctr) bool {
		return strings.Contains(line, c.id)
	})
}

// marked reports whether a process was started for the trial: it carries
// the trial's marker in its environment.
func (w *world) marked(p testworld.Proc) bool { return p.HasEnv(trialEnv + "=" + w.id) }

// procs lists the live processes started for the trial.
func (w *world) procs() []testworld.Proc {
	ps, _ := testworld.Procs(w.marked)
	return ps
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
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
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
	_ = testworld.FlushIptables("nat", "filter")
	for i := len(w.mounts) - 1; i >= 0; i-- {
		for syscall.Unmount(w.mounts[i], syscall.MNT_DETACH) == nil {
		}
	}
	_ = os.RemoveAll(w.Dir)
}
