package delegate

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc names a plugin process for as long as the system runs: its pid,
// which is also its process group's, and its start time.
type Proc struct {
	Pid        int
	StartTicks uint64
}

// Note is how a Proc is recorded for Fence: one line, with the boot it
// belongs to, so that a record that survived a reboot names nothing.
func (p Proc) Note() string {
	return fmt.Sprintf("proc %s %d %d", bootID(), p.Pid, p.StartTicks)
}

// Fence kills the process groups of the plugins that notes (lines made by
// Proc.Note) name and that are still alive, and waits, up to wait, until
// they are gone. nicmux notes its plugins in the container's lock file
// while it holds it, and clears the notes when they have all ended: notes
// left behind mean nicmux was killed, and its plugins, or what they
// started (an IPAM plugin, an iptables), may still be at work. Fence makes
// sure none of them acts after its successor does. It returns the groups
// it killed.
func Fence(notes string, wait time.Duration) ([]Proc, error) {
	boot := bootID()
	var killed []Proc
	for _, line := range strings.Split(notes, "\n") {
		var id string
		var p Proc
		if n, _ := fmt.Sscanf(line, "proc %s %d %d", &id, &p.Pid, &p.StartTicks); n != 3 || id != boot || p.Pid <= 1 {
			continue
		}
		// The leader alive with another start time: the pid was reused,
		// the group is somebody else's. The leader gone: only members of
		// the original group can hold its id.
		if ticks, err := startTicks(p.Pid); err == nil && ticks != p.StartTicks {
			continue
		}
		if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err == nil {
			killed = append(killed, p)
		}
	}
	deadline := time.Now().Add(wait)
	for _, p := range killed {
		for groupAlive(p.Pid) {
			if time.Now().After(deadline) {
				return killed, fmt.Errorf("process group %d of a killed nicmux's plugin is still alive after %v", p.Pid, wait)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	return killed, nil
}

// groupAlive reports whether a process group has a member that is not a
// zombie: a zombie acts no more, and its reaper (init, or a runtime that is
// a subreaper) may be slow to reap it.
func groupAlive(pgid int) bool {
	if syscall.Kill(-pgid, 0) != nil {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	want := strconv.Itoa(pgid)
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		// State, ppid, pgrp.
		f, err := statFields(e.Name())
		if err == nil && len(f) >= 3 && f[2] == want && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}

// bootID identifies the running boot.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "unknown"
	}
	return string(bytes.TrimSpace(b))
}

// startTicks returns a process's start time in clock ticks since boot
// (/proc/<pid>/stat, field 22): with the pid, it names the process for as
// long as the system runs.
func startTicks(pid int) (uint64, error) {
	fields, err := statFields(strconv.Itoa(pid))
	if err != nil {
		return 0, err
	}
	if len(fields) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	return strconv.ParseUint(fields[19], 10, 64) // field 22 overall
}

// statFields returns the fields of /proc/<pid>/stat after the command name
// (field 2, in parentheses, which may hold spaces): the state (field 3)
// first.
func statFields(pid string) ([]string, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%s/stat: no command name", pid)
	}
	return strings.Fields(string(b[i+1:])), nil
}
