package torture

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nicmux/nicmux/test/netnsutil"
	"github.com/nicmux/nicmux/test/testworld"
)

// Classes that race verbs of one container ID (issue 17): many rounds
// each, counted in the summary.

func raceClasses(t *testing.T) {
	runClass(t, "race/add-one-id-two-namespaces", trials(1), addTwoNamespaces)
	runClass(t, "race/attachments-rewritten-in-place", trials(1), attachmentsRewritten)
	runClass(t, "race/lock-exclusive-never-overlap", 1, lockNeverOverlaps)
	runClass(t, "race/netns-replaced-mid-add", trials(2), netnsReplacedMidAdd)
}

// --- spans: when each delegate call ran --------------------------------------

// span is one delegate call as the torture plugin's "span" file tells it:
// from its start to the end of its pass-through.
type span struct {
	verb, id   string
	pid        int
	begin, end int64 // CLOCK_MONOTONIC ns; end 0: never ended
}

func (s span) String() string {
	return fmt.Sprintf("%s %s (pid %d, %d..%d)", s.verb, s.id, s.pid, s.begin, s.end)
}

// readSpans reads a span file (see the torture plugin).
func readSpans(path string) ([]span, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	open := map[int]*span{}
	var out []*span
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var what, verb, id, ifname string
		var pid int
		var ns int64
		if n, _ := fmt.Sscanf(sc.Text(), "%s %s %s %s %d %d", &what, &verb, &id, &ifname, &pid, &ns); n != 6 {
			return nil, fmt.Errorf("span line %q", sc.Text())
		}
		if what == "begin" {
			s := &span{verb: verb, id: id, pid: pid, begin: ns}
			open[pid] = s
			out = append(out, s)
		} else if s := open[pid]; s != nil {
			s.end = ns
			delete(open, pid)
		}
	}
	spans := make([]span, len(out))
	for i, s := range out {
		spans[i] = *s
	}
	return spans, sc.Err()
}

// exclusiveOverlaps returns the pairs of calls for one container that ran
// at once while one of them was an ADD's or a DEL's: their verbs held the
// container's lock at once, one of them exclusively. A call that never
// ended (its verb was killed) lasts for ever.
func exclusiveOverlaps(spans []span) [][2]span {
	byID := map[string][]span{}
	for _, s := range spans {
		byID[s.id] = append(byID[s.id], s)
	}
	var out [][2]span
	for _, ss := range byID {
		sort.Slice(ss, func(i, j int) bool { return ss[i].begin < ss[j].begin })
		for i, a := range ss {
			for _, b := range ss[i+1:] {
				end := a.end
				if end == 0 {
					end = 1<<63 - 1
				}
				if b.begin >= end {
					break
				}
				if a.verb != "CHECK" || b.verb != "CHECK" {
					out = append(out, [2]span{a, b})
				}
			}
		}
	}
	return out
}

// --- 2. two exclusive holders never overlap ----------------------------------

// lockNeverOverlaps: each round, an ADD, a DEL and six CHECKs of a new
// container ID start at once, in a random order, through one pass-through
// plugin that notes when it runs (and takes 2 ms doing it). ADD and DEL
// hold the container's lock exclusively, CHECK shared: no ADD's or DEL's
// call may run beside another call for the same container. A CHECK that
// finds no state holds the lock without calling anything: that is the
// verb that removed the lock file the others held.
func lockNeverOverlaps(tr *trial) {
	w := tr.w
	spans := filepath.Join(w.Dir, "spans")
	w.extra["logLevel"] = "debug"
	w.opts.only = map[string][]plugin{"eth0": {{"type": "torture", "torture": plugin{"span": spans, "delayMs": 2}}}}
	w.writeAttachments()
	w.quiet = true
	netns := w.newNetns()
	rounds := 100 * *flagTrials
	const checks = 6
	outcomes := map[string]int{}
	var mu sync.Mutex
	for i := 0; i < rounds; i++ {
		c := &ctr{id: "t" + testworld.RandHex(8), netns: netns}
		verbs := []string{"ADD", "DEL"}
		for range checks {
			verbs = append(verbs, "CHECK")
		}
		tr.rng.Shuffle(len(verbs), func(a, b int) { verbs[a], verbs[b] = verbs[b], verbs[a] })
		var wg sync.WaitGroup
		for _, verb := range verbs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := w.run(nil, verb, c, nil)
				mu.Lock()
				outcomes[verb+" "+strconv.FormatBool(o.ok())]++
				mu.Unlock()
				tr.check(!o.hung, "%s hung in a round of concurrent verbs: %s", verb, o)
			}()
		}
		wg.Wait()
		tr.check(w.del(c).ok(), "the DEL ending round %d", i)
		w.forgetRuns()
	}
	all, err := readSpans(spans)
	if err != nil {
		tr.fatalf("reading the spans: %v", err)
	}
	over := exclusiveOverlaps(all)
	for k, n := range outcomes {
		tr.logf("%s: %d", k, n)
	}
	tr.count("rounds", rounds)
	tr.count("delegate calls", len(all))
	tr.count("ADDs that succeeded", outcomes["ADD true"])
	tr.count("exclusive overlaps", len(over))
	for _, o := range over[:min(len(over), 5)] {
		tr.logf("at once: %s and %s", o[0], o[1])
		for _, l := range w.LogLines(o[0].id) {
			tr.logf("log: %s", l)
		}
	}
	tr.check(len(over) == 0, "%d delegate calls ran beside an ADD's or a DEL's for the same container over %d rounds (%d calls): two verbs held its lock at once, one exclusively",
		len(over), rounds, len(all))
}

