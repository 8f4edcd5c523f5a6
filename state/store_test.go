package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"golang.org/x/sys/unix"

	"github.com/nicmux/nicmux/ns"
)

func TestValidate(t *testing.T) {
	ids := []struct {
		id string
		ok bool
	}{
		{"abc", true},
		{"a.b-c_d", true},
		{"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", true},
		{strings.Repeat("a", MaxIDLength), true},
		{strings.Repeat("a", MaxIDLength+1), false},
		{"", false},
		{".", false},
		{"..", false},
		{"../x", false},
		{"a/b", false},
		{"/abs", false},
		{"x y", false},
		{"-lead", false},
		{"_lead", false},
		{"a\x00b", false},
		{"a\nb", false},
	}
	for _, tc := range ids {
		t.Run(fmt.Sprintf("id %.30q len %d", tc.id, len(tc.id)), func(t *testing.T) {
			err := ValidateID(tc.id)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidateID = %v, want ok=%v", err, tc.ok)
			}
			if err == nil {
				return
			}
			// A CNI error, so that the runtime gets the spec's code
			// for a bad CNI_CONTAINERID, whatever is wrong with it.
			var te *types.Error
			if !errors.As(err, &te) || te.Code == 0 {
				t.Errorf("error %v carries no CNI code", err)
			}
			if prefix := fmt.Sprintf("%.20q", tc.id); !strings.Contains(err.Error(), strings.TrimSuffix(prefix, `"`)) {
				t.Errorf("error %q does not name the ID", err)
			}
		})
	}
	ifnames := []struct {
		name string
		ok   bool
	}{
		{"eth0", true},
		{"net1", true},
		{"a.b-c_d", true},
		{"fifteen-chars15", true},
		{"sixteen-chars-16", false},
		{"", false},
		{".", false},
		{"..", false},
		{"../e", false},
		{"a/b", false},
		{"a:b", false},
		{"a b", false},
		{"a\tb", false},
	}
	for _, tc := range ifnames {
		t.Run(fmt.Sprintf("ifname %q", tc.name), func(t *testing.T) {
			err := validateIfName(tc.name)
			if (err == nil) != tc.ok {
				t.Fatalf("validateIfName = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.name)) {
				t.Errorf("error %q does not name the interface", err)
			}
		})
	}
}

func TestErrorTypes(t *testing.T) {
	cause := errors.New("boom")
	tests := []struct {
		name string
		err  error
		msg  string
	}{
		{"corrupt", &CorruptError{Path: "/x/container.json", Err: cause}, "state record /x/container.json is corrupt: boom"},
		{"dir", &dirError{Path: "/x", Err: cause}, "stateDir /x: boom"},
		{"unsafe", &unsafeError{Path: "/x/containers", Reason: "is odd"}, "stateDir: /x/containers is odd"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.msg {
				t.Errorf("Error() = %q, want %q", got, tc.msg)
			}
			if _, unsafe := tc.err.(*unsafeError); !unsafe && !errors.Is(fmt.Errorf("loading: %w", tc.err), cause) {
				t.Error("does not unwrap to its cause")
			}
			c, ok := tc.err.(interface{ CNICode() uint })
			if !ok || c.CNICode() != types.ErrIOFailure {
				t.Errorf("CNI code: want %d (I/O failure)", types.ErrIOFailure)
			}
		})
	}
}

func TestOpen(t *testing.T) {
	s, dir := newStore(t)
	if storePath(s) != dir {
		t.Errorf("Path() = %q, want %q", storePath(s), dir)
	}
	for _, d := range []string{dir, filepath.Join(dir, "containers"), filepath.Join(dir, "locks")} {
		assertMode(t, d, 0o700)
	}
	assertNames(t, dir, "containers", "locks")
	// Opened again, as every verb does.
	attach(t, s, "c1")
	s2 := openStore(t, dir)
	load(t, s2, "c1")
	s2.Close()
	s2.Close() // safe twice
	var none *Store
	none.Close()

	t.Run("path is a file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		writeRaw(t, file, []byte("x"))
		for name, open := range map[string]func(string) (*Store, error){"Open": Open, "OpenReadOnly": OpenReadOnly} {
			s, err := open(file)
			var de *dirError
			if !errors.As(err, &de) || de.Path != file {
				t.Errorf("%s = %v, %v; want a *dirError for %s", name, s, err, file)
			}
		}
	})
	t.Run("read-only, missing", func(t *testing.T) {
		// Nothing was ever recorded: a store that holds nothing (CHECK
		// then answers "no state", code 3), and creates nothing.
		missing := filepath.Join(t.TempDir(), "state")
		s, err := OpenReadOnly(missing)
		if err != nil {
			t.Fatalf("OpenReadOnly of a missing folder: %v", err)
		}
		defer s.Close()
		if rec := s.Load("c1"); rec.Status != Missing || rec.Err != nil {
			t.Errorf("Load = %+v; want Missing", rec)
		}
		if ids, err := s.Containers(); len(ids) != 0 || err != nil {
			t.Errorf("Containers = %v, %v", ids, err)
		}
		if l, err := s.Acquire(t.Context(), "c1", Shared); err != nil {
			t.Errorf("Acquire(Shared) = %v", err)
		} else {
			l.Release()
		}
		assertGone(t, missing)
	})
}

