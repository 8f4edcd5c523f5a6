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
	if v.store != nil {
		f.containers(v.store, v.out.verb, v.args.ContainerID, err)
	}
	metrics.Textfile{Counters: filepath.Join(v.nc.StateDir, "metrics"), File: v.nc.MetricsFile, LogFile: v.nc.LogFile}.
		Record(&f.tally, v.log)
}
