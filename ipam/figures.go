package ipam

import (
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nicmux/nicmux/metrics"
)

// countersDir is the counters folder in the data folder: its name starts
// with a dot, which no pool's does.
const countersDir = ".metrics"

// record folds a verb's figures into the node's counters and has the
// metricsFile drawn again (see package metrics); it never fails the verb.
// Problems go to stderr, which the runtime logs.
func (c *call) record(verb string, err error, took time.Duration) {
	if c.cfg.MetricsFile == "" {
		return
	}
	pool := c.cfg.Pool.Name
	t := &metrics.Tally{}
	result := "ok"
	if err != nil {
		result = strconv.FormatUint(uint64(codeOf(err)), 10)
	}
	t.Add(metrics.IPAMVerbs, 1, pool, verb, result)
	t.Observe(metrics.IPAMVerbSeconds, took.Seconds(), pool, verb)
	t.Add(metrics.EtcdErrors, float64(c.unanswered), pool)
	if qs, qerr := c.rec.Queued(); qerr == nil {
		t.Set(metrics.QueuedReleases, float64(len(qs)), pool)
	}
	if c.used >= 0 {
		size := c.cfg.Pool.size()
		t.Set(metrics.PoolSize, size, pool)
		t.Set(metrics.PoolUsed, float64(c.used), pool)
		t.Set(metrics.PoolFree, max(size-float64(c.used), 0), pool)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("plugin", "nicmux-ipam")
	metrics.Textfile{Counters: filepath.Join(c.cfg.DataDir, countersDir), File: c.cfg.MetricsFile}.Record(t, log)
}

// size is how many addresses the pool's range sets hold, as a float: an
// IPv6 set may hold more than 2^64.
func (p *pool) size() float64 {
	var n float64
	for _, s := range p.Sets {
		x := s.size()
		n += float64(x.hi)*math.Pow(2, 64) + float64(x.lo)
	}
	return n
}