// Begin makes the plan readable by any later store: ADD's own, a DEL's, a
// GC's.
func TestPlanRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		plan func() *Plan
	}{
		{"all fields", func() *Plan { return samplePlan("c1") }},
		{"no interfaces", func() *Plan { return &Plan{ContainerID: "c2"} }},
		{"no set, namespace not found, one interface", func() *Plan {
			p := samplePlan("0123456789abcdef")
			p.Set, p.NetNSID, p.Interfaces = "", ns.NetNSID{}, p.Interfaces[:1]
			return p
		}},
		{"fifteen-character ifname, 250-character ID", func() *Plan {
			p := samplePlan(strings.Repeat("f", MaxIDLength))
			p.Interfaces = append(p.Interfaces, samplePlanned("fifteen-chars15", "wide"))
			return p
		}},
		{"no capability args, no CNI args", func() *Plan {
			p := samplePlan("c3")
			for i := range p.Interfaces {
				p.Interfaces[i].CapabilityArgs, p.Interfaces[i].CNIArgs = nil, ""
			}
			return p
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			p := tc.plan()
			want := tc.plan()
			begin(t, s, p)
			// A fresh store: what a DEL in another process reads.
			rec := load(t, openStore(t, dir), p.ContainerID)
			if !reflect.DeepEqual(rec.Plan, want) {
				t.Errorf("Plan:\n got %+v\nwant %+v", rec.Plan, want)
			}
			if rec.ContainerID != p.ContainerID || rec.Format != 2 || rec.Complete {
				t.Errorf("record %s, format %d, complete %v", rec.ContainerID, rec.Format, rec.Complete)
			}
			if len(rec.Interfaces) != len(want.Interfaces) {
				t.Fatalf("%d interfaces, want %d", len(rec.Interfaces), len(want.Interfaces))
			}
			for i, it := range rec.Interfaces {
				if !reflect.DeepEqual(it.Planned, want.Interfaces[i]) {
					t.Errorf("interface %d: %+v, want %+v", i, it.Planned, want.Interfaces[i])
				}
				if it.Result != nil || it.ResultErr != nil || it.Released {
					t.Errorf("%s: result %s (%v), released %v before anything ran", it.IfName, it.Result, it.ResultErr, it.Released)
				}
			}
			cdir := containerDir(dir, p.ContainerID)
			assertNames(t, cdir, "container.json")
			assertMode(t, cdir, 0o700)
			assertMode(t, filepath.Join(cdir, "container.json"), 0o600)
			var hdr map[string]any
			if err := json.Unmarshal(readRaw(t, filepath.Join(cdir, "container.json")), &hdr); err != nil {
				t.Fatalf("the plan is not JSON: %v", err)
			}
			if hdr["kind"] != kindContainer || hdr["containerID"] != p.ContainerID {
				t.Errorf("on disk: kind %v, containerID %v", hdr["kind"], hdr["containerID"])
			}
		})
	}
}

// A configuration that is not compact is kept with the same meaning.
func TestPlanConfigIndented(t *testing.T) {
	s, _ := newStore(t)
	p := samplePlan("c1")
	p.Interfaces[0].Config = json.RawMessage("{\n  \"name\": \"storage\",\n  \"plugins\": [ {\"type\": \"a<b&c\"} ]\n}\n")
	want := append(json.RawMessage(nil), p.Interfaces[0].Config...)
	begin(t, s, p)
	if got := load(t, s, "c1").Interfaces[0].Config; !sameJSON(t, got, want) {
		t.Errorf("Config = %s, want the meaning of %s", got, want)
	}
}

// What Load tells at each step of a container's life.
func TestLifecycle(t *testing.T) {
	type want struct {
		result   bool // Result is the saved one
		released bool
	}
	s, dir := newStore(t)
	p := samplePlan("c1")
	txn := begin(t, s, p)
	results := map[string]json.RawMessage{}
	steps := []struct {
		name     string
		do       func() error
		complete bool
		ifs      map[string]want
		files    []string
	}{
		{"planned", func() error { return nil }, false,
			map[string]want{}, []string{"container.json"}},
		{"eth0 added", func() error { return txn.SaveResult("eth0", results["eth0"]) }, false,
			map[string]want{"eth0": {result: true}}, []string{"container.json", "if-eth0.json"}},
		{"eth0 added again", func() error { return txn.SaveResult("eth0", results["eth0"]) }, false,
			map[string]want{"eth0": {result: true}}, []string{"container.json", "if-eth0.json"}},
		{"all added", func() error {
			return errors.Join(txn.SaveResult("net1", results["net1"]), txn.SaveResult("net2", results["net2"]))
		}, false,
			map[string]want{"eth0": {result: true}, "net1": {result: true}, "net2": {result: true}},
			[]string{"container.json", "if-eth0.json", "if-net1.json", "if-net2.json"}},
		{"complete", txn.Complete, true,
			map[string]want{"eth0": {result: true}, "net1": {result: true}, "net2": {result: true}},
			[]string{"complete.json", "container.json", "if-eth0.json", "if-net1.json", "if-net2.json"}},
		{"net2 released", func() error { return s.MarkReleased("c1", "net2") }, true,
			map[string]want{"eth0": {result: true}, "net1": {result: true}, "net2": {released: true}},
			[]string{"complete.json", "container.json", "if-eth0.json", "if-net1.json", "released-net2"}},
		{"net2 released again, net1 too", func() error {
			return errors.Join(s.MarkReleased("c1", "net2"), s.MarkReleased("c1", "net1"))
		}, true,
			map[string]want{"eth0": {result: true}, "net1": {released: true}, "net2": {released: true}},
			[]string{"complete.json", "container.json", "if-eth0.json", "released-net1", "released-net2"}},
	}
	for i, it := range p.Interfaces {
		results[it.IfName] = sampleResult(it.IfName, fmt.Sprintf("10.1.0.%d/16", i+1))
	}
	for _, step := range steps {
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		rec := load(t, openStore(t, dir), "c1")
		if rec.Complete != step.complete {
			t.Errorf("%s: Complete = %v, want %v", step.name, rec.Complete, step.complete)
		}
		if got := rec.IfNames(); !reflect.DeepEqual(got, []string{"eth0", "net1", "net2"}) {
			t.Errorf("%s: IfNames() = %q", step.name, got)
		}
		for _, it := range rec.Interfaces {
			w := step.ifs[it.IfName]
			if w.result != bytes.Equal(it.Result, results[it.IfName]) || (!w.result && it.Result != nil) {
				t.Errorf("%s: %s result %s, want saved=%v", step.name, it.IfName, it.Result, w.result)
			}
			if it.Released != w.released || it.ResultErr != nil {
				t.Errorf("%s: %s released %v (want %v), ResultErr %v", step.name, it.IfName, it.Released, w.released, it.ResultErr)
			}
		}
		assertNames(t, containerDir(dir, "c1"), step.files...)
	}
	if err := s.Remove("c1"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if rec := s.Load("c1"); rec.Status != Missing || rec.Err != nil {
		t.Errorf("Load after Remove = %+v; want Missing", rec)
	}
	assertNames(t, filepath.Join(dir, "containers"))
	if s.Has("c1") {
		t.Error("Has after Remove")
	}
}

// A result record holds a copy of its planned interface and of the plan's
// namespace and set: what a DEL needs should the plan be lost.
func TestResultRecord(t *testing.T) {
	s, dir := newStore(t)
	p := samplePlan("c1")
	txn := begin(t, s, p)
	res := sampleResult("net1", "10.1.0.5/16")
	if err := txn.SaveResult("net1", res); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(containerDir(dir, "c1"), "if-net1.json")
	assertMode(t, path, 0o600)
	var f struct {
		Kind        string     `json:"kind"`
		ContainerID string     `json:"containerID"`
		NetNS       string     `json:"netns"`
		NetNSID     ns.NetNSID `json:"netnsID"`
		Set         string     `json:"set"`
		Saved       string     `json:"saved"`
		Planned
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(readRaw(t, path), &f); err != nil {
		t.Fatal(err)
	}
	if f.Kind != kindInterface || f.ContainerID != "c1" || f.NetNS != p.NetNS || f.NetNSID != p.NetNSID || f.Set != "fast" || f.Saved == "" {
		t.Errorf("result record header: %+v", f)
	}
	assertPlanned(t, f.Planned, p.Interfaces[1])
	if !sameJSON(t, f.Result, res) {
		t.Errorf("result %s, want %s", f.Result, res)
	}
	if err := txn.Complete(); err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(readRaw(t, filepath.Join(containerDir(dir, "c1"), "complete.json")), &c); err != nil {
		t.Fatal(err)
	}
	if c["kind"] != kindComplete || c["containerID"] != "c1" || c["completed"] == nil {
		t.Errorf("complete.json: %v", c)
	}
	assertMode(t, filepath.Join(containerDir(dir, "c1"), "complete.json"), 0o600)
	if err := s.MarkReleased("c1", "net1"); err != nil {
		t.Fatal(err)
	}
	assertMode(t, filepath.Join(containerDir(dir, "c1"), "released-net1"), 0o600)
}

func TestSaveResultErrors(t *testing.T) {
	tests := []struct {
		name   string
		ifname string
		result json.RawMessage
	}{
		{"not in the plan", "net9", sampleResult("net9", "10.9.0.1/16")},
		{"invalid JSON", "eth0", json.RawMessage(`{"cniVersion":`)},
		{"not JSON", "eth0", json.RawMessage(`not json`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			txn := begin(t, s, samplePlan("c1"))
			if err := txn.SaveResult(tc.ifname, tc.result); err == nil {
				t.Fatal("SaveResult succeeded")
			}
			// Nothing written, no temporary file left.
			assertNames(t, containerDir(dir, "c1"), "container.json")
			for _, it := range load(t, s, "c1").Interfaces {
				if it.Result != nil || it.ResultErr != nil {
					t.Errorf("%s: %s, %v", it.IfName, it.Result, it.ResultErr)
				}
			}
		})
	}
	t.Run("after Remove", func(t *testing.T) {
		s, dir := newStore(t)
		txn := begin(t, s, samplePlan("c1"))
		if err := s.Remove("c1"); err != nil {
			t.Fatal(err)
		}
		if err := txn.SaveResult("eth0", sampleResult("eth0", "10.1.0.1/16")); err == nil {
			t.Error("SaveResult into a removed container succeeded")
		}
		if err := txn.Complete(); err == nil {
			t.Error("Complete of a removed container succeeded")
		}
		assertNames(t, filepath.Join(dir, "containers"))
	})
}

// Begin refuses a plan that Load would not read back: a durable plan must
// be usable by every later DEL.
func TestBeginRefuses(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Plan)
	}{
		{"configuration not JSON", func(p *Plan) { p.Interfaces[1].Config = json.RawMessage(`{"name":`) }},
		{"capability argument not JSON", func(p *Plan) {
			p.Interfaces[0].CapabilityArgs = map[string]json.RawMessage{"x": json.RawMessage(`{`)}
		}},
		{"empty configuration", func(p *Plan) { p.Interfaces[1].Config = json.RawMessage{} }},
		{"no configuration", func(p *Plan) { p.Interfaces[1].Config = nil }},
		{"configuration not an object", func(p *Plan) { p.Interfaces[2].Config = json.RawMessage(`[1]`) }},
		{"interface planned twice", func(p *Plan) { p.Interfaces[2].IfName = "eth0" }},
		{"invalid ifname", func(p *Plan) { p.Interfaces[2].IfName = "net/2" }},
		{"invalid ID", func(p *Plan) { p.ContainerID = "../c1" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			p := samplePlan("c1")
			tc.mod(p)
			if txn, err := s.Begin(p); err == nil {
				txn.Close()
				rec := s.Load("c1")
				t.Fatalf("Begin accepted the plan; Load then says %v (record %+v)", rec.Err, rec)
			}
			assertNames(t, filepath.Join(dir, "containers"))
		})
	}
}

