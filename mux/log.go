package mux

import (
	"context"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nicmux/nicmux/conf"
)

// logger returns the verb's logger: to logFile at logLevel when configured,
// else warnings and errors to stderr (stdout carries the CNI result and
// nothing else). The returned func closes the log file.
func (p *Plugin) logger(nc *conf.NetConf) (*slog.Logger, func()) {
	if nc == nil || nc.LogFile == "" {
		h := slog.NewTextHandler(p.stderr(), &slog.HandlerOptions{Level: slog.LevelWarn})
		return slog.New(h).With("plugin", "nicmux"), func() {}
	}
	f, err := os.OpenFile(nc.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		h := slog.NewTextHandler(p.stderr(), &slog.HandlerOptions{Level: slog.LevelWarn})
		l := slog.New(h).With("plugin", "nicmux")
		l.Warn("cannot open log file; logging to stderr", "logFile", nc.LogFile, "error", err)
		return l, func() {}
	}
	h := slog.NewTextHandler(f, &slog.HandlerOptions{Level: level(nc.LogLevel), ReplaceAttr: utc})
	return slog.New(h), func() { _ = f.Close() }
}

// utc logs times in UTC: one log line per run should not cost loading the
// local time zone.
func utc(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey && len(groups) == 0 {
		a.Value = slog.TimeValue(a.Value.Time().UTC())
	}
	return a
}

func level(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// verbLog records one verb's outcome: its duration, each interface's, and
// how much of it passed with at least one delegate process alive (the union
// of the processes' lifetimes, which overlap when chains run in parallel or
// a plugin was started ahead): the rest is nicmux's own time.
type verbLog struct {
	log   *slog.Logger
	verb  string
	id    string
	start time.Time

	mu    sync.Mutex
	steps []any
	spans [][2]time.Time
}

// step records that ifname's chain ran from start until now.
func (v *verbLog) step(ifname string, start time.Time) {
	d := time.Since(start)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.steps = append(v.steps, slog.Duration(ifname, d))
}

// process records that a delegate process was alive from start to end
// (delegate.Runner's Observe).
func (v *verbLog) process(start, end time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.spans = append(v.spans, [2]time.Time{start, end})
}

// delegateTime is the wall time during which at least one delegate process
// was alive.
func (v *verbLog) delegateTime() time.Duration {
	spans := append([][2]time.Time(nil), v.spans...)
	sort.Slice(spans, func(i, j int) bool { return spans[i][0].Before(spans[j][0]) })
	var total time.Duration
	var cur [2]time.Time
	for i, s := range spans {
		switch {
		case i == 0:
			cur = s
		case !s[0].After(cur[1]):
			if s[1].After(cur[1]) {
				cur[1] = s[1]
			}
		default:
			total += cur[1].Sub(cur[0])
			cur = s
		}
	}
	if len(spans) > 0 {
		total += cur[1].Sub(cur[0])
	}
	return total
}

func (v *verbLog) done(err error, attrs ...any) {
	if err == nil && !v.log.Enabled(context.Background(), slog.LevelInfo) {
		return // the line would be dropped: spare reading /proc
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	total := time.Since(v.start)
	delegates := v.delegateTime()
	attrs = append([]any{"verb", v.verb, "containerID", v.id, "duration", total,
		"delegates", delegates, "own", total - delegates}, attrs...)
	attrs = append(attrs, "cpu", processCPU(), "peakRSSKB", peakRSSKB())
	if len(v.steps) > 0 {
		attrs = append(attrs, slog.Group("interfaces", v.steps...))
	}
	if err != nil {
		v.log.Error("failed", append(attrs, "error", err.Error())...)
		return
	}
	v.log.Info("ok", attrs...)
}

// processCPU is nicmux's own CPU time so far (all its threads, none of its
// delegates'), to the nanosecond: getrusage counts in scheduler ticks.
func processCPU() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// peakRSSKB is nicmux's own peak resident memory (VmHWM). getrusage's
// maxrss would not do: Linux carries the larger high-water mark across
// execve, so it reports at least the runtime's size that started nicmux.
func peakRSSKB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb
		}
	}
	return 0
}
