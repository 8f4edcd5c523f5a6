package conf

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

func TestParseNetConfMinimal(t *testing.T) {
	nc, err := ParseNetConf([]byte(`{"cniVersion":"1.0.0","name":"nomad","type":"nicmux","attachments":"/etc/nicmux/default.yaml"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := &NetConf{CNIVersion: "1.0.0", Name: "nomad", Type: "nicmux",
		Attachments: "/etc/nicmux/default.yaml", StateDir: "/var/lib/cni/nicmux",
		Parallel: true, Timeout: 60 * time.Second}
	if !reflect.DeepEqual(nc, want) {
		t.Errorf("got %+v\nwant %+v", nc, want)
	}
	if DefaultStateDir != "/var/lib/cni/nicmux" {
		t.Errorf("DefaultStateDir = %q", DefaultStateDir)
	}
}

func TestParseNetConfFull(t *testing.T) {
	in := `{
  "cniVersion": "1.1.0",
  "name": "nomad",
  "type": "nicmux",
  "attachments": "/etc/nicmux/default.yaml",
  "stateDir": "/run/nicmux",
  "logFile": "/var/log/nicmux.log",
  "logLevel": "debug",
  "parallel": false,
  "disableCheck": true,
  "disableGC": true,
  "capabilities": {"portMappings": true, "ips": true},
  "runtimeConfig": {
    "portMappings": [ {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"} ],
    "ips": ["10.0.0.5/24"]
  },
  "prevResult": {"cniVersion": "1.1.0", "interfaces": []},
  "unknownKeysAreIgnored": {"like": "libcni"}
}`
	nc, err := ParseNetConf([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if nc.StateDir != "/run/nicmux" || nc.LogFile != "/var/log/nicmux.log" || nc.LogLevel != "debug" {
		t.Errorf("paths and level: %+v", nc)
	}
	if nc.Parallel {
		t.Errorf("Parallel = %v, want false", nc.Parallel)
	}
	if !nc.DisableCheck || !nc.DisableGC {
		t.Errorf("DisableCheck, DisableGC = %v, %v", nc.DisableCheck, nc.DisableGC)
	}
	if !reflect.DeepEqual(nc.Capabilities, map[string]bool{"portMappings": true, "ips": true}) {
		t.Errorf("Capabilities = %v", nc.Capabilities)
	}
	// Runtime arguments are kept as raw JSON, exactly as given.
	if got, want := string(nc.RuntimeConfig["portMappings"]), `[ {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"} ]`; got != want {
		t.Errorf("runtimeConfig.portMappings = %s, want %s", got, want)
	}
	if got, want := string(nc.RuntimeConfig["ips"]), `["10.0.0.5/24"]`; got != want {
		t.Errorf("runtimeConfig.ips = %s, want %s", got, want)
	}
	if len(nc.RuntimeConfig) != 2 {
		t.Errorf("runtimeConfig has %d keys, want 2", len(nc.RuntimeConfig))
	}
	if got, want := string(nc.PrevResult), `{"cniVersion": "1.1.0", "interfaces": []}`; got != want {
		t.Errorf("prevResult = %s, want %s", got, want)
	}
	if len(nc.GCValid()) != 0 {
		t.Errorf("GCValid = %v, want none", nc.GCValid())
	}
}

func TestParseNetConfAccepted(t *testing.T) {
	for _, v := range SupportedVersions() {
		for _, level := range []string{"", "debug", "info", "warn", "warning", "error"} {
			in, _ := json.Marshal(map[string]string{"cniVersion": v, "name": "n", "attachments": "/a.yaml", "logLevel": level})
			if _, err := ParseNetConf(in); err != nil {
				t.Errorf("cniVersion %q, logLevel %q: %v", v, level, err)
			}
		}
	}
}

func TestParseNetConfErrors(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		code  uint
		field string
		msg   string
	}{
		{"missing attachments", `{"cniVersion":"1.0.0","name":"nomad"}`,
			types.ErrInvalidNetworkConfig, "attachments", `network config "nomad": attachments: is required`},
		{"empty attachments", `{"cniVersion":"1.0.0","name":"nomad","attachments":""}`,
			types.ErrInvalidNetworkConfig, "attachments", "is required"},
		{"unnamed, missing attachments", `{}`,
			types.ErrInvalidNetworkConfig, "attachments", "network config (unnamed): attachments: is required"},
		{"JSON null", `null`,
			types.ErrInvalidNetworkConfig, "attachments", "is required"},
		{"attachments not a string", `{"name":"nomad","attachments":5}`,
			types.ErrDecodingFailure, "attachments", "network config: attachments: expected string, got JSON number"},
		{"attachments a list", `{"name":"nomad","attachments":["/a.yaml"]}`,
			types.ErrDecodingFailure, "attachments", "expected string, got JSON array"},
		{"parallel not a boolean", `{"cniVersion":"1.1.0","attachments":"/a.yaml","parallel":"yes"}`,
			types.ErrDecodingFailure, "parallel", "expected bool, got JSON string"},
		{"runtimeConfig not an object", `{"cniVersion":"1.1.0","attachments":"/a.yaml","runtimeConfig":[]}`,
			types.ErrDecodingFailure, "runtimeConfig", "got JSON array"},
		{"valid attachments of the wrong shape", `{"cniVersion":"1.1.0","attachments":"/a.yaml","cni.dev/valid-attachments":[{"containerID":5}]}`,
			types.ErrDecodingFailure, "cni.dev/valid-attachments.containerID", "expected string"},
		{"not JSON", `attachments: /etc/nicmux/a.yaml`,
			types.ErrDecodingFailure, "", "network config: not valid JSON at byte 1"},
		{"truncated JSON", `{"attachments": "/a.yaml"`,
			types.ErrDecodingFailure, "", "not valid JSON"},
		{"empty input", ``,
			types.ErrDecodingFailure, "", "not valid JSON"},
		{"a list, not an object", `[]`,
			types.ErrDecodingFailure, "(top level)", "network config: (top level): expected conf.NetConf, got JSON array"},
		{"relative attachments", `{"name":"n","attachments":"nicmux/a.yaml"}`,
			types.ErrInvalidNetworkConfig, "attachments", `"nicmux/a.yaml" must be an absolute path`},
		{"relative stateDir", `{"name":"n","attachments":"/a.yaml","stateDir":"state"}`,
			types.ErrInvalidNetworkConfig, "stateDir", `"state" must be an absolute path`},
		{"relative logFile", `{"name":"n","attachments":"/a.yaml","logFile":"./nicmux.log"}`,
			types.ErrInvalidNetworkConfig, "logFile", `"./nicmux.log" must be an absolute path`},
		{"relative metricsFile", `{"cniVersion":"1.0.0","name":"n","attachments":"/a.yaml","metricsFile":"nicmux.prom"}`,
			types.ErrInvalidNetworkConfig, "metricsFile", `"nicmux.prom" must be an absolute path`},
		{"metricsFile not .prom", `{"cniVersion":"1.0.0","name":"n","attachments":"/a.yaml","metricsFile":"/var/lib/node_exporter/nicmux.txt"}`,
			types.ErrInvalidNetworkConfig, "metricsFile", `must end in .prom: node_exporter's textfile collector reads no other file`},
		{"unknown logLevel", `{"cniVersion":"1.0.0","name":"n","attachments":"/a.yaml","logLevel":"verbose"}`,
			types.ErrInvalidNetworkConfig, "logLevel", `"verbose" is not one of debug, info, warn, error`},
		{"logLevel in capitals", `{"cniVersion":"1.0.0","name":"n","attachments":"/a.yaml","logLevel":"DEBUG"}`,
			types.ErrInvalidNetworkConfig, "logLevel", `"DEBUG"`},
		{"no cniVersion", `{"name":"n","attachments":"/a.yaml"}`,
			types.ErrIncompatibleCNIVersion, "cniVersion", `cniVersion: "" is not supported`},
		{"cniVersion 0.2.0", `{"cniVersion":"0.2.0","name":"n","attachments":"/a.yaml"}`,
			types.ErrIncompatibleCNIVersion, "cniVersion", `network config "n": cniVersion: "0.2.0" is not supported`},
		{"cniVersion 0.1.0", `{"cniVersion":"0.1.0","name":"n","attachments":"/a.yaml"}`,
			types.ErrIncompatibleCNIVersion, "cniVersion", "is not supported"},
		{"cniVersion from the future", `{"cniVersion":"2.0.0","name":"n","attachments":"/a.yaml"}`,
			types.ErrIncompatibleCNIVersion, "cniVersion", "is not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := ParseNetConf([]byte(tt.in))
			if err == nil {
				t.Fatalf("no error; got %+v", nc)
			}
			if nc != nil {
				t.Errorf("got a NetConf along with the error: %+v", nc)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is not a *conf.Error", err, err)
			}
			if ce.Code != tt.code || ce.CNICode() != tt.code {
				t.Errorf("Code = %d, want %d", ce.Code, tt.code)
			}
			if ce.Field != tt.field {
				t.Errorf("Field = %q, want %q", ce.Field, tt.field)
			}
			if tt.field != "" && !strings.Contains(err.Error(), tt.field+": ") {
				t.Errorf("message %q does not name the field %q", err, tt.field)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("message %q does not contain %q", err, tt.msg)
			}
		})
	}
}

func TestGCValid(t *testing.T) {
	a := types.GCAttachment{ContainerID: "a", IfName: "eth0"}
	b := types.GCAttachment{ContainerID: "b", IfName: "eth0"}
	c := types.GCAttachment{ContainerID: "c", IfName: "eth1"}
	tests := []struct {
		name string
		in   string
		want []types.GCAttachment
	}{
		{"both keys, overlapping",
			`{"cniVersion":"1.1.0","attachments":"/a.yaml","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"},{"containerID":"b","ifname":"eth0"}],` +
				`"cni.dev/attachments":[{"containerID":"b","ifname":"eth0"},{"containerID":"c","ifname":"eth1"}]}`,
			[]types.GCAttachment{a, b, c}},
		{"current key only",
			`{"cniVersion":"1.1.0","attachments":"/a.yaml","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}`,
			[]types.GCAttachment{a}},
		{"legacy key only",
			`{"cniVersion":"1.1.0","attachments":"/a.yaml","cni.dev/attachments":[{"containerID":"c","ifname":"eth1"},{"containerID":"a","ifname":"eth0"}]}`,
			[]types.GCAttachment{c, a}},
		{"same container, other interface is distinct",
			`{"cniVersion":"1.1.0","attachments":"/a.yaml","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}],"cni.dev/attachments":[{"containerID":"a","ifname":"eth1"}]}`,
			[]types.GCAttachment{a, {ContainerID: "a", IfName: "eth1"}}},
		{"neither", `{"cniVersion":"1.1.0","attachments":"/a.yaml"}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := ParseNetConf([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			got := nc.GCValid()
			if len(got) != len(tt.want) || (len(got) > 0 && !reflect.DeepEqual(got, tt.want)) {
				t.Errorf("GCValid = %v, want %v", got, tt.want)
			}
		})
	}

	// GCValid does not modify the NetConf's own list.
	nc := &NetConf{ValidAttachments: []types.GCAttachment{a}, LegacyValidAttachments: []types.GCAttachment{b}}
	_ = nc.GCValid()
	if len(nc.ValidAttachments) != 1 {
		t.Errorf("GCValid appended to ValidAttachments: %v", nc.ValidAttachments)
	}
}

func TestGCValidGiven(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{`{"cni.dev/valid-attachments":[]}`, true},
		{`{"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}`, true},
		{`{"cni.dev/attachments":[]}`, true},
		{`{"cni.dev/valid-attachments":[],"cni.dev/attachments":[]}`, true},
		{`{"cniVersion":"1.1.0","attachments":"/a.yaml"}`, false},
		{`{"valid-attachments":[]}`, false},
		{`{}`, false},
		{`not json`, false},
		{`[]`, false},
		{``, false},
	}
	for _, tt := range tests {
		if got := GCValidGiven([]byte(tt.in)); got != tt.want {
			t.Errorf("GCValidGiven(%s) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseNetConfDelegateTimeout(t *testing.T) {
	base := `{"cniVersion":"1.0.0","name":"n","type":"nicmux","attachments":"/a.yaml"`
	for in, want := range map[string]time.Duration{"": 60 * time.Second, `"90s"`: 90 * time.Second, `"1m30s"`: 90 * time.Second} {
		s := base + "}"
		if in != "" {
			s = base + `,"delegateTimeout":` + in + "}"
		}
		nc, err := ParseNetConf([]byte(s))
		if err != nil || nc.Timeout != want {
			t.Errorf("delegateTimeout %s: %v, %v; want %v", in, nc, err, want)
		}
	}
	for _, in := range []string{`"0s"`, `"-1s"`, `"soon"`} {
		_, err := ParseNetConf([]byte(base + `,"delegateTimeout":` + in + "}"))
		var ce *Error
		if !errors.As(err, &ce) || ce.CNICode() != types.ErrInvalidNetworkConfig || !strings.Contains(err.Error(), "delegateTimeout") {
			t.Errorf("delegateTimeout %s: %v, want code 7 naming the field", in, err)
		}
	}
}
