package mux

import (
	"path/filepath"
	"strconv"
	"time"

	"github.com/nicmux/nicmux/metrics"
)

// finish ends the verb: it records its figures, closes the store and
// writes the verb's log line.
func (v *invocation) finish(err error) {
	v.record(err)
	v.store.Close()
	v.out.write(err)
	v.closeLog()
}

// record folds the verb's figures into the node's counters and has the
// metricsFile drawn again; it never fails the verb.
func (v *invocation) record(err error) {
	f := v.out.fig
	if f == nil {
		return
	}
	took := time.Since(v.out.start)
	result := "ok"
	if err != nil {
		result = strconv.FormatUint(uint64(codeOf(err)), 10)
	}
	f.tally.Add(metrics.Verbs, 1, v.out.verb, result)
	f.tally.Observe(metrics.VerbSeconds, took.Seconds(), v.out.verb)
	if v.out.verb == "ADD" && err != nil && len(v.out.nics) > 0 {
		rollback := "ok"
		if v.out.rollback != nil {
			rollback = "failed"
		}
		f.tally.Add(metrics.Rollbacks, 1, rollback)
	}
	v.containers(err)
	metrics.Textfile{Counters: filepath.Join(v.nc.StateDir, "metrics"), File: v.nc.MetricsFile, LogFile: v.nc.LogFile}.
		Record(&f.tally, v.log)
}

// containers moves nicmux_containers: counted again after a GC, else by
// the transition of an ADD's or DEL's container from the state it read to
// the state it left, told by the outcome and one look at the folder (see
// docs/operations.md).
func (v *invocation) containers(err error) {
	f := v.out.fig
	if v.store == nil {
		return
	}
	if f.recount {
		v.recount()
		return
	}
	if !f.known || v.out.verb != "ADD" && v.out.verb != "DEL" {
		return
	}
	after := ""
	switch {
	case err == nil && v.out.verb == "ADD":
		after = containerLive
	case err != nil && codeOf(err) == errAlreadyAttached:
		after = f.before
	case err != nil && v.store.Has(v.args.ContainerID):
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

// recount counts the containers of the state folder by state.
func (v *invocation) recount() {
	ids, err := v.store.Containers()
	if err != nil {
		return
	}
	n := map[string]float64{}
	for _, id := range ids {
		n[containerState(v.store.Load(id))]++
	}
	for _, s := range []string{containerLive, containerIncomplete, containerStuck} {
		v.out.fig.tally.Set(metrics.Containers, n[s], s)
	}
	v.out.fig.tally.Set(metrics.ContainersCounted, float64(time.Now().Unix()))
}
