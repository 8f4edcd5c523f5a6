package delegate

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	var leader Proc
	if _, err := fmt.Sscanf(note, "proc %s %d %d", new(string), &leader.Pid, &leader.StartTicks); err != nil {
		t.Fatalf("note %q: %v", note, err)
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
	right := Proc{Pid: p.pid(), StartTicks: ticks}
	if killed, err := Fence(right.Note(), 5*time.Second); len(killed) != 1 || err != nil || running(p.pid()) {
		t.Errorf("Fence of the right note killed %v, %v", killed, err)
	}
}

func TestProcNote(t *testing.T) {
	want := fmt.Sprintf("proc %s 1234 5678", bootID())
	if got := (Proc{Pid: 1234, StartTicks: 5678}).Note(); got != want {
		t.Errorf("Note() = %q, want %q", got, want)
	}
	if len(bootID()) != 36 {
		t.Errorf("boot id %q", bootID())
	}
}
