package torture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nicmux/nicmux/test/testworld"
)

// The acceptance classes: one per item of the issue, each a small
// deterministic scenario (repeated by the knob where timing matters).

// hangFault is a torture plugin that hangs, with a child, on verb.
func hangFault(ifname string, verbs ...string) fault {
	return fault{ifname: ifname, pos: chainLen, insert: true,
		s: map[string]any{"verbs": verbs, "action": "hang", "child": true}}
}

// --- 1. GC never frees addresses a live container still uses ----------------

func gcKeepsLive(tr *trial, damage func(w *world, c *ctr) error, what string) {
	w := tr.w
	c := w.newCtr()
	tr.must(w.add(c), "ADD")
	held := map[string][]string{}
	for _, n := range []string{"svc", "storage"} {
		held[n] = w.leasesOf(n, c)
	}
	snap, err := tFolder.save(w, c.id)
	if err != nil {
		tr.fatalf("saving the state: %v", err)
	}
	if err := damage(w, c); err != nil {
		tr.fatalf("damaging the state: %v", err)
	}
	o := w.gc(nil, c)
	tr.logf("GC with %s listed valid, %s: %s", c.id, what, o)
	// Whether GC reports the damaged record or not, it must have run.
	tr.check(len(w.LogLines("verb=GC")) > 0, "GC (%s) never reached nicmux: %s", what, o)
	for _, n := range []string{"svc", "storage"} {
		now := w.leasesOf(n, c)
		for _, ip := range held[n] {
			tr.check(slices.Contains(now, ip), "GC released %s lease %s of a container the runtime lists as valid (%s)", n, ip, what)
		}
	}
	c2 := w.newCtr()
	tr.must(w.add(c2), "ADD of the next container")
	for _, n := range []string{"svc", "storage"} {
		for _, ip := range w.leasesOf(n, c2) {
			tr.check(!slices.Contains(held[n], ip), "the next container got %s address %s, still in use by the live container (%s)", n, ip, what)
		}
	}
	tr.must(w.del(c2), "DEL of the next container")
	// Put the state back: the DEL that ends the trial is not under test.
	if err := snap.restore(w); err != nil {
		tr.fatalf("restoring the state: %v", err)
	}
	tr.check(w.del(c).ok(), "DEL after the state was restored")
}

// --- 2. delegates die with nicmux --------------------------------------------

// slowDelegate: nicmux is SIGKILLed while a delegate slowed by 0.5 s runs
// its ADD; the runtime then DELs. No delegate may still be running when the
// DEL returns, and nothing may be left once all is quiet.
func slowDelegate(tr *trial) {
	w := tr.w
	// Trial n slows plugin n%4 of the seed job: bridge, portmap,
	// macvlan, tuning.
	ifname := []string{"eth0", "eth1"}[tr.n/2%2]
	pos := tr.n % 2
	f := fault{ifname: ifname, pos: pos, s: map[string]any{"verbs": []string{"ADD"}, "delayMs": 500}}
	w.setFaults(f)
	tr.logf("fault: %s", f)
	c := w.newCtr()
	o := w.runKilled("ADD", c, killSpec{marker: "ADD"})
	tr.logf("ADD killed: %s", o)
	d := w.del(c)
	tr.check(d.ok(), "the runtime's DEL after nicmux was killed mid-ADD: %s", d)
	slowed := fmt.Sprintf("%s's %v", ifname, w.seedChains()[ifname][pos]["type"])
	if ps := w.procs(); !tr.check(len(ps) == 0, "%d delegate process(es) of the killed ADD still running after the runtime's DEL returned (slowed: %s)", len(ps), slowed) {
		for _, p := range ps {
			tr.logf("alive after DEL: pid %d %s", p.PID, p.Cmd)
		}
	}
}

// --- 3. a hung delegate must not wedge the node ------------------------------

const timeoutSlack = 3 * time.Second

func wantTimedOut(tr *trial, o outcome, verb, ifname string, timeout time.Duration) {
	if !tr.check(!o.ok() && !o.hung, "%s with a delegate hanging (delegateTimeout %s) must fail on its own: %s", verb, timeout, o) {
		return
	}
	tr.check(o.dur < timeout+timeoutSlack, "%s with a hung delegate took %s (delegateTimeout %s)", verb, o.dur.Round(time.Millisecond), timeout)
	msg := o.err.Error()
	tr.check(strings.Contains(msg, "torture") && strings.Contains(msg, ifname), "%s's timeout error must name the plugin (torture) and the interface (%s): %s", verb, ifname, short(msg, 300))
	tr.check(o.code() != 0, "%s's timeout error has CNI code 0", verb)
}

