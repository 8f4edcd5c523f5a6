package cluster

import (
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nicmux/nicmux/test/etcdtest"
)

// The torture classes of nicmux-ipam (make torture-short, make torture):
// the real plugin killed with SIGKILL at a random point of ADD, DEL, GC and
// the completion of a queued release, against a real etcd, each followed
// by the recovery a runtime does (DEL, ADD again, GC again, the node's
// next call). A point is either a random time into the run, or the moment
// a random one of the plugin's messages to etcd arrives at a proxy, which
// lets it reach etcd first or not. After each trial the accounting counts,
// in etcd and in the node's data folder: addresses leased twice, leases
// without a live owner, lease and owner keys without each other, queued
// releases, records of owners without a lease, and temporary files.

var (
	flagTrials = flag.Int("torture.trials", envInt("TORTURE_TRIALS", 1), "trials of each torture class, per unit (make torture-short: 1)")
	flagSeed   = flag.Int64("torture.seed", int64(envInt("TORTURE_SEED", 0)), "base seed of the torture classes (0: from the clock)")
	flagTrial  = flag.Int("torture.trial", -1, "run only this trial of each torture class")
	flagReport = flag.String("torture.report", "", "also write the torture summary to this file")
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// tortureClass is a kill of one verb and the runtime's recovery from it.
type tortureClass struct {
	name string
	run  func(tr *trial)
}

var tortureClasses = []tortureClass{
	{"kill/ADD/del", killAdd(false)},
	{"kill/ADD/readd", killAdd(true)},
	{"kill/DEL/del", killDel},
	{"kill/GC/gc", killGC},
	{"kill/drain-STATUS/status", killDrain(false)},
	{"kill/drain-ADD/readd", killDrain(true)},
	{"kill-daemon/ADD/readd", killDaemonAdd},
}

// TestTorture runs every class -torture.trials x 2 times and prints the
// summary (and writes it to -torture.report).
func TestTorture(t *testing.T) {
	seed := *flagSeed
	if seed == 0 {
		seed = time.Now().UnixNano() % 1_000_000_007
	}
	etcd := etcdtest.Start(t, 1)
	sum := &summary{seed: seed, rows: map[string]*classRow{}}
	start := time.Now()
	for _, c := range tortureClasses {
		t.Run(c.name, func(t *testing.T) {
			for i := range 2 * max(*flagTrials, 1) {
				if *flagTrial >= 0 && i != *flagTrial {
					continue
				}
				sum.add(c.name, runTrial(t, etcd, c, seed, i))
			}
		})
	}
	text := sum.table(time.Since(start))
	fmt.Print(text)
	if *flagReport != "" {
		if err := os.WriteFile(*flagReport, []byte(text), 0o644); err != nil {
			t.Error(err)
		}
	}
}

func classSeed(base int64, class string, i int) int64 {
	h := fnv.New64a()
	h.Write([]byte(class))
	return base ^ int64(h.Sum64()&0x7fffffffffff) + int64(i)*7919
}

// trial is one run of a class: a world of its own on the shared etcd,
// reached through a proxy, one node, and a random source.
type trial struct {
	t     *testing.T
	w     *World
	n     *Node
	proxy *etcdProxy
	rng   *rand.Rand
	seed  int64
	base  int64 // the run's base seed
	steps []string
	fails []string
	point string // where the kill landed
}

func (tr *trial) logf(format string, args ...any) {
	tr.steps = append(tr.steps, fmt.Sprintf(format, args...))
}

// check records a failed check unless ok.
func (tr *trial) check(ok bool, format string, args ...any) bool {
	if !ok {
		tr.fails = append(tr.fails, fmt.Sprintf(format, args...))
	}
	return ok
}

// call runs a verb that must succeed.
func (tr *trial) call(c Call) string {
	r, err := tr.n.Exec(c)
	tr.logf("%s %s: %v", c.Verb, c.ID, errOr(r, err))
	if !tr.check(err == nil, "%s %s: %v", c.Verb, c.ID, err) || r == nil {
		return ""
	}
	return r.IPs[0].Address.IP.String()
}

func errOr(r any, err error) string {
	if err != nil {
		return "error " + err.Error()
	}
	if r == nil {
		return "ok"
	}
	return fmt.Sprintf("ok %v", r)
}

// outcome is what a run that may have been killed did.
type outcome struct {
	killed   bool
	messages int // messages to etcd seen
	d        time.Duration
	err      error
}

// kill says where to kill a run: at message msg (delivered or not), or
// after a delay.
type kill struct {
	msg     int
	deliver bool
	after   time.Duration
	// daemon: the node's nicmux-ipamd is killed, not the plugin.
	daemon bool
}

func (k kill) String() string {
	switch {
	case k.msg > 0 && k.deliver:
		return fmt.Sprintf("at message %d to etcd, once delivered", k.msg)
	case k.msg > 0:
		return fmt.Sprintf("at message %d to etcd, before it left", k.msg)
	case k.after > 0:
		return "after " + k.after.Round(100*time.Microsecond).String()
	}
	return "never (a measuring run)"
}

// run runs c, killed at k, and waits for it.
func (tr *trial) run(c Call, k kill) outcome {
	cmd, out := tr.n.Command(c)
	var mu sync.Mutex
	killIt := func() {
		mu.Lock()
		defer mu.Unlock()
		if k.daemon {
			tr.n.KillDaemon()
			return
		}
		_ = cmd.Process.Kill()
	}
	tr.proxy.arm(k.msg, k.deliver, killIt)
	mu.Lock()
	start := time.Now()
	err := cmd.Start()
	mu.Unlock()
	if err != nil {
		tr.t.Fatal(err)
	}
	if k.after > 0 {
		timer := time.AfterFunc(k.after, killIt)
		defer timer.Stop()
	}
	werr := cmd.Wait()
	o := outcome{d: time.Since(start)}
	o.messages, _ = tr.proxy.disarm()
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() && st.Signal() == syscall.SIGKILL {
			o.killed = true
			return o
		}
	}
	_, o.err = tr.n.Outcome(c, out, werr)
	return o
}