// A crash (or kill) during an earlier ADD, before its plan was durable, or
// a removal cut short, leaves files in the container's folder without a
// plan. Begin starts from an empty folder: no result of the earlier
// attempt may pass for one of this ADD.
func TestBeginClearsLeftovers(t *testing.T) {
	stale := func(t *testing.T, dir string) {
		old := samplePlan("c1")
		for _, it := range old.Interfaces {
			writeRaw(t, filepath.Join(containerDir(dir, "c1"), "if-"+it.IfName+".json"), mustJSON(t, interfaceFile{
				Kind: kindInterface, ContainerID: "c1", Planned: it, Result: sampleResult(it.IfName, "10.9.9.9/16"),
			}))
		}
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
	}{
		{"empty folder", func(t *testing.T, dir string) {
			if err := os.MkdirAll(containerDir(dir, "c1"), 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{"temporary files", func(t *testing.T, dir string) {
			writeRaw(t, filepath.Join(containerDir(dir, "c1"), ".container.json.tmp-5577006791"), []byte(`{"kind":"nicmuxCont`))
			writeRaw(t, filepath.Join(containerDir(dir, "c1"), ".if-eth0.json.tmp-8674665223"), nil)
		}},
		{"results, marks, no plan", func(t *testing.T, dir string) {
			stale(t, dir)
			writeRaw(t, filepath.Join(containerDir(dir, "c1"), "complete.json"), []byte(`{"kind":"nicmuxCompleteV1","containerID":"c1"}`))
			writeRaw(t, filepath.Join(containerDir(dir, "c1"), "released-net1"), nil)
		}},
		{"corrupt results, no plan", func(t *testing.T, dir string) {
			writeRaw(t, filepath.Join(containerDir(dir, "c1"), "if-eth0.json"), nil)
			writeRaw(t, filepath.Join(containerDir(dir, "c1"), "if-net1.json"), []byte("{garbage"))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			tc.setup(t, dir)
			p := samplePlan("c1")
			p.Interfaces = p.Interfaces[:2]
			begin(t, s, p)
			assertNames(t, containerDir(dir, "c1"), "container.json")
			rec := load(t, s, "c1")
			if rec.Complete {
				t.Error("the earlier attempt's completion mark counts for this ADD")
			}
			for _, it := range rec.Interfaces {
				if it.Result != nil || it.ResultErr != nil || it.Released {
					t.Errorf("%s: the earlier attempt's records count: result %s (%v), released %v", it.IfName, it.Result, it.ResultErr, it.Released)
				}
			}
		})
	}
}

// A result record lost or torn after ADD (a crash before the page cache
// reached the disk, an operator's hand) reads as unknown: Load does not
// fail, so that the container can still be released from its plan.
func TestResultLostAfterAdd(t *testing.T) {
	tests := []struct {
		name string
		mod  func(t *testing.T, path string)
		torn bool
	}{
		{"removed", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"truncated to nothing", func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"truncated half way", func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"zeros (a block allocated, never written)", func(t *testing.T, path string) {
			writeRaw(t, path, make([]byte, 4096))
		}, true},
		{"replaced by a folder", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			p := attach(t, s, "c1")
			path := filepath.Join(containerDir(dir, "c1"), "if-net1.json")
			tc.mod(t, path)
			rec := s.Load("c1")
			if rec.Status != Whole || rec.Err != nil {
				t.Fatalf("Load: %v, %v", rec.Status, rec.Err)
			}
			if !reflect.DeepEqual(rec.Plan, p) || !rec.Complete {
				t.Errorf("the plan suffers: %+v, complete %v", rec.Plan, rec.Complete)
			}
			net1 := rec.Interface("net1")
			if net1.Result != nil || net1.Released {
				t.Errorf("net1: result %s, released %v; want unknown", net1.Result, net1.Released)
			}
			if tc.torn {
				assertCorrupt(t, net1.ResultErr, path)
			} else if net1.ResultErr != nil {
				t.Errorf("net1: ResultErr %v for a record that is not there", net1.ResultErr)
			}
			assertPlanned(t, net1.Planned, p.Interfaces[1])
			for _, name := range []string{"eth0", "net2"} {
				if it := rec.Interface(name); it.Result == nil || it.ResultErr != nil {
					t.Errorf("%s: %s, %v", name, it.Result, it.ResultErr)
				}
			}
		})
	}
}

func TestLoadNotFound(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, s *Store, dir string)
		want  Status
	}{
		{"empty store", func(t *testing.T, s *Store, dir string) {}, Missing},
		{"other container only", func(t *testing.T, s *Store, dir string) { attach(t, s, "other") }, Missing},
		{"empty container folder", func(t *testing.T, s *Store, dir string) {
			if err := os.Mkdir(containerDir(dir, "c1"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, Empty},
		{"only temporary files", func(t *testing.T, s *Store, dir string) {
			writeRaw(t, filepath.Join(containerDir(dir, "c1"), ".container.json.tmp-123456"), mustJSON(t, containerFile{Kind: kindContainer, Plan: *samplePlan("c1")}))
			writeRaw(t, filepath.Join(containerDir(dir, "c1"), ".if-eth0.json.tmp-456789"), []byte("{garbage"))
		}, Empty},
		{"only marks", func(t *testing.T, s *Store, dir string) {
			writeRaw(t, filepath.Join(containerDir(dir, "c1"), "complete.json"), nil)
			writeRaw(t, filepath.Join(containerDir(dir, "c1"), "released-eth0"), nil)
		}, Empty},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			tc.setup(t, s, dir)
			rec := s.Load("c1")
			if rec.Status != tc.want || rec.Err != nil || rec.Plan != nil || len(rec.Interfaces) > 0 {
				t.Fatalf("Load = %+v; want status %v and nothing else: no record is not a corrupt one", rec, tc.want)
			}
		})
	}
}

// A plan that exists but cannot be used is an error naming it, never "no
// state"; Load returns what the folder still tells with it.
func TestLoadCorruptPlan(t *testing.T) {
	good := mustJSON(t, containerFile{Kind: kindContainer, Plan: *samplePlan("c1")})
	withPlan := func(mod func(*Plan)) []byte {
		p := samplePlan("c1")
		mod(p)
		return mustJSON(t, containerFile{Kind: kindContainer, Plan: *p})
	}
	iface := mustJSON(t, interfaceFile{Kind: kindInterface, ContainerID: "c1", Planned: samplePlanned("eth0", "default")})
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"whitespace only", []byte(" \n\t\r\n ")},
		{"NUL bytes", make([]byte, 64)},
		{"truncated", good[:len(good)/2]},
		{"truncated by one byte", good[:len(good)-1]},
		{"trailing garbage", append(append([]byte(nil), good...), []byte("}garbage")...)},
		{"two records", append(append([]byte(nil), good...), good...)},
		{"not JSON", []byte("hello world")},
		{"JSON null", []byte("null")},
		{"JSON array", []byte("[1,2,3]")},
		{"JSON string", []byte(`"container"`)},
		{"empty object", []byte("{}")},
		{"no kind", []byte(`{"containerID":"c1","ifname":"eth0"}`)},
		{"kind of no nicmux format", []byte(`{"kind":"nicmuxWidgetV3","containerID":"c1"}`)},
		{"kind with wrong type", []byte(`{"kind":1,"containerID":"c1"}`)},
		{"result record", iface},
		{"completion mark", []byte(`{"kind":"` + kindComplete + `","containerID":"c1"}`)},
		{"kind but no container ID", []byte(`{"kind":"` + kindContainer + `"}`)},
		{"other container's plan", mustJSON(t, containerFile{Kind: kindContainer, Plan: *samplePlan("c2")})},
		{"field of wrong type", []byte(`{"kind":"` + kindContainer + `","containerID":"c1","interfaces":"eth0"}`)},
		{"bad time", []byte(`{"kind":"` + kindContainer + `","containerID":"c1","created":"yesterday"}`)},
		{"interface without configuration", withPlan(func(p *Plan) { p.Interfaces[1].Config = nil })},
		{"interface with a configuration that is not an object", withPlan(func(p *Plan) { p.Interfaces[1].Config = json.RawMessage(`"x"`) })},
		{"interface planned twice", withPlan(func(p *Plan) { p.Interfaces[2].IfName = "net1" })},
		{"interface with a bad name", withPlan(func(p *Plan) { p.Interfaces[2].IfName = "../../x" })},
		{"0.1 plan of another container", []byte(`{"kind":"nicmuxContainerV1","containerID":"c2","interfaces":["eth0"]}`)},
		{"0.1 plan with a bad interface name", []byte(`{"kind":"nicmuxContainerV1","containerID":"c1","interfaces":["eth0","a/b"]}`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			path := filepath.Join(containerDir(dir, "c1"), "container.json")
			writeRaw(t, path, tc.data)
			rec := s.Load("c1")
			assertCorrupt(t, rec.Err, path)
			if rec.Status != Unreadable || rec.Plan != nil || len(rec.Interfaces) != 0 || rec.ContainerID != "c1" {
				t.Errorf("record returned with the error: %+v; want one without plan nor interfaces", rec)
			}
		})
	}
	t.Run("a folder", func(t *testing.T) {
		s, dir := newStore(t)
		path := filepath.Join(containerDir(dir, "c1"), "container.json")
		if err := os.MkdirAll(path, 0o700); err != nil {
			t.Fatal(err)
		}
		assertCorrupt(t, s.Load("c1").Err, path)
	})
	t.Run("larger than any record", func(t *testing.T) {
		s, dir := newStore(t)
		path := filepath.Join(containerDir(dir, "c1"), "container.json")
		writeRaw(t, path, good)
		if err := os.Truncate(path, maxRecord+1); err != nil { // sparse
			t.Fatal(err)
		}
		assertCorrupt(t, s.Load("c1").Err, path)
	})
}