func wantNoProcs(tr *trial, when string) {
	ps := tr.w.procs()
	if !tr.check(len(ps) == 0, "%d process(es) of the trial alive %s (hung delegate or its child not killed)", len(ps), when) {
		for _, p := range ps {
			tr.logf("alive %s: pid %d %s", when, p.PID, p.Cmd)
		}
	}
}

// hangTimeouts gives nicmux a delegateTimeout of 1 s, and the runtime a
// deadline of 5 s: a verb with a hanging delegate must end by itself well
// before the runtime gives up.
func (w *world) hangTimeouts() {
	w.extra["delegateTimeout"] = "1s"
	w.deadline = 5 * time.Second
}

// wantHangEnded: verb, with a delegate of ifname hanging under
// hangTimeouts, failed on its own and left no process running.
func wantHangEnded(tr *trial, o outcome, verb, ifname string) {
	wantTimedOut(tr, o, verb, ifname, time.Second)
	time.Sleep(100 * time.Millisecond)
	wantNoProcs(tr, "after the timed-out "+verb+" returned")
}

func timeoutAdd(tr *trial) {
	w := tr.w
	w.hangTimeouts()
	w.setFaults(hangFault("eth1", "ADD"))
	c := w.newCtr()
	o := w.add(c)
	wantHangEnded(tr, o, "ADD", "eth1")
	// No DEL: Nomad retries ADD without one; the rollback must have left
	// nothing (the leak accounting follows).
}

func timeoutCheck(tr *trial) {
	w := tr.w
	w.hangTimeouts()
	// CHECK runs the chain ADD recorded: the fault is planted before ADD
	// and armed after it.
	f := hangFault("eth0", "CHECK")
	f.s["armFile"] = w.ArmFile
	w.setFaults(f)
	c := w.newCtr()
	tr.must(w.add(c), "ADD")
	w.arm()
	o := w.check(c)
	wantHangEnded(tr, o, "CHECK", "eth0")
	w.disarm()
	w.cleanupProcs()
	tr.check(w.del(c).ok(), "DEL after the timed-out CHECK")
}

func timeoutDel(tr *trial) {
	w := tr.w
	w.hangTimeouts()
	c := w.newCtr()
	f := hangFault("eth1", "DEL")
	f.s["armFile"], f.s["once"] = w.ArmFile, true
	w.setFaults(f)
	tr.must(w.add(c), "ADD")
	w.arm()
	o := w.del(c)
	wantHangEnded(tr, o, "DEL", "eth1")
	w.cleanupProcs()
	tr.check(w.del(c).ok(), "the DEL after a timed-out DEL must finish the job")
}

