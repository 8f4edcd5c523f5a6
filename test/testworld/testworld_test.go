package testworld

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	WriteFile(t, path, content)
}

// TestLeases reads host-local's files as host-local v1.x writes them
// (owner and ifname on two lines, CRLF), skips its lock and its last
// reserved IP, reads a missing network as empty and a folder it cannot
// read as an error; HeldBy picks one container's, on any interface.
func TestLeases(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "svc", "10.0.0.2"), "ctr-1\r\neth0")
	write(t, filepath.Join(dir, "svc", "10.0.0.3"), "")
	write(t, filepath.Join(dir, "svc", "10.0.0.4"), "ctr-10\neth0")
	write(t, filepath.Join(dir, "svc", "10.0.0.5"), "ctr-1")
	write(t, filepath.Join(dir, "svc", "lock"), "")
	write(t, filepath.Join(dir, "svc", "last_reserved_ip.0"), "10.0.0.3")
	got, err := leasesIn(filepath.Join(dir, "svc"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"10.0.0.2": "ctr-1/eth0", "10.0.0.3": "", "10.0.0.4": "ctr-10/eth0", "10.0.0.5": "ctr-1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("leases = %v, want %v", got, want)
	}
	if held, want := HeldBy(got, "ctr-1"), map[string]string{"10.0.0.2": "ctr-1/eth0", "10.0.0.5": "ctr-1"}; fmt.Sprint(held) != fmt.Sprint(want) {
		t.Errorf("held by ctr-1 = %v, want %v", held, want)
	}
	if got, err := leasesIn(filepath.Join(dir, "none")); err != nil || len(got) != 0 {
		t.Errorf("missing network: %v, %v; want none", got, err)
	}
	write(t, filepath.Join(dir, "file"), "")
	if _, err := leasesIn(filepath.Join(dir, "file")); err == nil {
		t.Error("a network folder that is a file read as no leases")
	}
}

// TestStateLeft lists every container's file, marks symlinks and empty
// container folders, and lets the store-wide files stay.
func TestStateLeft(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"gc.lock", "plans.slots", "plans.boot", "containers/a/container.json", "locks/a.lock"} {
		write(t, filepath.Join(dir, f), "{}")
	}
	if err := os.MkdirAll(filepath.Join(dir, "containers", "b"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", ResultFile(dir, "a", "eth0")); err != nil {
		t.Fatal(err)
	}
	got, err := StateLeft(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"containers/a/container.json", "containers/a/if-eth0.json (symlink)", "containers/b/ (empty folder)", "locks/a.lock"}
	if !slices.Equal(got, want) {
		t.Errorf("state left = %q, want %q", got, want)
	}
	if got, err := StateLeft(filepath.Join(dir, "none")); err != nil || len(got) != 0 {
		t.Errorf("missing state folder: %v, %v; want none", got, err)
	}
}

// TestCensus counts leases (all, or one owner's), state but what Keep
// keeps, and tuning backups, a torn one marked; a network folder it
// cannot read counts as left.
func TestCensus(t *testing.T) {
	f := FilesIn(t.TempDir())
	write(t, filepath.Join(f.IPAMDir, "svc", "10.0.0.2"), "ctr-1\neth0")
	write(t, filepath.Join(f.IPAMDir, "svc", "10.0.0.3"), "ctr-2\neth0")
	write(t, filepath.Join(f.IPAMDir, "broken"), "a file where a folder should be")
	write(t, PlanFile(f.StateDir, "ctr-1"), "{}")
	write(t, LockFile(f.StateDir, "ctr-2"), "")
	write(t, filepath.Join(f.TuningDir, "ctr-1-eth1.json"), `{"mtu": 1500`)
	c := Census{IPAMDir: f.IPAMDir, Networks: []string{"svc", "storage"}, StateDir: f.StateDir, TuningDir: f.TuningDir}
	want := []string{
		"leases: svc lease 10.0.0.2 held by ctr-1/eth0",
		"leases: svc lease 10.0.0.3 held by ctr-2/eth0",
		"state: containers/ctr-1/container.json",
		"state: locks/ctr-2.lock",
		"tuning: tuning backup ctr-1-eth1.json (torn)",
	}
	if got := leakStrings(c); !slices.Equal(got, want) {
		t.Errorf("leaks = %q, want %q", got, want)
	}
	c.Owner = "ctr-2"
	c.Keep = func(rel string) bool { return strings.HasPrefix(rel, "containers/") }
	c.TuningDir = ""
	want = []string{"leases: svc lease 10.0.0.3 held by ctr-2/eth0", "state: locks/ctr-2.lock"}
	if got := leakStrings(c); !slices.Equal(got, want) {
		t.Errorf("ctr-2's leaks = %q, want %q", got, want)
	}
	c = Census{IPAMDir: f.IPAMDir, Networks: []string{"broken"}}
	if got := leakStrings(c); len(got) != 1 || !strings.HasPrefix(got[0], "leases: broken: cannot read the leases: ") {
		t.Errorf("an unreadable network's leaks = %q, want one that says so", got)
	}
}

