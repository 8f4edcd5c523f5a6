package conf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// testDefaults are what the runtime would hand nicmux: CNI_IFNAME, the name
// and the cniVersion of nicmux's own network configuration list.
var testDefaults = Defaults{IfName: "eth0", ListName: "nomad", CNIVersion: "1.0.0"}

// wantChain is the expected resolution of one interface entry.
type wantChain struct {
	ifname, network, version string
	disableCheck, disableGC  bool
	types                    []string
	// caps, when set, are the plugins' capabilities, one per plugin.
	caps []map[string]bool
	// json, when set, is the exact JSON of each plugin's Bytes.
	json []string
}

// validCases holds every file in testdata/valid; TestParseAttachmentFileValid
// fails when a fixture has no entry here, so none goes unchecked.
var validCases = map[string][]wantChain{
	"basic.yaml": {
		{
			ifname: "eth0", network: "service", version: "1.0.0",
			types: []string{"bridge", "portmap"},
			caps:  []map[string]bool{nil, {"portMappings": true}},
			json: []string{
				`{"bridge":"nomad-br0","ipam":{"ranges":[[{"subnet":"172.26.64.0/20"}]],"routes":[{"dst":"0.0.0.0/0"}],"type":"host-local"},"isGateway":true,"type":"bridge"}`,
				`{"capabilities":{"portMappings":true},"type":"portmap"}`,
			},
		},
		{
			// From storage.conflist: its name and cniVersion apply.
			ifname: "eth1", network: "storage", version: "0.4.0",
			types: []string{"macvlan", "tuning"},
			caps:  []map[string]bool{nil, {"mac": true}},
			json: []string{
				// A conflist's plugin keeps its key order, compacted.
				`{"type":"macvlan","master":"ens4","mode":"bridge","ipam":{"type":"dhcp"}}`,
				`{"type":"tuning","capabilities":{"mac":true},"mtu":9000}`,
			},
		},
	},
	"defaults.yaml": {
		{ifname: "eth0", network: "nomad-eth0", version: "1.0.0", types: []string{"loopback"},
			json: []string{`{"type":"loopback"}`}},
		{ifname: "net1", network: "nomad-net1", version: "0.4.0", types: []string{"ptp"},
			json: []string{`{"ipam":{"type":"static"},"type":"ptp"}`}},
	},
	"conflist-override.yaml": {
		{ifname: "eth9", network: "backup", version: "1.1.0", types: []string{"macvlan", "tuning"}},
	},
	"single-conf.yaml": {
		{
			ifname: "eth0", network: "mv", version: "0.3.1", types: []string{"macvlan"},
			caps: []map[string]bool{{"ips": true}},
			json: []string{`{"cniVersion":"0.3.1","name":"mv","type":"macvlan","master":"eth0","capabilities":{"ips":true}}`},
		},
		{ifname: "eth1", network: "nomad-eth1", version: "1.0.0", types: []string{"host-device"},
			json: []string{`{"type":"host-device","device":"ens5"}`}},
	},
	"disable.yaml": {
		{ifname: "eth0", network: "nomad-eth0", version: "1.0.0", disableCheck: true, types: []string{"bridge"}},
		{ifname: "eth1", network: "quiet", version: "1.1.0", disableCheck: true, disableGC: true, types: []string{"bridge"}},
		{ifname: "eth2", network: "quiet", version: "1.1.0", disableCheck: true, disableGC: false, types: []string{"bridge"}},
	},
	"json.yaml": {
		{ifname: "eth0", network: "nomad-eth0", version: "1.0.0", types: []string{"bridge"},
			json: []string{`{"mtu":1400,"type":"bridge"}`}},
	},
	"document-markers.yaml": {
		{ifname: "eth0", network: "nomad-eth0", version: "1.0.0", types: []string{"bridge"},
			json: []string{`{"type":"bridge"}`}},
	},
	"values.yaml": {
		{
			ifname: "eth0", network: "nomad-eth0", version: "1.0.0", types: []string{"bridge"},
			json: []string{`{` +
				`"big":18446744073709551615,` +
				`"blank":null,` +
				`"date":"2001-12-14",` +
				`"empty":"",` +
				`"enabled":"true",` +
				`"folded":"one two",` +
				`"hex":31,` +
				`"ipMasq":false,` +
				`"ipam":{"ranges":[[{"gateway":"172.26.64.1","subnet":"172.26.64.0/20"}]],"routes":[{"dst":"0.0.0.0/0"}],"type":"host-local"},` +
				`"isGateway":true,` +
				`"legacy":"yes",` +
				`"list":[1,"2",true,null,{"a":[]},["x"]],` +
				`"mtu":1500,` +
				`"negative":-3,` +
				`"nothing":null,` +
				`"octal":15,` +
				`"port":"8080",` +
				`"ratio":0.5,` +
				`"text":"line one\nline two\n",` +
				`"tilde":null,` +
				`"type":"bridge",` +
				`"version":"1.0",` +
				`"whole":2` +
				`}`},
		},
		{
			ifname: "eth1", network: "nomad-eth1", version: "1.0.0", types: []string{"macvlan", "tuning"},
			json: []string{
				// "ipam: *ipam" copies the anchored mapping.
				`{"ipam":{"ranges":[[{"gateway":"172.26.64.1","subnet":"172.26.64.0/20"}]],"routes":[{"dst":"0.0.0.0/0"}],"type":"host-local"},"master":"eth0","type":"macvlan"}`,
				// "<<: *mv" fills in master; the explicit type and ipam win.
				// "<<: [*ipam, {...}]" merges both, the explicit type winning
				// over both and the first mapping over the second.
				`{"ipam":{"dataDir":"/run/x","ranges":[[{"gateway":"172.26.64.1","subnet":"172.26.64.0/20"}]],"routes":[{"dst":"0.0.0.0/0"}],"type":"static"},"master":"eth0","sysctl":{"net.core.somaxconn":"500"},"type":"tuning"}`,
			},
		},
	},
}