// timeoutGC: a delegate hangs in GC (delegateTimeout 2s); meanwhile ADD,
// CHECK and DEL of another container must each finish within 1.5 s.
func timeoutGC(tr *trial) {
	w := tr.w
	w.extra["delegateTimeout"] = "2s"
	f := hangFault("eth1", "GC")
	f.s["armFile"], f.s["once"] = w.ArmFile, true
	w.setFaults(f)
	a := w.newCtr()
	tr.must(w.add(a), "ADD")
	w.arm()
	before := w.markerCount("GC")
	gcDone := make(chan outcome, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
		defer cancel()
		gcDone <- w.gc(ctx, a)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for w.markerCount("GC") == before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !tr.check(w.markerCount("GC") > before, "GC never reached the hanging delegate") {
		<-gcDone
		return
	}
	b := w.newCtr()
	for _, verb := range []string{"ADD", "CHECK", "DEL"} {
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		o := w.run(ctx, verb, b, nil)
		cancel()
		tr.check(o.ok(), "%s of another container while a delegate hangs in GC must finish within 1.5 s: %s", verb, o)
	}
	o := <-gcDone
	tr.check(!o.killed && o.dur < 2*time.Second+timeoutSlack, "GC with a delegate hanging must end by itself after delegateTimeout 2s: %s", o)
	time.Sleep(100 * time.Millisecond)
	wantNoProcs(tr, "after GC returned")
	w.cleanupProcs()
	w.del(b) // in case its DEL above was killed
	tr.check(w.del(a).ok(), "DEL of the first container")
}

// cleanupProcs kills what is left of a trial's processes, so that a later
// step is not disturbed by an earlier failure (already counted).
func (w *world) cleanupProcs() {
	for _, p := range w.procs() {
		_ = killPid(p.PID)
	}
}

// --- 4. no record that can never be released ---------------------------------

// delConverges issues DEL up to 3 times; the first must succeed.
func delConverges(tr *trial, c *ctr, what string) {
	for i := 1; i <= 3; i++ {
		o := tr.w.del(c)
		if i == 1 {
			tr.check(o.ok(), "DEL with %s: %s", what, o)
		}
		if o.ok() {
			return
		}
	}
	tr.check(false, "DEL with %s never succeeded in 3 tries", what)
}

func recordsDel(tg target, damage string) func(tr *trial) {
	return func(tr *trial) {
		w := tr.w
		c := w.newCtr()
		tr.must(w.add(c), "ADD")
		if err := damageTarget(w, c, tg, damage); err != nil {
			tr.fatalf("%v", err)
		}
		what := tg.name + " " + damage
		delConverges(tr, c, what)
		if tg.name == tPlan.name && damage == "deleted" {
			tr.check(!tFolder.exists(w, c.id), "DEL with %s left %s behind", what, tFolder.name)
		}
	}
}

func damageTarget(w *world, c *ctr, tg target, damage string) error {
	switch damage {
	case "truncated":
		return tg.truncate(w, c.id)
	case "corrupt":
		return tg.corrupt(w, c.id)
	case "deleted":
		return tg.remove(w, c.id)
	}
	return fmt.Errorf("unknown damage %q", damage)
}

// recordsReAdd: eth1's result truncated, then Nomad's rebuild: ADD of the
// same ID must work, then DEL.
func recordsReAdd(tr *trial) {
	w := tr.w
	c := w.newCtr()
	tr.must(w.add(c), "ADD")
	if err := tResult("eth1").truncate(w, c.id); err != nil {
		tr.fatalf("%v", err)
	}
	w.rebuildNetns(c)
	o := w.addRetry(c)
	if tr.check(o.ok(), "ADD (after a netns rebuild) of a container whose eth1 result record is truncated: %s", o) {
		tr.check(w.check(c).ok(), "CHECK after that ADD")
	}
	tr.check(w.del(c).ok(), "DEL after that ADD")
}

// recordsGC: eth1's result truncated, the container gone for the runtime:
// GC must release it all.
func recordsGC(tr *trial) {
	w := tr.w
	c := w.newCtr()
	tr.must(w.add(c), "ADD")
	if err := tResult("eth1").truncate(w, c.id); err != nil {
		tr.fatalf("%v", err)
	}
	w.dropCache()
	o := w.gc(nil)
	tr.check(o.ok(), "GC of a container (not valid) whose eth1 result record is truncated: %s", o)
}

// --- 5. symlinks and permissions ---------------------------------------------

func symlinkFolder(tr *trial) {
	w := tr.w
	victim := filepath.Join(w.Dir, "victim")
	_ = os.MkdirAll(victim, 0o755)
	canary := filepath.Join(victim, "canary")
	_ = os.WriteFile(canary, []byte("keep me"), 0o644)
	c := w.newCtr()
	if err := tFolder.symlinkTo(w, c.id, victim); err != nil {
		tr.fatalf("%v", err)
	}
	victimFiles := func() []string {
		var out []string
		entries, _ := os.ReadDir(victim)
		for _, e := range entries {
			out = append(out, e.Name())
		}
		return out
	}
	o := w.add(c)
	tr.logf("ADD with %s a symlink: %s", tFolder.name, o)
	tr.check(slices.Equal(victimFiles(), []string{"canary"}), "ADD wrote through a symlink planted at %s: the target folder holds %v", tFolder.name, victimFiles())
	d := w.del(c)
	tr.logf("DEL: %s", d)
	_, err := os.Stat(canary)
	tr.check(err == nil, "DEL deleted through a symlink planted at %s: the canary is gone", tFolder.name)
	tr.check(slices.Equal(victimFiles(), []string{"canary"}), "after DEL the symlinked folder holds %v", victimFiles())
	// The planted link is the suite's own: not a leak.
	if fi, err := os.Lstat(tFolder.at(w, c.id)); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		_ = os.Remove(tFolder.at(w, c.id))
	}
	if !d.ok() {
		w.del(c) // whatever the refusal left
	}
}

