package mux

import (
	"io"
	"log/slog"
	"os"
	"time"

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
	h := slog.NewTextHandler(f, &slog.HandlerOptions{Level: level(nc.LogLevel)})
	return slog.New(h), func() { _ = f.Close() }
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

// verbLog records one verb's outcome.
type verbLog struct {
	log   *slog.Logger
	verb  string
	id    string
	start time.Time
	steps []any
}

func (v *verbLog) step(ifname string, d time.Duration) {
	v.steps = append(v.steps, slog.Duration(ifname, d))
}

func (v *verbLog) done(err error, attrs ...any) {
	attrs = append([]any{"verb", v.verb, "containerID", v.id, "duration", time.Since(v.start)}, attrs...)
	if len(v.steps) > 0 {
		attrs = append(attrs, slog.Group("interfaces", v.steps...))
	}
	if err != nil {
		v.log.Error("failed", append(attrs, "error", err.Error())...)
		return
	}
	v.log.Info("ok", attrs...)
}

// discard is a logger for paths where configuration could not be read.
func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