// measure runs c unkilled and returns how long it took and how many
// messages it sent to etcd: the range the trial's kill point is drawn
// from.
func (tr *trial) measure(c Call) outcome {
	o := tr.run(c, kill{})
	tr.check(o.err == nil, "measuring run %s %s: %v", c.Verb, c.ID, o.err)
	return o
}

// killed runs c killed at a random point drawn from a measuring run's
// figures, and reports whether the kill landed before the run ended.
func (tr *trial) killed(c Call, m outcome) bool {
	var k kill
	if tr.rng.Intn(2) == 0 && m.messages > 0 {
		k = kill{msg: 1 + tr.rng.Intn(m.messages), deliver: tr.rng.Intn(2) == 0}
	} else {
		k = kill{after: time.Duration(tr.rng.Int63n(int64(m.d)*3/2) + 1)}
	}
	o := tr.run(c, k)
	if o.killed {
		tr.point = k.String()
		tr.logf("%s %s killed %s (it sent %d messages)", c.Verb, c.ID, k, o.messages)
	} else {
		tr.point = "ran to the end"
		tr.logf("%s %s ran to its end before %s: %v", c.Verb, c.ID, k, o.err)
	}
	return o.killed
}

// --- the classes ----------------------------------------------------------

// killAdd: ADD killed; the runtime then DELs (readd false) or, as Nomad,
// retries the ADD, which must give the owner one address, the same on a
// repeat, then DELs.
func killAdd(readd bool) func(tr *trial) {
	return func(tr *trial) {
		keep := tr.call(Call{Verb: "ADD", ID: "keep"})
		tr.measure(Call{Verb: "ADD", ID: "m1"})
		m := tr.measure(Call{Verb: "ADD", ID: "m2"})
		for _, id := range []string{"m1", "m2"} {
			tr.del(id)
		}
		tr.killed(Call{Verb: "ADD", ID: "c1"}, m)
		if readd {
			a := tr.call(Call{Verb: "ADD", ID: "c1"})
			b := tr.call(Call{Verb: "ADD", ID: "c1"})
			tr.check(a != "" && a == b, "the retried ADD got %s, a repeat %s", a, b)
		}
		tr.del("c1")
		tr.wantLease("keep", keep)
	}
}