func TestParseAttachmentFileValid(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "valid", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in testdata/valid: %v", err)
	}
	for _, f := range files {
		if _, ok := validCases[filepath.Base(f)]; !ok {
			t.Errorf("fixture %s has no entry in validCases", f)
		}
	}
	for name, want := range validCases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", "valid", name)
			a, err := LoadAttachmentFile(path, testDefaults)
			if err != nil {
				t.Fatalf("LoadAttachmentFile: %v", err)
			}
			if a.File != path {
				t.Errorf("File = %q, want %q", a.File, path)
			}
			checkChains(t, a.Interfaces, want)

			// parseAttachmentFile on the same bytes gives the same result.
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b, err := parseAttachmentFile(path, data, testDefaults)
			if err != nil {
				t.Fatalf("parseAttachmentFile: %v", err)
			}
			if !reflect.DeepEqual(a, b) {
				t.Errorf("LoadAttachmentFile and parseAttachmentFile differ:\n%+v\n%+v", a, b)
			}
		})
	}
}

func checkChains(t *testing.T, got []*Chain, want []wantChain) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d interfaces, want %d", len(got), len(want))
	}
	for i, w := range want {
		c := got[i]
		if c.IfName != w.ifname || c.Network != w.network || c.CNIVersion != w.version {
			t.Errorf("interface %d = (%q, %q, %q), want (%q, %q, %q)", i,
				c.IfName, c.Network, c.CNIVersion, w.ifname, w.network, w.version)
		}
		if c.DisableCheck != w.disableCheck || c.DisableGC != w.disableGC {
			t.Errorf("interface %d: disableCheck, disableGC = %v, %v, want %v, %v", i,
				c.DisableCheck, c.DisableGC, w.disableCheck, w.disableGC)
		}
		var types []string
		for _, p := range c.Plugins {
			types = append(types, p.Type)
			if !json.Valid(p.Bytes) {
				t.Errorf("interface %d: plugin %s: Bytes are not valid JSON: %s", i, p.Type, p.Bytes)
			}
		}
		if !slices.Equal(types, w.types) {
			t.Errorf("interface %d: plugin types = %v, want %v", i, types, w.types)
			continue
		}
		for j, caps := range w.caps {
			if !reflect.DeepEqual(c.Plugins[j].Capabilities, caps) {
				t.Errorf("interface %d plugin %d: capabilities = %v, want %v", i, j, c.Plugins[j].Capabilities, caps)
			}
		}
		for j, js := range w.json {
			if got := string(c.Plugins[j].Bytes); got != js {
				t.Errorf("interface %d plugin %d: Bytes =\n  %s\nwant\n  %s", i, j, got, js)
			}
		}
	}
}

