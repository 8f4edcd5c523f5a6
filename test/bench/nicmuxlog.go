package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// logLine is one verb's "ok" line of nicmux's log.
type logLine struct {
	duration, delegates, own, cpu time.Duration
	peakRSSKB                     int64
	// mono is when the verb's process reached main, on CLOCK_MONOTONIC
	// (ns), and phases the points it passed, from then; both are 0 and
	// nil from a nicmux that does not log them (a -baseline release).
	mono   int64
	phases []phase
}

// phase is one point of a verb: its name and when it was reached, from
// the start of nicmux's main.
type phase struct {
	name string
	at   time.Duration
}

// readLog reads nicmux's log, keyed by verb and container ID. Any warning
// or error line ends the run: nicmux must not have been unhappy about a
// measured verb.
func readLog(path string) (map[string]logLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]logLine{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		kv, err := parseLogfmt(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		if kv["level"] != "INFO" && kv["level"] != "DEBUG" {
			return nil, fmt.Errorf("%s:%d: nicmux logged: %s", path, n, sc.Text())
		}
		if kv["msg"] != "ok" {
			continue
		}
		l, err := toLogLine(kv)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		key := kv["verb"] + " " + kv["containerID"]
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("%s:%d: a second line for %s", path, n, key)
		}
		out[key] = l
	}
	return out, sc.Err()
}

func toLogLine(kv map[string]string) (logLine, error) {
	var l logLine
	for key, dst := range map[string]*time.Duration{
		"duration": &l.duration, "delegates": &l.delegates, "own": &l.own, "cpu": &l.cpu,
	} {
		d, err := time.ParseDuration(kv[key])
		if err != nil {
			return l, fmt.Errorf("field %s: %w", key, err)
		}
		*dst = d
	}
	rss, err := strconv.ParseInt(kv["peakRSSKB"], 10, 64)
	if err != nil {
		return l, fmt.Errorf("field peakRSSKB: %w", err)
	}
	l.peakRSSKB = rss
	if m, ok := kv["mono"]; ok {
		if l.mono, err = strconv.ParseInt(m, 10, 64); err != nil {
			return l, fmt.Errorf("field mono: %w", err)
		}
		if l.phases, err = parsePhases(kv["phases"]); err != nil {
			return l, fmt.Errorf("field phases: %w", err)
		}
	}
	return l, nil
}

// parsePhases reads "parsed=0.21 loaded=0.41 ..." (ms from the start).
func parsePhases(s string) ([]phase, error) {
	var out []phase
	for _, f := range strings.Fields(s) {
		name, v, ok := strings.Cut(f, "=")
		at, err := strconv.ParseFloat(v, 64)
		if !ok || name == "" || err != nil {
			return nil, fmt.Errorf("%q is not name=milliseconds", f)
		}
		out = append(out, phase{name, time.Duration(at * float64(time.Millisecond))})
	}
	return out, nil
}

// parseLogfmt splits a slog text line into its key=value pairs; quoted
// values are unquoted.
func parseLogfmt(line string) (map[string]string, error) {
	kv := map[string]string{}
	for line = strings.TrimSpace(line); line != ""; line = strings.TrimLeft(line, " ") {
		eq := strings.IndexByte(line, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("no key=value at %q", line)
		}
		key, rest := line[:eq], line[eq+1:]
		val, n, err := logValue(rest)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", key, err)
		}
		kv[key], line = val, rest[n:]
	}
	return kv, nil
}

// logValue reads one value from the start of s and returns it and its length.
func logValue(s string) (string, int, error) {
	if !strings.HasPrefix(s, `"`) {
		n := strings.IndexByte(s, ' ')
		if n < 0 {
			n = len(s)
		}
		return s[:n], n, nil
	}
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			v, err := strconv.Unquote(s[:i+1])
			return v, i + 1, err
		}
	}
	return "", 0, fmt.Errorf("unterminated quote in %q", s)
}
