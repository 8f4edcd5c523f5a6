package metrics

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func tally(fn func(t *Tally)) *Tally {
	t := &Tally{}
	fn(t)
	return t
}

func TestFoldAddsUp(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "metrics")
	for i := range 3 {
		_, err := Fold(dir, tally(func(t *Tally) {
			t.Add(Verbs, 1, "ADD", "ok")
			t.Observe(VerbSeconds, 0.03*float64(i+1), "ADD")
			t.Set(Containers, float64(i), "live")
		}))
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Fold(dir, tally(func(t *Tally) { t.Add(Verbs, 1, "DEL", "7") })); err != nil {
		t.Fatal(err)
	}
	s, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Generation != 4 {
		t.Errorf("generation %d, want 4", s.Generation)
	}
	if v := s.Get(Verbs.Name, "ADD", "ok").Value; v != 3 {
		t.Errorf("ADD ok = %v, want 3", v)
	}
	if v := s.Get(Verbs.Name, "DEL", "7").Value; v != 1 {
		t.Errorf("DEL 7 = %v, want 1", v)
	}
	if v := s.Get(Containers.Name, "live").Value; v != 2 {
		t.Errorf("live = %v, want 2 (set, not added)", v)
	}
	h := s.Get(VerbSeconds.Name, "ADD")
	// 0.03 falls in the 0.05 bucket (index 3), 0.06 and 0.09 in 0.1 (4).
	if got := h.Cumulative(); got[2] != 0 || got[3] != 1 || got[4] != 3 || h.Count() != 3 {
		t.Errorf("buckets %v count %d, want 0.05:1 0.1:3 count 3", got, h.Count())
	}
	if h.Sum < 0.1799 || h.Sum > 0.1801 {
		t.Errorf("sum %v, want 0.18", h.Sum)
	}
}

func TestGaugeNeverBelowZero(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "metrics")
	s, err := Fold(dir, tally(func(t *Tally) { t.Add(Containers, -1, "live") }))
	if err != nil {
		t.Fatal(err)
	}
	if v := s.Get(Containers.Name, "live").Value; v != 0 {
		t.Errorf("live = %v, want 0", v)
	}
}

func TestLabelsAreCleaned(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "metrics")
	if _, err := Fold(dir, tally(func(t *Tally) { t.Add(DelegateCalls, 1, "bad\ttype\n", "ADD", "ok") })); err != nil {
		t.Fatal(err)
	}
	s, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Get(DelegateCalls.Name, "bad_type_", "ADD", "ok") == nil {
		t.Errorf("series %v: the label's control characters are not replaced", s.Series[0].Labels)
	}
}

// A torn counters file (a crash while it was rewritten in place, or
// before the data was on disk) is read as torn, and the next fold starts again from zero with
// its own figures.
func TestTornCountersStartAgain(t *testing.T) {
	for name, damage := range map[string]func([]byte) []byte{
		"cut":     func(b []byte) []byte { return b[:len(b)-5] },
		"zeroes":  func(b []byte) []byte { return make([]byte, len(b)) },
		"flipped": func(b []byte) []byte { b[len(b)-3] ^= 1; return b },
		"garbage": func([]byte) []byte { return []byte("not the counters") },
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "metrics")
			if _, err := Fold(dir, tally(func(t *Tally) { t.Add(Verbs, 5, "ADD", "ok") })); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, countersFile)
			b, _ := os.ReadFile(path)
			if err := os.WriteFile(path, damage(b), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Read(dir); err == nil {
				t.Fatal("Read: no error for a torn file")
			}
			s, err := Fold(dir, tally(func(t *Tally) { t.Add(Verbs, 1, "ADD", "ok") }))
			if _, torn := err.(*TornError); !torn {
				t.Fatalf("Fold: %v, want a *TornError", err)
			}
			if v := s.Get(Verbs.Name, "ADD", "ok").Value; v != 1 {
				t.Errorf("after the reset ADD ok = %v, want 1", v)
			}
			if s, err := Read(dir); err != nil || s.Get(Verbs.Name, "ADD", "ok").Value != 1 {
				t.Errorf("Read after the reset: %v", err)
			}
		})
	}
}

// Folds from many goroutines, each with its own open file and so its own
// lock, lose no increment.
func TestConcurrentFoldsLoseNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "metrics")
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for range 5 {
				if _, err := Fold(dir, tally(func(t *Tally) { t.Add(Verbs, 1, "ADD", "ok") })); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	s, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if v := s.Get(Verbs.Name, "ADD", "ok").Value; v != 320 || s.Generation != 320 {
		t.Errorf("ADD ok = %v, generation %d, want 320", v, s.Generation)
	}
}

func TestSymlinkedFolderRefused(t *testing.T) {
	base := t.TempDir()
	if err := os.Mkdir(filepath.Join(base, "elsewhere"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(base, "elsewhere"), filepath.Join(base, "metrics")); err != nil {
		t.Fatal(err)
	}
	if _, err := Fold(filepath.Join(base, "metrics"), tally(func(t *Tally) { t.Add(Verbs, 1, "ADD", "ok") })); err == nil {
		t.Fatal("Fold followed a symbolic link")
	}
	if entries, _ := os.ReadDir(filepath.Join(base, "elsewhere")); len(entries) > 0 {
		t.Errorf("files written through the link: %v", entries)
	}
}

// A problem is logged by the first run that meets it, and its end once.
func TestReportLogsOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "metrics")
	d, err := openFolder(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	problem := os.ErrPermission
	for range 3 {
		d.report(log, "k", "the textfile cannot be written", problem)
	}
	d.report(log, "k", "", nil)
	d.report(log, "k", "", nil)
	if n := strings.Count(buf.String(), "cannot be written"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, buf.String())
	}
	if n := strings.Count(buf.String(), "recovered"); n != 1 {
		t.Errorf("recovery logged %d times, want once:\n%s", n, buf.String())
	}
}

// The plugins must not link the Prometheus library: its package
// initialisation would lengthen every start (see the package's doc).
func TestPluginsDoNotLinkPrometheus(t *testing.T) {
	for _, cmd := range []string{"nicmux", "nicmux-ipamd"} {
		out, err := exec.Command("go", "list", "-deps", "github.com/nicmux/nicmux/cmd/"+cmd).CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "github.com/nicmux/nicmux/metrics") {
			t.Errorf("cmd/%s does not link package metrics", cmd)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, "github.com/prometheus/") || strings.HasPrefix(dep, "github.com/nicmux/nicmux/metrics/textfile") ||
				cmd == "nicmux" && strings.HasPrefix(dep, "google.golang.org/protobuf") {
				t.Errorf("cmd/%s depends on %s", cmd, dep)
			}
		}
	}
}

// An empty counters file (a crash between its creation and its first
// write) holds nothing yet: no error.
func TestEmptyCountersHoldNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "metrics")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, countersFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Fold(dir, tally(func(t *Tally) { t.Add(Verbs, 1, "ADD", "ok") }))
	if err != nil || s.Get(Verbs.Name, "ADD", "ok").Value != 1 {
		t.Fatalf("Fold: %v, %v", s, err)
	}
}
