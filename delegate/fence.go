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

// Proc names a plugin process for as long as the system runs, so that a
// process that reuses its pid is never taken for it: its pid, which is
// also its process group's, its start time (in clock ticks: a pid can be
// reused within one), its session (nicmux's, which it inherits) and its
// executable.
type Proc struct {
	Pid        int
	StartTicks uint64
	Session    int
	Exe        string
}

// noteProc is the Proc of the process pid, read from /proc; what cannot be
// read is left zero.
func noteProc(pid int) Proc {
	p := Proc{Pid: pid}
	if st, err := readStat(pid); err == nil {
		p.StartTicks, p.Session = st.ticks, st.session
	}
	p.Exe, _ = os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	return p
}

// Note is how a Proc is recorded for Fence: one line, with the boot it
// belongs to, so that a record that survived a reboot names nothing.
func (p Proc) Note() string {
	return fmt.Sprintf("proc %s %d %d %d %q", bootID(), p.Pid, p.StartTicks, p.Session, p.Exe)
}

// parseNote reads a line made by Proc.Note on this boot; full is false for
// a note of the form that recorded the pid and start time only.
func parseNote(line, boot string) (p Proc, full, ok bool) {
	var id string
	n, _ := fmt.Sscanf(line, "proc %s %d %d %d %q", &id, &p.Pid, &p.StartTicks, &p.Session, &p.Exe)
	return p, n == 5, n >= 3 && id == boot && p.Pid > 1
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
		p, full, ok := parseNote(line, boot)
		if !ok || !p.group(full) {
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

// dyingWait bounds the wait for a leader that matches its note but for its
// executable: one of nicmux's that exec'd another binary dies of its
// parent-death signal meanwhile; a process that reused the pid does not.
const dyingWait = 200 * time.Millisecond

// group reports whether the process group p names is still the one nicmux
// noted. With its leader gone, only members of that group can hold its id.
// A live leader must match everything the note records (full: a note
// that records only the pid and start ticks cannot tell, and a live
// leader is spared); a dead one (a zombie) all but the executable, which
// the kernel does not show for a zombie.
func (p Proc) group(full bool) bool {
	st, err := readStat(p.Pid)
	switch {
	case err != nil:
		return true // gone
	case st.ticks != p.StartTicks || st.pgrp != p.Pid:
		return false
	case !full:
		return st.dead()
	case st.session != p.Session:
		return false
	case st.dead():
		return true
	}
	if exe, err := os.Readlink("/proc/" + strconv.Itoa(p.Pid) + "/exe"); err == nil && exe == p.Exe {
		return true
	}
	for deadline := time.Now().Add(dyingWait); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		st, err := readStat(p.Pid)
		switch {
		case err != nil:
			return true // gone
		case st.ticks != p.StartTicks:
			return false // gone, and the pid taken again
		case st.dead():
			return true
		}
	}
	return false
}

// procStat is what Fence reads of a process in /proc/<pid>/stat.
type procStat struct {
	state         string
	pgrp, session int
	ticks         uint64 // start time since boot
}

func (s procStat) dead() bool { return s.state == "Z" || s.state == "X" }

// readStat reads /proc/<pid>/stat: the state (field 3), process group (5),
// session (6) and start time (22).
func readStat(pid int) (procStat, error) {
	f, err := statFields(strconv.Itoa(pid))
	if err != nil {
		return procStat{}, err
	}
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	st := procStat{state: f[0]}
	st.pgrp, err = strconv.Atoi(f[2])
	if err == nil {
		st.session, err = strconv.Atoi(f[3])
	}
	if err == nil {
		st.ticks, err = strconv.ParseUint(f[19], 10, 64)
	}
	return st, err
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
// long as the system runs, but for a pid reused within one tick.
func startTicks(pid int) (uint64, error) {
	st, err := readStat(pid)
	return st.ticks, err
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
