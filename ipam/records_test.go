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
		_ = r.Hold(&Lease{Version: recordVersion, ContainerID: id.ContainerID, IfName: id.IfName, Claim: "x",
			Addrs: []Address{{IP: netip.MustParseAddr("10.0.0.9"), Block: "10.0.0.0-26"}}})
		_ = r.SetBlocks([]string{fmt.Sprintf("10.0.%d.0-26", i%200)})
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
		if left := temporaryFiles(t, r.dir); len(left) > 0 {
			t.Fatalf("round %d: the next call's opening of the records left %v", round, left)
		}
		if _, bad, err := r.All(); err != nil || len(bad) > 0 {
			t.Fatalf("round %d: the records a killed writer left cannot all be read: %v %v", round, bad, err)
		}
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
		rel, _ := filepath.Rel(dir, path)
		if !d.IsDir() && (strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(rel, "tmp"+string(filepath.Separator))) {
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
	f, err := r.createTemp("c1:eth1")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := openRecords(filepath.Dir(r.dir), "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.Name()); err != nil {
		t.Errorf("the sweep removed a live writer's temporary file: %v", err)
	}
	if err := r.write(r.path("leases", "c2:eth1"), map[string]int{"version": 1}); err != nil {
		t.Fatal(err)
	}
	if left := temporaryFiles(t, r.dir); len(left) != 1 {
		t.Errorf("temporary files %v, want the live writer's only", left)
	}
}