// wantErr is the expected error for one invalid fixture.
type wantErr struct {
	line, col int    // 0 when the error has no position (not YAML at all)
	field     string // "" for the document root
	msg       string // a part of the message
}

// invalidCases holds every file in testdata/invalid.
var invalidCases = map[string]wantErr{
	// The document.
	"empty.yaml":               {0, 0, "interfaces", "the file is empty"},
	"comments-only.yaml":       {0, 0, "interfaces", "the file is empty"},
	"syntax-error.yaml":        {0, 0, "", "not valid YAML: yaml: line 2:"},
	"tab-indent.yaml":          {0, 0, "", "not valid YAML: yaml: line 2:"},
	"null-document.yaml":       {1, 1, "", "must be a mapping, not null"},
	"root-not-mapping.yaml":    {1, 1, "", "must be a mapping, not a list"},
	"root-scalar.yaml":         {1, 1, "", `must be a mapping, not the scalar "just a string"`},
	"root-unknown-key.yaml":    {3, 1, "interface", "unknown field (allowed: [interfaces allow])"},
	"root-duplicate-key.yaml":  {3, 1, "interfaces", "duplicate key (first at line 1)"},
	"interfaces-missing.yaml":  {1, 1, "interfaces", "is required"},
	"interfaces-empty.yaml":    {1, 13, "interfaces", "the list is empty"},
	"interfaces-null.yaml":     {1, 12, "interfaces", "must be a list, not null"},
	"interfaces-not-list.yaml": {2, 3, "interfaces", "must be a list, not a mapping"},

	// The entries.
	"entry-not-mapping.yaml":            {2, 5, "interfaces[0]", `must be a mapping, not the scalar "eth0"`},
	"entry-unknown-key.yaml":            {4, 5, "interfaces[0].bridge", "unknown field"},
	"entry-duplicate-key.yaml":          {4, 5, "interfaces[0].ifname", "duplicate key (first at line 2)"},
	"both-plugins-and-conflist.yaml":    {4, 5, "interfaces[0]", "has both plugins and conflist"},
	"neither-plugins-nor-conflist.yaml": {2, 5, "interfaces[0]", "has neither plugins nor conflist"},
	"disablecheck-not-bool.yaml":        {3, 19, "interfaces[0].disableCheck", "must be true or false"},

	// Interface names.
	"ifname-duplicate.yaml":         {6, 5, "interfaces[2].ifname", `duplicate interface "eth1" (also interfaces[1])`},
	"ifname-duplicate-default.yaml": {3, 5, "interfaces[1].ifname", `duplicate interface "eth0" (also interfaces[0])`},
	"ifname-duplicate-alias.yaml":   {5, 5, "interfaces[1].ifname", `duplicate interface "eth1" (also interfaces[0])`},
	"ifname-too-long.yaml":          {2, 13, "interfaces[0].ifname", `invalid interface name "abcdefghijklmnop": interface name is too long`},
	"ifname-colon.yaml":             {2, 13, "interfaces[0].ifname", `invalid interface name "eth0:1"`},
	"ifname-space.yaml":             {4, 13, "interfaces[1].ifname", `invalid interface name "eth 1"`},
	"ifname-slash.yaml":             {2, 13, "interfaces[0].ifname", `invalid interface name "a/b"`},
	"ifname-dotdot.yaml":            {2, 13, "interfaces[0].ifname", `invalid interface name "..": interface name is . or ..`},
	"ifname-dot.yaml":               {2, 13, "interfaces[0].ifname", `invalid interface name ".": interface name is . or ..`},
	"ifname-empty.yaml":             {2, 13, "interfaces[0].ifname", `invalid interface name "": interface name is empty`},
	"ifname-not-string.yaml":        {2, 13, "interfaces[0].ifname", "must be a string, not a list"},
	"ifname-missing.yaml":           {3, 5, "interfaces[1].ifname", "is required on every entry but the first"},
	"ifname-percent.yaml":           {2, 13, "interfaces[0].ifname", `invalid interface name "net%d": the kernel would choose the link's name itself ('%')`},
	"ifname-lo.yaml":                {2, 13, "interfaces[0].ifname", `invalid interface name "lo": every network namespace has a link of that name`},
	"ifname-tunnel.yaml":            {4, 13, "interfaces[1].ifname", `invalid interface name "gre0": a network namespace has a link of that name once the kernel's ip_gre module is loaded`},

	// Network names and versions.
	"network-invalid.yaml":        {3, 14, "interfaces[0].network", `invalid network name "my network!"`},
	"network-not-string.yaml":     {3, 14, "interfaces[0].network", "must be a string, not a mapping"},
	"cniversion-unsupported.yaml": {3, 17, "interfaces[0].cniVersion", `"0.2.0" is not supported`},
	"cniversion-unknown.yaml":     {5, 17, "interfaces[1].cniVersion", `"9.9.9" is not supported`},
	"cniversion-null.yaml":        {3, 17, "interfaces[0].cniVersion", "must be a string, not null"},

	// Inline plugin chains.
	"plugins-not-list.yaml":         {4, 7, "interfaces[0].plugins", "must be a list of plugin configurations, not a mapping"},
	"plugins-empty.yaml":            {3, 14, "interfaces[0].plugins", "the list is empty"},
	"plugin-not-mapping.yaml":       {4, 9, "interfaces[0].plugins[0]", `must be a mapping, not the scalar "bridge"`},
	"plugin-missing-type.yaml":      {5, 9, "interfaces[0].plugins[1].type", "is required"},
	"plugin-empty-type.yaml":        {4, 9, "interfaces[0].plugins[0].type", "is required"},
	"plugin-type-not-string.yaml":   {4, 9, "interfaces[0].plugins[0].type", "is required"},
	"plugin-duplicate-key.yaml":     {5, 9, "interfaces[0].plugins[0].type", "duplicate key (first at line 3)"},
	"nested-duplicate-key.yaml":     {7, 11, "interfaces[0].plugins[0].ipam.type", "duplicate key"},
	"plugin-bad-capabilities.yaml":  {4, 9, "interfaces[0].plugins[0]", "capabilities"},
	"plugin-key-not-scalar.yaml":    {6, 13, "interfaces[0].plugins[0].ipam", "keys must be plain strings"},
	"plugin-merge-not-mapping.yaml": {6, 15, "interfaces[0].plugins[0].ipam", "merge key needs a mapping"},
	"plugin-infinity.yaml":          {5, 16, "interfaces[0].plugins[0].ratio", ".inf has no JSON form"},
	"plugin-nan.yaml":               {5, 16, "interfaces[0].plugins[0].ratio", ".nan has no JSON form"},
	"plugin-int-out-of-range.yaml":  {5, 14, "interfaces[0].plugins[0].mtu", "integer 99999999999999999999999 is out of range"},
	"alias-cycle.yaml":              {6, 16, "interfaces[0].plugins[0].self[0]", "an alias refers to a mapping or list that contains it"},
	"alias-billion-laughs.yaml":     {5, 40, "interfaces[0].plugins[0].e[7][8][8][8][8]", "too large"},

	// Conflist files.
	"conflist-missing.yaml":             {3, 15, "interfaces[0].conflist", "cannot read " + filepath.Join("testdata", "invalid", "nothere.conflist")},
	"conflist-invalid-json.yaml":        {3, 15, "interfaces[0].conflist", filepath.Join("testdata", "invalid", "broken.conflist") + ": unexpected end of JSON input"},
	"conflist-no-plugins.yaml":          {3, 15, "interfaces[0].conflist", `noplugins.conflist: "type" is missing`},
	"conflist-empty-plugins.yaml":       {3, 15, "interfaces[0].conflist", "emptyplugins.conflist: plugins: the list is empty"},
	"conflist-plugin-missing-type.yaml": {3, 15, "interfaces[0].conflist", `notype.conflist: plugins[1]: "type" is missing`},
	"conflist-old-version.yaml":         {2, 5, "interfaces[0].cniVersion", `"0.2.0" is not supported`},
	"conflist-empty-path.yaml":          {3, 15, "interfaces[0].conflist", "must be the path of a .conflist or .conf file"},
	"conflist-not-string.yaml":          {3, 15, "interfaces[0].conflist", "must be the path of a .conflist or .conf file"},

	// The primary interface.
	"primary-twice.yaml":    {6, 14, "interfaces[1].primary", "only one interface may be primary: eth0 (interfaces[0]) and eth1 (interfaces[1]) both are"},
	"primary-not-bool.yaml": {3, 14, "interfaces[0].primary", "must be true or false"},

	// Allow rules.
	"allow-empty.yaml":              {1, 8, "allow", "give namespaces, jobs or both"},
	"allow-unknown-key.yaml":        {2, 3, "allow.namespace", "unknown field (allowed: [namespaces jobs])"},
	"allow-empty-list.yaml":         {4, 9, "allow.jobs", "the list is empty, which no job matches"},
	"allow-bad-pattern.yaml":        {2, 22, "allow.namespaces[1]", `"team-[a" is not a valid pattern`},
	"allow-not-list.yaml":           {2, 15, "allow.namespaces", `must be a list of patterns, not the scalar "prod"`},
	"allow-pattern-not-string.yaml": {3, 7, "allow.jobs[0]", "must be a non-empty pattern, not a mapping"},
	"allow-not-mapping.yaml":        {1, 8, "allow", "must be a mapping, not a list"},
}