func symlinkLock(tr *trial) {
	w := tr.w
	victim := filepath.Join(w.Dir, "victim-file")
	c := w.newCtr()
	if err := tLock.symlinkTo(w, c.id, victim); err != nil {
		tr.fatalf("%v", err)
	}
	o := w.add(c)
	tr.logf("ADD with %s a symlink: %s", tLock.name, o)
	_, err := os.Stat(victim)
	tr.check(err != nil, "the lock was taken through a symlink planted at %s: it created %s", tLock.name, victim)
	w.del(c)
	if fi, err := os.Lstat(tLock.at(w, c.id)); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		_ = os.Remove(tLock.at(w, c.id))
	}
}

// insecure: the state folder (or containers/) is group- or world-writable
// or not owned by root: ADD must be refused with an error naming it.
func insecure(tg target, mode os.FileMode, uid int) func(tr *trial) {
	return func(tr *trial) {
		w := tr.w
		for _, d := range []string{w.StateDir, tContainers.path(w.StateDir, "")} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				tr.fatalf("%v", err)
			}
		}
		dir := w.StateDir
		if tg.name == tContainers.name {
			dir = tg.path(w.StateDir, "")
		}
		if err := os.Chmod(dir, mode); err != nil {
			tr.fatalf("%v", err)
		}
		if err := os.Chown(dir, uid, uid); err != nil {
			tr.fatalf("%v", err)
		}
		c := w.newCtr()
		o := w.add(c)
		what := fmt.Sprintf("%s mode %o owner %d", dir, mode, uid)
		if tr.check(!o.ok(), "ADD with %s must be refused: %s", what, o) {
			msg := o.err.Error()
			tr.check(strings.Contains(msg, dir) && regexp.MustCompile(`writable|owner|owned|permission|insecure`).MatchString(msg),
				"the refusal must name %s and say why: %s", dir, short(msg, 300))
		} else {
			w.del(c)
		}
	}
}

// --- 6. Nomad's rebuild path --------------------------------------------------

func rebuildIPMasq(tr *trial) {
	w := tr.w
	w.opts.ipMasq = true
	w.writeAttachments()
	c := w.newCtr()
	tr.must(w.add(c), "ADD")
	w.rebuildNetns(c)
	o := w.addRetry(c)
	tr.check(o.ok(), "ADD after the netns was rebuilt (ipMasq): %s", o)
	d := w.del(c)
	tr.check(d.ok(), "the first DEL after a rebuild with ipMasq: %s", d)
	if !d.ok() {
		w.del(c)
	}
}

func rebuildTuningFailedAdd(tr *trial) {
	w := tr.w
	// The ADD after the rebuild fails on eth1 before tuning runs (odd
	// trials: at the end of eth0's chain).
	f := fault{ifname: "eth1", pos: 1, insert: true,
		s: map[string]any{"verbs": []string{"ADD"}, "action": "fail", "armFile": w.ArmFile}}
	if tr.n%2 == 1 {
		f.ifname, f.pos = "eth0", chainLen
	}
	w.setFaults(f)
	c := w.newCtr()
	tr.must(w.add(c), "ADD")
	if names := w.tuningBackups(); len(names) != 1 {
		tr.fatalf("tuning backup files after ADD: %v, want one (the trial shows nothing without)", names)
	}
	w.rebuildNetns(c)
	w.arm()
	o := w.add(c)
	w.disarm()
	tr.check(!o.ok(), "the ADD after the rebuild was told to fail but succeeded")
	names := w.tuningBackups()
	tr.check(len(names) == 0, "the failed ADD after a netns rebuild left tuning backup file(s) %v", names)
	tr.check(w.del(c).ok(), "DEL after the failed ADD")
}

// tuningBackups lists the tuning plugin's backup files.
func (w *world) tuningBackups() []string {
	names, err := testworld.TuningBackups(w.TuningDir)
	if err != nil {
		w.tr.fatalf("reading the tuning folder: %v", err)
	}
	return names
}

// --- 7. GC under load ------------------------------------------------------------

// gcLoadLimit is how long GC under load may take (unloaded: 20-50 ms).
const gcLoadLimit = 8 * time.Second

