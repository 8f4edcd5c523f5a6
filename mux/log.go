package mux

import (
	"context"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/nicmux/nicmux/conf"
	"github.com/nicmux/nicmux/delegate"
)

// newLogger returns a verb's logger: to logFile at logLevel when
// configured, else warnings and errors to stderr (stdout carries the CNI
// result and nothing else). The returned func closes the log file.
func newLogger(stderr io.Writer, nc *conf.NetConf) (*slog.Logger, func()) {
	if nc == nil || nc.LogFile == "" {
		h := slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})
		return slog.New(h).With("plugin", "nicmux"), func() {}
	}
	f, err := os.OpenFile(nc.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		h := slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})
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

// outcome is what a verb's one log line says: the container, its
// namespace, the attachment file and set, how long the verb took, each
// interface's outcome and duration, and when it failed, the CNI code and
// the rollback's outcome. With logLevel debug, every delegate call gets a
// line of its own.
type outcome struct {
	log   *slog.Logger
	verb  string
	id    string
	netns string
	start time.Time

	// Set by the verb as it learns them.
	file, set string
	nics      []*nic
	rollback  error
	fig       *figures // nil without metricsFile
}

// delegate is the delegate runner's Observe: one plugin call ended.
func (o *outcome) delegate(s delegate.Span) {
	o.fig.call(s)
	if !o.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	attrs := []any{"verb", s.Verb, "containerID", o.id, "interface", s.IfName, "plugin", s.Plugin, "duration", s.Took}
	if s.Err != nil {
		o.log.Debug("delegate failed", append(attrs, "error", s.Err.Error())...)
		return
	}
	o.log.Debug("delegate", attrs...)
}

// interfaces words each interface's outcome: "ok 12ms", "failed",
// "not run".
func (o *outcome) interfaces() []any {
	var out []any
	for _, a := range o.nics {
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

// write logs the verb's line: "ok" at info level, "failed" at error level.
func (o *outcome) write(err error) {
	attrs := []any{"verb", o.verb, "containerID", o.id}
	if o.netns != "" {
		attrs = append(attrs, "netns", o.netns)
	}
	if o.file != "" {
		attrs = append(attrs, "file", o.file)
	}
	if o.set != "" {
		attrs = append(attrs, "set", o.set)
	}
	attrs = append(attrs, "duration", time.Since(o.start))
	if ifs := o.interfaces(); len(ifs) > 0 {
		attrs = append(attrs, slog.Group("interfaces", ifs...))
	}
	if err == nil {
		o.log.Info("ok", attrs...)
		return
	}
	attrs = append(attrs, "code", codeOf(err))
	if o.rollback != nil {
		attrs = append(attrs, "rollback", "failed: "+o.rollback.Error())
	} else if o.verb == "ADD" && len(o.nics) > 0 {
		attrs = append(attrs, "rollback", "ok")
	}
	o.log.Error("failed", append(attrs, "error", err.Error())...)
}