// A named pipe planted at a record is refused at once: opening it must not
// wait for a writer that never comes, which would pin the container's lock.
func TestLoadNamedPipe(t *testing.T) {
	for _, name := range []string{"container.json", "if-eth0.json"} {
		t.Run(name, func(t *testing.T) {
			s, dir := newStore(t)
			if name != "container.json" {
				begin(t, s, samplePlan("c1"))
			}
			path := filepath.Join(containerDir(dir, "c1"), name)
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
			done := make(chan *Record, 1)
			go func() { done <- s.Load("c1") }()
			var r *Record
			select {
			case r = <-done:
			case <-time.After(5 * time.Second):
				// Let the blocked open go, so that the test ends.
				if f, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil {
					f.Close()
				}
				t.Fatal("Load waits on a named pipe")
			}
			if name == "container.json" {
				assertCorrupt(t, r.Err, path)
			} else {
				assertCorrupt(t, r.Interface("eth0").ResultErr, path)
			}
		})
	}
}

// A result record that cannot be used is that interface's ResultErr, naming
// the record; the container's record still loads.
func TestLoadCorruptResult(t *testing.T) {
	good := mustJSON(t, interfaceFile{Kind: kindInterface, ContainerID: "c1", Planned: samplePlanned("eth0", "default"),
		Result: sampleResult("eth0", "10.1.0.1/16")})
	withField := func(k string, v any) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return mustJSON(t, m)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"whitespace only", []byte("\n\n   \n")},
		{"truncated", good[:len(good)/2]},
		{"truncated at config", good[:bytes.Index(good, []byte(`"config"`))+12]},
		{"not JSON", []byte("<xml/>")},
		{"JSON null", []byte("null")},
		{"a plan", mustJSON(t, containerFile{Kind: kindContainer, Plan: *samplePlan("c1")})},
		{"no kind", withField("kind", nil)},
		{"kind of another record", withField("kind", "nicmuxCompleteV1")},
		{"other container's record", withField("containerID", "c2")},
		{"other interface's record", withField("ifname", "net1")},
		{"no container ID", withField("containerID", nil)},
		{"no ifname", withField("ifname", nil)},
		{"no config", withField("config", nil)},
		{"config null", []byte(strings.Replace(string(good), `"config":{`, `"config":null,"x":{`, 1))},
		{"config empty string", withField("config", "")},
		{"config a number", withField("config", 42)},
		{"config an array", withField("config", []any{})},
		{"capabilityArgs of wrong type", withField("capabilityArgs", "x")},
		{"netnsID of wrong type", withField("netnsID", "4:5")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			begin(t, s, samplePlan("c1"))
			path := filepath.Join(containerDir(dir, "c1"), "if-eth0.json")
			writeRaw(t, path, tc.data)
			rec := load(t, s, "c1")
			eth0 := rec.Interface("eth0")
			assertCorrupt(t, eth0.ResultErr, path)
			if eth0.Result != nil || eth0.Released {
				t.Errorf("eth0: result %s, released %v", eth0.Result, eth0.Released)
			}
		})
	}
}

