package ipam

import (
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writerEnv makes the test binary a writer of records that never stops
// (recordsWriter), for a test to kill.
const writerEnv = "NICMUX_IPAM_TEST_RECORDS_WRITER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(writerEnv); dir != "" {
		recordsWriter(dir)
	}
	os.Exit(m.Run())
}

// recordsWriter writes the records a node writes (queued releases, lease
// records, its block list), round after round, until killed.
func recordsWriter(dataDir string) {
	r, err := openRecords(dataDir, "p")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for i := 0; ; i++ {
		id := OwnerID{ContainerID: fmt.Sprintf("c%d", i%50), IfName: "eth1"}
		_ = r.Queue(queuedRelease{ContainerID: id.ContainerID, IfName: id.IfName, Claim: fmt.Sprintf("%016x", i), Queued: time.Now()})
		l := &Lease{Version: recordVersion, ContainerID: id.ContainerID, IfName: id.IfName, Claim: "x",
			Addrs: []Address{{IP: netip.AddrFrom4([4]byte{10, 0, 0, byte(i % 7)}), Block: "10.0.0.0-26"}}}
		_ = r.Hold(l, l.encode())
		_ = r.SetHint(nil, &hint{Blocks: []string{fmt.Sprintf("10.0.%d.0-26", i%200)}})
	}
}

// A writer killed at any point leaves no temporary file once the node's
// next call opened its records: kill -9 mid-write must not leave files
// that nothing ever removes.
func TestKilledWriterLeavesNoTemporaryFile(t *testing.T) {
	dataDir := t.TempDir()
	for round := range 20 {
		cmd := exec.Command(os.Args[0], "-test.run", "^$")
		cmd.Env = append(os.Environ(), writerEnv+"="+dataDir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(20+round*3) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		r, err := openRecords(dataDir, "p")
		if err != nil {
			t.Fatal(err)
		}
		if left := temporaryFiles(t, r.dir.Path); len(left) > 0 {
			t.Fatalf("round %d: the next call's opening of the records left %v", round, left)
		}
		if _, bad, err := r.All(); err != nil || len(bad) > 0 {
			t.Fatalf("round %d: the records a killed writer left cannot all be read: %v %v", round, bad, err)
		}
		if names, _ := r.recordNames(nil); len(names) > 50 {
			t.Fatalf("round %d: %d lease records for 50 owners", round, len(names))
		}
		r.Close()
	}
}

// temporaryFiles lists the files under dir that are not records: what a
// write leaves while it runs.
func temporaryFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasPrefix(d.Name(), ".") {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A temporary file whose writer is alive (it holds the file's lock) is
// left alone by another call's sweep.
func TestSweepKeepsALiveWritersFile(t *testing.T) {
	r, err := openRecords(t.TempDir(), "p")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	live := filepath.Join(r.leases.Path, ".c1:eth1@10.0.0.1.tmp-1")
	f, err := os.OpenFile(live, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	dead := filepath.Join(r.releases.Path, ".c2:eth1:any.tmp-2")
	if err := os.WriteFile(dead, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	again, err := openRecords(filepath.Dir(r.dir.Path), "p")
	if err != nil {
		t.Fatal(err)
	}
	again.Close()
	if left := temporaryFiles(t, r.dir.Path); len(left) != 1 || left[0] != "leases/.c1:eth1@10.0.0.1.tmp-1" {
		t.Errorf("temporary files %v, want the live writer's only", left)
	}
}

// The node's lease records are a cache: one that a crash cut reads as
// unknown to the verbs (etcd tells), and check lists it as unreadable;
// the addresses their names say are what the next guess avoids.
func TestLeaseRecordsAreACache(t *testing.T) {
	r, err := openRecords(t.TempDir(), "p")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	l := &Lease{Version: recordVersion, ContainerID: "c1", IfName: "eth1", Claim: "x",
		Addrs: []Address{{IP: netip.MustParseAddr("10.0.0.9"), Block: "10.0.0.0-26"}, {IP: netip.MustParseAddr("fd00::9"), Block: "fd00::-122"}}}
	if err := r.Hold(l, l.encode()); err != nil {
		t.Fatal(err)
	}
	if h := r.Held(l.Owner()); h == nil || string(h.raw) != string(l.encode()) {
		t.Fatalf("held %v", h)
	}
	if used := r.Used(time.Now()); !used[netip.MustParseAddr("10.0.0.9")] || !used[netip.MustParseAddr("fd00::9")] || len(used) != 2 {
		t.Errorf("used %v", used)
	}
	// Released, kept for its owner a while: its addresses stay used until
	// then, and its record goes when the owner holds them again.
	now := time.Now()
	if err := r.Keep(l.Owner(), now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if names, _ := r.recordNames(nil); len(names) != 0 || r.Held(l.Owner()) != nil {
		t.Errorf("after Keep: lease records %v", names)
	}
	if used := r.Used(now); len(used) != 2 {
		t.Errorf("used while kept %v", used)
	}
	if used := r.Used(now.Add(2 * time.Minute)); len(used) != 0 || len(r.keptOf(l.Owner())) != 0 {
		t.Errorf("used after the kept time %v, kept records %v", used, r.keptOf(l.Owner()))
	}
	if err := r.Keep(l.Owner(), now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := r.Hold(l, l.encode()); err != nil {
		t.Fatal(err)
	}
	if k := r.keptOf(l.Owner()); len(k) != 0 {
		t.Errorf("held again, kept records %v", k)
	}
	// A claim of the owner again, with another address: one record.
	l.Addrs = l.Addrs[:1]
	l.Addrs[0].IP = netip.MustParseAddr("10.0.0.10")
	if err := r.Hold(l, l.encode()); err != nil {
		t.Fatal(err)
	}
	if names, _ := r.recordNames(nil); len(names) != 1 || names[0] != "c1:eth1@10.0.0.10" {
		t.Fatalf("records %v", names)
	}
	if err := os.WriteFile(filepath.Join(r.leases.Path, "c1:eth1@10.0.0.10"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if h := r.Held(l.Owner()); h != nil {
		t.Errorf("a cut record reads as %v, want unknown", h)
	}
	if _, bad, err := r.All(); err != nil || len(bad) != 1 {
		t.Errorf("All: %v, %v, want the cut record reported", bad, err)
	}
	if err := r.Drop(l.Owner()); err != nil {
		t.Fatal(err)
	}
	if names, _ := r.recordNames(nil); len(names) != 0 {
		t.Errorf("records left %v", names)
	}
}