func gcUnderLoad(tr *trial) {
	w := tr.w
	const workers = 3
	// A container attached first, valid all along: the bridge exists
	// (with its MAC pinned) before the load starts.
	keeper := w.newCtr()
	tr.must(w.add(keeper), "ADD of the first container")
	ctrs := make([]*ctr, workers)
	for i := range ctrs {
		ctrs[i] = w.newCtr()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var verbs, failed atomic.Int32
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(c *ctr) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, verb := range []string{"ADD", "CHECK", "DEL"} {
					o := w.run(nil, verb, c, nil)
					verbs.Add(1)
					if !o.ok() && strings.Contains(o.err.Error(), "Mac doesn't match") {
						tr.upstreamf("bridge", "CHECK: bridge's MAC changed under concurrent ADDs on one bridge (its ADD pins the MAC it read before attaching)")
					} else if !o.ok() {
						failed.Add(1)
						tr.check(false, "%s under load (GC meanwhile): %s", verb, o)
						if verb != "DEL" {
							w.del(c)
							break
						}
					}
				}
			}
		}(ctrs[i])
	}
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), gcLoadLimit)
	o := w.gc(ctx, append(ctrs, keeper)...)
	cancel()
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	tr.logf("load: %d verbs, %d failed", verbs.Load(), failed.Load())
	tr.check(o.ok(), "GC issued while ADD, CHECK and DEL run back to back (%d workers) must complete (suite's limit %s): %s", workers, gcLoadLimit, o)
	tr.check(w.del(keeper).ok(), "DEL of the first container")
}

// --- 8. delegate output -------------------------------------------------------------

func badOutput(s map[string]any, what string) func(tr *trial) {
	return func(tr *trial) {
		w := tr.w
		s["verbs"] = []string{"ADD"}
		w.setFaults(fault{ifname: "eth1", pos: chainLen, insert: true, s: s})
		c := w.newCtr()
		o := w.add(c)
		if tr.check(!o.ok(), "ADD with a delegate that %s succeeded", what) {
			tr.check(o.code() != 0, "a delegate that %s gives CNI code 0: %s", what, short(o.err.Error(), 300))
		}
		// No DEL: the rollback must have left nothing.
	}
}

const msgCap = 64 << 10

func flood(to string) func(tr *trial) {
	return func(tr *trial) {
		w := tr.w
		w.extra["logLevel"] = "info"
		w.ex.maxRSSKB = 4 << 20 // sampled; killed only past 4 GB
		w.deadline = 60 * time.Second
		w.setFaults(fault{ifname: "eth1", pos: chainLen, insert: true,
			s: map[string]any{"verbs": []string{"ADD"}, "action": "flood", "floodMB": 100, "floodTo": to}})
		c := w.newCtr()
		o := w.add(c)
		if !tr.check(!o.ok(), "ADD with a delegate failing with 100 MB on its %s succeeded", to) {
			return
		}
		r := w.lastRun("ADD")
		tr.check(r != nil, "no nicmux run of the ADD recorded")
		msg := o.err.Error()
		tr.check(len(msg) <= msgCap, "100 MB on a failing delegate's %s: the error message is %d bytes (cap it)", to, len(msg))
		// A notice that the output was cut: looked for in the whole of a
		// capped message, in the ends of one that is not (a regexp over
		// 100 MB takes seconds).
		probe := msg
		if len(msg) > 2*msgCap {
			probe = msg[:msgCap] + msg[len(msg)-msgCap:]
		}
		tr.check(regexp.MustCompile(`(?i)truncat|\bcut\b|omitted|elided|more bytes`).MatchString(probe), "the error message must say the delegate's %s was cut", to)
		peak := int64(-1)
		if r != nil {
			tr.check(len(r.stdout) <= msgCap, "nicmux printed %d bytes on stdout", len(r.stdout))
			peak = r.peakRSSKB
		}
		fi, err := os.Stat(w.LogFile)
		if err == nil {
			tr.check(fi.Size() <= 1<<20, "nicmux's log grew to %d bytes", fi.Size())
		}
		tr.logf("nicmux's peak RSS (VmHWM), sampled from outside: %d KB", peak)
		tr.t.Logf("flood on %s: nicmux's peak RSS sampled %d KB; msg %d bytes", to, peak, len(msg))
		tr.check(peak > 0, "nicmux's peak RSS was not sampled for the failed ADD")
		tr.check(peak < 50<<10, "nicmux's peak RSS was %d KB with 100 MB on a delegate's %s (limit 50 MB)", peak, to)
	}
}

// --- 9. smaller ------------------------------------------------------------------------

func readOnlyCheck(tr *trial) {
	w := tr.w
	c := w.newCtr()
	tr.must(w.add(c), "ADD")
	undo := w.readOnly(w.StateDir)
	o := w.check(c)
	undo()
	tr.check(o.ok(), "CHECK with a read-only stateDir: %s", o)
	tr.check(w.del(c).ok(), "DEL")
}

