package metrics

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"
)

// seedTally is what one ADD of the seed job tells: the verb, five
// delegate calls and their times.
func seedTally() *Tally {
	t := &Tally{}
	t.Add(Verbs, 1, "ADD", "ok")
	t.Observe(VerbSeconds, 0.05, "ADD")
	for _, p := range []string{"bridge", "recorder", "macvlan", "tuning", "recorder"} {
		t.Add(DelegateCalls, 1, p, "ADD", "ok")
		t.Observe(DelegateSeconds, 0.01, p, "ADD")
	}
	t.Add(Containers, 1, "live")
	return t
}

// BenchmarkFold is one verb's fold into counters that already hold a busy
// node's series: every verb and plugin of the seed job, by result.
func BenchmarkFold(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "metrics")
	warm := &Tally{}
	for _, v := range []string{"ADD", "CHECK", "DEL", "GC", "STATUS"} {
		for _, r := range []string{"ok", "7", "11", "999"} {
			warm.Add(Verbs, 1, v, r)
		}
		warm.Observe(VerbSeconds, 0.05, v)
		for _, p := range []string{"bridge", "recorder", "macvlan", "tuning", "portmap", "loopback"} {
			warm.Add(DelegateCalls, 1, p, v, "ok")
			warm.Observe(DelegateSeconds, 0.01, p, v)
		}
	}
	if _, err := Fold(dir, warm); err != nil {
		b.Fatal(err)
	}
	t := seedTally()
	b.ResetTimer()
	for b.Loop() {
		if _, err := Fold(dir, t); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRecord is what a verb pays with metricsFile set: the fold, the
// problem notes' reads and the look at the render lock, with a renderer
// at work (holding the lock), or none, so that one is started (here
// /bin/true, which ends at once).
func BenchmarkRecord(b *testing.B) {
	for _, rendering := range []bool{true, false} {
		name := "renderer-at-work"
		if !rendering {
			name = "renderer-started"
		}
		b.Run(name, func(b *testing.B) {
			p := Textfile{Counters: filepath.Join(b.TempDir(), "metrics"), File: "/nonexistent/x.prom", Renderer: "/bin/true"}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			p.Record(seedTally(), log)
			if rendering {
				d, err := openFolder(p.Counters, false)
				if err != nil {
					b.Fatal(err)
				}
				lock, _ := p.names()
				unlock, err := d.lock(lock, 0)
				if err != nil {
					b.Fatal(err)
				}
				defer unlock()
			}
			t := seedTally()
			b.ResetTimer()
			for b.Loop() {
				p.Record(t, log)
			}
		})
	}
}
