package adopt

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/nicmux/nicmux/conf"
)

// seed is the seed's hand-written chain: a bridge for eth0 with portmap,
// and a macvlan with tuning, each wrapped to act on eth1.
const seed = `{"cniVersion": "1.0.0", "name": "handmade", "plugins": [
  {"type": "bridge", "bridge": "nomad-br0", "isGateway": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "172.26.64.0/20"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
  {"type": "ifrename", "ifname": "eth1", "delegate": {"type": "macvlan", "master": "ens4", "mode": "bridge", "mtu": 1500,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.40.0.0/24"}]]}}},
  {"type": "ifrename", "ifname": "eth1", "delegate": {"type": "tuning", "sysctl": {"net.ipv4.conf.eth1.arp_ignore": "1"}}},
  {"type": "loopback"}
]}`

var opts = Options{Attachments: "/etc/nicmux/handmade.yaml", Source: "/opt/cni/config/handmade.conflist"}

// TestSplitSeed: the seed's chain becomes eth0 (bridge, portmap) and eth1
// (macvlan, tuning) unwrapped, in a file nicmux's own parser reads back
// with every plugin's settings in place, and a conflist of nicmux and
// loopback with the list's name and the chains' capabilities.
func TestSplitSeed(t *testing.T) {
	r, err := Split([]byte(seed), opts)
	if err != nil {
		t.Fatal(err)
	}
	want := []Interface{
		{IfName: "eth0", Network: "handmade-eth0", Plugins: []string{"bridge(host-local)", "portmap"}},
		{IfName: "eth1", Network: "handmade-eth1", Plugins: []string{"macvlan(host-local)", "tuning"}, Unwrapped: []string{"ifrename"}},
	}
	if !reflect.DeepEqual(r.Interfaces, want) {
		t.Errorf("interfaces = %+v, want %+v", r.Interfaces, want)
	}
	yamlPath := filepath.Join(t.TempDir(), "handmade.yaml")
	if err := os.WriteFile(yamlPath, r.Attachments, 0o644); err != nil {
		t.Fatal(err)
	}
	att, err := conf.LoadAttachmentFile(yamlPath, conf.Defaults{IfName: "eth0", ListName: "handmade", CNIVersion: "1.0.0"})
	if err != nil {
		t.Fatalf("nicmux cannot parse the attachment file: %v\n%s", err, r.Attachments)
	}
	if len(att.Interfaces) != 2 {
		t.Fatalf("parsed %d interfaces:\n%s", len(att.Interfaces), r.Attachments)
	}
	var doc struct {
		Interfaces []struct {
			Plugins []map[string]any `yaml:"plugins"`
		} `yaml:"interfaces"`
	}
	if err := yaml.Unmarshal(r.Attachments, &doc); err != nil {
		t.Fatal(err)
	}
	mv := doc.Interfaces[1].Plugins[0]
	if mv["type"] != "macvlan" || mv["master"] != "ens4" || mv["mtu"] != 1500 || mv["ifname"] != nil {
		t.Errorf("eth1's macvlan = %v, want the delegate's settings unwrapped", mv)
	}
	if v := doc.Interfaces[1].Plugins[1]["sysctl"].(map[string]any)["net.ipv4.conf.eth1.arp_ignore"]; v != "1" {
		t.Errorf("tuning's sysctl value = %#v, want the string \"1\"", v)
	}
	if !strings.HasPrefix(string(r.Attachments), "# Written by nicmux adopt from /opt/cni/config/handmade.conflist") {
		t.Errorf("no header naming the source:\n%s", r.Attachments)
	}
	var list map[string]any
	if err := json.Unmarshal(r.Conflist, &list); err != nil {
		t.Fatal(err)
	}
	plugins := list["plugins"].([]any)
	nm := plugins[0].(map[string]any)
	if list["name"] != "handmade" || list["cniVersion"] != "1.0.0" || len(plugins) != 2 || nm["type"] != "nicmux" ||
		nm["attachments"] != opts.Attachments || plugins[1].(map[string]any)["type"] != "loopback" {
		t.Errorf("conflist = %s", r.Conflist)
	}
	if caps, _ := nm["capabilities"].(map[string]any); caps["portMappings"] != true {
		t.Errorf("nicmux entry capabilities = %v, want portMappings (portmap declares it)", nm["capabilities"])
	}
	if _, err := conf.ParseNetConf(mustJSON(t, nm, list)); err != nil {
		t.Errorf("nicmux cannot parse its entry: %v", err)
	}
}

