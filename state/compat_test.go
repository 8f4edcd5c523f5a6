package state

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/nicmux/nicmux/ns"
)

// v1Store copies testdata/v1, a state folder written by nicmux 0.1's own
// state package (see testdata/v1/README), into a new store.
func v1Store(t *testing.T) (*Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	copyTree(t, filepath.Join("testdata", "v1"), dir)
	return openStore(t, dir), dir
}

// v1Planned reads what nicmux 0.1 recorded of an interface, from the
// fixture itself.
func v1Planned(t *testing.T, id, ifname string) (Planned, json.RawMessage) {
	t.Helper()
	var f interfaceFile
	if err := json.Unmarshal(readRaw(t, filepath.Join("testdata", "v1", "containers", id, "if-"+ifname+".json")), &f); err != nil {
		t.Fatal(err)
	}
	if f.Kind != kindInterfaceV1 || len(f.Config) == 0 {
		t.Fatalf("fixture %s/%s: kind %q, config %s", id, ifname, f.Kind, f.Config)
	}
	return f.Planned, f.Result
}

// nicmux 0.1 kept the plan in container.json and each interface's chain,
// with its result, in if-<ifname>.json, which it removed once the
// interface was released. A container attached by 0.1 loads as Format 1.
func TestLoadV1(t *testing.T) {
	type iface struct {
		result   bool
		released bool
	}
	tests := []struct {
		id       string
		complete bool
		ifs      map[string]iface
	}{
		// A DEL cut short after it released net2.
		{"v1-del-interrupted", true, map[string]iface{"eth0": {result: true}, "net1": {result: true}, "net2": {released: true}}},
		// An ADD cut short after eth0's chain succeeded: net1 and net2
		// have their chain, no result.
		{"v1-add-interrupted", false, map[string]iface{"eth0": {result: true}, "net1": {}, "net2": {}}},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			s, _ := v1Store(t)
			rec := load(t, s, tc.id)
			if rec.Format != 1 || rec.Complete != tc.complete || rec.ContainerID != tc.id {
				t.Errorf("format %d, complete %v (want %v), ID %s", rec.Format, rec.Complete, tc.complete, rec.ContainerID)
			}
			want := &Plan{
				ContainerID: tc.id, IfName: "eth0", NetNS: "/var/run/netns/cni-6f1c2a9e",
				NetNSID: ns.NetNSID{Dev: 4, Ino: 4026532412}, ListName: "nicmux", CNIVersion: "1.0.0",
				AttachmentFile: "/etc/nicmux/attachments/fast.yaml", Set: "fast",
				Created:    time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC),
				Interfaces: []Planned{{IfName: "eth0"}, {IfName: "net1"}, {IfName: "net2"}},
			}
			if !reflect.DeepEqual(rec.Plan, want) {
				t.Errorf("Plan:\n got %+v\nwant %+v", rec.Plan, want)
			}
			if rec.Set() != "fast" {
				t.Errorf("Set() = %q", rec.Set())
			}
			if got := rec.IfNames(); !reflect.DeepEqual(got, []string{"eth0", "net1", "net2"}) {
				t.Fatalf("IfNames() = %q", got)
			}
			for _, it := range rec.Interfaces {
				w := tc.ifs[it.IfName]
				if it.Released != w.released || it.ResultErr != nil || (it.Result != nil) != w.result {
					t.Errorf("%s: released %v, result %s, error %v; want %+v", it.IfName, it.Released, it.Result, it.ResultErr, w)
				}
				if w.released {
					continue
				}
				planned, result := v1Planned(t, tc.id, it.IfName)
				assertPlanned(t, it.Planned, planned)
				if w.result && !sameJSON(t, it.Result, result) {
					t.Errorf("%s: result %s, want %s", it.IfName, it.Result, result)
				}
			}
		})
	}
}

// A DEL of 0.1's container goes on with this version's store.
func TestV1ReleaseAndRemove(t *testing.T) {
	s, dir := v1Store(t)
	id := "v1-del-interrupted"
	if err := s.MarkReleased(id, "net1"); err != nil {
		t.Fatalf("Release: %v", err)
	}
	rec := load(t, s, id)
	if rec.Format != 1 {
		t.Errorf("Format %d after Release", rec.Format)
	}
	for _, it := range rec.Interfaces {
		if want := it.IfName != "eth0"; it.Released != want {
			t.Errorf("%s: released %v, want %v", it.IfName, it.Released, want)
		}
	}
	if err := s.Remove(id); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	assertGone(t, containerDir(dir, id))
	if ids, err := s.Containers(); err != nil || !reflect.DeepEqual(ids, []string{"v1-add-interrupted"}) {
		t.Errorf("Containers() = %q, %v", ids, err)
	}
}

// A torn interface record of 0.1 held the only copy of its chain: the
// interface is not released, and its error says why it has no chain.
func TestV1TornInterface(t *testing.T) {
	s, dir := v1Store(t)
	id := "v1-del-interrupted"
	path := filepath.Join(containerDir(dir, id), "if-net1.json")
	if err := os.Truncate(path, 40); err != nil {
		t.Fatal(err)
	}
	rec := load(t, s, id)
	net1 := rec.Interface("net1")
	assertCorrupt(t, net1.ResultErr, path)
	if net1.Released || net1.Result != nil || net1.Config != nil {
		t.Errorf("net1: %+v", net1)
	}
	if eth0 := rec.Interface("eth0"); eth0.Result == nil || eth0.Config == nil {
		t.Errorf("eth0: %+v", eth0)
	}
}

// 0.1's plan lost, its interface records kept: salvaged like this
// version's.
func TestV1Salvage(t *testing.T) {
	s, dir := v1Store(t)
	id := "v1-del-interrupted"
	if err := os.Remove(filepath.Join(containerDir(dir, id), "container.json")); err != nil {
		t.Fatal(err)
	}
	rec := s.Load(id)
	if rec.Status != PlanLost || !errors.Is(rec.Err, ErrNotFound) || rec.Plan != nil {
		t.Fatalf("Load = %+v; want a record without plan, PlanLost and ErrNotFound", rec)
	}
	if got := sortedIfNames(rec); !reflect.DeepEqual(got, []string{"eth0", "net1"}) {
		t.Fatalf("interfaces %q", got)
	}
	for _, it := range rec.Interfaces {
		planned, result := v1Planned(t, id, it.IfName)
		assertPlanned(t, it.Planned, planned)
		if !sameJSON(t, it.Result, result) {
			t.Errorf("%s: result %s, want %s", it.IfName, it.Result, result)
		}
	}
	if path, nsID := rec.NetNS(); path != "/var/run/netns/cni-6f1c2a9e" || nsID != (ns.NetNSID{Dev: 4, Ino: 4026532412}) {
		t.Errorf("NetNS() = %q, %+v", path, nsID)
	}
}