// killDel: DEL killed; the runtime DELs again.
func killDel(tr *trial) {
	keep := tr.call(Call{Verb: "ADD", ID: "keep"})
	tr.call(Call{Verb: "ADD", ID: "m"})
	m := tr.measure(Call{Verb: "DEL", ID: "m"})
	tr.n.w.owned("m", "eth1", false)
	tr.call(Call{Verb: "ADD", ID: "c1"})
	if tr.killed(Call{Verb: "DEL", ID: "c1"}, m) {
		tr.del("c1")
	}
	tr.n.w.owned("c1", "eth1", false)
	tr.wantLease("keep", keep)
}

// killGC: GC killed with one attachment valid of three; GC runs again.
func killGC(tr *trial) {
	valid := `, "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth1"}]`
	keep := tr.call(Call{Verb: "ADD", ID: "c1"})
	for _, id := range []string{"c2", "c3"} {
		tr.call(Call{Verb: "ADD", ID: id})
	}
	m := tr.measure(Call{Verb: "GC", Conf: valid})
	for _, id := range []string{"c4", "c5"} {
		tr.call(Call{Verb: "ADD", ID: id})
	}
	if tr.killed(Call{Verb: "GC", Conf: valid}, m) {
		tr.call(Call{Verb: "GC", Conf: valid})
	}
	for _, id := range []string{"c2", "c3", "c4", "c5"} {
		tr.n.w.owned(id, "eth1", false)
	}
	tr.wantLease("c1", keep)
}

// killDrain: a release queued while etcd was stopped is completed by the
// node's next call, killed (STATUS, or the ADD of another owner); then the
// next call completes it (STATUS again, or the ADD retried and its DEL).
func killDrain(viaAdd bool) func(tr *trial) {
	return func(tr *trial) {
		keep := tr.call(Call{Verb: "ADD", ID: "keep"})
		verb := Call{Verb: "STATUS"}
		if viaAdd {
			verb = Call{Verb: "ADD", ID: "c2"}
		}
		tr.queueRelease("m")
		m := tr.measure(verb)
		if viaAdd {
			tr.del("c2")
		}
		tr.queueRelease("c1")
		tr.killed(verb, m)
		if viaAdd {
			tr.call(verb)
			tr.del("c2")
		} else {
			tr.call(verb)
		}
		tr.check(len(tr.n.Queued()) == 0, "releases still queued after the next call: %v", tr.n.Queued())
		tr.wantLease("keep", keep)
	}
}

// queueRelease gives id a lease and DELs it while etcd is stopped, so that
// its release is queued on the node.
func (tr *trial) queueRelease(id string) {
	tr.call(Call{Verb: "ADD", ID: id})
	m := tr.w.Etcd.Members[0]
	if err := m.Pause(); err != nil {
		tr.t.Fatal(err)
	}
	tr.del(id)
	if err := m.Resume(); err != nil {
		tr.t.Fatal(err)
	}
	tr.check(len(tr.n.Queued()) == 1, "the DEL with etcd stopped queued %v", tr.n.Queued())
}

func (tr *trial) del(id string) {
	tr.call(Call{Verb: "DEL", ID: id})
	tr.n.w.owned(id, "eth1", false)
}

// wantLease checks that id still holds ip, untouched by the kill.
func (tr *trial) wantLease(id, ip string) {
	l, ok := tr.w.Leases()[id+"/eth1"]
	tr.check(ok && len(l.Addresses) == 1 && l.Addresses[0].IP == ip, "%s held %s before the kill; etcd now leases it %+v", id, ip, l)
}

