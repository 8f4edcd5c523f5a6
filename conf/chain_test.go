package conf

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestConfListExact(t *testing.T) {
	tests := []struct {
		name  string
		chain Chain
		want  string
	}{
		{
			name: "flags off are left out",
			chain: Chain{IfName: "eth0", Network: "net", CNIVersion: "1.0.0",
				Plugins: []*Plugin{{Type: "bridge", Bytes: []byte(`{"type":"bridge"}`)}}},
			want: `{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"bridge"}]}`,
		},
		{
			name: "flags on are kept",
			chain: Chain{IfName: "eth1", Network: "quiet", CNIVersion: "1.1.0", DisableCheck: true, DisableGC: true,
				Plugins: []*Plugin{
					{Type: "macvlan", Bytes: []byte(`{"type":"macvlan","master":"ens4"}`)},
					{Type: "tuning", Bytes: []byte(`{"capabilities":{"mac":true},"type":"tuning"}`)},
				}},
			want: `{"cniVersion":"1.1.0","name":"quiet","disableCheck":true,"disableGC":true,` +
				`"plugins":[{"type":"macvlan","master":"ens4"},{"capabilities":{"mac":true},"type":"tuning"}]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.chain.ConfList()
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("ConfList =\n  %s\nwant\n  %s", b, tt.want)
			}
		})
	}
}

// TestConfListRoundTrip rebuilds every chain of every valid fixture from its
// ConfList bytes: what DEL and CHECK do with what ADD stored.
func TestConfListRoundTrip(t *testing.T) {
	for name := range validCases {
		t.Run(name, func(t *testing.T) {
			a, err := LoadAttachmentFile(filepath.Join("testdata", "valid", name), testDefaults)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range a.Interfaces {
				b, err := c.ConfList()
				if err != nil {
					t.Fatalf("%s: ConfList: %v", c.IfName, err)
				}
				var probe map[string]json.RawMessage
				if err := json.Unmarshal(b, &probe); err != nil {
					t.Fatalf("%s: ConfList is not a JSON object: %v", c.IfName, err)
				}
				if _, ok := probe["disableCheck"]; ok != c.DisableCheck {
					t.Errorf("%s: disableCheck present = %v, want %v", c.IfName, ok, c.DisableCheck)
				}
				if _, ok := probe["disableGC"]; ok != c.DisableGC {
					t.Errorf("%s: disableGC present = %v, want %v", c.IfName, ok, c.DisableGC)
				}

				back, err := ChainFromConfList(c.IfName, b)
				if err != nil {
					t.Fatalf("%s: ChainFromConfList: %v", c.IfName, err)
				}
				if !reflect.DeepEqual(back, c) {
					t.Errorf("%s: round trip changed the chain:\n got %s\nwant %s", c.IfName, dumpChain(back), dumpChain(c))
				}
				again, err := back.ConfList()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(again, b) {
					t.Errorf("%s: ConfList not stable:\n  %s\n  %s", c.IfName, b, again)
				}
			}
		})
	}
}

func dumpChain(c *Chain) string {
	var b strings.Builder
	b.WriteString(c.IfName + " " + c.Network + " " + c.CNIVersion)
	if c.DisableCheck {
		b.WriteString(" disableCheck")
	}
	if c.DisableGC {
		b.WriteString(" disableGC")
	}
	for _, p := range c.Plugins {
		b.WriteString(" [" + p.Type + " " + string(p.Bytes) + "]")
	}
	return b.String()
}

func TestChainFromConfListFlags(t *testing.T) {
	in := &Chain{IfName: "eth3", Network: "n", CNIVersion: "1.1.0", DisableCheck: true, DisableGC: true,
		Plugins: []*Plugin{{Type: "bridge", Bytes: []byte(`{"type":"bridge"}`)}}}
	b, err := in.ConfList()
	if err != nil {
		t.Fatal(err)
	}
	// The ifname comes from the caller, not the conflist.
	out, err := ChainFromConfList("net7", b)
	if err != nil {
		t.Fatal(err)
	}
	if out.IfName != "net7" || !out.DisableCheck || !out.DisableGC || out.Network != "n" || out.CNIVersion != "1.1.0" {
		t.Errorf("got %s", dumpChain(out))
	}
}

func TestChainFromConfListErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"not JSON", `{"name":`, "unexpected end of JSON input"},
		{"not an object", `[1]`, "cannot unmarshal"},
		{"no name", `{"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}`, "conflist has no name"},
		{"unsupported version", `{"cniVersion":"0.2.0","name":"n","plugins":[{"type":"bridge"}]}`, `cniVersion "0.2.0" is not supported`},
		{"no version", `{"name":"n","plugins":[{"type":"bridge"}]}`, `cniVersion "" is not supported`},
		{"name not a string", `{"cniVersion":"1.0.0","name":5,"plugins":[{"type":"bridge"}]}`, "cannot unmarshal"},
		{"plugins not a list", `{"cniVersion":"1.0.0","name":"n","plugins":{"type":"bridge"}}`, "plugins: "},
		{"empty plugins", `{"cniVersion":"1.0.0","name":"n","plugins":[]}`, "plugins: the list is empty"},
		{"null plugins", `{"cniVersion":"1.0.0","name":"n","plugins":null}`, "plugins: the list is empty"},
		{"plugin without type", `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a"},{"x":1}]}`, `plugins[1]: "type" is missing`},
		{"plugin not an object", `{"cniVersion":"1.0.0","name":"n","plugins":["bridge"]}`, "plugins[0]: "},
		{"disableCheck not a boolean", `{"cniVersion":"1.0.0","name":"n","disableCheck":"maybe","plugins":[{"type":"a"}]}`, `disableCheck: "maybe" is not a boolean`},
		{"disableGC a number", `{"cniVersion":"1.0.0","name":"n","disableGC":1,"plugins":[{"type":"a"}]}`, "disableGC: 1 is not a boolean"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ChainFromConfList("eth0", []byte(tt.in))
			if err == nil {
				t.Fatalf("no error; got %s", dumpChain(c))
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestParseConfListSingleConf(t *testing.T) {
	in := `{
  "cniVersion": "0.4.0",
  "name": "mv",
  "type": "macvlan",
  "master": "eth0",
  "capabilities": { "ips": true },
  "ipam": { "type": "static", "addresses": [ ] }
}`
	c, err := parseConfList([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if c.Network != "mv" || c.CNIVersion != "0.4.0" || c.DisableCheck || c.DisableGC || len(c.Plugins) != 1 {
		t.Fatalf("got %s", dumpChain(c))
	}
	p := c.Plugins[0]
	want := `{"cniVersion":"0.4.0","name":"mv","type":"macvlan","master":"eth0","capabilities":{"ips":true},"ipam":{"type":"static","addresses":[]}}`
	if p.Type != "macvlan" || string(p.Bytes) != want || !reflect.DeepEqual(p.Capabilities, map[string]bool{"ips": true}) {
		t.Errorf("plugin = %s %v %s, want macvlan map[ips:true] %s", p.Type, p.Capabilities, p.Bytes, want)
	}

	// ChainFromConfList accepts a .conf as well.
	c2, err := ChainFromConfList("eth5", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if c2.IfName != "eth5" || string(c2.Plugins[0].Bytes) != want {
		t.Errorf("ChainFromConfList = %s", dumpChain(c2))
	}

	// A .conf without "type" is neither a conf nor a conflist.
	if _, err := parseConfList([]byte(`{"cniVersion":"0.4.0","name":"x"}`)); err == nil || !strings.Contains(err.Error(), `"type" is missing`) {
		t.Errorf("conf without type: err = %v", err)
	}
}

func TestParseConfListBooleans(t *testing.T) {
	tests := []struct {
		raw     string
		want    bool
		wantErr bool
	}{
		{`true`, true, false},
		{`false`, false, false},
		{`"true"`, true, false},
		{`"True"`, true, false},
		{`"FALSE"`, false, false},
		{`null`, false, false},
		{`"yes"`, false, true},
		{`1`, false, true},
		{`{}`, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			in := `{"cniVersion":"1.0.0","name":"n","disableCheck":` + tt.raw + `,"disableGC":` + tt.raw + `,"plugins":[{"type":"a"}]}`
			c, err := parseConfList([]byte(in))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("no error; got %s", dumpChain(c))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.DisableCheck != tt.want || c.DisableGC != tt.want {
				t.Errorf("disableCheck, disableGC = %v, %v, want %v", c.DisableCheck, c.DisableGC, tt.want)
			}
		})
	}
}

func TestVersions(t *testing.T) {
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		if !IsSupportedVersion(v) {
			t.Errorf("%s not supported", v)
		}
	}
	for _, v := range []string{"", "0.1.0", "0.2.0", "1.0", "1.2.0", "v1.0.0"} {
		if IsSupportedVersion(v) {
			t.Errorf("%q supported", v)
		}
	}
	// SupportedVersions returns a fresh slice each time.
	s := SupportedVersions()
	s[0] = "9.9.9"
	if IsSupportedVersion("9.9.9") {
		t.Error("SupportedVersions shares its backing array")
	}

	atLeast := []struct {
		v, min string
		want   bool
	}{
		{"1.0.0", "0.4.0", true},
		{"0.4.0", "0.4.0", true},
		{"1.1.0", "1.0.0", true},
		{"0.3.1", "0.4.0", false},
		{"1.0.0", "1.1.0", false},
		{"garbage", "0.4.0", false},
		{"", "0.3.0", false},
	}
	for _, tt := range atLeast {
		if got := AtLeast(tt.v, tt.min); got != tt.want {
			t.Errorf("AtLeast(%q, %q) = %v, want %v", tt.v, tt.min, got, tt.want)
		}
	}
}
