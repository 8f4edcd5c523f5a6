package testworld

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// Iptables returns the lines of `iptables-save -t table`, in the caller's
// network namespace, that hold every one of parts: rules and chain
// declarations, without comments and blank lines.
func Iptables(t testing.TB, table string, parts ...string) []string {
	t.Helper()
	lines, err := iptablesLines(table, parts...)
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

func iptablesLines(table string, parts ...string) ([]string, error) {
	out, err := exec.Command("iptables-save", "-t", table).Output()
	if err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			err = fmt.Errorf("%w: %s", err, exitErr.Stderr)
		}
		return nil, fmt.Errorf("iptables-save -t %s: %w", table, err)
	}
	var lines []string
next:
	for _, l := range strings.Split(string(out), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		for _, p := range parts {
			if !strings.Contains(l, p) {
				continue next
			}
		}
		lines = append(lines, l)
	}
	return lines, nil
}

// FlushIptables empties every chain of tables and removes the chains the
// plugins added, as a reboot does, in the caller's network namespace.
func FlushIptables(tables ...string) error {
	var errs []error
	for _, table := range tables {
		for _, op := range []string{"-F", "-X"} {
			if out, err := exec.Command("iptables", "-t", table, op).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("iptables -t %s %s: %w: %s", table, op, err, out))
			}
		}
	}
	return errors.Join(errs...)
}
