package testworld

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Proc is a live process.
type Proc struct {
	PID int
	// Exe is the program it runs ("" when that cannot be read); Cmd its
	// command line.
	Exe, Cmd string
}

// HasEnv reports whether the process's environment holds kv
// ("NAME=value"): a runtime marks what it starts with such a variable,
// which every child inherits.
func (p Proc) HasEnv(kv string) bool {
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.PID))
	return err == nil && bytes.Contains(env, []byte(kv+"\x00"))
}

// Procs lists the live processes match accepts, but the caller's own and
// zombies (dead, their parent not yet told). A process that ends
// meanwhile is not listed.
func Procs(match func(Proc) bool) ([]Proc, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var out []Proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		st, err := os.ReadFile(filepath.Join(dir, "stat"))
		if i := bytes.LastIndexByte(st, ')'); err != nil || (i > 0 && i+2 < len(st) && st[i+2] == 'Z') {
			continue
		}
		p := Proc{PID: pid}
		p.Exe, _ = os.Readlink(filepath.Join(dir, "exe"))
		cmd, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
		p.Cmd = strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
		if match(p) {
			out = append(out, p)
		}
	}
	return out, nil
}
