package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRehearseAdoptUsage: the flags, arguments and exit codes of rehearse
// and adopt for what is wrong before anything runs. Rehearsals themselves
// need root and real plugins: test/integration and test/nomad run them.
func TestRehearseAdoptUsage(t *testing.T) {
	confDir := t.TempDir()
	writeTestFile(t, filepath.Join(confDir, "other.conflist"), `{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"bridge"}]}`)
	cases := []struct {
		name   string
		args   []string
		code   int
		outHas string
		errHas string
	}{
		{name: "rehearse -h", args: []string{"rehearse", "-h"}, outHas: "THE ATTACHMENTS ARE REAL"},
		{name: "rehearse nothing", args: []string{"rehearse"}, code: 2, errHas: "give -conflist FILE, or -net NAME"},
		{name: "rehearse both", args: []string{"rehearse", "-conflist", "x", "-net", "y"}, code: 2, errHas: "one of them"},
		{name: "rehearse argument", args: []string{"rehearse", "-conflist", "x", "y"}, code: 2, errHas: `takes no arguments, got "y"`},
		{name: "rehearse Enterprise", args: []string{"rehearse", "-conflist", "x", "-nomad", "1.8.10"}, code: 2,
			errHas: "Nomad 1.8.10: an Enterprise-only release, which is not public; nicmux models the open-source releases"},
		{name: "rehearse bad version", args: []string{"rehearse", "-conflist", "x", "-nomad", "1.9.5,next"}, code: 2, errHas: `Nomad "next": not a release nicmux models`},
		{name: "rehearse too old", args: []string{"rehearse", "-conflist", "x", "-nomad", "1.7.7"}, code: 2, errHas: "the oldest modelled is 1.8.0"},
		{name: "rehearse bad port", args: []string{"rehearse", "-conflist", "x", "-port", "80"}, code: 2, errHas: `"80" is not HOST:CONTAINER[/PROTO]`},
		{name: "rehearse bad arg", args: []string{"rehearse", "-conflist", "x", "-arg", "NOEQUALS"}, code: 2, errHas: `"NOEQUALS" is not KEY=VALUE`},
		{name: "rehearse missing file", args: []string{"rehearse", "-conflist", "/nonexistent/x.conflist"}, code: 1, errHas: "no such file"},
		{name: "rehearse unknown network", args: []string{"rehearse", "-net", "Multi", "-confdir", confDir}, code: 1,
			errHas: `no CNI network configuration named "multi" in ` + confDir},
		{name: "rehearse -releases", args: []string{"rehearse", "-releases"}, outHas: "1.9.5   v1.1.11  v1.2.3  CHECK on restore"},
		{name: "adopt -h", args: []string{"adopt", "-h"}, outHas: "never overwrites a file without -force"},
		{name: "adopt without -out", args: []string{"adopt", "-conflist", "x"}, code: 2, errHas: "give -conflist FILE (the hand-written conflist) and -out DIR"},
		{name: "adopt -rehearse -attachments", args: []string{"adopt", "-conflist", "x", "-out", "d", "-rehearse", "-attachments", "/etc/x.yaml"}, code: 2,
			errHas: "leave -attachments out"},
		{name: "adopt missing file", args: []string{"adopt", "-conflist", "/nonexistent/x.conflist", "-out", t.TempDir()}, code: 1, errHas: "no such file"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := run(t, pathEnv, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			if !strings.Contains(stdout, tt.outHas) {
				t.Errorf("stdout lacks %q:\n%s", tt.outHas, stdout)
			}
			if !strings.Contains(stderr, tt.errHas) {
				t.Errorf("stderr lacks %q:\n%s", tt.errHas, stderr)
			}
			if tt.code == 2 && stdout != "" {
				t.Errorf("stdout not empty on a usage error: %s", stdout)
			}
		})
	}
	stdout, _, code := run(t, pathEnv, "rehearse", "-releases", "-json")
	var releases []map[string]string
	if err := json.Unmarshal([]byte(stdout), &releases); code != 0 || err != nil || len(releases) == 0 || releases[0]["version"] != "1.8.0" {
		t.Errorf("rehearse -releases -json: exit %d, %v: %s", code, err, stdout)
	}
}