// --- 1. one ID, two namespaces ---------------------------------------------------

// addTwoNamespaces: two ADDs of one container ID into two namespaces start
// at once, five rounds a trial. Both may succeed (the container's lock
// orders them; the second releases the first where it is attached), but
// at most one namespace may end up attached, with one lease per network,
// and the runtime's DELs leave nothing.
func addTwoNamespaces(tr *trial) {
	w := tr.w
	const rounds = 5
	for i := 0; i < rounds; i++ {
		a := w.newCtr()
		b := &ctr{id: a.id, netns: w.newNetns(), port: a.port}
		var wg sync.WaitGroup
		var oa, ob outcome
		wg.Add(2)
		go func() { defer wg.Done(); oa = w.add(a) }()
		go func() { defer wg.Done(); ob = w.add(b) }()
		wg.Wait()
		tr.count("rounds", 1)
		tr.count("ADDs that succeeded", btoi(oa.ok())+btoi(ob.ok()))
		attached := 0
		for _, c := range []*ctr{a, b} {
			if links := w.linksIn(c.netns); len(links) > 0 {
				attached++
				tr.logf("round %d: %s holds %v", i, c.netns, links)
			}
		}
		if attached > 1 {
			tr.count("both namespaces attached", 1)
		}
		tr.check(attached <= 1, "round %d: two ADDs of %s into two namespaces left both attached", i, a.id)
		for _, n := range []string{"svc", "storage"} {
			leases := w.leasesOf(n, a)
			tr.check(len(leases) <= 1, "round %d: %s holds %d %s leases %v", i, a.id, len(leases), n, leases)
		}
		tr.check(w.del(a).ok(), "round %d: DEL in the first namespace", i)
		tr.check(w.del(b).ok(), "round %d: DEL in the second namespace", i)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// linksIn lists the links in the namespace at path but lo.
func (w *world) linksIn(path string) []string {
	links, err := netnsutil.Links(path)
	if err != nil {
		w.tr.fatalf("links in %s: %v", path, err)
	}
	return links
}

// --- 4. the namespace replaced at its path during ADD ------------------------

// netnsReplacedMidAdd: a delegate of a random chain slowed by 100-400 ms,
// and the namespace replaced by a new one at the same path (Nomad's
// rebuild, or a runtime's mistake) a random time after it starts. An ADD
// that succeeds has attached every interface in one namespace; one that
// fails leaves nothing in either, nor leases, nor state.
func netnsReplacedMidAdd(tr *trial) {
	w := tr.w
	randomFault(tr, "ADD", map[string]any{"delayMs": 100 + tr.rng.Intn(300)})
	c := w.newCtr()
	old, err := os.Open(c.netns)
	if err != nil {
		tr.fatalf("%v", err)
	}
	defer old.Close()
	oldPath := fmt.Sprintf("/proc/self/fd/%d", old.Fd())
	w.arm()
	before := w.markerCount("ADD")
	done := make(chan outcome, 1)
	go func() { done <- w.add(c) }()
	for deadline := time.Now().Add(verbDeadline); w.markerCount("ADD") == before && time.Now().Before(deadline); {
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(time.Duration(tr.rng.Intn(150)) * time.Millisecond)
	w.rebuildNetns(c)
	o := <-done
	w.disarm()
	inOld, inNew := w.linksIn(oldPath), w.linksIn(c.netns)
	tr.logf("links: in the namespace ADD started with %v, in the one now at its path %v", inOld, inNew)
	tr.count("trials", 1)
	if o.ok() {
		tr.count("ADDs done before the swap", 1)
		tr.check(len(inNew) == 0 || len(inOld) == 0, "ADD succeeded with %v in the namespace it started with and %v in the one that replaced it", inOld, inNew)
	} else {
		tr.count("ADDs failed with code "+strconv.Itoa(int(o.code())), 1)
		tr.check(len(inOld)+len(inNew) == 0, "the failed ADD left %v in the namespace it started with and %v in the one that replaced it", inOld, inNew)
		for _, n := range []string{"svc", "storage"} {
			tr.check(len(w.leasesOf(n, c)) == 0, "the failed ADD left %s leases %v", n, w.leasesOf(n, c))
		}
		tr.check(!tFolder.exists(w, c.id), "the failed ADD left its state")
	}
	tr.check(w.del(c).ok(), "the runtime's DEL after the ADD")
}

// --- 6. the attachment file rewritten in place during ADDs ---------------

// rewriters write the attachment file in place, as the writers
// did; pause is how long a writer waits between its writes.
var rewriters = []struct {
	name  string
	write func(path string, head, tail []byte, pause time.Duration) error
}{
	{"two writes split at an entry boundary", func(path string, head, tail []byte, pause time.Duration) error {
		return writeInTwo(path, os.O_WRONLY|os.O_TRUNC, head, tail, pause)
	}},
	{"cat >", func(path string, head, tail []byte, pause time.Duration) error {
		return writeInTwo(path, os.O_WRONLY|os.O_TRUNC, nil, append(append([]byte{}, head...), tail...), pause)
	}},
	{"an editor's rename, then write", func(path string, head, tail []byte, pause time.Duration) error {
		if err := os.Rename(path, path+"~"); err != nil {
			return err
		}
		time.Sleep(pause)
		return writeInTwo(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, head, tail, pause)
	}},
}

// writeInTwo opens path with flags and writes head, then, after pause,
// tail.
func writeInTwo(path string, flags int, head, tail []byte, pause time.Duration) error {
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(head); err != nil {
		return err
	}
	time.Sleep(pause)
	_, err = f.Write(tail)
	return err
}

// attachmentsRewritten: for each of the rewriters, three ADDs (each
// DELed) while it rewrites the attachment file in place, again and again,
// with the same two interfaces (a pause of 0-30 ms inside a rewrite, 0-200
// ms between two). An ADD never attaches a subset of them: it attaches
// both, or fails saying the file is being written (or is missing).
func attachmentsRewritten(tr *trial) {
	w := tr.w
	head, tail := w.attachmentsYAML()
	for k, rw := range rewriters {
		testworld.WriteFile(w.tr.t, w.Attachments, append(append([]byte{}, head...), tail...))
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := newRand(tr.seed + int64(k))
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Duration(rng.Intn(200)) * time.Millisecond):
				}
				if err := rw.write(w.Attachments, head, tail, time.Duration(rng.Intn(30))*time.Millisecond); err != nil {
					tr.check(false, "the writer (%s): %v", rw.name, err)
					return
				}
				tr.count("rewrites", 1)
			}
		}()
		for i := 0; i < 3; i++ {
			w.addWhileRewritten(i, rw.name)
		}
		close(stop)
		wg.Wait()
	}
}