func leakStrings(c Census) []string {
	var out []string
	for _, l := range c.Leaks() {
		out = append(out, l.String())
	}
	slices.Sort(out)
	return out
}

// TestProcs finds a live process by a variable of its environment and by
// its program, and no more once it is dead.
func TestProcs(t *testing.T) {
	env := "TESTWORLD_MARK=" + RandHex(4)
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sleep, "30")
	cmd.Env = append(os.Environ(), env)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	marked := func(p Proc) bool { return p.HasEnv(env) }
	ps, err := Procs(marked)
	if err != nil || len(ps) != 1 || ps[0].PID != cmd.Process.Pid || ps[0].Cmd != sleep+" 30" {
		t.Errorf("procs = %+v, %v; want sleep's pid %d", ps, err, cmd.Process.Pid)
	}
	exe, _ := filepath.EvalSymlinks(sleep)
	if ps, _ := Procs(func(p Proc) bool { return p.Exe == exe && p.PID == cmd.Process.Pid }); len(ps) != 1 {
		t.Errorf("procs running %s = %+v, want sleep's pid %d", exe, ps, cmd.Process.Pid)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if ps, _ := Procs(marked); len(ps) != 0 {
		t.Errorf("procs after kill = %+v, want none", ps)
	}
}

// TestCNICode finds the CNI error in a chain of wrapped errors.
func TestCNICode(t *testing.T) {
	err := fmt.Errorf("eth1: %w", &types.Error{Code: 7, Msg: "bad"})
	if got := CNICode(err); got != 7 {
		t.Errorf("code = %d, want 7", got)
	}
	if got := CNICode(fmt.Errorf("plain")); got != 0 {
		t.Errorf("code of a plain error = %d, want 0", got)
	}
}

// TestCallsAndLog reads the recorder's lines and nicmux's log lines that
// hold every part asked for.
func TestCallsAndLog(t *testing.T) {
	f := FilesIn(t.TempDir())
	if calls, err := f.Calls(); err != nil || len(calls) != 0 {
		t.Errorf("calls before the recorder's first = %v, %v; want none", calls, err)
	}
	write(t, f.RecordFile, `{"command":"ADD","ifname":"eth0","stdin":{"name":"n"}}`+"\n"+`{"command":"DEL","ifname":"eth1"}`+"\n")
	calls, err := f.Calls()
	var conf struct{ Name string }
	if err != nil || len(calls) != 2 || calls[0].Command != "ADD" || calls[1].IfName != "eth1" || calls[0].Decode(&conf) != nil || conf.Name != "n" {
		t.Errorf("calls = %+v, %v (conf %+v)", calls, err, conf)
	}
	write(t, f.LogFile, "level=INFO verb=ADD id=a\nlevel=WARN verb=DEL id=a\nlevel=INFO verb=DEL id=b\n")
	if got := f.LogLines("verb=DEL", "level=INFO"); !slices.Equal(got, []string{"level=INFO verb=DEL id=b"}) {
		t.Errorf("log lines = %q", got)
	}
}
