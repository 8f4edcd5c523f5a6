package conf

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLocate(t *testing.T) {
	basic := filepath.Join("testdata", "valid", "basic.yaml")
	single := filepath.Join("testdata", "valid", "single-conf.yaml")
	storage := filepath.Join("testdata", "valid", "storage.conflist")
	mv := filepath.Join("testdata", "valid", "macvlan.conf")
	cases := []struct {
		file, field, want string
	}{
		{basic, "interfaces", basic + ":3:1"},
		{basic, "interfaces[0]", basic + ":4:5"},
		{basic, "interfaces[0].network", basic + ":5:5"},
		{basic, "interfaces[0].plugins[0].bridge", basic + ":9:9"},
		{basic, "interfaces[0].plugins[0].ipam.routes[0].dst", basic + ":11:82"},
		{basic, "interfaces[0].plugins[0].ipam.ranges[0][0].subnet", basic + ":11:45"},
		{basic, "interfaces[0].plugins[1].capabilities.portMappings", basic + ":13:24"},
		// Not written: the nearest written ancestor.
		{basic, "interfaces[0].plugins[0].mtu", basic + ":8:9"},
		{basic, "interfaces[0].plugins[7].type", basic + ":7:5"},
		{basic, "interfaces[1].network", basic + ":14:5"},
		{basic, "", basic + ":3:1"},
		// Into the conflist the entry reads.
		{basic, "interfaces[1].plugins[0].master", storage + ":7:7"},
		{basic, "interfaces[1].plugins[1].mtu", storage + ":11:58"},
		{basic, "interfaces[1].plugins[0].ipam.type", storage + ":9:17"},
		{basic, "interfaces[1].plugins", storage + ":4:3"},
		// A .conf's object is its plugins[0].
		{single, "interfaces[0].plugins[0].master", mv + ":5:3"},
		{single, "interfaces[0].plugins[0]", mv + ":1:1"},
	}
	for _, tt := range cases {
		t.Run(filepath.Base(tt.file)+"/"+tt.field, func(t *testing.T) {
			if _, err := LoadAttachmentFile(tt.file, testDefaults); err != nil {
				t.Fatal(err)
			}
			if got := NewLocator(tt.file).Locate(tt.field).String(); got != tt.want {
				t.Errorf("Locate(%q) = %s, want %s", tt.field, got, tt.want)
			}
		})
	}
}

// TestLocateAliases: a value reached through an alias or a merge key is
// located where it is written.
func TestLocateAliases(t *testing.T) {
	yml := `interfaces:
  - ifname: eth0
    plugins:
      - &base
        type: macvlan
        master: ens4
        ipam: &ipam
          type: host-local
          routes: [{dst: 0.0.0.0/0}]
  - ifname: eth1
    plugins:
      - <<: *base
        mode: bridge
        ipam: *ipam
`
	path := filepath.Join(t.TempDir(), "x.yaml")
	if err := writeSettled(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAttachmentFile(path, testDefaults); err != nil {
		t.Fatal(err)
	}
	l := NewLocator(path)
	for field, want := range map[string]string{
		"interfaces[1].plugins[0].mode":               path + ":13:9",
		"interfaces[1].plugins[0].master":             path + ":6:9",
		"interfaces[1].plugins[0].ipam.routes[0].dst": path + ":9:21",
		"interfaces[1].plugins[0].ipam":               path + ":14:9",
	} {
		if got := l.Locate(field).String(); got != want {
			t.Errorf("Locate(%q) = %s, want %s", field, got, want)
		}
	}
}

func TestLocateUnreadable(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "made.yaml")
	if got := NewLocator(missing).Locate("interfaces[0]").String(); got != missing {
		t.Errorf("Locate in a file that is not there = %s, want the file alone", got)
	}
}

