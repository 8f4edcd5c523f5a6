package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// logLine is one verb's "ok" line of nicmux's log: how long the verb took
// in nicmux, and how long each interface's chain ran.
type logLine struct {
	duration   time.Duration
	interfaces []time.Duration
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
	var err error
	if l.duration, err = time.ParseDuration(kv["duration"]); err != nil {
		return l, fmt.Errorf("field duration: %w", err)
	}
	for key, v := range kv {
		if !strings.HasPrefix(key, "interfaces.") {
			continue
		}
		word, took, ok := strings.Cut(v, " ")
		d, err := time.ParseDuration(took)
		if !ok || word != "ok" || err != nil {
			return l, fmt.Errorf("field %s: %q is not \"ok <duration>\"", key, v)
		}
		l.interfaces = append(l.interfaces, d)
	}
	if len(l.interfaces) == 0 {
		return l, errors.New("no interfaces.<ifname> field")
	}
	return l, nil
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
