package ipam

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/nicmux/nicmux/metrics"
)

// The verbs fold their figures into the node's counters: each verb by
// result, etcd's unanswered requests, the queue, and the pool's use once a
// GC has read every lease.
func TestVerbsFoldTheirFigures(t *testing.T) {
	m := newMemStore()
	n1, n2 := newNode(t, m, "n1"), newNode(t, m, "n2")
	n1.metricsFile = filepath.Join(t.TempDir(), "nicmux-ipam.prom")
	n1.add(owner(1))
	n1.add(owner(2))
	n2.add(owner(3))
	m.setDown(true)
	if err := n1.run("DEL", owner(2), ""); err != nil {
		t.Fatalf("DEL with etcd away: %v", err)
	}
	if err := n1.run("STATUS", OwnerID{}, ""); err == nil {
		t.Fatal("STATUS with etcd away succeeded")
	}
	dir := filepath.Join(n1.dataDir, countersDir)
	s, err := metrics.Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"ADD ok": 2, "DEL ok": 1, "STATUS 50": 1,
	}
	for k, v := range want {
		verb, result, _ := strings.Cut(k, " ")
		if sr := s.Get(metrics.IPAMVerbs.Name, "verbs", verb, result); sr == nil || sr.Value != v {
			t.Errorf("%s: %+v, want %v", k, sr, v)
		}
	}
	if q := s.Get(metrics.QueuedReleases.Name, "verbs"); q == nil || q.Value != 1 {
		t.Errorf("queued releases %+v, want 1", q)
	}
	if e := s.Get(metrics.EtcdErrors.Name, "verbs"); e == nil || e.Value < 2 {
		t.Errorf("etcd errors %+v, want one for DEL and STATUS at least", e)
	}
	if s.Get(metrics.PoolUsed.Name, "verbs") != nil {
		t.Error("pool use set before any GC read the pool")
	}
	m.setDown(false)
	valid := `, "cni.dev/valid-attachments": [{"containerID": "c0001", "ifname": "eth1"}]`
	if err := n1.run("GC", OwnerID{}, valid); err != nil {
		t.Fatal(err)
	}
	if s, err = metrics.Read(dir); err != nil {
		t.Fatal(err)
	}
	// 10.1.0.0/24 but its network, gateway and broadcast addresses; the
	// GC left c0001's (valid) and c0003's (n2's).
	for fam, v := range map[string]float64{metrics.PoolSize.Name: 253, metrics.PoolUsed.Name: 2, metrics.PoolFree.Name: 251, metrics.QueuedReleases.Name: 0} {
		if sr := s.Get(fam, "verbs"); sr == nil || sr.Value != v {
			t.Errorf("%s: %+v, want %v", fam, sr, v)
		}
	}
	if h := s.Get(metrics.IPAMVerbSeconds.Name, "verbs", "ADD"); h == nil || h.Count() != 2 {
		t.Errorf("ADD durations %+v", h)
	}
	if s2, _ := metrics.Read(filepath.Join(n2.dataDir, countersDir)); len(s2.Series) != 0 {
		t.Errorf("a node without metricsFile keeps counters: %v", s2.Series)
	}
}
