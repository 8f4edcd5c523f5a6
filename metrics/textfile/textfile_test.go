package textfile

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nicmux/nicmux/metrics"
)

// parse reads a text file as node_exporter's textfile collector does.
func parse(t *testing.T, b []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	return fams
}

func TestWriteParses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "metrics")
	tally := &metrics.Tally{}
	tally.Add(metrics.Verbs, 2, "ADD", "ok")
	tally.Add(metrics.Verbs, 1, "ADD", "7")
	tally.Observe(metrics.VerbSeconds, 0.02, "ADD")
	tally.Observe(metrics.VerbSeconds, 70, "ADD")
	tally.Set(metrics.Containers, 3, "live")
	tally.Add(metrics.DelegateCalls, 1, `we"ird\type`, "ADD", "ok")
	snap, err := metrics.Fold(dir, tally)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "nicmux.prom")
	if err := os.WriteFile(path, []byte("torn garbage {{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(snap, path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fams := parse(t, b)
	verbs := fams["nicmux_verbs_total"]
	if verbs.GetType() != dto.MetricType_COUNTER || len(verbs.Metric) != 2 || verbs.GetHelp() != metrics.Verbs.Help {
		t.Fatalf("nicmux_verbs_total: %v", verbs)
	}
	// Sorted by label values: "7" before "ok".
	if m := verbs.Metric[0]; m.Label[0].GetValue() != "ADD" || m.Label[1].GetValue() != "7" || m.Counter.GetValue() != 1 {
		t.Errorf("first series %v", m)
	}
	h := fams["nicmux_verb_duration_seconds"].Metric[0].Histogram
	if h.GetSampleCount() != 2 || h.GetSampleSum() != 70.02 {
		t.Errorf("histogram count %d sum %v", h.GetSampleCount(), h.GetSampleSum())
	}
	for _, b := range h.Bucket {
		want := uint64(1) // 0.02 is in every bucket from 0.025 on, 70 in none but +Inf
		if b.GetUpperBound() < 0.025 {
			want = 0
		}
		if b.GetUpperBound() > 60 {
			want = 2
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	if g := fams["nicmux_containers"]; g.GetType() != dto.MetricType_GAUGE || g.Metric[0].Gauge.GetValue() != 3 {
		t.Errorf("nicmux_containers: %v", g)
	}
	if l := fams["nicmux_delegate_calls_total"].Metric[0].Label[0].GetValue(); l != `we"ird\type` {
		t.Errorf("plugin label %q", l)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