func longIDs(tr *trial) {
	w := tr.w
	for _, n := range []int{251, 255, 300} {
		c := w.newCtr()
		c.id = ("t" + strings.Repeat("0123456789abcdef", 20))[:n]
		o := w.add(c)
		if tr.check(!o.ok(), "ADD with a container ID of %d characters succeeded", n) {
			tr.check(o.code() == 4, "ADD with a container ID of %d characters: code %d, want 4: %s", n, o.code(), short(o.err.Error(), 200))
		} else {
			w.del(c)
		}
	}
}

func procSelfNetns(tr *trial) {
	w := tr.w
	// A pass-through torture plugin first on eth0 logs whether any
	// delegate ran.
	w.setFaults(fault{ifname: "eth0", pos: 0, insert: true, s: map[string]any{}})
	c := w.newCtr()
	c.netns = "/proc/self/ns/net"
	o := w.add(c)
	tr.check(!o.ok(), "ADD with CNI_NETNS=/proc/self/ns/net succeeded")
	r := w.lastRun("ADD")
	if tr.check(r != nil, "no nicmux run of the ADD recorded") {
		dec := json.NewDecoder(strings.NewReader(string(r.stdout)))
		docs := 0
		for {
			var v any
			if err := dec.Decode(&v); err != nil {
				if !errors.Is(err, io.EOF) {
					docs += 100 // not JSON at all
				}
				break
			}
			docs++
		}
		tr.check(docs == 1, "ADD with CNI_NETNS=/proc/self/ns/net printed %d JSON documents on stdout, want one: %s", docs, short(string(r.stdout), 300))
	}
	tr.check(w.markerCount("ADD") == 0 && len(w.leasesOf("svc", c)) == 0 && len(w.leasesOf("storage", c)) == 0,
		"ADD with CNI_NETNS=/proc/self/ns/net must be refused before any delegate runs (leases taken: %v %v)", w.leasesOf("svc", c), w.leasesOf("storage", c))
	left, err := testworld.StateLeft(w.StateDir)
	tr.check(err == nil && !slices.ContainsFunc(left, func(f string) bool { return strings.Contains(f, c.id) }),
		"ADD with CNI_NETNS=/proc/self/ns/net kept state: %v (%v)", left, err)
}

func hugeAttachments(path func(w *world) string, what string) func(tr *trial) {
	return func(tr *trial) {
		w := tr.w
		w.Attachments = path(w)
		w.ex.maxRSSKB = 256 << 10
		w.deadline = 10 * time.Second
		c := w.newCtr()
		o := w.add(c)
		r := w.lastRun("ADD")
		if tr.check(r != nil, "no nicmux run of the ADD recorded") {
			tr.check(!r.watchKilled, "nicmux reading an attachment file that is %s grew past %d MB (killed by the suite)", what, w.ex.maxRSSKB>>10)
			tr.logf("peak RSS sampled: %d KB", r.peakRSSKB)
		}
		tr.check(!o.ok() && !o.hung, "ADD with an attachment file that is %s must fail on its own: %s", what, o)
	}
}