// The plan is lost (a crash of an ADD before Begin's fsync could not do it;
// an operator's hand can) or unreadable, but result records remain: Load
// returns the error and a record of the interfaces they describe, so that a
// DEL can release them.
func TestSalvage(t *testing.T) {
	tests := []struct {
		name     string
		plan     []byte // nil: removed
		complete bool
	}{
		{"plan removed", nil, false},
		{"plan removed, ADD complete", nil, true},
		{"plan empty", []byte{}, false},
		{"plan torn, ADD complete", []byte(`{"kind":"nicmuxContainerV2","contai`), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			p := attach(t, s, "c1")
			if err := s.MarkReleased("c1", "net1"); err != nil {
				t.Fatal(err)
			}
			cdir := containerDir(dir, "c1")
			if !tc.complete {
				if err := os.Remove(filepath.Join(cdir, "complete.json")); err != nil {
					t.Fatal(err)
				}
			}
			planPath := filepath.Join(cdir, "container.json")
			if tc.plan == nil {
				if err := os.Remove(planPath); err != nil {
					t.Fatal(err)
				}
			} else {
				writeRaw(t, planPath, tc.plan)
			}
			rec := s.Load("c1")
			if tc.plan == nil && (rec.Status != PlanLost || !errors.Is(rec.Err, ErrNotFound)) {
				t.Errorf("Load: %v, %v; want PlanLost, ErrNotFound", rec.Status, rec.Err)
			}
			if tc.plan != nil {
				assertCorrupt(t, rec.Err, planPath)
				if rec.Status != Unreadable {
					t.Errorf("Load: %v, want Unreadable", rec.Status)
				}
			}
			if rec.Plan != nil || rec.ContainerID != "c1" || rec.Complete != tc.complete {
				t.Errorf("record %s: plan %v, complete %v (want %v)", rec.ContainerID, rec.Plan, rec.Complete, tc.complete)
			}
			if got := sortedIfNames(rec); !reflect.DeepEqual(got, []string{"eth0", "net2"}) {
				t.Fatalf("interfaces %q, want those with a result record: eth0, net2", got)
			}
			for _, i := range []int{0, 2} {
				it := rec.Interface(p.Interfaces[i].IfName)
				assertPlanned(t, it.Planned, p.Interfaces[i])
				if it.Result == nil || it.ResultErr != nil || it.Released {
					t.Errorf("%s: result %s (%v), released %v", it.IfName, it.Result, it.ResultErr, it.Released)
				}
			}
			if rec.Set() != p.Set {
				t.Errorf("Set() = %q, want %q", rec.Set(), p.Set)
			}
			if path, id := rec.NetNS(); path != p.NetNS || id != p.NetNSID {
				t.Errorf("NetNS() = %q, %+v; want %q, %+v", path, id, p.NetNS, p.NetNSID)
			}
		})
	}
}

