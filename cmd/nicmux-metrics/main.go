// Command nicmux-metrics draws the metricsFile of nicmux and nicmux-ipam:
// they fold their figures into counters on disk and start it, detached,
// to write them as a Prometheus text file for node_exporter's textfile
// collector. It links the Prometheus library, which the plugins do not
// (see package metrics). Run bare, it prints its release as the plugins
// do, since Nomad runs every binary of its cni_path to read its version.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/nicmux/nicmux/metrics"
	"github.com/nicmux/nicmux/metrics/textfile"
	"github.com/nicmux/nicmux/release"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		// Nomad runs every binary of its cni_path bare and reads the
		// first version in what it prints.
		fmt.Fprintf(stdout, "%s\nCNI protocol versions supported: none (it draws the metricsFile of nicmux and nicmux-ipam)\n",
			release.About("nicmux-metrics"))
		return 0
	case args[0] == "version":
		r := release.Get()
		if len(args) > 1 && args[1] == "-json" {
			b, _ := json.Marshal(map[string]string{"version": r.Version, "commit": r.Commit, "go": runtime.Version()})
			fmt.Fprintf(stdout, "%s\n", b)
			return 0
		}
		fmt.Fprintf(stdout, "nicmux-metrics %s\ncommit: %s\ngo: %s\n", r.Version, r.Commit, runtime.Version())
		return 0
	case args[0] != "render":
		fmt.Fprintf(stderr, "nicmux-metrics: unknown command %q (nicmux and nicmux-ipam run it: nicmux-metrics render -counters DIR -file FILE [-log FILE])\n", args[0])
		return 2
	}
	var p metrics.Textfile
	fs := flag.NewFlagSet("nicmux-metrics render", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&p.Counters, "counters", "", "the counters `folder`")
	fs.StringVar(&p.File, "file", "", "the textfile to write")
	fs.StringVar(&p.LogFile, "log", "", "the plugin's log `file`")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if p.Counters == "" || p.File == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "nicmux-metrics render: -counters and -file are required, and nothing else")
		return 2
	}
	// Drawing waits, the verbs do not: the runtime waits for them.
	_ = unix.Setpriority(unix.PRIO_PROCESS, 0, 10)
	log, closeLog := logger(p.LogFile, stderr)
	defer closeLog()
	if err := p.Serve(func(s *metrics.Snapshot) error { return textfile.Write(s, p.File) }, log); err != nil {
		log.Warn("metrics: the renderer cannot read the counters", "counters", p.Counters, "error", err)
		return 1
	}
	return 0
}

// logger logs to the plugin's log, in its format, or else to stderr.
func logger(path string, stderr io.Writer) (*slog.Logger, func()) {
	if path != "" {
		if f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			h := slog.NewTextHandler(f, &slog.HandlerOptions{ReplaceAttr: utc})
			return slog.New(h).With("renderer", "nicmux-metrics"), func() { _ = f.Close() }
		}
	}
	return slog.New(slog.NewTextHandler(stderr, nil)), func() {}
}

func utc(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey && len(groups) == 0 {
		a.Value = slog.TimeValue(a.Value.Time().UTC())
	}
	return a
}
