package mux

import (
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/delegate"
	"github.com/nicmux/nicmux/metrics"
	"github.com/nicmux/nicmux/state"
)

// figures is what a verb tells the node's metrics (the entry's
// metricsFile): nil when the entry sets none, and every method of a nil
// figures does nothing. The verb's outcome, the delegate runner's calls,
// the records it reads, the stale releases, GC's collection and the fence
// tell it; the verb's end folds it into the counters (invocation.record).
type figures struct {
	tally metrics.Tally
	// before is the state of the verb's own container when the verb read
	// its record ("" for none); known says it was read.
	before string
	known  bool
	// recount: a GC went through the whole state folder; the containers'
	// gauges are counted again.
	recount bool
}

func newFigures(nc *conf.NetConf) *figures {
	if nc.MetricsFile == "" {
		return nil
	}
	return &figures{}
}

// The states of nicmux_containers.
const (
	containerLive       = "live"
	containerIncomplete = "incomplete"
	containerStuck      = "stuck"
)

// containerState is the state a record puts its container in, "" for
// none: stuck when a release left it part-way or it cannot be read.
func containerState(rec *state.Record) string {
	switch rec.Status {
	case state.Missing, state.Empty:
		return ""
	case state.Whole:
		for _, it := range rec.Interfaces {
			if it.Released {
				return containerStuck
			}
		}
		if rec.Complete {
			return containerLive
		}
		return containerIncomplete
	}
	return containerStuck
}

// call is the delegate runner's Observe: one plugin call ended.
func (f *figures) call(s delegate.Span) {
	if f == nil {
		return
	}
	result := "ok"
	if s.Err != nil {
		result = strconv.FormatUint(uint64(codeOf(s.Err)), 10)
	}
	f.tally.Add(metrics.DelegateCalls, 1, s.Plugin, s.Verb, result)
	f.tally.Observe(metrics.DelegateSeconds, s.Took.Seconds(), s.Plugin, s.Verb)
	switch killed, timeout := delegate.Killed(s.Err); {
	case timeout:
		f.tally.Add(metrics.DelegateTimeouts, 1, s.Plugin, s.Verb)
		f.tally.Add(metrics.DelegateKills, 1, "timeout")
	case killed:
		f.tally.Add(metrics.DelegateKills, 1, "deadline")
	}
}

// found is told of every record the verb reads: one that cannot be read
// is counted, and the verb's own container's state is kept for the
// transition its end makes.
func (f *figures) found(verb, id string, rec *state.Record) {
	if f == nil {
		return
	}
	switch rec.Status {
	case state.Missing, state.Empty, state.Whole:
	default:
		f.tally.Add(metrics.Unreadable, 1, verb)
	}
	if rec.ContainerID == id && !f.known {
		f.before, f.known = containerState(rec), true
	}
}

// stale is told of a stale attachment an ADD releases; same tells whether
// its namespace is the one it records.
func (f *figures) stale(rec *state.Record, same bool) {
	if f == nil {
		return
	}
	reason := "incomplete"
	switch {
	case rec.Err != nil:
		reason = "unreadable"
	case !same && rec.Plan != nil && rec.Plan.Created.Before(bootTime()):
		reason = "reboot"
	case !same:
		reason = "rebuild"
	case rec.Complete:
		reason = "gone"
	}
	f.tally.Add(metrics.StaleReleases, 1, reason)
}

// bootTime is when the host booted, to the second; zero when unknown.
func bootTime() time.Time {
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil {
		return time.Time{}
	}
	return time.Now().Add(-time.Duration(si.Uptime+1) * time.Second)
}

// fenced is told how many process groups of a killed nicmux the fence
// killed.
func (f *figures) fenced(n int) {
	if f != nil && n > 0 {
		f.tally.Add(metrics.DelegateKills, float64(n), "fence")
	}
}

// collected is told what a collection (the GC verb, nicmux gc) released
// and failed to release.
func (f *figures) collected(verb string, released, failed int, dryRun bool) {
	if f == nil || dryRun {
		return
	}
	by := "command"
	if verb == "GC" {
		by = "verb"
	}
	f.tally.Add(metrics.GCRuns, 1, by)
	f.tally.Add(metrics.GCReleased, float64(released), by)
	f.tally.Add(metrics.GCFailed, float64(failed), by)
	f.tally.Set(metrics.GCLastReleased, float64(released), by)
	f.tally.Set(metrics.GCLastRun, float64(time.Now().Unix()), by)
	f.recount = true
}

// containers moves nicmux_containers: counted again after a GC, else by
// the transition of an ADD's or DEL's container from the state it read to
// the state it left, told by the outcome and one look at the folder (see
// docs/operations.md).
func (f *figures) containers(store *state.Store, verb, id string, err error) {
	if f.recount {
		f.countAll(store)
		return
	}
	if !f.known || verb != "ADD" && verb != "DEL" {
		return
	}
	after := ""
	switch {
	case err == nil && verb == "ADD":
		after = containerLive
	case err != nil && codeOf(err) == errAlreadyAttached:
		after = f.before
	case err != nil && store.Has(id):
		after = containerStuck
	}
	if after == f.before {
		return
	}
	if f.before != "" {
		f.tally.Add(metrics.Containers, -1, f.before)
	}
	if after != "" {
		f.tally.Add(metrics.Containers, 1, after)
	}
}

// countAll counts the containers of the state folder by state.
func (f *figures) countAll(store *state.Store) {
	ids, err := store.Containers()
	if err != nil {
		return
	}
	n := map[string]float64{}
	for _, id := range ids {
		n[containerState(store.Load(id))]++
	}
	for _, s := range []string{containerLive, containerIncomplete, containerStuck} {
		f.tally.Set(metrics.Containers, n[s], s)
	}
	f.tally.Set(metrics.ContainersCounted, float64(time.Now().Unix()))
}