// handChain is the seed's hand-written chain with test links: a bridge
// for eth0, a macvlan and tuning wrapped to act on eth1.
const handChain = `{"cniVersion": "1.0.0", "name": "handmade", "plugins": [
  {"type": "bridge", "bridge": "nmxadopt0", "ipam": {"type": "host-local", "ranges": [[{"subnet": "172.26.64.0/20"}]]}},
  {"type": "portmap", "capabilities": {"portMappings": true}},
  {"type": "ifrename", "ifname": "eth1", "delegate": {"type": "macvlan", "master": "lo", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.40.0.0/24"}]]}}},
  {"type": "ifrename", "ifname": "eth1", "delegate": {"type": "tuning", "sysctl": {"net.ipv4.conf.eth1.arp_ignore": "1"}}}
]}`

// TestAdoptFiles: adopt writes both files, which validate accepts; a
// second run without -force writes nothing and says so; -force
// overwrites; a chain it cannot split is refused, naming the plugin, and
// nothing is written.
func TestAdoptFiles(t *testing.T) {
	dir := t.TempDir()
	src, out := filepath.Join(dir, "handmade.conflist"), filepath.Join(dir, "out")
	writeTestFile(t, src, handChain)
	args := []string{"adopt", "-conflist", src, "-out", out, "-cni-path", fakeBin}
	stdout, stderr, code := run(t, pathEnv, args...)
	yamlFile, listFile := filepath.Join(out, "handmade.yaml"), filepath.Join(out, "handmade.conflist")
	if code != 0 {
		t.Fatalf("adopt: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	for _, w := range []string{"wrote " + yamlFile + " and " + listFile, "eth0  network handmade-eth0: bridge(host-local) portmap",
		"eth1  network handmade-eth1: macvlan(host-local) tuning (unwrapped from ifrename)", "ok: 2 files"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("stdout lacks %q:\n%s", w, stdout)
		}
	}
	list, err := os.ReadFile(listFile)
	if err != nil || !strings.Contains(string(list), `"attachments": "`+yamlFile+`"`) {
		t.Errorf("conflist %s: %v\n%s", listFile, err, list)
	}
	if stdout, _, code := run(t, pathEnv, "validate", "-strict", "-conflist", listFile, "-cni-path", fakeBin); code != 0 {
		t.Errorf("validate -strict of adopt's files: exit %d\n%s", code, stdout)
	}

	writeTestFile(t, yamlFile, "mine\n")
	if _, stderr, code := run(t, pathEnv, args...); code != 1 || !strings.Contains(stderr, yamlFile+" exists: nothing written (-force overwrites)") {
		t.Errorf("adopt over existing files: exit %d, %s", code, stderr)
	}
	if b, _ := os.ReadFile(yamlFile); string(b) != "mine\n" {
		t.Errorf("adopt overwrote %s without -force", yamlFile)
	}
	if _, stderr, code := run(t, pathEnv, append(args, "-force")...); code != 0 {
		t.Errorf("adopt -force: exit %d, %s", code, stderr)
	}
	if b, _ := os.ReadFile(yamlFile); !strings.Contains(string(b), "interfaces:") {
		t.Errorf("adopt -force did not overwrite %s:\n%s", yamlFile, b)
	}

	writeTestFile(t, src, strings.Replace(handChain, `"type": "ifrename", "ifname": "eth1", "delegate": {"type": "tuning"`,
		`"type": "rename.sh", "ifname": "eth1", "delegate": {"type": "tuning"`, 1))
	other := filepath.Join(dir, "refused")
	stdout, stderr, code = run(t, pathEnv, "adopt", "-conflist", src, "-out", other, "-json")
	if code != 1 || !strings.Contains(stdout, `"reason": "it holds a plugin configuration under \"delegate\": a wrapper adopt does not know`) ||
		!strings.Contains(stdout, `"index": 3`) {
		t.Errorf("adopt of an unknown wrapper: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Errorf("a refused adopt made %s: %v", other, err)
	}
	if _, stderr, _ := run(t, pathEnv, "adopt", "-conflist", src, "-out", other); !strings.Contains(stderr, `plugins[3] (type "rename.sh")`) {
		t.Errorf("the refusal does not name the plugin: %s", stderr)
	}
}
