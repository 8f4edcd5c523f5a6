package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// newStore returns a store whose folder does not exist yet, so that the
// store itself creates it (and its modes can be checked).
func newStore(t testing.TB) (*Store, string) {
	t.Helper()
	root := t.TempDir()
	return &Store{Dir: filepath.Join(root, "state")}, root
}

func sampleContainer(id string) *Container {
	return &Container{
		ContainerID:    id,
		IfName:         "eth0",
		NetNS:          "/var/run/netns/cni-1234",
		NetNSID:        NetNSID{Dev: 4, Ino: 4026532281},
		ListName:       "nicmux",
		CNIVersion:     "1.1.0",
		AttachmentFile: "/etc/nicmux/attachments/" + id + ".yaml",
		Set:            "fast",
		Interfaces:     []string{"eth0", "net1", "net2"},
		Complete:       true,
		Created:        time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC),
	}
}

func sampleInterface(id, ifname string) *Interface {
	return &Interface{
		ContainerID:    id,
		IfName:         ifname,
		Network:        "storage",
		CNIVersion:     "1.0.0",
		Config:         json.RawMessage(`{"cniVersion":"1.0.0","name":"storage","plugins":[{"type":"macvlan","master":"eth1","ipam":{"type":"host-local","subnet":"10.1.0.0/16"}}]}`),
		Result:         json.RawMessage(`{"cniVersion":"1.0.0","interfaces":[{"name":"` + ifname + `","mac":"0a:58:0a:01:00:05","sandbox":"/var/run/netns/cni-1234"}],"ips":[{"address":"10.1.0.5/16","interface":0}]}`),
		NetNS:          "/var/run/netns/cni-1234",
		NetNSID:        NetNSID{Dev: 4, Ino: 4026532281},
		CNIArgs:        "IgnoreUnknown=1;K8S_POD_NAME=web-0;NICMUX_SET=fast",
		CapabilityArgs: map[string]json.RawMessage{"portMappings": json.RawMessage(`[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]`), "bandwidth": json.RawMessage(`{"ingressRate":1000}`)},
	}
}

// dirNames lists the names in dir, sorted.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("reading %s: %v", dir, err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func assertMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %#o, want %#o", path, got, want)
	}
}

// writeRaw writes data at path as a stray file, creating folders as needed.
func writeRaw(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestValidate(t *testing.T) {
	ids := []struct {
		id string
		ok bool
	}{
		{"abc", true},
		{"a.b-c_d", true},
		{"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", true},
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
		t.Run(fmt.Sprintf("id %q", tc.id), func(t *testing.T) {
			err := ValidateID(tc.id)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidateID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.id)) {
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
		{"toolongifname1234", false},
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
			err := ValidateIfName(tc.name)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidateIfName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
			}
		})
	}
}

func TestNetNSIDIsZero(t *testing.T) {
	for _, tc := range []struct {
		id   NetNSID
		want bool
	}{
		{NetNSID{}, true},
		{NetNSID{Dev: 1}, false},
		{NetNSID{Ino: 1}, false},
		{NetNSID{Dev: 4, Ino: 4026532281}, false},
	} {
		if got := tc.id.IsZero(); got != tc.want {
			t.Errorf("%+v.IsZero() = %v, want %v", tc.id, got, tc.want)
		}
	}
}

func TestPaths(t *testing.T) {
	s := &Store{Dir: "/run/nicmux"}
	if got, want := s.ContainerDir("c1"), "/run/nicmux/containers/c1"; got != want {
		t.Errorf("ContainerDir = %q, want %q", got, want)
	}
	if got, want := s.InterfacePath("c1", "net1"), "/run/nicmux/containers/c1/if-net1.json"; got != want {
		t.Errorf("InterfacePath = %q, want %q", got, want)
	}
	if got, want := s.containerPath("c1"), "/run/nicmux/containers/c1/container.json"; got != want {
		t.Errorf("containerPath = %q, want %q", got, want)
	}
	if got, want := s.lockPath("c1"), "/run/nicmux/locks/c1.lock"; got != want {
		t.Errorf("lockPath = %q, want %q", got, want)
	}
}

func TestContainerRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		c    *Container
	}{
		{"all fields", sampleContainer("c1")},
		{"minimal", &Container{ContainerID: "c2"}},
		{"incomplete, no set", &Container{
			ContainerID: "0123456789abcdef", IfName: "eth0", NetNS: "/proc/42/ns/net",
			Interfaces: []string{"eth0"}, Created: time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC),
		}},
		{"caller kind is overridden", func() *Container { c := sampleContainer("c3"); c.Kind = "bogus"; return c }()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStore(t)
			in := *tc.c
			in.Interfaces = append([]string(nil), tc.c.Interfaces...)
			if err := s.SaveContainer(tc.c); err != nil {
				t.Fatalf("SaveContainer: %v", err)
			}
			if tc.c.Kind != KindContainer {
				t.Errorf("SaveContainer left Kind %q, want %q", tc.c.Kind, KindContainer)
			}
			got, err := s.LoadContainer(in.ContainerID)
			if err != nil {
				t.Fatalf("LoadContainer: %v", err)
			}
			want := in
			want.Kind = KindContainer
			if !reflect.DeepEqual(got, &want) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, &want)
			}
			if !got.Created.Equal(in.Created) {
				t.Errorf("Created = %v, want %v", got.Created, in.Created)
			}

			// The kind is on disk, not only in memory.
			path := filepath.Join(s.ContainerDir(in.ContainerID), "container.json")
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var hdr map[string]any
			if err := json.Unmarshal(raw, &hdr); err != nil {
				t.Fatalf("record is not JSON: %v", err)
			}
			if hdr["kind"] != KindContainer || hdr["containerID"] != in.ContainerID {
				t.Errorf("on-disk header kind=%v containerID=%v", hdr["kind"], hdr["containerID"])
			}

			assertMode(t, path, 0o600)
			assertMode(t, s.ContainerDir(in.ContainerID), 0o700)
			assertMode(t, filepath.Join(s.Dir, "containers"), 0o700)
			assertMode(t, s.Dir, 0o700)
			if names := dirNames(t, s.ContainerDir(in.ContainerID)); !reflect.DeepEqual(names, []string{"container.json"}) {
				t.Errorf("container folder holds %q, want only container.json", names)
			}
		})
	}
}

func TestInterfaceRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		r    *Interface
	}{
		{"all fields", sampleInterface("c1", "net1")},
		{"no result yet", func() *Interface { r := sampleInterface("c1", "eth0"); r.Result = nil; return r }()},
		{"no capability args, no cni args", func() *Interface {
			r := sampleInterface("c1", "net2")
			r.CapabilityArgs, r.CNIArgs = nil, ""
			return r
		}()},
		{"fifteen-char ifname", sampleInterface("c1", "fifteen-chars15")},
		{"caller kind is overridden", func() *Interface { r := sampleInterface("c1", "net3"); r.Kind = KindContainer; return r }()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStore(t)
			want := *tc.r
			want.Kind = KindInterface
			if err := s.SaveInterface(tc.r); err != nil {
				t.Fatalf("SaveInterface: %v", err)
			}
			if tc.r.Kind != KindInterface {
				t.Errorf("SaveInterface left Kind %q, want %q", tc.r.Kind, KindInterface)
			}
			got, err := s.LoadInterface(want.ContainerID, want.IfName)
			if err != nil {
				t.Fatalf("LoadInterface: %v", err)
			}
			if !reflect.DeepEqual(got, &want) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, &want)
			}
			if !bytes.Equal(got.Config, want.Config) {
				t.Errorf("Config = %s, want %s", got.Config, want.Config)
			}
			if !bytes.Equal(got.Result, want.Result) {
				t.Errorf("Result = %s, want %s", got.Result, want.Result)
			}
			if len(want.Result) == 0 && len(got.Result) != 0 {
				t.Errorf("a record saved without result loads with result %q", got.Result)
			}
			if len(got.CapabilityArgs) != len(want.CapabilityArgs) {
				t.Errorf("CapabilityArgs = %v, want %v", got.CapabilityArgs, want.CapabilityArgs)
			}
			for k, v := range want.CapabilityArgs {
				if !bytes.Equal(got.CapabilityArgs[k], v) {
					t.Errorf("CapabilityArgs[%s] = %s, want %s", k, got.CapabilityArgs[k], v)
				}
			}

			path := s.InterfacePath(want.ContainerID, want.IfName)
			if filepath.Base(path) != "if-"+want.IfName+".json" {
				t.Errorf("record path %s", path)
			}
			assertMode(t, path, 0o600)
			assertMode(t, s.ContainerDir(want.ContainerID), 0o700)
			if names := dirNames(t, s.ContainerDir(want.ContainerID)); !reflect.DeepEqual(names, []string{filepath.Base(path)}) {
				t.Errorf("container folder holds %q, want only %s", names, filepath.Base(path))
			}
		})
	}
}

