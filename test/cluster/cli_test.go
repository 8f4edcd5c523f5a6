package cluster

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nicmux/nicmux/test/testworld"
)

// Nomad fingerprints every binary of cni_path by running it bare.
func TestBareRunPrintsTheVersion(t *testing.T) {
	out, err := exec.Command(ipamBin()).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "CNI nicmux-ipam plugin v") || !strings.Contains(string(out), "CNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0") {
		t.Errorf("bare run: %v\n%s", err, out)
	}
}

func TestReleaseNodeWithAndWithoutGrace(t *testing.T) {
	w := NewWorld(t, 1)
	n1, n2 := w.Node("n1"), w.Node("n2")
	for i := range 3 {
		n1.Add(id(i))
	}
	n2.Add("kept")
	_, stderr, code := w.CLI("release-node", "-node", "n1")
	if code != 1 || !strings.Contains(stderr, "node n1 wrote to etcd at") || !strings.Contains(stderr, "within the grace period (10m0s)") {
		t.Fatalf("release-node within the grace period: exit %d, %s", code, stderr)
	}
	out, _, code := w.CLI("release-node", "-node", "n1", "-force", "-dry-run")
	if code != 0 || strings.Count(out, "would free lease") != 3 || !strings.Contains(out, "would free block") {
		t.Fatalf("dry run: exit %d\n%s", code, out)
	}
	if got := len(w.Leases()); got != 4 {
		t.Fatalf("the dry run freed leases: %d left", got)
	}
	out, _, code = w.CLI("release-node", "-node", "n1", "-force")
	if code != 0 || !strings.Contains(out, "node n1: freed 3 leases, 1 blocks") {
		t.Fatalf("release-node -force: exit %d\n%s", code, out)
	}
	for i := range 3 {
		w.owned(id(i), "eth1", false)
	}
	// Past the grace period, no -force is needed.
	time.Sleep(20 * time.Millisecond)
	out, _, code = w.CLI("release-node", "-node", "n2", "-grace", "10ms")
	if code != 0 || !strings.Contains(out, "node n2: freed 1 leases, 1 blocks") {
		t.Fatalf("release-node past the grace period: exit %d\n%s", code, out)
	}
	w.owned("kept", "eth1", false)
	out, _, code = w.CLI("show", "-json")
	var shown struct {
		Pools []struct {
			Blocks []any `json:"blocksPerNode"`
			Leases []any `json:"leases"`
		} `json:"pools"`
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil || code != 0 {
		t.Fatalf("show: exit %d, %v\n%s", code, err, out)
	}
	if len(shown.Pools) != 1 || len(shown.Pools[0].Blocks) != 0 || len(shown.Pools[0].Leases) != 0 {
		t.Errorf("show after release-node: %s", out)
	}
}

func TestShowAndCheck(t *testing.T) {
	w := NewWorld(t, 1)
	n1 := w.Node("n1")
	a := n1.Add("c1")
	n1.Add("c2")
	n1.Add("c3")
	n1.Del("c3") // its address is kept for it a while
	out, _, code := w.CLI("show", "-json", "-node", "n1")
	var shown struct {
		Pools []struct {
			Pool string `json:"pool"`
			Sets []struct {
				Size int `json:"size"`
				Used int `json:"used"`
				Kept int `json:"kept"`
				Free int `json:"free"`
			} `json:"rangeSets"`
			Blocks []struct {
				Node   string   `json:"node"`
				Blocks []string `json:"blocks"`
			} `json:"blocksPerNode"`
			Leases []struct {
				ContainerID string `json:"containerID"`
				Node        string `json:"node"`
			} `json:"leases"`
		} `json:"pools"`
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil || code != 0 {
		t.Fatalf("show: exit %d, %v\n%s", code, err, out)
	}
	p := shown.Pools[0]
	if p.Pool != "storage" || p.Sets[0].Size != 253 || p.Sets[0].Used != 2 || p.Sets[0].Kept != 1 || p.Sets[0].Free != 250 ||
		len(p.Blocks) != 1 || p.Blocks[0].Node != "n1" || len(p.Leases) != 2 {
		t.Errorf("show: %s", out)
	}
	text, _, _ := w.CLI("show")
	if !strings.Contains(text, "range set 10.20.0.0/24: 253 addresses, 2 used, 1 kept for released owners, 250 free") || !strings.Contains(text, a) {
		t.Errorf("show:\n%s", text)
	}
	out, _, code = w.CLI("check", "-node", "n1", "-data-dir", n1.DataDir)
	if code != 0 || !strings.Contains(out, "node n1: its records agree with etcd at") {
		t.Fatalf("check: exit %d\n%s", code, out)
	}
	// etcd restored from a snapshot taken before c1's ADD: it forgot c1.
	cli := w.Etcd.Client(t)
	l := w.Leases()["c1/eth1"]
	base := w.Prefix + "/pools/storage"
	if _, err := cli.Delete(ctxT(t), base+"/owners/c1/eth1"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctxT(t), base+"/leases/"+l.Addresses[0].Block+"/"+a); err != nil {
		t.Fatal(err)
	}
	w.owned("c1", "eth1", false)
	out, _, code = w.CLI("check", "-node", "n1", "-data-dir", n1.DataDir)
	if code != 1 || !strings.Contains(out, "pool storage: missing in etcd c1/eth1: the node records "+a+"; etcd does not") {
		t.Errorf("check after the restore: exit %d\n%s", code, out)
	}
}

// make demo-cluster's script runs to its end, in the suite's private
// namespaces: two nodes' containers got addresses of one pool, and nothing
// was left.
func TestDemoCluster(t *testing.T) {
	cmd := exec.Command(filepath.Join(testworld.RepoRoot(), "examples", "demo", "demo-cluster.sh"))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "node node-a: 1 blocks") || !strings.Contains(string(out), "node node-b: 1 blocks") ||
		!strings.Contains(string(out), "no lease left") {
		t.Errorf("demo-cluster.sh: %v\n%s", err, out)
	}
}

// etcd restored from an older snapshot: what was claimed since is gone,
// what was released since is back. check finds both on the node and prints
// the commands that recover (an ADD that asks for the address the node
// records, a DEL of the owner etcd still lists); run as printed, they leave
// the records and etcd agreeing.
func TestRestoreFromAnOlderSnapshot(t *testing.T) {
	w := NewWorld(t, 1)
	n1 := w.Node("n1")
	n1.Add("kept")
	n1.Add("released")
	cli := w.Etcd.Client(t)
	snapshot := w.Etcd.Dump(ctxT(t), t, w.Prefix+"/")
	claimed := n1.Add("claimed")
	n1.Del("released")
	if _, err := cli.Delete(ctxT(t), w.Prefix+"/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	for k, v := range snapshot {
		if _, err := cli.Put(ctxT(t), k, v); err != nil {
			t.Fatal(err)
		}
	}
	out, _, code := w.CLI("check", "-node", "n1", "-data-dir", n1.DataDir)
	if code != 1 || !strings.Contains(out, "missing in etcd claimed/eth1: the node records "+claimed+"; etcd does not") ||
		!strings.Contains(out, "not recorded released/eth1") {
		t.Fatalf("check after the restore: exit %d\n%s", code, out)
	}
	var cmds []string
	for _, line := range strings.Split(out, "\n") {
		if cmd, ok := strings.CutPrefix(line, "  echo "); ok {
			cmds = append(cmds, "echo "+cmd)
		}
	}
	if len(cmds) != 2 || !strings.Contains(cmds[0]+cmds[1], "IP="+claimed) {
		t.Fatalf("check printed %d commands, want an ADD with IP=%s and a DEL:\n%s", len(cmds), claimed, out)
	}
	w.owned("claimed", "eth1", true)
	w.owned("released", "eth1", false)
	for _, cmd := range cmds {
		if b, err := exec.Command("sh", "-c", cmd).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, b)
		}
	}
	if got := w.Leases()["claimed/eth1"]; len(got.Addresses) != 1 || got.Addresses[0].IP != claimed {
		t.Errorf("after the recovery etcd leases %v to claimed/eth1, want %s", got.Addresses, claimed)
	}
	out, _, code = w.CLI("check", "-node", "n1", "-data-dir", n1.DataDir)
	if code != 0 {
		t.Errorf("check after the recovery: exit %d\n%s", code, out)
	}
	w.CheckInvariants()
}