func mustJSON(t *testing.T, entry, list map[string]any) []byte {
	t.Helper()
	m := map[string]any{"cniVersion": list["cniVersion"], "name": list["name"]}
	for k, v := range entry {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSplitRefuses: what adopt cannot split safely, with every reason.
func TestSplitRefuses(t *testing.T) {
	for _, c := range []struct {
		name, plugins string
		want          []string
	}{
		{"plain chain: a second eth0", `{"type":"bridge"},{"type":"macvlan","master":"x"}`,
			[]string{`plugins[1] (type "macvlan"): it makes a second interface named eth0`, "file exists"}},
		{"unknown wrapper", `{"type":"bridge"},{"type":"rename-wrap","ifname":"eth1","delegate":{"type":"macvlan"}}`,
			[]string{`plugins[1] (type "rename-wrap"): it holds a plugin configuration under "delegate"`, "-wrapper rename-wrap"}},
		{"a wrapper with a list of delegates", `{"type":"bridge"},{"type":"multi","delegates":[{"type":"macvlan"}]}`,
			[]string{`under "delegates"`}},
		{"unknown plugin", `{"type":"bridge"},{"type":"calico"}`,
			[]string{`plugins[1] (type "calico"): adopt cannot tell which interface it acts on`}},
		{"meta plugin before its interface", `{"type":"tuning"},{"type":"bridge"}`,
			[]string{`plugins[0] (type "tuning"): it acts on eth0 (CNI_IFNAME), which no plugin before it makes`}},
		{"meta plugin wrapped onto an interface nobody made", `{"type":"bridge"},{"type":"ifrename","ifname":"eth1","delegate":{"type":"tuning"}}`,
			[]string{`it acts on eth1`}},
		{"wrapper without ifname", `{"type":"bridge"},{"type":"ifrename","delegate":{"type":"macvlan"}}`,
			[]string{`a wrapper needs "ifname"`}},
		{"IPAM as an entry", `{"type":"bridge"},{"type":"host-local"}`, []string{"an IPAM plugin as an entry"}},
		{"already nicmux", `{"type":"nicmux","attachments":"/x"}`, []string{"already runs nicmux"}},
		{"two reasons at once", `{"type":"calico"},{"type":"bridge"},{"type":"bridge"}`,
			[]string{`plugins[0] (type "calico")`, `plugins[2] (type "bridge")`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Split([]byte(`{"cniVersion":"1.0.0","name":"n","plugins":[`+c.plugins+`]}`), opts)
			var re *RefusedError
			if !errors.As(err, &re) {
				t.Fatalf("Split: %v, want a refusal", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("refusal %q lacks %q", err, w)
				}
			}
		})
	}
	if _, err := Split([]byte(`{"name":"n","plugins":[`), opts); !errors.Is(err, ErrNotAList) {
		t.Errorf("broken JSON: %v", err)
	}
	if _, err := Split([]byte(`{"cniVersion":"0.2.0","name":"n","plugins":[{"type":"bridge"}]}`), opts); err == nil {
		t.Error("a 0.2.0 list is split")
	}
}

// TestSplitOptions: a wrapper named by the operator, the list's version
// kept on the chains, settings for the nicmux entry, a relative path
// refused.
func TestSplitOptions(t *testing.T) {
	data := `{"cniVersion":"0.4.0","name":"n","disableCheck":true,"plugins":[{"type":"bridge"},
	  {"type":"wrap","ifname":"net1","delegate":{"type":"macvlan","master":"x"}}]}`
	o := opts
	o.Wrappers, o.StateDir, o.LogFile = []string{"wrap"}, "/var/lib/cni/nicmux", "/var/log/nicmux.log"
	r, err := Split([]byte(data), o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Interfaces[1].IfName != "net1" || r.Interfaces[1].Unwrapped[0] != "wrap" {
		t.Errorf("interfaces = %+v", r.Interfaces)
	}
	if !strings.Contains(string(r.Attachments), "cniVersion: 0.4.0") {
		t.Errorf("the chains lose the list's version:\n%s", r.Attachments)
	}
	for _, w := range []string{`"disableCheck": true`, `"stateDir": "/var/lib/cni/nicmux"`, `"logFile": "/var/log/nicmux.log"`, `"cniVersion": "1.0.0"`} {
		if !strings.Contains(string(r.Conflist), w) {
			t.Errorf("conflist lacks %s:\n%s", w, r.Conflist)
		}
	}
	if strings.Contains(string(r.Conflist), "capabilities") {
		t.Errorf("capabilities declared though no chain does:\n%s", r.Conflist)
	}
	o.Attachments = "handmade.yaml"
	if _, err := Split([]byte(data), o); err == nil {
		t.Error("a relative attachment path is accepted")
	}
}