func TestParseAttachmentFileInvalid(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "invalid", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in testdata/invalid: %v", err)
	}
	for _, f := range files {
		if _, ok := invalidCases[filepath.Base(f)]; !ok {
			t.Errorf("fixture %s has no entry in invalidCases", f)
		}
	}
	for name, want := range invalidCases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", "invalid", name)
			a, err := LoadAttachmentFile(path, testDefaults)
			if err == nil {
				t.Fatalf("no error; got %d interfaces", len(a.Interfaces))
			}
			if a != nil {
				t.Errorf("got attachments %+v along with the error", a)
			}
			checkConfError(t, err, path, want)
		})
	}
}

// checkConfError asserts err is a *Error with code 7 at the expected place.
func checkConfError(t *testing.T, err error, path string, want wantErr) {
	t.Helper()
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *conf.Error", err, err)
	}
	if ce.Code != types.ErrInvalidNetworkConfig || ce.CNICode() != types.ErrInvalidNetworkConfig {
		t.Errorf("Code = %d, CNICode() = %d, want %d", ce.Code, ce.CNICode(), types.ErrInvalidNetworkConfig)
	}
	if ce.File != path || ce.Line != want.line || ce.Column != want.col || ce.Field != want.field {
		t.Errorf("at %s:%d:%d field %q, want %s:%d:%d field %q",
			ce.File, ce.Line, ce.Column, ce.Field, path, want.line, want.col, want.field)
	}
	prefix := path
	if want.line > 0 {
		prefix += fmt.Sprintf(":%d:%d", want.line, want.col)
	}
	prefix += ": "
	if want.field != "" {
		prefix += want.field + ": "
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, prefix) {
		t.Errorf("message %q does not start with %q", msg, prefix)
	}
	if !strings.Contains(msg, want.msg) {
		t.Errorf("message %q does not contain %q", msg, want.msg)
	}
}