func TestLocateJSON(t *testing.T) {
	data := []byte(`{
  "cniVersion": "1.0.0",
  "name": "multi",
  "plugins": [
    {"type": "loopback"},
    {
      "type": "nicmux", "logFle": "/x",
      "nested": {"a": [1, {"b": 2}]},
      "dup": 1, "dup": 2,
      "ünï": "x", "after": true
    }
  ]
}`)
	for field, want := range map[string]string{
		"":                         "c:1:1",
		"cniVersion":               "c:2:3",
		"plugins":                  "c:4:3",
		"plugins[0]":               "c:5:5",
		"plugins[1]":               "c:6:5",
		"plugins[1].logFle":        "c:7:25",
		"plugins[1].nested.a[1].b": "c:8:28",
		"plugins[1].dup":           "c:9:17",
		"plugins[1].after":         "c:10:19",
		"plugins[1].missing":       "c:6:5",
		"plugins[5].type":          "c:4:3",
	} {
		if got := LocateJSON("c", data, field).String(); got != want {
			t.Errorf("LocateJSON(%q) = %s, want %s", field, got, want)
		}
	}
	if got := LocateJSON("c", []byte(`{"a": `), "a").String(); got != "c" {
		t.Errorf("LocateJSON on broken JSON = %s, want the file alone", got)
	}
}

func TestOffsetPosition(t *testing.T) {
	data := []byte("{\n  \"ä\": tru\n}")
	var syn *json.SyntaxError
	if err := json.Unmarshal(data, new(any)); !errors.As(err, &syn) {
		t.Fatalf("want a syntax error, got %v", err)
	}
	// The offset is past the offending byte (the line break after "tru").
	for off, want := range map[int]string{int(syn.Offset) - 1: "f:2:11", 0: "f:1:1", 3: "f:2:2", 999: "f:3:2"} {
		if got := OffsetPosition("f", data, off).String(); got != want {
			t.Errorf("OffsetPosition(%d) = %s, want %s", off, got, want)
		}
	}
}

// TestLocateConflistFile: the positions inside a `conflist:` file follow that
// file, even when the attachment file sits elsewhere.
func TestLocateConflistFile(t *testing.T) {
	dir := t.TempDir()
	cl := filepath.Join(dir, "sub", "s.conflist")
	if err := os.MkdirAll(filepath.Dir(cl), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeSettled(cl, []byte(`{"cniVersion": "1.0.0", "name": "s",
"plugins": [{"type": "macvlan", "master": "ens5"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "a.yaml")
	if err := writeSettled(path, []byte("interfaces:\n  - conflist: sub/s.conflist\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAttachmentFile(path, testDefaults); err != nil {
		t.Fatal(err)
	}
	l := NewLocator(path)
	if got, want := l.Locate("interfaces[0].plugins[0].master").String(), cl+":2:33"; got != want {
		t.Errorf("Locate = %s, want %s", got, want)
	}
	if got, want := l.Locate("interfaces[0].conflist").String(), path+":2:5"; got != want {
		t.Errorf("Locate = %s, want %s", got, want)
	}
}

func TestFindSyntaxError(t *testing.T) {
	cases := []struct {
		yaml    string
		line    int
		problem string
	}{
		{"interfaces:\n  - plugins: [{type: bridge}]\n", 0, ""},
		{"interfaces:\n  - ifname: eth0\n   plugins:\n      - type: bridge\n", 3, "did not find expected '-' indicator"},
		// A flow list that never closes: the line that opens it.
		{"interfaces:\n  - plugins: [{type: bridge}\n\n\n", 2, "did not find expected ',' or ']'"},
		// No newline at the end.
		{"a: 1\nb: [", 2, "did not find expected node content"},
		{"a: 1\n\tb: 2\n", 2, "found a tab character that violates indentation"},
	}
	for _, c := range cases {
		path := filepath.Join(t.TempDir(), "a.yaml")
		if err := os.WriteFile(path, []byte(c.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := FindSyntaxError(path); got.Line != c.line || got.Problem != c.problem {
			t.Errorf("%q: %+v, want line %d, %q", c.yaml, got, c.line, c.problem)
		}
	}
}
