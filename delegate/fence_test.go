package delegate

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A nicmux killed mid-verb leaves its plugin's children running; Fence,
// given its notes, kills their process group and returns once only
// zombies are left.
func TestFenceKillsLeftovers(t *testing.T) {
	dir := t.TempDir()
	helper, out := startHelper(t, "fence", dir)
	note, err := out.ReadString('\n')
	if err != nil {
		t.Fatalf("the helper said %q: %v", note, err)
	}
	family := pids(t, readMarker(t, dir, "family"))
	leader, full, ok := parseNote(strings.TrimSpace(note), bootID())
	if !ok || !full {
		t.Fatalf("note %q", note)
	}
	killAtCleanup(t, leader.Pid)
	if err := helper.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()
	// The plugin itself dies with its nicmux (its parent-death signal);
	// what it started does not.
	if !eventually(5*time.Second, func() bool { return !running(leader.Pid) }) {
		t.Fatalf("the plugin %d outlived its nicmux", leader.Pid)
	}
	time.Sleep(50 * time.Millisecond)
	for _, pid := range family {
		if !running(pid) {
			t.Fatalf("the plugin's child %d died with nicmux: the test shows nothing", pid)
		}
	}

	start := time.Now()
	killed, err := Fence("some other line\n"+note+"\n", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(killed) != 1 || killed[0] != leader {
		t.Errorf("killed %v, want %v", killed, leader)
	}
	for _, pid := range family {
		if running(pid) {
			t.Errorf("the plugin's child %d is still running after Fence returned", pid)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Fence took %v", d)
	}
}

// Notes of another boot, or of a pid now another process's, are ignored.
func TestFenceIgnoresOthers(t *testing.T) {
	p, err := startProc(filepath.Join(pluginDir, "tp-sleep"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.abort()
	ticks, err := startTicks(p.pid())
	if err != nil {
		t.Fatal(err)
	}
	ownTicks, err := startTicks(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	boot := bootID()
	notes := strings.Join([]string{
		fmt.Sprintf("proc 00000000-0000-0000-0000-000000000000 %d %d", p.pid(), ticks), // another boot
		fmt.Sprintf("proc %s %d %d", boot, p.pid(), ticks+1),                           // the pid reused
		fmt.Sprintf("proc %s %d %d", boot, os.Getpid(), ownTicks+1),                    // the pid reused: this test
		fmt.Sprintf("proc %s %d", boot, p.pid()),                                       // not a note
		"",
	}, "\n")
	killed, err := Fence(notes, time.Second)
	if len(killed) != 0 || err != nil {
		t.Errorf("Fence killed %v, %v; want nothing", killed, err)
	}
	time.Sleep(50 * time.Millisecond)
	if !running(p.pid()) {
		t.Fatal("the process was killed")
	}
	// The same process, noted right, is killed.
	right := noteProc(p.pid())
	if killed, err := Fence(right.Note(), 5*time.Second); len(killed) != 1 || err != nil || running(p.pid()) {
		t.Errorf("Fence of the right note killed %v, %v", killed, err)
	}
}

func TestProcNote(t *testing.T) {
	p := Proc{Pid: 1234, StartTicks: 5678, Session: 42, Exe: "/opt/cni/bin/my bridge"}
	want := fmt.Sprintf(`proc %s 1234 5678 42 "/opt/cni/bin/my bridge"`, bootID())
	if got := p.Note(); got != want {
		t.Errorf("Note() = %q, want %q", got, want)
	}
	if got, full, ok := parseNote(want, bootID()); got != p || !full || !ok {
		t.Errorf("parseNote(%q) = %+v, %v, %v", want, got, full, ok)
	}
	if len(bootID()) != 36 {
		t.Errorf("boot id %q", bootID())
	}
}

// A live process that holds a noted pid and started in the same clock tick
// (a pid reused within the tick a note records: simulated here by notes
// that match a running process's pid and start time) is spared unless
// everything else the note records matches too: its session and its
// executable. A note of the form before those were recorded spares a live
// leader too: it cannot tell.
func TestFenceSparesAReuser(t *testing.T) {
	p, err := startProc(filepath.Join(pluginDir, "tp-sleep"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.abort()
	pid := p.pid()
	ticks, err := startTicks(pid)
	if err != nil {
		t.Fatal(err)
	}
	sid, err := unix.Getsid(pid)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		t.Fatal(err)
	}
	note := func(sid int, exe string) string {
		return fmt.Sprintf("proc %s %d %d %d %q", bootID(), pid, ticks, sid, exe)
	}
	for name, note := range map[string]string{
		"another session":        note(sid+1, exe),
		"another executable":     note(sid, "/usr/sbin/other"),
		"the pid and ticks only": fmt.Sprintf("proc %s %d %d", bootID(), pid, ticks),
	} {
		killed, err := Fence(note, time.Second)
		if len(killed) != 0 || err != nil || !running(pid) {
			t.Fatalf("%s: Fence killed %v (%v); the process must survive", name, killed, err)
		}
	}
	if killed, err := Fence(note(sid, exe), 5*time.Second); len(killed) != 1 || err != nil || running(pid) {
		t.Errorf("Fence of the right note killed %v, %v", killed, err)
	}
}