// TestParseAttachmentFileInline covers cases that depend on the Defaults or on
// the file system layout, which fixed fixtures cannot express.
func TestParseAttachmentFileInline(t *testing.T) {
	const oneBridge = "interfaces:\n  - plugins: [{type: bridge}]\n"
	tests := []struct {
		name string
		data string
		d    Defaults
		want wantErr
	}{
		{"no CNI_IFNAME for a defaulted ifname", oneBridge, Defaults{ListName: "nomad", CNIVersion: "1.0.0"},
			wantErr{2, 5, "interfaces[0].ifname", `invalid interface name "": interface name is empty`}},
		{"invalid CNI_IFNAME for a defaulted ifname", oneBridge, Defaults{IfName: "eth0:0", ListName: "nomad", CNIVersion: "1.0.0"},
			wantErr{2, 5, "interfaces[0].ifname", `invalid interface name "eth0:0"`}},
		{"no list name for a defaulted network", oneBridge, Defaults{IfName: "eth0", CNIVersion: "1.0.0"},
			wantErr{2, 5, "interfaces[0].network", `invalid network name "-eth0"`}},
		{"unsupported default cniVersion", oneBridge, Defaults{IfName: "eth0", ListName: "nomad", CNIVersion: "0.2.0"},
			wantErr{2, 5, "interfaces[0].cniVersion", `"0.2.0" is not supported`}},
		{"no default cniVersion", oneBridge, Defaults{IfName: "eth0", ListName: "nomad"},
			wantErr{2, 5, "interfaces[0].cniVersion", `"" is not supported`}},
		{"ifname of 16 bytes in 8 runes", "interfaces:\n  - ifname: ééééééééé\n    plugins: [{type: bridge}]\n", testDefaults,
			wantErr{2, 13, "interfaces[0].ifname", "too long"}},
		{"ifname with a tab", "interfaces:\n  - ifname: \"eth\\t0\"\n    plugins: [{type: bridge}]\n", testDefaults,
			wantErr{2, 13, "interfaces[0].ifname", "whitespace"}},
		{"merge key on an entry", "interfaces:\n  - &e {ifname: eth0, plugins: [{type: bridge}]}\n  - <<: *e\n    ifname: eth1\n", testDefaults,
			wantErr{3, 5, "interfaces[1].<<", "unknown field"}},
		{"duplicate merge key on a plugin", "interfaces:\n  - plugins:\n    - &p {type: bridge}\n    - <<: *p\n      <<: *p\n", testDefaults,
			wantErr{5, 7, "interfaces[0].plugins[1].<<", "duplicate key"}},
		{"merge list holding a scalar", "interfaces:\n  - plugins:\n    - type: bridge\n      ipam: {<<: [{a: 1}, 5]}\n", testDefaults,
			wantErr{4, 27, "interfaces[0].plugins[0].ipam", "merge key needs a mapping"}},
		{"alias cycle through a merge key", "interfaces:\n  - plugins:\n    - &p\n      type: bridge\n      ipam: {<<: *p}\n", testDefaults,
			wantErr{5, 18, "interfaces[0].plugins[0].ipam", "an alias refers to a mapping or list that contains it"}},
		{"alias cycle through an entry", "interfaces:\n  - &e\n    ifname: eth0\n    plugins: [*e]\n", testDefaults,
			wantErr{4, 15, "interfaces[0].plugins[0].plugins[0]", "an alias refers to a mapping or list that contains it"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/etc/nicmux/attachments.yaml"
			_, err := parseAttachmentFile(path, []byte(tt.data), tt.d)
			if err == nil {
				t.Fatal("no error")
			}
			checkConfError(t, err, path, tt.want)
		})
	}
}