// Salvage reads what it can: a torn result record is an interface with its
// error; names that are not result records are skipped.
func TestSalvageReadsWhatItCan(t *testing.T) {
	s, dir := newStore(t)
	p := attach(t, s, "c1")
	cdir := containerDir(dir, "c1")
	if err := os.Remove(filepath.Join(cdir, "container.json")); err != nil {
		t.Fatal(err)
	}
	writeRaw(t, filepath.Join(cdir, "if-net1.json"), []byte(`{"kind":"nicmuxInterfaceV2","contain`))
	for _, stray := range []string{"if-.json", "if-a b.json", "if-toolongifname1234.json", "if-eth0.json.old", ".if-net3.json.tmp-1234", "net4.json"} {
		writeRaw(t, filepath.Join(cdir, stray), mustJSON(t, interfaceFile{Kind: kindInterface, ContainerID: "c1", Planned: samplePlanned("net3", "x")}))
	}
	rec := s.Load("c1")
	if rec.Status != PlanLost || !errors.Is(rec.Err, ErrNotFound) {
		t.Fatalf("Load = %+v", rec)
	}
	if got := sortedIfNames(rec); !reflect.DeepEqual(got, []string{"eth0", "net1", "net2"}) {
		t.Fatalf("interfaces %q", got)
	}
	net1 := rec.Interface("net1")
	assertCorrupt(t, net1.ResultErr, filepath.Join(cdir, "if-net1.json"))
	if net1.Result != nil || net1.Network != "" {
		t.Errorf("net1 from a torn record: %+v", net1)
	}
	if rec.Set() != p.Set {
		t.Errorf("Set() = %q, want %q: the readable records tell it", rec.Set(), p.Set)
	}

	// Only torn records: the interfaces are known by name, nothing else.
	for _, n := range []string{"if-eth0.json", "if-net2.json"} {
		writeRaw(t, filepath.Join(cdir, n), nil)
	}
	rec = s.Load("c1")
	if rec.Status != PlanLost || !errors.Is(rec.Err, ErrNotFound) {
		t.Fatalf("Load = %+v", rec)
	}
	if got := sortedIfNames(rec); !reflect.DeepEqual(got, []string{"eth0", "net1", "net2"}) {
		t.Errorf("interfaces %q", got)
	}
	if path, id := rec.NetNS(); rec.Set() != "" || path != "" || !id.IsZero() {
		t.Errorf("set %q, netns %q %+v from torn records", rec.Set(), path, id)
	}
}

func TestRemove(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, s *Store, dir string)
	}{
		{"nothing", func(t *testing.T, s *Store, dir string) {}},
		{"empty folder", func(t *testing.T, s *Store, dir string) {
			if err := os.Mkdir(containerDir(dir, "c1"), 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{"complete container with stray temporary files", func(t *testing.T, s *Store, dir string) {
			attach(t, s, "c1")
			if err := s.MarkReleased("c1", "net2"); err != nil {
				t.Fatal(err)
			}
			writeRaw(t, filepath.Join(containerDir(dir, "c1"), ".container.json.tmp-123"), []byte("{half"))
			writeRaw(t, filepath.Join(containerDir(dir, "c1"), ".if-net1.json.tmp-987654321"), nil)
		}},
		{"results without plan", func(t *testing.T, s *Store, dir string) {
			attach(t, s, "c1")
			if err := os.Remove(filepath.Join(containerDir(dir, "c1"), "container.json")); err != nil {
				t.Fatal(err)
			}
		}},
		{"corrupt records", func(t *testing.T, s *Store, dir string) {
			writeRaw(t, filepath.Join(containerDir(dir, "c1"), "container.json"), nil)
			writeRaw(t, filepath.Join(containerDir(dir, "c1"), "if-eth0.json"), []byte("garbage"))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			keep := attach(t, s, "keep")
			tc.setup(t, s, dir)
			for i := range 2 {
				if err := s.Remove("c1"); err != nil {
					t.Fatalf("Remove call %d: %v", i+1, err)
				}
			}
			assertGone(t, containerDir(dir, "c1"))
			if rec := s.Load("c1"); rec.Status != Missing || rec.Err != nil {
				t.Errorf("Load after Remove = %+v; want Missing", rec)
			}
			if ids, err := s.Containers(); err != nil || !reflect.DeepEqual(ids, []string{"keep"}) {
				t.Errorf("Containers() = %q, %v; want [keep]", ids, err)
			}
			if rec := load(t, s, "keep"); !reflect.DeepEqual(rec.Plan, keep) || !rec.Complete {
				t.Errorf("the other container's record changed: %+v", rec)
			}
		})
	}
}

// Remove removes the plan last: a removal cut short leaves a container that
// is still known and can be removed again.
func TestRemovePlanGoesLast(t *testing.T) {
	s, dir := newStore(t)
	attach(t, s, "c1")
	// A folder in the way cannot be unlinked as a file.
	writeRaw(t, filepath.Join(containerDir(dir, "c1"), "zz-sub", "file"), []byte("x"))
	if err := s.Remove("c1"); err == nil {
		t.Fatal("Remove succeeded with an entry it cannot remove")
	}
	if rec := s.Load("c1"); rec.Status != Whole || rec.Plan == nil {
		t.Fatalf("the plan went before the rest: %+v", rec)
	}
	if ids, err := s.Containers(); err != nil || !reflect.DeepEqual(ids, []string{"c1"}) {
		t.Errorf("Containers() = %q, %v; want [c1]", ids, err)
	}
	if err := os.RemoveAll(filepath.Join(containerDir(dir, "c1"), "zz-sub")); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("c1"); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	assertGone(t, containerDir(dir, "c1"))
}

func TestContainers(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, s *Store, dir string)
		want  []string
	}{
		{"empty store", func(t *testing.T, s *Store, dir string) {}, nil},
		{"mixed", func(t *testing.T, s *Store, dir string) {
			for _, id := range []string{"c2", "c1", "0123abc"} {
				attach(t, s, id)
			}
			// Begun, nothing else yet.
			begin(t, s, samplePlan("begun"))
			// An empty folder from a crashed ADD is listed: its lock
			// and folder are GC's to remove.
			if err := os.Mkdir(containerDir(dir, "half"), 0o700); err != nil {
				t.Fatal(err)
			}
			for _, bad := range []string{".hidden", "bad name", "-dash", "_under"} {
				if err := os.Mkdir(containerDir(dir, bad), 0o700); err != nil {
					t.Fatal(err)
				}
			}
		}, []string{"0123abc", "begun", "c1", "c2", "half"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			tc.setup(t, s, dir)
			got, err := s.Containers()
			if err != nil {
				t.Fatalf("Containers: %v", err)
			}
			sort.Strings(got)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Containers() = %q, want %q", got, tc.want)
			}
			for _, id := range tc.want {
				if !s.Has(id) {
					t.Errorf("Has(%s) = false for a listed container", id)
				}
			}
		})
	}
}

