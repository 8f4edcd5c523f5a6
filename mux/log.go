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
	"github.com/nicmux/nicmux/delegate"
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

// verbLog records one verb's outcome for its log line: the container, its
// namespace, the attachment set and file, the CNI code, each interface's
// outcome and duration, the rollback's, and how much of the verb passed with
// at least one delegate process alive (the union of the processes'
// lifetimes, which overlap when chains run in parallel or a plugin was
// started ahead): the rest is nicmux's own time. With logLevel debug, every
// delegate call gets a line of its own.
type verbLog struct {
	log   *slog.Logger
	verb  string
	id    string
	netns string
	start time.Time

	// Set by the verb as it learns them.
	file, set string
	atts      []*attachment
	rollback  error

	mu     sync.Mutex
	spans  [][2]time.Time
	phases []phase
	// The first delegate fed and the last one done.
	firstFed, lastDone time.Time
}

// phase is a point of the verb: its name and when, from the start.
type phase struct {
	name string
	at   time.Duration
}

// mark records that the verb reached the named phase now. The phases go
// into the verb's log line, measured from the process's start, with the
// start itself on the monotonic clock every process shares (CLOCK_MONOTONIC,
// "mono"), so that a driver that execs nicmux can place them on its own
// time line (test/bench does).
func (v *verbLog) mark(name string) {
	d := time.Since(v.start)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.phases = append(v.phases, phase{name, d})
}

// phaseAttr words the phases, the delegates' first input and last end
// among them: "parsed=0.41 locked=0.52 ..." (ms from the start).
func (v *verbLog) phaseAttr() string {
	phases := append([]phase(nil), v.phases...)
	if !v.firstFed.IsZero() {
		phases = append(phases, phase{"fed", v.firstFed.Sub(v.start)}, phase{"done", v.lastDone.Sub(v.start)})
	}
	sort.SliceStable(phases, func(i, j int) bool { return phases[i].at < phases[j].at })
	var b strings.Builder
	for i, p := range phases {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(p.name)
		b.WriteByte('=')
		b.WriteString(strconv.FormatFloat(float64(p.at.Microseconds())/1000, 'f', 2, 64))
	}
	return b.String()
}

// monoStart is the verb's start on CLOCK_MONOTONIC, in nanoseconds.
func (v *verbLog) monoStart() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return 0
	}
	return ts.Nano() - int64(time.Since(v.start))
}

// call is the delegate runner's Observe: one plugin call ended.
func (v *verbLog) call(s delegate.Span) {
	v.mu.Lock()
	if !s.Started.IsZero() {
		v.spans = append(v.spans, [2]time.Time{s.Started, s.Done})
	}
	if !s.Fed.IsZero() && (v.firstFed.IsZero() || s.Fed.Before(v.firstFed)) {
		v.firstFed = s.Fed
	}
	if s.Done.After(v.lastDone) {
		v.lastDone = s.Done
	}
	v.mu.Unlock()
	if !v.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	attrs := []any{"verb", s.Verb, "containerID", v.id, "interface", s.IfName, "plugin", s.Plugin}
	if !s.Fed.IsZero() {
		attrs = append(attrs, "duration", s.Done.Sub(s.Fed), "startedAhead", s.Fed.Sub(s.Started))
	}
	if s.Err != nil {
		v.log.Debug("delegate failed", append(attrs, "error", s.Err.Error())...)
		return
	}
	v.log.Debug("delegate", attrs...)
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

// outcomes words each interface's outcome: "ok 12ms", "failed", "not run".
func (v *verbLog) outcomes() []any {
	var out []any
	for _, a := range v.atts {
		word := "ok"
		switch {
		case a.err != nil:
			word = "failed"
		case a.took == 0:
			word = "not run"
		}
		if a.took > 0 {
			word += " " + a.took.Round(10*time.Microsecond).String()
		}
		out = append(out, slog.String(a.ifname, word))
	}
	return out
}

func (v *verbLog) done(err error) {
	if err == nil && !v.log.Enabled(context.Background(), slog.LevelInfo) {
		return // the line would be dropped: spare reading /proc
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	total := time.Since(v.start)
	delegates := v.delegateTime()
	attrs := []any{"verb", v.verb, "containerID", v.id}
	if v.netns != "" {
		attrs = append(attrs, "netns", v.netns)
	}
	if v.file != "" {
		attrs = append(attrs, "file", v.file)
	}
	if v.set != "" {
		attrs = append(attrs, "set", v.set)
	}
	attrs = append(attrs, "duration", total, "delegates", delegates, "own", total-delegates,
		"cpu", processCPU(), "peakRSSKB", peakRSSKB(), "mono", v.monoStart(), "phases", v.phaseAttr())
	if o := v.outcomes(); len(o) > 0 {
		attrs = append(attrs, slog.Group("interfaces", o...))
	}
	if err != nil {
		attrs = append(attrs, "code", CodeOf(err))
		if v.rollback != nil {
			attrs = append(attrs, "rollback", "failed: "+v.rollback.Error())
		} else if v.verb == "ADD" && len(v.atts) > 0 {
			attrs = append(attrs, "rollback", "ok")
		}
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
