package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nicmux/nicmux/test/netnsutil"
	"github.com/nicmux/nicmux/test/testworld"
)

// metricsWorld is a world whose nicmux entry sets metricsFile, in a folder
// of its own as node_exporter's textfile directory would be.
type metricsWorld struct {
	*world
	file string
}

func newMetricsWorld(t *testing.T) *metricsWorld {
	w := &metricsWorld{world: newWorld(t)}
	w.file = filepath.Join(w.Dir, "textfile", "nicmux.prom")
	if err := os.MkdirAll(filepath.Dir(w.file), 0o755); err != nil {
		t.Fatal(err)
	}
	// The renderer lingers after the last verb: let it draw the last
	// before the test's folders go.
	t.Cleanup(func() { w.waitDrawn() })
	return w
}

func (w *metricsWorld) list(attachments string, extra map[string]any) *libcni.NetworkConfigList {
	all := map[string]any{"metricsFile": w.file}
	for k, v := range extra {
		all[k] = v
	}
	return w.world.list(attachments, all)
}

// waitDrawn waits until the textfile counts every verb folded into the
// counters (their header's generation), and a little more for the
// renderer to note its outcome: the renderer lingers, reading only, and
// ends once the test's folders are gone.
func (w *metricsWorld) waitDrawn() {
	b, err := os.ReadFile(filepath.Join(w.StateDir, "metrics", "counters"))
	if err != nil {
		return
	}
	var gen int
	if _, err := fmt.Sscanf(string(b), "nicmux-counters 1 %d", &gen); err != nil {
		return
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if fams, err := families(w.file); err == nil && total(fams["nicmux_verbs_total"]) == float64(gen) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
}

// logLines waits up to 5 s for n lines of the log holding part, and
// returns how many there are.
func (w *metricsWorld) logLines(part string, n int) int {
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := len(w.LogLines(part))
		if got >= n || time.Now().After(deadline) {
			time.Sleep(300 * time.Millisecond) // and no more come
			return len(w.LogLines(part))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// families parses the textfile as node_exporter's textfile collector
// does; nil while there is none.
func families(path string) (map[string]*dto.MetricFamily, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s does not parse: %w\n%s", path, err, b)
	}
	return fams, nil
}

// textfile waits until the textfile parses and counts verbs verbs in all,
// and returns it parsed.
func (w *metricsWorld) textfile(verbs int) map[string]*dto.MetricFamily {
	w.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		fams, err := families(w.file)
		n := total(fams["nicmux_verbs_total"])
		if err == nil && n == float64(verbs) {
			return fams
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("the textfile counts %v verbs, want %d (%v)", n, verbs, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// total adds up a counter family's series.
func total(f *dto.MetricFamily) float64 {
	var n float64
	for _, m := range f.GetMetric() {
		n += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return n
}

// sample returns the series of f whose labels are the pairs of kv, or
// fails the test.
func sample(t *testing.T, f *dto.MetricFamily, kv ...string) *dto.Metric {
	t.Helper()
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		if len(have) != len(kv)/2 {
			continue
		}
		for i := 0; i < len(kv); i += 2 {
			if have[kv[i]] != kv[i+1] {
				continue next
			}
		}
		return m
	}
	t.Fatalf("%s has no series %v; it has %v", f.GetName(), kv, f.GetMetric())
	return nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func value(t *testing.T, f *dto.MetricFamily, kv ...string) float64 {
	t.Helper()
	m := sample(t, f, kv...)
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// checkBuckets checks a histogram series: its count, and its cumulative
// buckets, which grow up to +Inf's, the count.
func checkBuckets(t *testing.T, f *dto.MetricFamily, count uint64, kv ...string) {
	t.Helper()
	h := sample(t, f, kv...).Histogram
	if h.GetSampleCount() != count {
		t.Errorf("%s%v: %d observations, want %d", f.GetName(), kv, h.GetSampleCount(), count)
	}
	var last uint64
	for _, b := range h.Bucket {
		if b.GetCumulativeCount() < last || b.GetCumulativeCount() > count {
			t.Errorf("%s%v: bucket le=%v holds %d after %d (count %d)", f.GetName(), kv, b.GetUpperBound(), b.GetCumulativeCount(), last, count)
		}
		last = b.GetCumulativeCount()
	}
	// 13 bounds from 5 ms to 60 s, then +Inf, which holds every one.
	if n := len(h.Bucket); n != 14 || h.Bucket[0].GetUpperBound() != 0.005 || !math.IsInf(h.Bucket[n-1].GetUpperBound(), 1) ||
		h.Bucket[n-1].GetCumulativeCount() != count || h.GetSampleSum() <= 0 {
		t.Errorf("%s%v: buckets %v, sum %v", f.GetName(), kv, h.Bucket, h.GetSampleSum())
	}
}

func cniCode(err error) string {
	var e *types.Error
	if errors.As(err, &e) {
		return fmt.Sprint(e.Code)
	}
	return "none"
}

// TestMetricsAfterRealVerbs runs the seed job's verbs, and a failing ADD
// that rolls back, in real namespaces, and reads the textfile as
// node_exporter would: every verb by result, every delegate call by plugin,
// verb and result, the histograms' buckets, the rollback and the
// containers' gauge; nicmux metrics prints the same numbers.
func TestMetricsAfterRealVerbs(t *testing.T) {
	w := newMetricsWorld(t)
	l := w.list(w.seed(), nil)
	netns := newNS(t)
	r := rt("metrics-1", netns)
	w.mustAdd(l, r)
	fams := w.textfile(1)
	if v := value(t, fams["nicmux_containers"], "state", "live"); v != 1 {
		t.Errorf("live containers after ADD: %v", v)
	}
	if err := w.check(l, r); err != nil {
		t.Fatal(err)
	}
	if err := w.del(l, r); err != nil {
		t.Fatal(err)
	}
	// The macvlan's master is not there: eth1 fails, and eth0, which the
	// bridge attached, is rolled back.
	badYAML := strings.Replace(seedYAML, "master: {{.Master}}", "master: nosuchmaster0", 1)
	bad := w.list(w.writeYAML("bad.yaml", badYAML), nil)
	_, err := w.add(bad, rt("metrics-2", newNS(t)))
	if err == nil {
		t.Fatal("ADD with a missing macvlan master succeeded")
	}
	code := cniCode(err)
	fams = w.textfile(4)

	verbs := fams["nicmux_verbs_total"]
	for verb, want := range map[string]float64{"ADD": 1, "CHECK": 1, "DEL": 1} {
		if v := value(t, verbs, "verb", verb, "result", "ok"); v != want {
			t.Errorf("%s ok: %v, want %v", verb, v, want)
		}
	}
	if v := value(t, verbs, "verb", "ADD", "result", code); v != 1 {
		t.Errorf("ADD %s: %v, want 1", code, v)
	}
	checkBuckets(t, fams["nicmux_verb_duration_seconds"], 2, "verb", "ADD")
	checkBuckets(t, fams["nicmux_verb_duration_seconds"], 1, "verb", "DEL")
	calls := fams["nicmux_delegate_calls_total"]
	for _, c := range []struct {
		plugin, verb string
		n            float64
	}{
		{"bridge", "ADD", 2}, {"bridge", "CHECK", 1}, {"bridge", "DEL", 2}, // DEL: the seed's, and eth0's rollback
		{"macvlan", "ADD", 1}, {"macvlan", "DEL", 2}, {"tuning", "ADD", 1},
		{"recorder", "ADD", 3}, {"recorder", "CHECK", 2}, {"recorder", "DEL", 3}, // the bad ADD's eth0 ran whole
	} {
		if v := value(t, calls, "plugin", c.plugin, "verb", c.verb, "result", "ok"); v != c.n {
			t.Errorf("%s %s ok: %v, want %v", c.plugin, c.verb, v, c.n)
		}
	}
	failed := 0.0
	for _, m := range calls.GetMetric() {
		if label(m, "result") != "ok" {
			failed += m.GetCounter().GetValue()
			if label(m, "plugin") != "macvlan" || label(m, "verb") != "ADD" {
				t.Errorf("a failed call: %v", m)
			}
		}
	}
	if failed != 1 {
		t.Errorf("failed delegate calls: %v, want macvlan's ADD", failed)
	}
	checkBuckets(t, fams["nicmux_delegate_call_duration_seconds"], 2, "plugin", "bridge", "verb", "ADD")
	if v := value(t, fams["nicmux_rollbacks_total"], "result", "ok"); v != 1 {
		t.Errorf("rollbacks ok: %v", v)
	}
	if v := value(t, fams["nicmux_containers"], "state", "live"); v != 0 {
		t.Errorf("live containers after DEL and a rolled back ADD: %v", v)
	}
	if left := w.stateFiles(); len(left) > 0 {
		t.Errorf("state left: %v", left)
	}
	w.sameAsNicmuxMetrics(fams)
}

// sameAsNicmuxMetrics checks that nicmux metrics -json prints the
// textfile's numbers.
func (w *metricsWorld) sameAsNicmuxMetrics(fams map[string]*dto.MetricFamily) {
	w.t.Helper()
	out, err := exec.Command(testworld.NicmuxBin(), "metrics", "-state-dir", w.StateDir, "-json").Output()
	if err != nil {
		w.t.Fatalf("nicmux metrics: %v", err)
	}
	var r struct {
		Families []struct {
			Name   string
			Series []struct {
				Labels map[string]string
				Value  *float64
				Count  *uint64
			}
		}
	}
	if err := json.Unmarshal(out, &r); err != nil {
		w.t.Fatal(err)
	}
	if len(r.Families) != len(fams) {
		w.t.Errorf("nicmux metrics: %d families, the file %d", len(r.Families), len(fams))
	}
	for _, f := range r.Families {
		for _, s := range f.Series {
			var kv []string
			for k, v := range s.Labels {
				kv = append(kv, k, v)
			}
			m := sample(w.t, fams[f.Name], kv...)
			switch {
			case s.Value != nil && m.Counter != nil && *s.Value != m.Counter.GetValue(),
				s.Value != nil && m.Gauge != nil && *s.Value != m.Gauge.GetValue(),
				s.Count != nil && *s.Count != m.Histogram.GetSampleCount():
				w.t.Errorf("%s%v: nicmux metrics and the file differ: %+v / %v", f.Name, s.Labels, s, m)
			}
		}
	}
}

// oneBridgeYAML is one interface on a bridge with host-local: cheap enough
// for 64 containers at once.
const oneBridgeYAML = `interfaces:
  - ifname: eth0
    plugins:
      - type: bridge
        bridge: {{.Bridge}}
        ipam:
          type: host-local
          dataDir: {{.IPAMDir}}
          ranges: [[{subnet: 10.66.0.0/24}]]
`

// Test64ContainersLoseNoIncrement attaches and releases 64 containers at
// once: the counters, folded by 128 processes racing for their lock, add
// up exactly.
func Test64ContainersLoseNoIncrement(t *testing.T) {
	const n = 64
	w := newMetricsWorld(t)
	l := w.list(w.writeYAML("one.yaml", oneBridgeYAML), nil)
	rts := make([]*libcni.RuntimeConf, n)
	for i := range rts {
		rts[i] = rt(fmt.Sprintf("metrics-64-%02d", i), newNS(t))
	}
	each := func(f func(r *libcni.RuntimeConf) error) {
		var wg sync.WaitGroup
		for _, r := range rts {
			wg.Go(func() {
				if err := f(r); err != nil {
					t.Errorf("%s: %v", r.ContainerID, err)
				}
			})
		}
		wg.Wait()
	}
	each(func(r *libcni.RuntimeConf) error { _, err := w.add(l, r); return err })
	if t.Failed() {
		t.FailNow()
	}
	fams := w.textfile(n)
	if v := value(t, fams["nicmux_verbs_total"], "verb", "ADD", "result", "ok"); v != n {
		t.Errorf("ADD ok: %v, want %d", v, n)
	}
	if v := value(t, fams["nicmux_containers"], "state", "live"); v != n {
		t.Errorf("live: %v, want %d", v, n)
	}
	each(func(r *libcni.RuntimeConf) error { return w.del(l, r) })
	fams = w.textfile(2 * n)
	for verb, plugin := range map[string]string{"ADD": "bridge", "DEL": "bridge"} {
		if v := value(t, fams["nicmux_verbs_total"], "verb", verb, "result", "ok"); v != n {
			t.Errorf("%s ok: %v, want %d", verb, v, n)
		}
		if v := value(t, fams["nicmux_delegate_calls_total"], "plugin", plugin, "verb", verb, "result", "ok"); v != n {
			t.Errorf("%s %s ok: %v, want %d", plugin, verb, v, n)
		}
		checkBuckets(t, fams["nicmux_verb_duration_seconds"], n, "verb", verb)
	}
	if v := value(t, fams["nicmux_containers"], "state", "live"); v != 0 {
		t.Errorf("live after every DEL: %v", v)
	}
	if left := w.stateFiles(); len(left) > 0 {
		t.Errorf("state left: %v", left)
	}
}

// TestMetricsProblemsNeverFailAVerb: a metricsFile that cannot be written,
// one a crash left torn, and torn counters never fail a verb, and each
// problem is logged once however many verbs meet it.
func TestMetricsProblemsNeverFailAVerb(t *testing.T) {
	t.Run("unwritable file", func(t *testing.T) {
		w := newMetricsWorld(t)
		// A folder where the file should be: the rename onto it fails.
		if err := os.Mkdir(w.file, 0o755); err != nil {
			t.Fatal(err)
		}
		l := w.list(w.seedless(), nil)
		for i := range 3 {
			r := rt(fmt.Sprintf("unwritable-%d", i), newNS(t))
			w.mustAdd(l, r)
			if err := w.del(l, r); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			time.Sleep(250 * time.Millisecond) // the renderer meets the problem anew
		}
		if n := w.logLines("cannot be written", 1); n != 1 {
			t.Errorf("the problem is logged %d times, want once:\n%s", n, w.Log())
		}
		if n := len(w.LogLines("msg=ok")); n != 6 {
			t.Errorf("%d verbs logged ok, want 6", n)
		}
		out, err := exec.Command(testworld.NicmuxBin(), "metrics", "-state-dir", w.StateDir).Output()
		if err != nil || !strings.Contains(string(out), "problem (render-") || !strings.Contains(string(out), w.file) {
			t.Errorf("nicmux metrics shows no problem (%v):\n%s", err, out)
		}
		// Fixed, it is drawn, and the recovery is logged once.
		if err := os.Remove(w.file); err != nil {
			t.Fatal(err)
		}
		r := rt("unwritable-fixed", newNS(t))
		w.mustAdd(l, r)
		w.textfile(7)
		if n := w.logLines("metrics: recovered", 1); n != 1 {
			t.Errorf("the recovery is logged %d times, want once:\n%s", n, w.Log())
		}
		if err := w.del(l, r); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("torn file", func(t *testing.T) {
		w := newMetricsWorld(t)
		testworld.WriteFile(t, w.file, "nicmux_verbs_total{verb=\"ADD\",resu")
		l := w.list(w.seedless(), nil)
		r := rt("torn-file", newNS(t))
		w.mustAdd(l, r)
		if v := value(t, w.textfile(1)["nicmux_verbs_total"], "verb", "ADD", "result", "ok"); v != 1 {
			t.Errorf("ADD ok: %v", v)
		}
		if err := w.del(l, r); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("torn counters", func(t *testing.T) {
		w := newMetricsWorld(t)
		l := w.list(w.seedless(), nil)
		r := rt("torn-counters", newNS(t))
		w.mustAdd(l, r)
		w.textfile(1)
		counters := filepath.Join(w.StateDir, "metrics", "counters")
		b, err := os.ReadFile(counters)
		if err != nil {
			t.Fatal(err)
		}
		// What a crash can leave after a rename: the data cut short.
		if err := os.WriteFile(counters, b[:len(b)/2], 0o600); err != nil {
			t.Fatal(err)
		}
		if err := w.del(l, r); err != nil {
			t.Fatalf("DEL with torn counters: %v", err)
		}
		r2 := rt("torn-counters-2", newNS(t))
		w.mustAdd(l, r2)
		if err := w.del(l, r2); err != nil {
			t.Fatal(err)
		}
		// Counted again from the DEL that found them torn.
		fams := w.textfile(3)
		if v := value(t, fams["nicmux_verbs_total"], "verb", "DEL", "result", "ok"); v != 2 {
			t.Errorf("DEL ok: %v, want 2", v)
		}
		if n := len(w.LogLines("start again from zero")); n != 1 {
			t.Errorf("the torn counters are logged %d times, want once:\n%s", n, w.Log())
		}
	})
}

// TestMetricsStaleAndGC: an ADD again after the namespace was made anew
// counts a stale release by its reason; nicmux gc counts its run and what
// it released, and counts the containers' gauge again from the whole state
// folder.
func TestMetricsStaleAndGC(t *testing.T) {
	w := newMetricsWorld(t)
	l := w.list(w.writeYAML("one.yaml", oneBridgeYAML), nil)
	conflist := filepath.Join(w.Dir, "multi.conflist")
	testworld.WriteFile(t, conflist, l.Bytes)
	kept, gone := newNS(t), newNS(t)
	w.mustAdd(l, rt("metrics-kept", kept))
	w.mustAdd(l, rt("metrics-gone", gone))
	// Rebuilt at the same path, as Nomad does after a failed CHECK.
	if err := netnsutil.DestroyAt(kept); err != nil {
		t.Fatal(err)
	}
	if err := netnsutil.CreateAt(kept); err != nil {
		t.Fatal(err)
	}
	w.mustAdd(l, rt("metrics-kept", kept))
	fams := w.textfile(3)
	if v := value(t, fams["nicmux_stale_releases_total"], "reason", "rebuild"); v != 1 {
		t.Errorf("stale releases (rebuild): %v", v)
	}
	if v := value(t, fams["nicmux_containers"], "state", "live"); v != 2 {
		t.Errorf("live: %v, want 2", v)
	}
	if err := netnsutil.DestroyAt(gone); err != nil {
		t.Fatal(err)
	}
	if r := w.ops(conflist, "gc"); r.code != 0 {
		t.Fatalf("nicmux gc: %s", r)
	}
	fams = w.textfile(4)
	if v := value(t, fams["nicmux_verbs_total"], "verb", "nicmux gc", "result", "ok"); v != 1 {
		t.Errorf("nicmux gc ok: %v", v)
	}
	for fam, want := range map[string]float64{"nicmux_gc_runs_total": 1, "nicmux_gc_released_total": 1, "nicmux_gc_last_released": 1, "nicmux_gc_failures_total": 0} {
		if v := value(t, fams[fam], "by", "command"); v != want {
			t.Errorf("%s: %v, want %v", fam, v, want)
		}
	}
	if v := value(t, fams["nicmux_gc_last_run_timestamp_seconds"], "by", "command"); time.Since(time.Unix(int64(v), 0)) > time.Minute {
		t.Errorf("last gc run at %v", time.Unix(int64(v), 0))
	}
	for state, want := range map[string]float64{"live": 1, "incomplete": 0, "stuck": 0} {
		if v := value(t, fams["nicmux_containers"], "state", state); v != want {
			t.Errorf("%s after gc: %v, want %v", state, v, want)
		}
	}
	if v := value(t, fams["nicmux_containers_counted_timestamp_seconds"]); time.Since(time.Unix(int64(v), 0)) > time.Minute {
		t.Errorf("containers counted at %v", time.Unix(int64(v), 0))
	}
	if err := w.del(l, rt("metrics-kept", kept)); err != nil {
		t.Fatal(err)
	}
}

// TestMetricsDelegateTimeout: a plugin killed at delegateTimeout counts as
// a timeout and a kill, and its call by its CNI code.
func TestMetricsDelegateTimeout(t *testing.T) {
	w := newMetricsWorld(t)
	yaml := "interfaces:\n  - ifname: eth0\n    plugins:\n      - {type: torture, torture: {verbs: [ADD], action: hang}}\n"
	l := w.list(w.writeYAML("hang.yaml", yaml), map[string]any{"delegateTimeout": "300ms"})
	_, err := w.add(l, rt("metrics-hang", newNS(t)))
	if err == nil {
		t.Fatal("ADD with a hanging plugin succeeded")
	}
	fams := w.textfile(1)
	if v := value(t, fams["nicmux_delegate_timeouts_total"], "plugin", "torture", "verb", "ADD"); v != 1 {
		t.Errorf("timeouts: %v", v)
	}
	if v := value(t, fams["nicmux_delegate_kills_total"], "cause", "timeout"); v != 1 {
		t.Errorf("kills: %v", v)
	}
	if v := value(t, fams["nicmux_delegate_calls_total"], "plugin", "torture", "verb", "ADD", "result", "999"); v != 1 {
		t.Errorf("calls: %v", v)
	}
	if v := value(t, fams["nicmux_verbs_total"], "verb", "ADD", "result", cniCode(err)); v != 1 {
		t.Errorf("ADD %s: %v", cniCode(err), v)
	}
}