// killDaemonAdd: the node's nicmux-ipamd killed during an ADD it answers;
// the plugin runs the ADD itself, which must succeed; a new daemon answers
// the retried ADD with the same address, then DEL.
func killDaemonAdd(tr *trial) {
	if tr.n.daemon == nil {
		tr.n.Serve()
	}
	keep := tr.call(Call{Verb: "ADD", ID: "keep"})
	tr.measure(Call{Verb: "ADD", ID: "m1"})
	m := tr.measure(Call{Verb: "ADD", ID: "m2"})
	for _, id := range []string{"m1", "m2"} {
		tr.del(id)
	}
	k := kill{after: time.Duration(tr.rng.Int63n(int64(m.d)*3/2) + 1), daemon: true}
	if tr.rng.Intn(2) == 0 && m.messages > 0 {
		k = kill{msg: 1 + tr.rng.Intn(m.messages), deliver: tr.rng.Intn(2) == 0, daemon: true}
	}
	o := tr.run(Call{Verb: "ADD", ID: "c1"}, k)
	tr.n.KillDaemon() // when the kill came after the ADD's end
	tr.point = "daemon killed " + k.String()
	tr.logf("ADD c1 with the daemon killed %s: %v", k, o.err)
	first := ""
	if tr.check(o.err == nil && !o.killed, "the ADD whose daemon was killed: %v (plugin killed: %v)", o.err, o.killed) {
		if l := tr.w.Leases()["c1/eth1"]; tr.check(len(l.Addresses) == 1, "the ADD succeeded; etcd leases c1 %+v", l) {
			first = l.Addresses[0].IP
		}
	}
	tr.n.Serve()
	a := tr.call(Call{Verb: "ADD", ID: "c1"})
	tr.check(a != "" && (first == "" || a == first), "the retried ADD got %s, the first %s", a, first)
	tr.del("c1")
	tr.wantLease("keep", keep)
}

// --- a trial and its accounting -------------------------------------------

// tally is what a trial left, by kind.
type tally map[string]int

// leftKinds are the tally's kinds, in the summary's column order.
var leftKinds = []string{"duplicate", "lease", "orphan key", "queued", "record", "temp file"}

func runTrial(t *testing.T, etcd *etcdtest.Cluster, c tortureClass, base int64, i int) trialRow {
	seed := classSeed(base, c.name, i)
	var row trialRow
	t.Run(strconv.Itoa(i), func(t *testing.T) {
		start := time.Now()
		w := NewWorldOn(t, etcd)
		w.Timeout = "1s"
		tr := &trial{t: t, w: w, proxy: newEtcdProxy(t, etcd.Members[0].ClientURL), rng: rand.New(rand.NewSource(seed)), seed: seed, base: base}
		tr.proxy.cut = w.Daemons
		w.Via = []string{tr.proxy.URL()}
		tr.n = w.Node("n1")
		c.run(tr)
		left := tr.account()
		row = trialRow{point: tr.point, left: left, failed: len(tr.fails) > 0 || left.total() > 0, d: time.Since(start)}
		if row.failed {
			t.Errorf("%s trial %d FAILED (reproduce: cd test/cluster && go test -count=1 -run 'TestTorture/%s$' . -args -torture.seed=%d -torture.trial=%d)\n  kill: %s\n  left: %v\n  fails:\n    %s\n  steps:\n    %s",
				c.name, i, c.name, tr.base, i, tr.point, left, strings.Join(tr.fails, "\n    "), strings.Join(tr.steps, "\n    "))
		}
	})
	return row
}

func (l tally) total() int {
	n := 0
	for _, v := range l {
		n += v
	}
	return n
}

