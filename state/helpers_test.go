package state

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nicmux/nicmux/ns"
)

// newStore opens a store in a folder that does not exist yet, so that the
// store itself creates it (and its modes can be checked).
func newStore(t testing.TB) (*Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	return openStore(t, dir), dir
}

// openStore opens the store at dir read-write, closed with the test.
func openStore(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(s.Close)
	return s
}

// openReadOnly opens the store at dir read-only, closed with the test.
func openReadOnly(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatalf("OpenReadOnly(%s): %v", dir, err)
	}
	t.Cleanup(s.Close)
	return s
}

func samplePlanned(ifname, network string) Planned {
	p := Planned{
		IfName:     ifname,
		Network:    network,
		CNIVersion: "1.0.0",
		Config: json.RawMessage(`{"cniVersion":"1.0.0","name":"` + network + `","plugins":[{"type":"macvlan","master":"eth1",` +
			`"ipam":{"type":"host-local","subnet":"10.1.0.0/16"}},{"type":"portmap","capabilities":{"portMappings":true}}]}`),
		CNIArgs: "IgnoreUnknown=1;K8S_POD_NAME=web-0;NICMUX_SET=fast",
	}
	if ifname == "net1" {
		p.CapabilityArgs = map[string]json.RawMessage{
			"portMappings": json.RawMessage(`[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]`),
			"bandwidth":    json.RawMessage(`{"ingressRate":1000}`),
		}
	}
	return p
}

// samplePlan is a plan of three interfaces: eth0, net1, net2.
func samplePlan(id string) *Plan {
	return &Plan{
		ContainerID:    id,
		IfName:         "eth0",
		NetNS:          "/var/run/netns/cni-1234",
		NetNSID:        ns.NetNSID{Dev: 4, Ino: 4026532281, Cookie: 8193},
		ListName:       "nicmux",
		CNIVersion:     "1.1.0",
		AttachmentFile: "/etc/nicmux/attachments/fast.yaml",
		Set:            "fast",
		Created:        time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC),
		Interfaces: []Planned{
			samplePlanned("eth0", "default"),
			samplePlanned("net1", "storage"),
			samplePlanned("net2", "backup"),
		},
	}
}

func sampleResult(ifname, addr string) json.RawMessage {
	return json.RawMessage(`{"cniVersion":"1.0.0","interfaces":[{"name":"` + ifname + `","mac":"0a:58:0a:01:00:05",` +
		`"sandbox":"/var/run/netns/cni-1234"}],"ips":[{"address":"` + addr + `","interface":0}]}`)
}

// begin records p, closing its transaction with the test.
func begin(t testing.TB, s *Store, p *Plan) *Txn {
	t.Helper()
	txn, err := s.Begin(p)
	if err != nil {
		t.Fatalf("Begin(%s): %v", p.ContainerID, err)
	}
	t.Cleanup(txn.Close)
	return txn
}

// attach records a complete ADD of samplePlan(id): plan, every result, the
// completion mark.
func attach(t testing.TB, s *Store, id string) *Plan {
	t.Helper()
	p := samplePlan(id)
	txn := begin(t, s, p)
	for i, it := range p.Interfaces {
		if err := txn.SaveResult(it.IfName, sampleResult(it.IfName, "10.1.0."+string(rune('1'+i))+"/16")); err != nil {
			t.Fatalf("SaveResult(%s): %v", it.IfName, err)
		}
	}
	if err := txn.Complete(); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	return p
}

func load(t testing.TB, s *Store, id string) *Record {
	t.Helper()
	rec := s.Load(id)
	if rec.Status != Whole || rec.Err != nil || rec.Plan == nil {
		t.Fatalf("Load(%s): status %v, %v", id, rec.Status, rec.Err)
	}
	return rec
}

// containerDir is the folder of container id in the store at dir.
func containerDir(dir, id string) string { return filepath.Join(dir, "containers", id) }

// dirNames lists the names in dir, sorted.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("reading %s: %v", dir, err)
	}
	names := []string{}
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func assertNames(t testing.TB, dir string, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	sort.Strings(want)
	if got := dirNames(t, dir); !reflect.DeepEqual(got, want) {
		t.Errorf("%s holds %q, want %q", dir, got, want)
	}
}

func assertMode(t testing.TB, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %#o, want %#o", path, got, want)
	}
}

func assertGone(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s still there: %v", path, err)
	}
}

// writeRaw writes data at path as a stray file, creating folders as needed.
func writeRaw(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readRaw(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameJSON reports whether a and b mean the same JSON value.
func sameJSON(t testing.TB, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

// assertPlanned checks that got is want, JSON fields compared by meaning.
func assertPlanned(t testing.TB, got, want Planned) {
	t.Helper()
	if got.IfName != want.IfName || got.Network != want.Network || got.CNIVersion != want.CNIVersion || got.CNIArgs != want.CNIArgs {
		t.Errorf("planned %s: got %+v, want %+v", want.IfName, got, want)
	}
	if !sameJSON(t, got.Config, want.Config) {
		t.Errorf("planned %s: config %s, want %s", want.IfName, got.Config, want.Config)
	}
	if len(got.CapabilityArgs) != len(want.CapabilityArgs) {
		t.Errorf("planned %s: capabilityArgs %s, want %s", want.IfName, mustJSON(t, got.CapabilityArgs), mustJSON(t, want.CapabilityArgs))
	}
	for k, v := range want.CapabilityArgs {
		if !sameJSON(t, got.CapabilityArgs[k], v) {
			t.Errorf("planned %s: capabilityArgs[%s] = %s, want %s", want.IfName, k, got.CapabilityArgs[k], v)
		}
	}
}

func assertCorrupt(t testing.TB, err error, path string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error for a corrupt record")
	}
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *CorruptError", err, err)
	}
	if ce.Path != path {
		t.Errorf("CorruptError.Path = %q, want %q", ce.Path, path)
	}
	if ce.Err == nil {
		t.Error("CorruptError has no cause")
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name %s", err, path)
	}
	if errors.Is(err, ErrNotFound) {
		t.Errorf("corrupt record reported as not found: %v", err)
	}
}

func assertUnsafe(t testing.TB, err error, path string) {
	t.Helper()
	var ue *unsafeError
	if !errors.As(err, &ue) {
		t.Fatalf("error %v (%T) is not an *unsafeError", err, err)
	}
	if ue.Path != path {
		t.Errorf("unsafeError.Path = %q, want %q", ue.Path, path)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name %s", err, path)
	}
}

// snapshot records every path under root with its mode and content (or
// link target).
func snapshot(t testing.TB, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		v := fi.Mode().String()
		switch {
		case d.Type().IsRegular():
			v += " " + string(readRaw(t, path))
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			v += " -> " + target
		}
		m[path] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// assertUnchanged checks that nothing under root changed since before.
func assertUnchanged(t testing.TB, root string, before map[string]string, what string) {
	t.Helper()
	after := snapshot(t, root)
	var d []string
	for k, v := range after {
		if bv, ok := before[k]; !ok {
			d = append(d, "created "+k)
		} else if bv != v {
			d = append(d, "changed "+k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			d = append(d, "removed "+k)
		}
	}
	sort.Strings(d)
	if len(d) > 0 {
		t.Errorf("%s touched the file system: %q", what, d)
	}
}

// copyTree copies the fixture folder src to dst with the store's modes
// (git keeps neither).
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.Name() == "README" {
			return nil
		}
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func sortedIfNames(rec *Record) []string {
	names := rec.IfNames()
	sort.Strings(names)
	return names
}

// storePath is the folder the store s opened.
func storePath(s *Store) string { return s.root.path }
