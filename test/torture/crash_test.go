package torture

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/nicmux/nicmux/test/netnsutil"
	"github.com/nicmux/nicmux/test/testworld"
)

// Randomized classes: kill -9 of nicmux at random points of ADD, CHECK and
// DEL followed by each of Nomad's recovery paths, and misbehaving
// delegates on a random verb at a random place of a chain.

var (
	crashVerbs = []string{"ADD", "CHECK", "DEL"}
	recoveries = []string{"del", "readd", "rebuild", "reboot"}
)

func crashClasses(t *testing.T) {
	for _, verb := range crashVerbs {
		for _, rec := range recoveries {
			runClass(t, "crash/"+verb+"/"+rec, trials(1), crashTrial(verb, rec))
		}
	}
}

// randomFault plants a torture plugin for verb at a random place: wrapping
// a plugin of the seed job or inserted before one (or at the end).
func randomFault(tr *trial, verb string, s map[string]any) fault {
	f := fault{ifname: []string{"eth0", "eth1"}[tr.rng.Intn(2)], insert: tr.rng.Intn(2) == 0, s: s}
	if f.insert {
		f.pos = tr.rng.Intn(chainLen + 1)
	} else {
		f.pos = tr.rng.Intn(chainLen)
	}
	s["verbs"] = []string{verb}
	s["armFile"], s["once"] = tr.w.ArmFile, true
	tr.w.setFaults(f)
	tr.logf("fault: %s", f)
	return f
}

func crashTrial(verb, recovery string) func(tr *trial) {
	return func(tr *trial) {
		w := tr.w
		var k killSpec
		if tr.rng.Intn(2) == 0 {
			k = killSpec{after: time.Duration(tr.rng.Intn(250)) * time.Millisecond}
		} else {
			randomFault(tr, verb, map[string]any{"delayMs": 100 + tr.rng.Intn(500)})
			k = killSpec{marker: verb}
		}
		c := w.newCtr()
		if verb != "ADD" {
			tr.must(w.add(c), "ADD before the kill")
		}
		w.arm()
		w.runKilled(verb, c, k)
		w.disarm()
		tr.logf("(that %s was the one with %s)", verb, k)
		during := "after nicmux was SIGKILLed during " + verb + " (" + k.String() + ")"
		// Its delegates must be gone by the time the runtime's next verb
		// returns: one still running may finish its work after that verb
		// released it.
		noOrphans := func(next string) {
			if ps := w.procs(); !tr.check(len(ps) == 0, "%d delegate process(es) of the killed %s still running after the runtime's %s returned", len(ps), verb, next) {
				for _, p := range ps {
					tr.logf("alive after %s: pid %d %s", next, p.PID, p.Cmd)
				}
			}
		}
		switch recovery {
		case "del":
			d := w.del(c)
			tr.check(d.ok(), "DEL %s: %s", during, d)
			noOrphans("DEL")
			return
		case "readd":
			// A kill that came once the ADD was complete (before or after
			// it printed) leaves a live container: the retry is then a
			// second ADD, which nicmux refuses (100: DEL it first).
			completed := tCompletion.exists(w, c.id)
			a := w.addRetry(c)
			noOrphans("ADD")
			if verb == "ADD" && !completed {
				tr.check(a.ok(), "ADD again in the same netns (Nomad's retry) %s: %s", during, a)
			} else {
				tr.check(a.ok() || a.code() == 100, "ADD again in the same netns %s must succeed or be refused with code 100: %s", during, a)
			}
			if a.ok() {
				tr.check(w.check(c).ok(), "CHECK after ADD again %s", during)
			}
		case "rebuild":
			w.rebuildNetns(c)
			a := w.addRetry(c)
			noOrphans("ADD")
			if tr.check(a.ok(), "ADD in a rebuilt netns (Nomad's rebuild) %s: %s", during, a) {
				tr.check(w.check(c).ok(), "CHECK after the rebuild %s", during)
			}
		case "reboot":
			w.reboot(c)
			a := w.addRetry(c)
			if tr.check(a.ok(), "ADD after a reboot %s: %s", during, a) {
				tr.check(w.check(c).ok(), "CHECK after the reboot %s", during)
			}
		}
		d := w.del(c)
		tr.check(d.ok(), "DEL ending the recovery %s: %s", during, d)
	}
}

