package delegate

import (
	"context"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nicmux/nicmux/delegate/delegatetest"
)

// startLog is the fake runner with Starter: it logs when each plugin is
// started, fed and aborted.
type startLog struct {
	*delegatetest.Exec
	mu     sync.Mutex
	events []string
}

func (s *startLog) log(e string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, e)
}

func (s *startLog) StartPlugin(_ context.Context, path string, environ []string) (Started, error) {
	s.log("start " + filepath.Base(path))
	return &fakeStarted{s: s, path: path, environ: environ}, nil
}

type fakeStarted struct {
	s       *startLog
	path    string
	environ []string
}

func (f *fakeStarted) Feed(ctx context.Context, stdin []byte) ([]byte, error) {
	f.s.log("feed " + filepath.Base(f.path))
	return f.s.ExecPlugin(ctx, f.path, stdin, f.environ)
}

func (f *fakeStarted) Abort() { f.s.log("abort " + filepath.Base(f.path)) }

// split returns the plugins started (sorted), fed (in order) and aborted
// (sorted).
func (s *startLog) split() (started, fed, aborted []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.events {
		what, name, _ := strings.Cut(e, " ")
		switch what {
		case "start":
			started = append(started, name)
		case "feed":
			fed = append(fed, name)
		case "abort":
			aborted = append(aborted, name)
		}
	}
	sort.Strings(started)
	sort.Strings(aborted)
	return started, fed, aborted
}

func TestPrestart(t *testing.T) {
	three := func(*testing.T) []string { return []string{`{"type":"a"}`, `{"type":"b"}`, `{"type":"c"}`} }
	for _, tc := range []struct {
		name    string
		verb    string
		failOn  string
		fed     []string
		aborted []string
	}{
		{"ADD", "ADD", "", []string{"a", "b", "c"}, nil},
		// A failure stops the chain: the plugin started after it never gets
		// its configuration.
		{"ADD failing", "ADD", "b", []string{"a", "b"}, []string{"c"}},
		{"CHECK failing", "CHECK", "a", []string{"a"}, []string{"b"}},
		// DEL runs last first and goes on past a failure.
		{"DEL failing", "DEL", "b", []string{"c", "b", "a"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &startLog{Exec: delegatetest.New()}
			if tc.failOn != "" {
				f.FailOn(tc.failOn, tc.verb, "*", 11)
			}
			c := chainOf(t, "eth1", "n", "1.0.0", three(t)...)
			prev := testResult("10.0.1.2")
			r := &Runner{Exec: f, AheadLimit: 8}
			_, err := r.Start(context.Background(), tc.verb, c, env("/x")).Run(prev)
			if (err != nil) != (tc.failOn != "") {
				t.Errorf("Run: %v", err)
			}
			started, fed, aborted := f.split()
			if !reflect.DeepEqual(fed, tc.fed) || !reflect.DeepEqual(aborted, tc.aborted) {
				t.Errorf("fed %v and aborted %v, want %v and %v (events %v)", fed, aborted, tc.fed, tc.aborted, f.events)
			}
			// Every plugin was started ahead, and every one started was fed
			// or aborted.
			settled := append(append([]string(nil), fed...), aborted...)
			sort.Strings(settled)
			if !reflect.DeepEqual(started, settled) {
				t.Errorf("started %v, settled %v", started, settled)
			}
			if n := r.live.Load(); n != 0 {
				t.Errorf("%d processes still counted alive", n)
			}
		})
	}

	t.Run("Abort before Run", func(t *testing.T) {
		f := &startLog{Exec: delegatetest.New()}
		call := (&Runner{Exec: f, AheadLimit: 8}).Start(context.Background(), "ADD", chainOf(t, "eth1", "n", "1.0.0", three(t)...), env("/x"))
		call.Abort()
		call.Abort()
		var nilCall *Call
		nilCall.Abort()
		if want := []string{"start a", "abort a"}; !reflect.DeepEqual(f.events, want) {
			t.Errorf("events = %v, want %v", f.events, want)
		}
		if calls := f.Calls(); len(calls) != 0 {
			t.Errorf("an aborted call ran %v", delegatetest.Summary(calls))
		}
	})
	t.Run("Abort after Run", func(t *testing.T) {
		f := &startLog{Exec: delegatetest.New()}
		call := (&Runner{Exec: f, AheadLimit: 8}).Start(context.Background(), "ADD", chainOf(t, "eth1", "n", "1.0.0", `{"type":"a"}`), env("/x"))
		if _, err := call.Run(nil); err != nil {
			t.Fatal(err)
		}
		call.Abort()
		if want := []string{"start a", "feed a"}; !reflect.DeepEqual(f.events, want) {
			t.Errorf("events = %v, want %v", f.events, want)
		}
	})
	// With no more than AheadLimit processes alive, a plugin is started
	// when it is due; every process's lifetime is observed once.
	t.Run("AheadLimit", func(t *testing.T) {
		f := &startLog{Exec: delegatetest.New()}
		var observed int
		r := &Runner{Exec: f, AheadLimit: 1, Observe: func(start, end time.Time) {
			if end.Before(start) {
				t.Errorf("observed %v to %v", start, end)
			}
			observed++
		}}
		if _, err := r.Add(context.Background(), chainOf(t, "eth1", "n", "1.0.0", three(t)...), env("/x")); err != nil {
			t.Fatal(err)
		}
		if want := []string{"start a", "feed a", "start c", "feed c"}; !reflect.DeepEqual(f.events, want) {
			t.Errorf("events = %v, want %v (b started when due, a still alive when it could have been started ahead)", f.events, want)
		}
		if want := []string{"ADD a/eth1", "ADD b/eth1", "ADD c/eth1"}; !reflect.DeepEqual(delegatetest.Summary(f.Calls()), want) {
			t.Errorf("calls = %v, want %v", delegatetest.Summary(f.Calls()), want)
		}
		if observed != 3 {
			t.Errorf("observed %d processes, want 3", observed)
		}
		if n := r.live.Load(); n != 0 {
			t.Errorf("%d processes still counted alive", n)
		}
	})
	t.Run("NoPrestart", func(t *testing.T) {
		f := &startLog{Exec: delegatetest.New()}
		if _, err := (&Runner{Exec: f, NoPrestart: true}).Add(context.Background(), chainOf(t, "eth1", "n", "1.0.0", three(t)...), env("/x")); err != nil {
			t.Fatal(err)
		}
		if len(f.events) != 0 {
			t.Errorf("events = %v, want none", f.events)
		}
		if want := []string{"ADD a/eth1", "ADD b/eth1", "ADD c/eth1"}; !reflect.DeepEqual(delegatetest.Summary(f.Calls()), want) {
			t.Errorf("calls = %v, want %v", delegatetest.Summary(f.Calls()), want)
		}
	})
}