func setSymlinkSwap(tr *trial) {
	w := tr.w
	dir := filepath.Dir(w.Attachments)
	outside := filepath.Join(w.Dir, "outside")
	_ = os.MkdirAll(outside, 0o755)
	escaped := filepath.Join(w.Dir, "escaped")
	chain := func(marker string) string {
		b, _ := json.Marshal(map[string]any{"interfaces": []any{map[string]any{"ifname": "eth0", "network": "swap",
			"plugins": []any{map[string]any{"type": "torture", "torture": map[string]any{"marker": marker}}}}}})
		return string(b)
	}
	insideMarker := filepath.Join(w.Dir, "inside-marker")
	inside := chain(insideMarker)
	_ = os.WriteFile(filepath.Join(outside, "evil.yaml"), []byte(chain(escaped)), 0o644)
	evil := filepath.Join(dir, "evil.yaml")
	_ = os.WriteFile(evil, []byte(inside), 0o644)
	// The swapper exchanges evil.yaml (a regular file) and a symlink to
	// the outside file with renameat2(RENAME_EXCHANGE), one syscall per
	// swap, as fast as a core allows.
	other := filepath.Join(dir, ".evil-link")
	_ = os.Symlink(filepath.Join(outside, "evil.yaml"), other)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for i := 0; ; i++ {
			if i%1024 == 0 {
				select {
				case <-stop:
					// Leave the regular file in place.
					if fi, err := os.Lstat(evil); err == nil && fi.Mode()&os.ModeSymlink != 0 {
						_ = unix.Renameat2(unix.AT_FDCWD, evil, unix.AT_FDCWD, other, unix.RENAME_EXCHANGE)
					}
					_ = os.Remove(other)
					return
				default:
				}
			}
			_ = unix.Renameat2(unix.AT_FDCWD, evil, unix.AT_FDCWD, other, unix.RENAME_EXCHANGE)
		}
	}()
	const n = 100
	escapes := 0
	for i := 0; i < n; i++ {
		c := w.newCtr()
		c.args = [][2]string{{"NICMUX_ATTACHMENTS", "evil"}}
		before := countLines(escaped)
		w.add(c)
		if countLines(escaped) > before {
			escapes++
		}
		w.del(c)
		w.destroyNetns(c)
	}
	close(stop)
	wg.Wait()
	tr.logf("%d ADDs with NICMUX_ATTACHMENTS=evil while evil.yaml was swapped with a symlink out of the folder: %d ran the outside chain", n, escapes)
	tr.check(escapes == 0, "NICMUX_ATTACHMENTS: %d of %d ADDs read the file a symlink swapped in points to, outside the folder", escapes, n)
	// Some ADDs read the regular file: the set was looked up at all.
	tr.check(countLines(insideMarker) > 0, "none of %d ADDs with NICMUX_ATTACHMENTS=evil ran the set inside the folder: the trial shows nothing", n)
}

func countLines(path string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), "\n")
}

func writableAttachments(tr *trial) {
	w := tr.w
	if err := os.Chmod(w.Attachments, 0o666); err != nil {
		tr.fatalf("%v", err)
	}
	c := w.newCtr()
	tr.must(w.add(c), "ADD")
	lines := w.LogLines(w.Attachments, "level=WARN")
	var hit bool
	for _, l := range lines {
		if regexp.MustCompile(`(?i)writable`).MatchString(l) {
			hit = true
		}
	}
	tr.check(hit, "no warning in nicmux's log that the attachment file %s is writable by others (mode 0666)", w.Attachments)
	tr.check(w.del(c).ok(), "DEL")
}

// --- ENOSPC -----------------------------------------------------------------------------

// enospc: the state folder is a small tmpfs, nearly full (bytes) or with
// few inodes: ADD may fail, but must then leave nothing (Nomad retries
// without DEL); once space is back, ADD, CHECK and DEL must work.
func enospc(inodes bool) func(tr *trial) {
	return func(tr *trial) {
		w := tr.w
		filler := filepath.Join(w.Dir, "state-filler")
		if inodes {
			n := 2 + tr.rng.Intn(8)
			w.mountTmpfs(w.StateDir, fmt.Sprintf("size=4m,nr_inodes=%d,mode=0700", n))
			tr.logf("stateDir: tmpfs with %d inodes", n)
		} else {
			w.mountTmpfs(w.StateDir, "size=256k,mode=0700")
			free := tr.rng.Intn(12) * 4096
			filler = filepath.Join(w.StateDir, ".filler")
			fill(filler, 256<<10-free)
			tr.logf("stateDir: tmpfs of 256 KB with about %d bytes free", free)
		}
		c := w.newCtr()
		o := w.add(c)
		if !o.ok() {
			tr.check(o.code() != 0, "ADD on a full stateDir failed with code 0: %s", o)
			w.settle(time.Second)
			for _, l := range w.leaks() {
				if l.Class != testworld.LeakState && l.cause == "" {
					tr.check(false, "the failed ADD (stateDir full) left %s", l)
				}
			}
		}
		_ = os.Remove(filler)
		if inodes {
			_ = syscallMountRemount(w.StateDir, "size=4m,nr_inodes=10000")
		}
		if !o.ok() {
			o = w.addRetry(c)
			tr.check(o.ok(), "ADD once the stateDir has room again: %s", o)
		}
		if o.ok() {
			tr.check(w.check(c).ok(), "CHECK")
		}
		tr.check(w.del(c).ok(), "DEL")
	}
}

// --- the list ---------------------------------------------------------------------------

func deterministic() int {
	n := *flagTrials / 5
	if n < 1 {
		n = 1
	}
	return n
}

