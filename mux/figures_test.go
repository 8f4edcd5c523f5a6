package mux

import (
	"testing"
	"time"

	"github.com/nicmux/nicmux/metrics"
	"github.com/nicmux/nicmux/state"
)

func TestContainerState(t *testing.T) {
	whole := func(complete, released bool) *state.Record {
		return &state.Record{Status: state.Whole, Complete: complete,
			Interfaces: []*state.Interface{{Released: released}, {}}}
	}
	for want, rec := range map[string]*state.Record{
		"":           {Status: state.Missing},
		"live":       whole(true, false),
		"incomplete": whole(false, false),
		"stuck":      whole(true, true),
	} {
		if got := containerState(rec); got != want {
			t.Errorf("%v: %q, want %q", rec.Status, got, want)
		}
	}
	for _, st := range []state.Status{state.PlanLost, state.Unreadable, state.Unsafe, state.Failed} {
		if got := containerState(&state.Record{Status: st}); got != containerStuck {
			t.Errorf("%v: %q, want stuck", st, got)
		}
	}
}

func TestStaleReasons(t *testing.T) {
	plan := func(created time.Time) *state.Plan { return &state.Plan{Created: created} }
	now, longAgo := time.Now(), time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		rec  *state.Record
		same bool
		want string
	}{
		{&state.Record{Plan: plan(now)}, false, "rebuild"},
		{&state.Record{Plan: plan(longAgo)}, false, "reboot"}, // recorded before this boot
		{&state.Record{Plan: plan(now), Complete: true}, true, "gone"},
		{&state.Record{Plan: plan(now)}, true, "incomplete"},
		{&state.Record{Err: state.ErrNotFound}, false, "unreadable"},
	} {
		f := &figures{}
		f.stale(c.rec, c.same)
		s, err := metrics.Fold(t.TempDir()+"/m", &f.tally)
		if err != nil {
			t.Fatal(err)
		}
		if sr := s.Get(metrics.StaleReleases.Name, c.want); sr == nil || sr.Value != 1 {
			t.Errorf("%+v, same %v: %v, want reason %s", c.rec, c.same, s.Series, c.want)
		}
	}
	var none *figures // without metricsFile every hook does nothing
	none.stale(&state.Record{}, true)
	none.fenced(3)
}