// reboot is what a host reboot does to a world: every process, the
// container's netns, the bridge, the iptables rules and /run (tuning's
// backups) are gone; the state, IPAM and libcni folders stay. A new netns
// is made at the same path.
func (w *world) reboot(c *ctr) {
	w.cleanupProcs()
	w.destroyNetns(c)
	if l, err := netlink.LinkByName(w.Bridge); err == nil {
		_ = netlink.LinkDel(l)
	}
	_ = testworld.FlushIptables("nat", "filter")
	_ = os.RemoveAll(w.TuningDir)
	if err := netnsutil.CreateAt(c.netns); err != nil {
		w.tr.fatalf("recreating netns: %v", err)
	}
}

// --- misbehaving delegates ------------------------------------------------------

var actions = []string{"fail", "garbage", "signal", "hang", "slow"}

func misbehaveClasses(t *testing.T) {
	for _, a := range actions {
		runClass(t, "misbehave/"+a, trials(1), misbehave(a))
	}
}

func misbehave(action string) func(tr *trial) {
	return func(tr *trial) {
		w := tr.w
		verb := crashVerbs[tr.rng.Intn(len(crashVerbs))]
		s := map[string]any{}
		switch action {
		case "fail":
			s["action"], s["code"] = "fail", []int{7, 11, 999}[tr.rng.Intn(3)]
		case "garbage":
			s["action"], s["exit"] = "garbage", 1
		case "signal":
			s["action"], s["signal"] = "signal", []string{"KILL", "TERM"}[tr.rng.Intn(2)]
		case "hang":
			s["action"], s["child"] = "hang", true
			w.hangTimeouts()
		case "slow":
			s["delayMs"] = 300 + tr.rng.Intn(1200)
		}
		f := randomFault(tr, verb, s)
		c := w.newCtr()
		if verb != "ADD" {
			tr.must(w.add(c), "ADD before the fault")
		}
		w.arm()
		o := w.run(nil, verb, c, nil)
		w.disarm()
		what := fmt.Sprintf("%s with a delegate that misbehaves (%s)", verb, action)
		switch action {
		case "slow":
			tr.check(o.ok(), "%s: %s", what, o)
		case "hang":
			wantTimedOut(tr, o, verb, f.ifname, time.Second)
		default:
			if tr.check(!o.ok(), "%s succeeded", what) {
				tr.check(o.code() != 0, "%s: CNI code 0: %s", what, short(o.err.Error(), 300))
			}
		}
		time.Sleep(100 * time.Millisecond)
		wantNoProcs(tr, "after "+verb+" returned")
		w.cleanupProcs()
		switch {
		case verb == "ADD" && !o.ok():
			// Nomad retries without DEL: the failed ADD must have undone
			// its own work.
			w.settle(time.Second)
			for _, l := range w.leaks() {
				if l.cause == "" {
					tr.check(false, "the failed %s left %s", what, l)
				}
			}
			a := w.addRetry(c)
			tr.check(a.ok(), "ADD again after %s: %s", what, a)
		case verb == "CHECK" && !o.ok():
			tr.check(w.check(c).ok(), "CHECK again after %s", what)
		}
		d := w.del(c)
		tr.check(d.ok(), "DEL after %s: %s", what, d)
	}
}

// --- small helpers -------------------------------------------------------------------

func killPid(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// fill writes a file of n bytes (as much as fits).
func fill(path string, n int) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for n > 0 {
		k := min(n, len(buf))
		if _, err := f.Write(buf[:k]); err != nil {
			return
		}
		n -= k
	}
}

// syscallMountRemount changes a tmpfs's options in place.
func syscallMountRemount(dir, opts string) error {
	return syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, opts)
}