func TestTorture(t *testing.T) {
	det := deterministic()
	// 1
	runClass(t, "gc-keeps-live/eth1-result-truncated", det, func(tr *trial) {
		gcKeepsLive(tr, func(w *world, c *ctr) error { return tResult("eth1").truncate(w, c.id) }, tResult("eth1").name+" truncated")
	})
	runClass(t, "gc-keeps-live/plan-corrupt", det, func(tr *trial) {
		gcKeepsLive(tr, func(w *world, c *ctr) error { return tPlan.corrupt(w, c.id) }, tPlan.name+" corrupt")
	})
	runClass(t, "gc-keeps-live/folder-gone", det, func(tr *trial) {
		gcKeepsLive(tr, func(w *world, c *ctr) error { return tFolder.remove(w, c.id) }, tFolder.name+" gone")
	})
	// 2
	runClass(t, "kill/slow-delegate-outlives-nicmux", trials(4), slowDelegate)
	// 3
	runClass(t, "timeout/add-hangs", det, timeoutAdd)
	runClass(t, "timeout/check-hangs", det, timeoutCheck)
	runClass(t, "timeout/del-hangs", det, timeoutDel)
	runClass(t, "timeout/gc-hangs-others-go-on", det, timeoutGC)
	// 4
	runClass(t, "records/eth1-result-truncated/del", det, recordsDel(tResult("eth1"), "truncated"))
	runClass(t, "records/eth1-result-truncated/readd", det, recordsReAdd)
	runClass(t, "records/eth1-result-truncated/gc", det, recordsGC)
	runClass(t, "records/plan-corrupt/del", det, recordsDel(tPlan, "corrupt"))
	runClass(t, "records/eth1-result-deleted/del", det, recordsDel(tResult("eth1"), "deleted"))
	runClass(t, "records/plan-deleted/del", det, recordsDel(tPlan, "deleted"))
	// 5
	runClass(t, "fs/container-folder-symlink", det, symlinkFolder)
	runClass(t, "fs/lock-symlink", det, symlinkLock)
	runClass(t, "fs/statedir-group-writable", det, insecure(target{name: "stateDir"}, 0o770, 0))
	runClass(t, "fs/statedir-world-writable", det, insecure(target{name: "stateDir"}, 0o777, 0))
	runClass(t, "fs/statedir-not-root", det, insecure(target{name: "stateDir"}, 0o700, 65534))
	runClass(t, "fs/containers-world-writable", det, insecure(tContainers, 0o777, 0))
	// 6
	runClass(t, "rebuild/ipmasq", det, rebuildIPMasq)
	runClass(t, "rebuild/tuning-failed-add", det, rebuildTuningFailedAdd)
	// 7
	runClass(t, "gc/under-load", det, gcUnderLoad)
	// 8
	runClass(t, "output/killed-by-signal", det, badOutput(map[string]any{"action": "signal", "signal": "KILL"}, "is killed by SIGKILL"))
	runClass(t, "output/killed-by-sigterm", det, badOutput(map[string]any{"action": "signal", "signal": "TERM"}, "is killed by SIGTERM"))
	runClass(t, "output/non-json-failure", det, badOutput(map[string]any{"action": "garbage", "exit": 1}, "fails with non-JSON output"))
	runClass(t, "output/non-json-success", det, badOutput(map[string]any{"action": "garbage", "exit": 0}, "exits 0 with non-JSON output"))
	runClass(t, "output/flood-stdout", det, flood("stdout"))
	runClass(t, "output/flood-stderr", det, flood("stderr"))
	// 9
	runClass(t, "misc/readonly-statedir-check", det, readOnlyCheck)
	runClass(t, "misc/long-container-id", det, longIDs)
	runClass(t, "misc/proc-self-netns", det, procSelfNetns)
	runClass(t, "misc/attachments-dev-zero", det, hugeAttachments(func(*world) string { return "/dev/zero" }, "/dev/zero"))
	runClass(t, "misc/attachments-huge-file", det, hugeAttachments(func(w *world) string {
		p := filepath.Join(w.Dir, "huge.yaml")
		f, _ := os.Create(p)
		_ = f.Truncate(2 << 30)
		f.Close()
		return p
	}, "a 2 GB file"))
	runClass(t, "misc/set-symlink-swap", det, setSymlinkSwap)
	runClass(t, "misc/attachments-writable-warning", det, writableAttachments)
	// ENOSPC
	runClass(t, "enospc/bytes", trials(2), enospc(false))
	runClass(t, "enospc/inodes", trials(2), enospc(true))
	// kill -9 and recovery, misbehaving delegates
	crashClasses(t)
	misbehaveClasses(t)
	raceClasses(t)
}