// A configuration that is not compact is kept with the same meaning.
func TestInterfaceConfigIndented(t *testing.T) {
	s, _ := newStore(t)
	r := sampleInterface("c1", "eth0")
	r.Config = json.RawMessage("{\n  \"name\": \"storage\",\n  \"plugins\": [ {\"type\": \"a<b&c\"} ]\n}\n")
	want := append(json.RawMessage(nil), r.Config...)
	if err := s.SaveInterface(r); err != nil {
		t.Fatal(err)
	}
	got, err := s.LoadInterface("c1", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	if err := json.Unmarshal(got.Config, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("Config = %s, want the same meaning as %s", got.Config, want)
	}
}

// A whole container: several records in one folder, overwritten, listed.
func TestSaveManyAndOverwrite(t *testing.T) {
	s, _ := newStore(t)
	c := sampleContainer("c1")
	c.Complete = false
	if err := s.SaveContainer(c); err != nil {
		t.Fatal(err)
	}
	for _, ifname := range c.Interfaces {
		r := sampleInterface("c1", ifname)
		r.Result = nil
		if err := s.SaveInterface(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sync("c1"); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	// Second pass: results recorded, container complete.
	for _, ifname := range c.Interfaces {
		if err := s.SaveInterface(sampleInterface("c1", ifname)); err != nil {
			t.Fatal(err)
		}
	}
	c.Complete = true
	if err := s.SaveContainer(c); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync("c1"); err != nil {
		t.Fatalf("Sync: %v", err)
	}

	got, err := s.LoadContainer("c1")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Complete {
		t.Error("overwritten container record still incomplete")
	}
	for _, ifname := range c.Interfaces {
		r, err := s.LoadInterface("c1", ifname)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Result) == 0 {
			t.Errorf("%s: overwritten record has no result", ifname)
		}
	}
	want := []string{"container.json", "if-eth0.json", "if-net1.json", "if-net2.json"}
	if names := dirNames(t, s.ContainerDir("c1")); !reflect.DeepEqual(names, want) {
		t.Errorf("container folder holds %q, want %q (no temporary files)", names, want)
	}
	for _, n := range want {
		assertMode(t, filepath.Join(s.ContainerDir("c1"), n), 0o600)
	}
	ids, err := s.Containers()
	if err != nil || !reflect.DeepEqual(ids, []string{"c1"}) {
		t.Errorf("Containers() = %q, %v; want [c1]", ids, err)
	}
}

// A record that cannot be encoded is not written, and leaves no temporary
// file behind.
func TestSaveInterfaceInvalidJSON(t *testing.T) {
	s, _ := newStore(t)
	for _, tc := range []struct {
		name string
		mod  func(*Interface)
	}{
		{"truncated config", func(r *Interface) { r.Config = json.RawMessage(`{"name":`) }},
		{"garbage result", func(r *Interface) { r.Result = json.RawMessage(`not json`) }},
		{"garbage capability", func(r *Interface) { r.CapabilityArgs = map[string]json.RawMessage{"x": json.RawMessage(`{`)} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := sampleInterface("c1", "eth0")
			tc.mod(r)
			if err := s.SaveInterface(r); err == nil {
				t.Fatal("SaveInterface accepted a record that is not valid JSON")
			}
			if _, err := s.LoadInterface("c1", "eth0"); !errors.Is(err, ErrNotFound) {
				t.Errorf("LoadInterface after failed save: %v, want ErrNotFound", err)
			}
			if names := dirNames(t, s.ContainerDir("c1")); len(names) != 0 {
				t.Errorf("failed save left %q behind", names)
			}
		})
	}
}

func TestLoadNotFound(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, s *Store)
	}{
		{"no state folder", func(t *testing.T, s *Store) {}},
		{"empty state folder", func(t *testing.T, s *Store) {
			if err := os.MkdirAll(filepath.Join(s.Dir, "containers"), 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{"other container only", func(t *testing.T, s *Store) {
			if err := s.SaveContainer(sampleContainer("other")); err != nil {
				t.Fatal(err)
			}
			if err := s.SaveInterface(sampleInterface("other", "eth0")); err != nil {
				t.Fatal(err)
			}
		}},
		{"empty container folder", func(t *testing.T, s *Store) {
			if err := os.MkdirAll(s.ContainerDir("c1"), 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{"only temporary files", func(t *testing.T, s *Store) {
			writeRaw(t, filepath.Join(s.ContainerDir("c1"), ".container.json123"), mustJSON(t, sampleContainer("c1")))
			writeRaw(t, filepath.Join(s.ContainerDir("c1"), ".if-eth0.json456"), []byte("{garbage"))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStore(t)
			tc.setup(t, s)
			c, err := s.LoadContainer("c1")
			if !errors.Is(err, ErrNotFound) || c != nil {
				t.Errorf("LoadContainer = %v, %v; want nil, ErrNotFound", c, err)
			}
			var ce *CorruptError
			if errors.As(err, &ce) {
				t.Errorf("missing container record reported as corrupt: %v", err)
			}
			if err != nil && !strings.Contains(err.Error(), filepath.Join(s.ContainerDir("c1"), "container.json")) {
				t.Errorf("error %q does not name the record", err)
			}
			r, err := s.LoadInterface("c1", "eth0")
			if !errors.Is(err, ErrNotFound) || r != nil {
				t.Errorf("LoadInterface = %v, %v; want nil, ErrNotFound", r, err)
			}
			if err != nil && !strings.Contains(err.Error(), s.InterfacePath("c1", "eth0")) {
				t.Errorf("error %q does not name the record", err)
			}
		})
	}
}

func TestLoadContainerCorrupt(t *testing.T) {
	good := mustJSON(t, func() *Container { c := sampleContainer("c1"); c.Kind = KindContainer; return c }())
	iface := mustJSON(t, func() *Interface { r := sampleInterface("c1", "eth0"); r.Kind = KindInterface; return r }())
	otherID := mustJSON(t, func() *Container { c := sampleContainer("c2"); c.Kind = KindContainer; return c }())
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
		{"kind of another format", []byte(`{"kind":"nicmuxContainerV0","containerID":"c1"}`)},
		{"kind with wrong type", []byte(`{"kind":1,"containerID":"c1"}`)},
		{"interface record", iface},
		{"kind but no container ID", []byte(`{"kind":"` + KindContainer + `"}`)},
		{"other container's record", otherID},
		{"field of wrong type", []byte(`{"kind":"` + KindContainer + `","containerID":"c1","interfaces":"eth0"}`)},
		{"bad time", []byte(`{"kind":"` + KindContainer + `","containerID":"c1","created":"yesterday"}`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStore(t)
			path := filepath.Join(s.ContainerDir("c1"), "container.json")
			writeRaw(t, path, tc.data)
			c, err := s.LoadContainer("c1")
			assertCorrupt(t, err, path)
			if c != nil {
				t.Errorf("LoadContainer returned a record with the error: %+v", c)
			}
		})
	}
}

func TestLoadInterfaceCorrupt(t *testing.T) {
	good := mustJSON(t, func() *Interface { r := sampleInterface("c1", "eth0"); r.Kind = KindInterface; return r }())
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
	cont := mustJSON(t, func() *Container { c := sampleContainer("c1"); c.Kind = KindContainer; return c }())
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
		{"container record", cont},
		{"no kind", withField("kind", nil)},
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
			s, _ := newStore(t)
			path := s.InterfacePath("c1", "eth0")
			writeRaw(t, path, tc.data)
			r, err := s.LoadInterface("c1", "eth0")
			assertCorrupt(t, err, path)
			if r != nil {
				t.Errorf("LoadInterface returned a record with the error: %+v", r)
			}
		})
	}
}

// A record saved without a configuration is not silently usable.
// (A nil Config is written as "config":null; an empty non-nil one cannot be
// encoded at all.)
func TestSaveInterfaceWithoutConfig(t *testing.T) {
	s, _ := newStore(t)
	r := sampleInterface("c1", "eth0")
	r.Config = nil
	if err := s.SaveInterface(r); err != nil {
		t.Fatal(err)
	}
	got, err := s.LoadInterface("c1", "eth0")
	assertCorrupt(t, err, s.InterfacePath("c1", "eth0"))
	if got != nil {
		t.Errorf("loaded %+v", got)
	}

	r = sampleInterface("c1", "net1")
	r.Config = json.RawMessage{}
	if err := s.SaveInterface(r); err == nil {
		t.Error("SaveInterface wrote a record with an empty configuration")
	}
	if _, err := s.LoadInterface("c1", "net1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("LoadInterface(net1) = %v, want ErrNotFound", err)
	}
}

func assertCorrupt(t *testing.T, err error, path string) {
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

func TestCorruptErrorUnwrap(t *testing.T) {
	cause := errors.New("boom")
	err := error(&CorruptError{Path: "/x/container.json", Err: cause})
	if !errors.Is(err, cause) {
		t.Error("CorruptError does not unwrap to its cause")
	}
	if got, want := err.Error(), "state record /x/container.json is corrupt: boom"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	wrapped := fmt.Errorf("loading: %w", err)
	var ce *CorruptError
	if !errors.As(wrapped, &ce) || ce.Path != "/x/container.json" {
		t.Errorf("errors.As through wrapping: %v", ce)
	}
}

// A record path that is a folder is an error, not "not found".
func TestLoadRecordIsFolder(t *testing.T) {
	s, _ := newStore(t)
	if err := os.MkdirAll(filepath.Join(s.ContainerDir("c1"), "container.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(s.InterfacePath("c1", "eth0"), 0o700); err != nil {
		t.Fatal(err)
	}
	if c, err := s.LoadContainer("c1"); err == nil || errors.Is(err, ErrNotFound) || c != nil {
		t.Errorf("LoadContainer = %v, %v; want an error other than ErrNotFound", c, err)
	}
	if r, err := s.LoadInterface("c1", "eth0"); err == nil || errors.Is(err, ErrNotFound) || r != nil {
		t.Errorf("LoadInterface = %v, %v; want an error other than ErrNotFound", r, err)
	}
}

// snapshot records every path under root with its mode and content.
func snapshot(t *testing.T, root string) map[string]string {
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
		if d.Type().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			v += " " + string(b)
		}
		m[path] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func diffSnapshots(before, after map[string]string) []string {
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
	return d
}

// Every exported method refuses an unsafe container ID or interface name
// before it becomes part of a path: nothing is read, created or removed,
// inside or outside the state folder, even where a file is planted at the
// place the unchecked path would reach.
func TestPathSafety(t *testing.T) {
	badIDs := []string{"../x", "a/b", "", ".", "..", "x y", "../../etc", "/abs", "c1/../c2"}
	badIfNames := []string{"../e", "a/b", "toolongifname1234", "a:b", "", ".", "..", "e 1", "../../../x"}

	type call struct {
		name string
		do   func(s *Store) error
	}
	idCalls := func(id string) []call {
		return []call{
			{"SaveContainer", func(s *Store) error { return s.SaveContainer(sampleContainer(id)) }},
			{"SaveInterface", func(s *Store) error { return s.SaveInterface(sampleInterface(id, "eth0")) }},
			{"LoadContainer", func(s *Store) error {
				c, err := s.LoadContainer(id)
				if c != nil {
					return fmt.Errorf("returned %+v", c)
				}
				return err
			}},
			{"LoadInterface", func(s *Store) error {
				r, err := s.LoadInterface(id, "eth0")
				if r != nil {
					return fmt.Errorf("returned %+v", r)
				}
				return err
			}},
			{"UnlinkInterface", func(s *Store) error { return s.UnlinkInterface(id, "eth0") }},
			{"RemoveContainer", func(s *Store) error { return s.RemoveContainer(id) }},
			{"Sync", func(s *Store) error { return s.Sync(id) }},
			{"MakeContainerDir", func(s *Store) error { return s.MakeContainerDir(id) }},
			{"Lock", func(s *Store) error {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				unlock, err := s.Lock(ctx, id)
				if unlock != nil {
					unlock(false)
					return errors.New("returned an unlock function")
				}
				return err
			}},
		}
	}
	ifCalls := func(ifname string) []call {
		return []call{
			{"SaveInterface", func(s *Store) error { return s.SaveInterface(sampleInterface("c1", ifname)) }},
			{"LoadInterface", func(s *Store) error {
				r, err := s.LoadInterface("c1", ifname)
				if r != nil {
					return fmt.Errorf("returned %+v", r)
				}
				return err
			}},
			{"UnlinkInterface", func(s *Store) error { return s.UnlinkInterface("c1", ifname) }},
		}
	}

	// plant writes, at the paths the unchecked names lead to, records that
	// would be accepted if read, so that reads, writes and removals through
	// them would all show.
	plant := func(t *testing.T, s *Store, id, ifname string) {
		c := sampleContainer(id)
		c.Kind = KindContainer
		writeRaw(t, filepath.Join(s.ContainerDir(id), "container.json"), mustJSON(t, c))
		r := sampleInterface(id, ifname)
		r.Kind = KindInterface
		writeRaw(t, s.InterfacePath(id, ifname), mustJSON(t, r))
		writeRaw(t, filepath.Join(s.Dir, "locks", id+".lock"), nil)
		// A legitimate container beside them.
		writeRaw(t, filepath.Join(s.ContainerDir("c1"), "container.json"), mustJSON(t, sampleContainer("c1")))
	}

	check := func(t *testing.T, root string, s *Store, c call, planted bool) {
		t.Helper()
		before := snapshot(t, root)
		err := c.do(s)
		if err == nil {
			t.Fatalf("%s accepted it", c.name)
		}
		var te *types.Error
		if !errors.As(err, &te) {
			t.Errorf("%s: error %v is not a validation error", c.name, err)
		}
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrLockTimeout) {
			t.Errorf("%s: error %v is not a validation error", c.name, err)
		}
		if d := diffSnapshots(before, snapshot(t, root)); len(d) > 0 {
			t.Errorf("%s touched the file system (planted=%v): %q", c.name, planted, d)
		}
	}

	for _, id := range badIDs {
		for _, c := range idCalls(id) {
			t.Run(fmt.Sprintf("id %q %s", id, c.name), func(t *testing.T) {
				s, root := newStore(t)
				check(t, root, s, c, false)
				if names := dirNames(t, root); len(names) != 0 {
					t.Fatalf("created %q", names)
				}
				plant(t, s, id, "eth0")
				check(t, root, s, c, true)
			})
		}
	}
	for _, ifname := range badIfNames {
		for _, c := range ifCalls(ifname) {
			t.Run(fmt.Sprintf("ifname %q %s", ifname, c.name), func(t *testing.T) {
				s, root := newStore(t)
				check(t, root, s, c, false)
				if names := dirNames(t, root); len(names) != 0 {
					t.Fatalf("created %q", names)
				}
				plant(t, s, "c1", ifname)
				check(t, root, s, c, true)
			})
		}
	}
}

func TestUnlinkInterface(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, s *Store)
	}{
		{"no state folder", func(t *testing.T, s *Store) {}},
		{"no container folder", func(t *testing.T, s *Store) {
			if err := s.SaveContainer(sampleContainer("other")); err != nil {
				t.Fatal(err)
			}
		}},
		{"record present", func(t *testing.T, s *Store) {
			if err := s.SaveContainer(sampleContainer("c1")); err != nil {
				t.Fatal(err)
			}
			for _, n := range []string{"eth0", "net1"} {
				if err := s.SaveInterface(sampleInterface("c1", n)); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"corrupt record present", func(t *testing.T, s *Store) {
			if err := s.SaveContainer(sampleContainer("c1")); err != nil {
				t.Fatal(err)
			}
			writeRaw(t, s.InterfacePath("c1", "eth0"), []byte("{trunc"))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStore(t)
			tc.setup(t, s)
			_, hadContainer := s.LoadContainer("c1")
			_, hadNet1 := s.LoadInterface("c1", "net1")
			for i := 0; i < 2; i++ {
				if err := s.UnlinkInterface("c1", "eth0"); err != nil {
					t.Fatalf("UnlinkInterface call %d: %v", i+1, err)
				}
			}
			if _, err := s.LoadInterface("c1", "eth0"); !errors.Is(err, ErrNotFound) {
				t.Errorf("LoadInterface after removal: %v, want ErrNotFound", err)
			}
			// Nothing else goes.
			if _, err := s.LoadContainer("c1"); (err == nil) != (hadContainer == nil) {
				t.Errorf("container record changed: %v (before: %v)", err, hadContainer)
			}
			if _, err := s.LoadInterface("c1", "net1"); (err == nil) != (hadNet1 == nil) {
				t.Errorf("net1 record changed: %v (before: %v)", err, hadNet1)
			}
			if _, err := s.LoadContainer("other"); err != nil && !errors.Is(err, ErrNotFound) {
				t.Errorf("other container: %v", err)
			}
		})
	}
}

func TestRemoveContainer(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, s *Store)
	}{
		{"no state folder", func(t *testing.T, s *Store) {}},
		{"empty folder", func(t *testing.T, s *Store) {
			if err := os.MkdirAll(s.ContainerDir("c1"), 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{"full container with stray temporary files", func(t *testing.T, s *Store) {
			if err := s.SaveContainer(sampleContainer("c1")); err != nil {
				t.Fatal(err)
			}
			for _, n := range []string{"eth0", "net1", "net2"} {
				if err := s.SaveInterface(sampleInterface("c1", n)); err != nil {
					t.Fatal(err)
				}
			}
			writeRaw(t, filepath.Join(s.ContainerDir("c1"), ".container.json123"), []byte("{half"))
			writeRaw(t, filepath.Join(s.ContainerDir("c1"), ".if-net1.json987654321"), nil)
		}},
		{"interface records without container record", func(t *testing.T, s *Store) {
			if err := s.SaveInterface(sampleInterface("c1", "eth0")); err != nil {
				t.Fatal(err)
			}
		}},
		{"corrupt records", func(t *testing.T, s *Store) {
			writeRaw(t, filepath.Join(s.ContainerDir("c1"), "container.json"), nil)
			writeRaw(t, s.InterfacePath("c1", "eth0"), []byte("garbage"))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStore(t)
			if err := s.SaveContainer(sampleContainer("keep")); err != nil {
				t.Fatal(err)
			}
			if err := s.SaveInterface(sampleInterface("keep", "eth0")); err != nil {
				t.Fatal(err)
			}
			tc.setup(t, s)
			for i := 0; i < 2; i++ {
				if err := s.RemoveContainer("c1"); err != nil {
					t.Fatalf("RemoveContainer call %d: %v", i+1, err)
				}
			}
			if _, err := os.Stat(s.ContainerDir("c1")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("container folder still there: %v", err)
			}
			if _, err := s.LoadContainer("c1"); !errors.Is(err, ErrNotFound) {
				t.Errorf("LoadContainer after removal: %v, want ErrNotFound", err)
			}
			ids, err := s.Containers()
			if err != nil || !reflect.DeepEqual(ids, []string{"keep"}) {
				t.Errorf("Containers() = %q, %v; want [keep]", ids, err)
			}
			if _, err := s.LoadInterface("keep", "eth0"); err != nil {
				t.Errorf("other container's record: %v", err)
			}
		})
	}
}

// RemoveContainer removes the container record last: if anything before it
// fails, the container is still known and can be removed again.
func TestRemoveContainerRecordGoesLast(t *testing.T) {
	s, _ := newStore(t)
	if err := s.SaveContainer(sampleContainer("c1")); err != nil {
		t.Fatal(err)
	}
	// A non-empty folder in the way cannot be removed by os.Remove.
	writeRaw(t, filepath.Join(s.ContainerDir("c1"), "zz-sub", "file"), []byte("x"))
	if err := s.RemoveContainer("c1"); err == nil {
		t.Fatal("RemoveContainer succeeded with an unremovable entry")
	}
	if _, err := s.LoadContainer("c1"); err != nil {
		t.Fatalf("container record went before the rest: %v", err)
	}
	ids, err := s.Containers()
	if err != nil || !reflect.DeepEqual(ids, []string{"c1"}) {
		t.Errorf("Containers() = %q, %v; want [c1]", ids, err)
	}
	if err := os.RemoveAll(filepath.Join(s.ContainerDir("c1"), "zz-sub")); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveContainer("c1"); err != nil {
		t.Fatalf("second RemoveContainer: %v", err)
	}
	if _, err := os.Stat(s.ContainerDir("c1")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("container folder still there: %v", err)
	}
}

func TestContainers(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, s *Store)
		want  []string
	}{
		{"no state folder", func(t *testing.T, s *Store) {}, nil},
		{"state folder without containers", func(t *testing.T, s *Store) {
			if err := os.MkdirAll(filepath.Join(s.Dir, "locks"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"empty containers folder", func(t *testing.T, s *Store) {
			if err := os.MkdirAll(filepath.Join(s.Dir, "containers"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"mixed", func(t *testing.T, s *Store) {
			for _, id := range []string{"c2", "c1", "0123abc"} {
				if err := s.SaveContainer(sampleContainer(id)); err != nil {
					t.Fatal(err)
				}
			}
			// An empty folder from a crashed ADD is still listed.
			if err := os.MkdirAll(s.ContainerDir("half"), 0o700); err != nil {
				t.Fatal(err)
			}
			cdir := filepath.Join(s.Dir, "containers")
			for _, bad := range []string{".hidden", "bad name", "-dash", "_under"} {
				if err := os.MkdirAll(filepath.Join(cdir, bad), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			writeRaw(t, filepath.Join(cdir, "afile"), []byte("x"))
			if err := os.Symlink(s.ContainerDir("c1"), filepath.Join(cdir, "alink")); err != nil {
				t.Fatal(err)
			}
		}, []string{"0123abc", "c1", "c2", "half"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStore(t)
			tc.setup(t, s)
			got, err := s.Containers()
			if err != nil {
				t.Fatalf("Containers: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Containers() = %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestContainersUnreadable(t *testing.T) {
	s, _ := newStore(t)
	// The containers "folder" is a file: listing fails with an error rather
	// than reporting no containers.
	writeRaw(t, filepath.Join(s.Dir, "containers"), []byte("x"))
	if ids, err := s.Containers(); err == nil {
		t.Errorf("Containers() = %q, nil; want an error", ids)
	}
}

func TestSync(t *testing.T) {
	s, _ := newStore(t)
	if err := s.Sync("c1"); err != nil {
		t.Errorf("Sync of a container without folder: %v", err)
	}
	if err := s.SaveContainer(sampleContainer("c1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync("c1"); err != nil {
		t.Errorf("Sync: %v", err)
	}
}

// A crash between writing the temporary file and renaming it leaves a stray
// temporary file next to the record: the record is still the good one.
func TestCrashLeavesTemporaryFile(t *testing.T) {
	tests := []struct {
		name    string
		garbage []byte
	}{
		{"empty temporary file", nil},
		{"half-written temporary file", []byte(`{"kind":"nicmuxContainerV1","containerID":"c1","ifn`)},
		{"garbage", []byte{0xff, 0x00, 0x13, 0x37}},
		{"complete newer record never renamed", []byte(`{"kind":"nicmuxContainerV1","containerID":"c1","complete":false}`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStore(t)
			c := sampleContainer("c1")
			if err := s.SaveContainer(c); err != nil {
				t.Fatal(err)
			}
			r := sampleInterface("c1", "eth0")
			if err := s.SaveInterface(r); err != nil {
				t.Fatal(err)
			}
			dir := s.ContainerDir("c1")
			writeRaw(t, filepath.Join(dir, ".container.json5577006791947779410"), tc.garbage)
			writeRaw(t, filepath.Join(dir, ".if-eth0.json8674665223082153551"), tc.garbage)
			// An interface whose first record never made it.
			writeRaw(t, filepath.Join(dir, ".if-net1.json6129484611666145821"), tc.garbage)

			got, err := s.LoadContainer("c1")
			if err != nil {
				t.Fatalf("LoadContainer: %v", err)
			}
			if !reflect.DeepEqual(got, c) {
				t.Errorf("LoadContainer = %+v, want %+v", got, c)
			}
			gr, err := s.LoadInterface("c1", "eth0")
			if err != nil {
				t.Fatalf("LoadInterface: %v", err)
			}
			if !bytes.Equal(gr.Config, r.Config) || !bytes.Equal(gr.Result, r.Result) {
				t.Errorf("LoadInterface = %+v, want %+v", gr, r)
			}
			if _, err := s.LoadInterface("c1", "net1"); !errors.Is(err, ErrNotFound) {
				t.Errorf("LoadInterface(net1) = %v, want ErrNotFound", err)
			}
			ids, err := s.Containers()
			if err != nil || !reflect.DeepEqual(ids, []string{"c1"}) {
				t.Errorf("Containers() = %q, %v", ids, err)
			}

			// Later writes still work, and removal clears the debris.
			c.Complete = false
			if err := s.SaveContainer(c); err != nil {
				t.Fatal(err)
			}
			if got, err := s.LoadContainer("c1"); err != nil || got.Complete {
				t.Errorf("after re-save: %+v, %v", got, err)
			}
			if err := s.RemoveContainer("c1"); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("container folder left: %v", err)
			}
		})
	}
}

// Replacing a record is atomic: a reader running alongside a writer always
// sees either the old or the new record, never a partial or empty one.
func TestSaveIsAtomicForReaders(t *testing.T) {
	s, _ := newStore(t)
	a := sampleInterface("c1", "eth0")
	a.Network = "aaaa"
	b := sampleInterface("c1", "eth0")
	b.Network = "bbbb"
	b.Config = json.RawMessage(`{"name":"bbbb","plugins":[{"type":"bridge","pad":"` + strings.Repeat("x", 8192) + `"}]}`)
	if err := s.SaveInterface(a); err != nil {
		t.Fatal(err)
	}
	const n = 200
	done := make(chan struct{})
	var wg sync.WaitGroup
	var readErr error
	var reads int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			r, err := s.LoadInterface("c1", "eth0")
			if err != nil {
				readErr = err
				return
			}
			if r.Network != "aaaa" && r.Network != "bbbb" {
				readErr = fmt.Errorf("read a mix: %q", r.Network)
				return
			}
			reads++
		}
	}()
	for i := 0; i < n; i++ {
		rec := a
		if i%2 == 0 {
			rec = b
		}
		if err := s.SaveInterface(rec); err != nil {
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
	if names := dirNames(t, s.ContainerDir("c1")); !reflect.DeepEqual(names, []string{"if-eth0.json"}) {
		t.Errorf("folder holds %q after %d saves", names, n)
	}
}

// realisticInterface is an interface record with about 2KB of configuration
// and result.
func realisticInterface(id string) *Interface {
	r := sampleInterface(id, "net1")
	r.Config = json.RawMessage(`{"cniVersion":"1.0.0","name":"storage","disableCheck":false,"plugins":[` +
		`{"type":"macvlan","master":"ens1f0","mode":"bridge","mtu":9000,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.1.0.0/16","rangeStart":"10.1.10.1","rangeEnd":"10.1.200.254","gateway":"10.1.0.1"}],[{"subnet":"fd00:10:1::/64"}]],"routes":[{"dst":"10.2.0.0/16","gw":"10.1.0.1"},{"dst":"10.3.0.0/16","gw":"10.1.0.1"},{"dst":"fd00:10:2::/64"}],"dataDir":"/var/lib/cni/networks"}},` +
		`{"type":"tuning","sysctl":{"net.ipv4.conf.IFNAME.arp_notify":"1","net.ipv6.conf.IFNAME.accept_ra":"0"},"mac":"0a:58:0a:01:00:05","promisc":false,"allmulti":false},` +
		`{"type":"portmap","capabilities":{"portMappings":true},"snat":true,"markMasqBit":13,"externalSetMarkChain":"KUBE-MARK-MASQ"},` +
		`{"type":"bandwidth","capabilities":{"bandwidth":true},"ingressRate":1000000,"ingressBurst":2000000,"egressRate":1000000,"egressBurst":2000000},` +
		`{"type":"firewall","backend":"iptables","iptablesAdminChainName":"CNI-ADMIN","ingressPolicy":"same-bridge"},` +
		`{"type":"sbr","table":100},` +
		`{"type":"vrf","vrfname":"storage-vrf","table":1001,"runtimeConfig":{"labels":{"team":"storage","tier":"backend","zone":"eu-west-1a"}}}]}`)
	r.Result = json.RawMessage(`{"cniVersion":"1.0.0","interfaces":[{"name":"net1","mac":"0a:58:0a:01:00:05","mtu":9000,"sandbox":"/var/run/netns/cni-2d1c6d2e-8b1f-4c39-b0a7-5b8f0e6b1e2a"}],` +
		`"ips":[{"interface":0,"address":"10.1.10.5/16","gateway":"10.1.0.1"},{"interface":0,"address":"fd00:10:1::5/64","gateway":"fd00:10:1::1"}],` +
		`"routes":[{"dst":"10.2.0.0/16","gw":"10.1.0.1"},{"dst":"10.3.0.0/16","gw":"10.1.0.1"},{"dst":"10.4.0.0/16","gw":"10.1.0.1","mtu":1500},{"dst":"10.5.0.0/16","gw":"10.1.0.1","priority":100},{"dst":"fd00:10:2::/64"},{"dst":"fd00:10:3::/64","gw":"fd00:10:1::1"}],` +
		`"dns":{"nameservers":["10.1.0.10","fd00:10:1::10"],"domain":"cluster.local","search":["default.svc.cluster.local","svc.cluster.local","cluster.local"],"options":["ndots:5","timeout:1"]}}`)
	return r
}

func BenchmarkSaveInterface(b *testing.B) {
	s := &Store{Dir: b.TempDir()}
	r := realisticInterface("c1")
	if n := len(r.Config) + len(r.Result); n < 1800 || n > 2600 {
		b.Fatalf("record payload is %d bytes, want about 2KB", n)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.SaveInterface(r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoadInterface(b *testing.B) {
	s := &Store{Dir: b.TempDir()}
	r := realisticInterface("c1")
	if err := s.SaveInterface(r); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		got, err := s.LoadInterface("c1", "net1")
		if err != nil {
			b.Fatal(err)
		}
		if len(got.Config) == 0 {
			b.Fatal("no config")
		}
	}
}

// MakeContainerDir makes the folders ADD's plan writes into, with the
// store's modes, and is idempotent; SyncContainers then syncs them.
func TestMakeContainerDir(t *testing.T) {
	s, _ := newStore(t)
	if err := s.SyncContainers(); err != nil {
		t.Errorf("SyncContainers on an empty store: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := s.MakeContainerDir("c1"); err != nil {
			t.Fatalf("MakeContainerDir call %d: %v", i+1, err)
		}
	}
	assertMode(t, s.ContainerDir("c1"), 0o700)
	assertMode(t, filepath.Join(s.Dir, "containers"), 0o700)
	if err := s.SyncContainers(); err != nil {
		t.Errorf("SyncContainers: %v", err)
	}
	if _, err := s.LoadContainer("c1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a folder without records: LoadContainer = %v, want ErrNotFound", err)
	}
}

// A prepared container record is invisible until committed, replaces the
// record in one rename, and leaves nothing once discarded; an uncommitted
// one goes with RemoveContainer.
func TestPrepareContainer(t *testing.T) {
	entries := func(t *testing.T, s *Store) []string {
		t.Helper()
		es, err := os.ReadDir(s.ContainerDir("c1"))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		return names
	}
	t.Run("commit", func(t *testing.T) {
		s, _ := newStore(t)
		c := sampleContainer("c1")
		c.Complete = false
		if err := s.SaveContainer(c); err != nil {
			t.Fatal(err)
		}
		done := *c
		done.Complete = true
		p, err := s.PrepareContainer(&done)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := s.LoadContainer("c1"); got == nil || got.Complete {
			t.Fatalf("before Commit: %+v, want the incomplete record", got)
		}
		if n := len(entries(t, s)); n != 2 {
			t.Errorf("folder holds %v, want the record and the prepared one", entries(t, s))
		}
		assertMode(t, p.tmp, 0o600)
		if err := p.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := s.Sync("c1"); err != nil {
			t.Fatal(err)
		}
		if got, err := s.LoadContainer("c1"); err != nil || !got.Complete {
			t.Errorf("after Commit: %+v, %v; want the complete record", got, err)
		}
		if got := entries(t, s); !reflect.DeepEqual(got, []string{"container.json"}) {
			t.Errorf("folder holds %v", got)
		}
	})
	t.Run("discard", func(t *testing.T) {
		s, _ := newStore(t)
		c := sampleContainer("c1")
		if err := s.SaveContainer(c); err != nil {
			t.Fatal(err)
		}
		p, err := s.PrepareContainer(c)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			if err := p.Discard(); err != nil {
				t.Fatalf("Discard call %d: %v", i+1, err)
			}
		}
		if got := entries(t, s); !reflect.DeepEqual(got, []string{"container.json"}) {
			t.Errorf("folder holds %v", got)
		}
		var none *Pending
		if err := none.Discard(); err != nil {
			t.Errorf("nil Discard: %v", err)
		}
	})
	t.Run("removed with the container", func(t *testing.T) {
		s, _ := newStore(t)
		c := sampleContainer("c1")
		if err := s.SaveContainer(c); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PrepareContainer(c); err != nil {
			t.Fatal(err)
		}
		if err := s.RemoveContainer("c1"); err != nil {
			t.Fatal(err)
		}
		if exists := fileExists(s.ContainerDir("c1")); exists {
			t.Errorf("container folder left")
		}
	})
	t.Run("invalid ID", func(t *testing.T) {
		s, _ := newStore(t)
		if _, err := s.PrepareContainer(sampleContainer("../x")); err == nil {
			t.Error("PrepareContainer accepted an invalid ID")
		}
	})
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