func TestParseAttachmentFileIfNameLimits(t *testing.T) {
	for _, name := range []string{"a", "eth0", "abcdefghijklmno", "br-0.100", "vlan_7", "..."} {
		data := fmt.Sprintf("interfaces:\n  - ifname: %q\n    plugins: [{type: bridge}]\n", name)
		a, err := parseAttachmentFile("/x/a.yaml", []byte(data), testDefaults)
		if err != nil {
			t.Errorf("ifname %q: %v", name, err)
			continue
		}
		c := a.Interfaces[0]
		if c.IfName != name || c.Network != "nomad-"+name {
			t.Errorf("ifname, network = %q, %q, want %q, %q", c.IfName, c.Network, name, "nomad-"+name)
		}
	}
}

func TestParseAttachmentFileConflistPaths(t *testing.T) {
	dir := t.TempDir()
	other := t.TempDir()
	cl := `{"cniVersion": "1.0.0", "name": "far", "plugins": [{"type": "bridge"}]}`
	if err := writeSettled(filepath.Join(other, "far.conflist"), []byte(cl), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeSettled(filepath.Join(dir, "near.conf"), []byte(`{"name": "near", "type": "macvlan"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf("interfaces:\n  - conflist: %s\n  - ifname: eth1\n    conflist: near.conf\n",
		filepath.Join(other, "far.conflist"))
	path := filepath.Join(dir, "a.yaml")
	if err := writeSettled(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := LoadAttachmentFile(path, testDefaults)
	if err != nil {
		t.Fatal(err)
	}
	checkChains(t, a.Interfaces, []wantChain{
		{ifname: "eth0", network: "far", version: "1.0.0", types: []string{"bridge"}, json: []string{`{"type":"bridge"}`}},
		{ifname: "eth1", network: "near", version: "1.0.0", types: []string{"macvlan"}, json: []string{`{"name":"near","type":"macvlan"}`}},
	})

	// A relative conflist is relative to the YAML file, not to the working
	// directory: the same bytes under another name do not find near.conf.
	_, err = parseAttachmentFile(filepath.Join(other, "a.yaml"), []byte(yaml), testDefaults)
	checkConfError(t, err, filepath.Join(other, "a.yaml"),
		wantErr{4, 15, "interfaces[1].conflist", "cannot read " + filepath.Join(other, "near.conf")})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%v does not wrap os.ErrNotExist", err)
	}
}

func TestLoadAttachmentsMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.yaml")
	_, err := LoadAttachmentFile(path, testDefaults)
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a *conf.Error", err)
	}
	if ce.Code != types.ErrInvalidNetworkConfig || ce.File != path || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %+v, want code 7 for %s wrapping os.ErrNotExist", ce, path)
	}
	if !strings.HasPrefix(err.Error(), path+": cannot read attachment file: ") {
		t.Errorf("message %q", err.Error())
	}
}

// TestParseAttachmentFileDeterministic checks that plugin bytes do not depend on
// map iteration order.
func TestParseAttachmentFileDeterministic(t *testing.T) {
	path := filepath.Join("testdata", "valid", "values.yaml")
	first, err := LoadAttachmentFile(path, testDefaults)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		again, err := LoadAttachmentFile(path, testDefaults)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range again.Interfaces {
			for j, p := range c.Plugins {
				if !bytes.Equal(p.Bytes, first.Interfaces[i].Plugins[j].Bytes) {
					t.Fatalf("interface %d plugin %d: %s != %s", i, j, p.Bytes, first.Interfaces[i].Plugins[j].Bytes)
				}
			}
		}
	}
}

// TestParseAttachmentFileAliasesAreCopies checks that a mapping reached through
// two aliases becomes two independent JSON objects.
func TestParseAttachmentFileAliasesAreCopies(t *testing.T) {
	data := "interfaces:\n  - plugins:\n    - type: a\n      x: &m {k: [1]}\n      y: *m\n      z: {<<: *m, extra: true}\n"
	a, err := parseAttachmentFile("/x/a.yaml", []byte(data), testDefaults)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"a","x":{"k":[1]},"y":{"k":[1]},"z":{"extra":true,"k":[1]}}`
	if got := string(a.Interfaces[0].Plugins[0].Bytes); got != want {
		t.Errorf("Bytes = %s, want %s", got, want)
	}
}

// TestParseAttachmentFileManyAliasesWithinLimit checks that the expansion limit
// leaves realistic reuse of anchors alone.
func TestParseAttachmentFileManyAliasesWithinLimit(t *testing.T) {
	var b strings.Builder
	b.WriteString("interfaces:\n")
	for i := range 64 {
		fmt.Fprintf(&b, "  - ifname: eth%d\n    plugins:\n", i)
		if i == 0 {
			b.WriteString("      - &p {type: bridge, ipam: {type: host-local, ranges: [[{subnet: 10.0.0.0/8}]], routes: [{dst: 0.0.0.0/0}]}}\n")
		} else {
			b.WriteString("      - *p\n      - {<<: *p, type: tuning}\n")
		}
	}
	a, err := parseAttachmentFile("/x/a.yaml", []byte(b.String()), testDefaults)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Interfaces) != 64 || len(a.Interfaces[63].Plugins) != 2 || a.Interfaces[63].Plugins[1].Type != "tuning" {
		t.Errorf("unexpected result: %d interfaces", len(a.Interfaces))
	}
}

// The runtime's CNI_IFNAME names the first interface when the file leaves
// it out: a name a namespace has of its own is refused there too.
func TestDefaultIfNameNamespaceOwn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.yaml")
	if err := writeSettled(path, []byte("interfaces:\n  - plugins: [{type: bridge}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := testDefaults
	d.IfName = "lo"
	_, err := LoadAttachmentFile(path, d)
	checkConfError(t, err, path, wantErr{2, 5, "interfaces[0].ifname", `invalid interface name "lo": every network namespace has a link of that name`})
}