// addWhileRewritten is ADD number i of attachmentsRewritten, and its DEL.
func (w *world) addWhileRewritten(i int, writer string) {
	tr := w.tr
	c := w.newCtr()
	o := w.add(c)
	tr.count("ADDs", 1)
	switch {
	case o.ok():
		var names []string
		for _, iface := range o.res.Interfaces {
			if iface.Sandbox != "" {
				names = append(names, iface.Name)
			}
		}
		tr.count("ADDs that attached both", btoi(len(names) == 2))
		tr.check(len(names) == 2, "ADD %d succeeded with %v of eth0 and eth1 while the file was rewritten (%s)", i, names, writer)
	case strings.Contains(o.err.Error(), "being written"):
		tr.count("ADDs refused: the file is being written", 1)
	case strings.Contains(o.err.Error(), "no such file"):
		// An editor's rename left no file for longer than nicmux
		// waits for one (settleWindow): a clear error too.
		tr.count("ADDs refused: no file", 1)
	default:
		tr.check(false, "ADD %d failed while the file was rewritten (%s) with an error that does not say so: %s", i, writer, o)
	}
	tr.check(w.del(c).ok(), "DEL %d (%s)", i, writer)
}

// attachmentsYAML is the world's attachment file in block YAML, cut at the
// second interface's entry: the head alone is a valid file with eth0 only.
func (w *world) attachmentsYAML() (head, tail []byte) {
	chains := w.seedChains()
	entry := func(ifname string) string {
		b, err := json.Marshal(chains[ifname])
		if err != nil {
			w.tr.fatalf("%v", err)
		}
		return fmt.Sprintf("  - ifname: %s\n    network: %s\n    plugins: %s\n", ifname, networkOf[ifname], b)
	}
	return []byte("interfaces:\n" + entry("eth0")), []byte(entry("eth1"))
}

func newRand(seed int64) *rand.Rand { return rand.New(rand.NewSource(seed)) }