func TestHas(t *testing.T) {
	s, dir := newStore(t)
	attach(t, s, "c1")
	if err := os.Mkdir(containerDir(dir, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id   string
		want bool
	}{{"c1", true}, {"empty", true}, {"c2", false}, {"../state", false}, {"", false}, {strings.Repeat("c", MaxIDLength+1), false}} {
		if got := s.Has(tc.id); got != tc.want {
			t.Errorf("Has(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}

func TestCheckWritable(t *testing.T) {
	s, dir := newStore(t)
	before := snapshot(t, dir)
	for i := range 2 {
		if err := s.CheckWritable(); err != nil {
			t.Fatalf("CheckWritable call %d: %v", i+1, err)
		}
	}
	assertUnchanged(t, dir, before, "CheckWritable")
}

// A crash between writing a temporary file and renaming it leaves the
// temporary file beside the record: the record is still the good one, and
// later writes and removal work.
func TestCrashLeavesTemporaryFile(t *testing.T) {
	tests := []struct {
		name    string
		garbage []byte
	}{
		{"empty temporary file", nil},
		{"half-written temporary file", []byte(`{"kind":"nicmuxContainerV2","containerID":"c1","ifn`)},
		{"garbage", []byte{0xff, 0x00, 0x13, 0x37}},
		{"complete record never renamed", mustJSON(t, containerFile{Kind: kindContainer, Plan: Plan{ContainerID: "c1"}})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			p := samplePlan("c1")
			txn := begin(t, s, p)
			if err := txn.SaveResult("eth0", sampleResult("eth0", "10.1.0.1/16")); err != nil {
				t.Fatal(err)
			}
			cdir := containerDir(dir, "c1")
			writeRaw(t, filepath.Join(cdir, ".container.json.tmp-5577006791"), tc.garbage)
			writeRaw(t, filepath.Join(cdir, ".if-eth0.json.tmp-8674665223"), tc.garbage)
			// An interface whose first record never made it.
			writeRaw(t, filepath.Join(cdir, ".if-net1.json.tmp-6129484611"), tc.garbage)

			rec := load(t, s, "c1")
			if !reflect.DeepEqual(rec.Plan, samplePlan("c1")) {
				t.Errorf("Plan = %+v", rec.Plan)
			}
			if eth0 := rec.Interface("eth0"); !bytes.Equal(eth0.Result, sampleResult("eth0", "10.1.0.1/16")) || eth0.ResultErr != nil {
				t.Errorf("eth0: %s, %v", eth0.Result, eth0.ResultErr)
			}
			if net1 := rec.Interface("net1"); net1.Result != nil || net1.ResultErr != nil {
				t.Errorf("net1: %s, %v; want unknown", net1.Result, net1.ResultErr)
			}
			if ids, err := s.Containers(); err != nil || !reflect.DeepEqual(ids, []string{"c1"}) {
				t.Errorf("Containers() = %q, %v", ids, err)
			}
			if err := txn.SaveResult("net1", sampleResult("net1", "10.1.0.2/16")); err != nil {
				t.Fatal(err)
			}
			if err := txn.Complete(); err != nil {
				t.Fatal(err)
			}
			if rec := load(t, s, "c1"); !rec.Complete || rec.Interface("net1").Result == nil {
				t.Errorf("after later writes: complete %v, net1 %s", rec.Complete, rec.Interface("net1").Result)
			}
			if err := s.Remove("c1"); err != nil {
				t.Fatal(err)
			}
			assertGone(t, cdir)
		})
	}
}

// Writing a record is atomic: a reader beside the writer (another verb's
// process) sees the old record or the new one, never a part or nothing.
func TestSaveResultIsAtomicForReaders(t *testing.T) {
	s, dir := newStore(t)
	txn := begin(t, s, samplePlan("c1"))
	a := sampleResult("eth0", "10.1.0.1/16")
	b := json.RawMessage(`{"cniVersion":"1.0.0","dns":{"domain":"` + strings.Repeat("x", 64<<10) + `"}}`)
	if err := txn.SaveResult("eth0", a); err != nil {
		t.Fatal(err)
	}
	reader := openStore(t, dir)
	const n = 200
	done := make(chan struct{})
	var wg sync.WaitGroup
	var readErr error
	reads := 0
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			rec := reader.Load("c1")
			err := rec.Err
			if err == nil {
				eth0 := rec.Interface("eth0")
				err = eth0.ResultErr
				if err == nil && !bytes.Equal(eth0.Result, a) && !bytes.Equal(eth0.Result, b) {
					err = fmt.Errorf("read a mix: %.60s", eth0.Result)
				}
			}
			if err != nil {
				readErr = err
				return
			}
			reads++
		}
	})
	for i := range n {
		res := a
		if i%2 == 0 {
			res = b
		}
		if err := txn.SaveResult("eth0", res); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	if readErr != nil {
		t.Fatalf("reader saw: %v", readErr)
	}
	if reads == 0 {
		t.Fatal("the reader never read")
	}
	assertNames(t, containerDir(dir, "c1"), "container.json", "if-eth0.json")
}

func TestRecordAccessors(t *testing.T) {
	rec := &Record{Plan: samplePlan("c1"), set: "other", netns: "/other"}
	for _, it := range rec.Plan.Interfaces {
		rec.Interfaces = append(rec.Interfaces, &Interface{Planned: it})
	}
	if got := rec.IfNames(); !reflect.DeepEqual(got, []string{"eth0", "net1", "net2"}) {
		t.Errorf("IfNames() = %q", got)
	}
	if it := rec.Interface("net1"); it == nil || it.Network != "storage" {
		t.Errorf("Interface(net1) = %+v", it)
	}
	if it := rec.Interface("net9"); it != nil {
		t.Errorf("Interface(net9) = %+v, want nil", it)
	}
	// The plan, when there is one, is what tells.
	if rec.Set() != "fast" {
		t.Errorf("Set() = %q", rec.Set())
	}
	if path, id := rec.NetNS(); path != "/var/run/netns/cni-1234" || id != rec.Plan.NetNSID {
		t.Errorf("NetNS() = %q, %+v", path, id)
	}
	if got := (&Record{}).IfNames(); len(got) != 0 {
		t.Errorf("IfNames() of an empty record = %q", got)
	}
}

// realisticPlan is a plan of four interfaces with about 2KB of
// configuration each, and a result of about 1KB.
func realisticPlan(id string) (*Plan, json.RawMessage) {
	p := samplePlan(id)
	cfg := json.RawMessage(`{"cniVersion":"1.0.0","name":"storage","disableCheck":false,"plugins":[` +
		`{"type":"macvlan","master":"ens1f0","mode":"bridge","mtu":9000,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.1.0.0/16","rangeStart":"10.1.10.1","rangeEnd":"10.1.200.254","gateway":"10.1.0.1"}],[{"subnet":"fd00:10:1::/64"}]],"routes":[{"dst":"10.2.0.0/16","gw":"10.1.0.1"},{"dst":"10.3.0.0/16","gw":"10.1.0.1"},{"dst":"fd00:10:2::/64"}],"dataDir":"/var/lib/cni/networks"}},` +
		`{"type":"tuning","sysctl":{"net.ipv4.conf.IFNAME.arp_notify":"1","net.ipv6.conf.IFNAME.accept_ra":"0"},"mac":"0a:58:0a:01:00:05","promisc":false,"allmulti":false},` +
		`{"type":"portmap","capabilities":{"portMappings":true},"snat":true,"markMasqBit":13,"externalSetMarkChain":"KUBE-MARK-MASQ"},` +
		`{"type":"bandwidth","capabilities":{"bandwidth":true},"ingressRate":1000000,"ingressBurst":2000000,"egressRate":1000000,"egressBurst":2000000},` +
		`{"type":"firewall","backend":"iptables","iptablesAdminChainName":"CNI-ADMIN","ingressPolicy":"same-bridge"},` +
		`{"type":"sbr","table":100},` +
		`{"type":"vrf","vrfname":"storage-vrf","table":1001,"runtimeConfig":{"labels":{"team":"storage","tier":"backend","zone":"eu-west-1a"}}}]}`)
	p.Interfaces = append(p.Interfaces, samplePlanned("net3", "extra"))
	for i := range p.Interfaces {
		p.Interfaces[i].Config = cfg
	}
	res := json.RawMessage(`{"cniVersion":"1.0.0","interfaces":[{"name":"net1","mac":"0a:58:0a:01:00:05","mtu":9000,"sandbox":"/var/run/netns/cni-2d1c6d2e-8b1f-4c39-b0a7-5b8f0e6b1e2a"}],` +
		`"ips":[{"interface":0,"address":"10.1.10.5/16","gateway":"10.1.0.1"},{"interface":0,"address":"fd00:10:1::5/64","gateway":"fd00:10:1::1"}],` +
		`"routes":[{"dst":"10.2.0.0/16","gw":"10.1.0.1"},{"dst":"10.3.0.0/16","gw":"10.1.0.1"},{"dst":"10.4.0.0/16","gw":"10.1.0.1","mtu":1500},{"dst":"fd00:10:2::/64"}],` +
		`"dns":{"nameservers":["10.1.0.10","fd00:10:1::10"],"domain":"cluster.local","search":["default.svc.cluster.local","svc.cluster.local","cluster.local"],"options":["ndots:5","timeout:1"]}}`)
	return p, res
}

func BenchmarkBegin(b *testing.B) {
	s, _ := newStore(b)
	p, _ := realisticPlan("c1")
	b.ReportAllocs()
	for b.Loop() {
		txn, err := s.Begin(p)
		if err != nil {
			b.Fatal(err)
		}
		txn.Close()
		if err := s.Remove("c1"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSaveResult(b *testing.B) {
	s, _ := newStore(b)
	p, res := realisticPlan("c1")
	txn := begin(b, s, p)
	b.ReportAllocs()
	for b.Loop() {
		if err := txn.SaveResult("net1", res); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoad(b *testing.B) {
	s, _ := newStore(b)
	p, res := realisticPlan("c1")
	txn := begin(b, s, p)
	for _, it := range p.Interfaces {
		if err := txn.SaveResult(it.IfName, res); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		rec := s.Load("c1")
		if rec.Status != Whole || len(rec.Interfaces) != 4 || rec.Interfaces[3].Result == nil {
			b.Fatal(rec)
		}
	}
}

// A record of a format newer than this nicmux's (a newer nicmux attached the
// container, and this one was rolled back below it) is neither read nor
// taken for corrupt: the container's status is Newer, its error names the
// file and its kind, and the record holds nothing to release.
func TestLoadNewerFormat(t *testing.T) {
	iface := func(t *testing.T, kind string) []byte {
		var m map[string]any
		if err := json.Unmarshal(mustJSON(t, interfaceFile{Kind: kindInterface, ContainerID: "c1",
			Planned: samplePlanned("eth0", "svc"), Result: sampleResult("eth0", "10.1.0.1/16")}), &m); err != nil {
			t.Fatal(err)
		}
		m["kind"] = kind
		return mustJSON(t, m)
	}
	tests := []struct {
		name, file, kind string
		plan             bool // a plan of this format beside it
	}{
		{"plan", "container.json", "nicmuxContainerV3", false},
		{"plan, ten formats on", "container.json", "nicmuxContainerV12", false},
		{"result beside a plan", "if-eth0.json", "nicmuxInterfaceV3", true},
		{"result, the plan lost", "if-eth0.json", "nicmuxInterfaceV3", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			if tc.plan {
				begin(t, s, samplePlan("c1"))
			}
			path := filepath.Join(containerDir(dir, "c1"), tc.file)
			data := []byte(`{"kind":"` + tc.kind + `","containerID":"c1","newField":{"x":1}}`)
			if tc.file != "container.json" {
				data = iface(t, tc.kind)
			}
			writeRaw(t, path, data)
			rec := s.Load("c1")
			var newer *NewerError
			if rec.Status != Newer || !errors.As(rec.Err, &newer) || newer.Path != path || newer.Kind != tc.kind {
				t.Fatalf("Load = status %v, %v; want newer, naming %s and %s", rec.Status, rec.Err, path, tc.kind)
			}
			if rec.Plan != nil || len(rec.Interfaces) != 0 || rec.Complete {
				t.Errorf("a newer record returned %+v: nothing may be taken from it", rec)
			}
			if !strings.Contains(rec.Err.Error(), "newer nicmux") {
				t.Errorf("error %q does not say a newer nicmux wrote it", rec.Err)
			}
		})
	}
}