// account counts what the trial left in etcd and in the node's data
// folder (the owners the world holds live are not left).
func (tr *trial) account() tally {
	w := tr.w
	left := tally{}
	base := w.Prefix + "/pools/" + w.Pool
	all := w.Etcd.Dump(ctxT(tr.t), tr.t, base+"/")
	byIP := map[string]int{}
	for who, l := range w.Leases() {
		for _, a := range l.Addresses {
			byIP[a.IP]++
			if all[base+"/leases/"+a.Block+"/"+a.IP] == "" {
				left["orphan key"]++
			}
		}
		if !w.isLive(who) {
			left["lease"]++
		}
	}
	for k := range all {
		if rest, ok := strings.CutPrefix(k, base+"/leases/"); ok && byIP[rest[strings.LastIndexByte(rest, '/')+1:]] == 0 {
			left["orphan key"]++
		}
	}
	for _, n := range byIP {
		left["duplicate"] += n - 1
	}
	left["queued"] = len(tr.n.Queued())
	// A lease record's name is <containerID>:<ifname>@<addresses>.
	ents, _ := os.ReadDir(filepath.Join(tr.n.DataDir, w.Pool, "leases"))
	for _, e := range ents {
		owner := e.Name()
		if i := strings.LastIndexByte(owner, '@'); i >= 0 {
			owner = owner[:i]
		}
		if !strings.HasPrefix(e.Name(), ".") && !w.isLive(strings.Replace(owner, ":", "/", 1)) {
			left["record"]++
		}
	}
	_ = filepath.WalkDir(tr.n.DataDir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasPrefix(d.Name(), ".") {
			left["temp file"]++
			tr.logf("temporary file left: %s", path)
		}
		return nil
	})
	for k, v := range left {
		if v == 0 {
			delete(left, k)
		}
	}
	return left
}

// isLive reports whether the test holds owner "containerID/ifname" live.
func (w *World) isLive(who string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.live[who]
}

// --- the summary ----------------------------------------------------------

type trialRow struct {
	point  string
	left   tally
	failed bool
	d      time.Duration
}

type classRow struct {
	trials, killed, failed int
	left                   tally
	points                 map[string]int
	d                      time.Duration
}

type summary struct {
	mu   sync.Mutex
	seed int64
	rows map[string]*classRow
}

func (s *summary) add(class string, r trialRow) {
	s.mu.Lock()
	defer s.mu.Unlock()
	row := s.rows[class]
	if row == nil {
		row = &classRow{left: tally{}, points: map[string]int{}}
		s.rows[class] = row
	}
	row.trials++
	row.d += r.d
	if r.failed {
		row.failed++
	}
	if r.point != "ran to the end" && r.point != "" {
		row.killed++
	}
	kind := r.point
	if i := strings.Index(kind, " message "); i >= 0 {
		kind = "at a message to etcd" + kind[strings.Index(kind, ","):]
	} else if strings.HasPrefix(kind, "after ") {
		kind = "after a random time"
	}
	row.points[kind]++
	for k, v := range r.left {
		row.left[k] += v
	}
}

func (s *summary) table(wall time.Duration) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "\n## nicmux-ipam torture summary (seed %d, -torture.trials %d, wall %s)\n\n", s.seed, *flagTrials, wall.Round(time.Second))
	fmt.Fprintf(&b, "left columns: what the trials of the class left after the recovery, in etcd and in the node's data folder\n\n")
	fmt.Fprintf(&b, "| class | trials | killed | failed | %s | kill points | s |\n|---|---:|---:|---:|%s---|---:|\n",
		strings.Join(leftKinds, " | "), strings.Repeat("---:|", len(leftKinds)))
	var names []string
	for n := range s.rows {
		names = append(names, n)
	}
	sort.Strings(names)
	var tt, tf int
	for _, n := range names {
		r := s.rows[n]
		tt += r.trials
		tf += r.failed
		var cols, pts []string
		for _, k := range leftKinds {
			cols = append(cols, strconv.Itoa(r.left[k]))
		}
		for k, v := range r.points {
			pts = append(pts, fmt.Sprintf("%s ×%d", k, v))
		}
		sort.Strings(pts)
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s | %s | %.1f |\n", n, r.trials, r.killed, r.failed, strings.Join(cols, " | "), strings.Join(pts, "; "), r.d.Seconds())
	}
	fmt.Fprintf(&b, "\ntotal: %d trials, %d failed\n", tt, tf)
	return b.String()
}
